"""Who may see whose workspaces in the lifecycle service's API and pages.

A person sees their own. The hub's admins, and services or tokens whose role reads every
user's servers (e.g. an operator's monitoring token), see everyone's. ``caller`` is the hub's
model of the authenticated user or service, as ``HubOAuthenticated.current_user`` gives it.
"""

from __future__ import annotations

__all__ = ["sees_everyone"]

_EVERYONE = ("admin:users", "admin:servers", "read:servers")


def sees_everyone(caller: dict) -> bool:
    if caller.get("kind", "user") == "user" and caller.get("admin") is True:
        return True
    scopes = caller.get("scopes") or []
    return any(scope in scopes for scope in _EVERYONE)
