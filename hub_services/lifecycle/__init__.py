"""Workspace lifecycle: automatic shutdown, 30-day security restart and reminders."""
