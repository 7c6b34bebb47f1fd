"""Egress for restricted workspaces: squid policy per workspace address, and address assignment."""
