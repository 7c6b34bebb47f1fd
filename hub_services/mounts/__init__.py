"""The mounts hub service: fast mounts of project data into running workspaces (issue 14)."""
