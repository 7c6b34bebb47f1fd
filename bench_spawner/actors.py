"""Who asked for a workspace action, as the activity journal names them.

A start's request reaches the spawner through JupyterHub itself (``Spawner.handler`` is the
requesting handler during ``start()``); a stop's or delete's request is noted by BenchHub's
handler on the very spawner object JupyterHub stops (``user.spawners[name]``); an edit names
its actor explicitly. No process-global map is involved.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HUB", "MAX_REASON_CHARS", "ActionRequest", "actor_name"]

MAX_REASON_CHARS = 500


def actor_name(current, owner: str) -> str:
    """Who acts on ``owner``'s workspace: the owner's name, ``admin:<name>`` for an admin
    acting on someone else's, ``service:<name>`` for a hub service (e.g. the lifecycle policy),
    ``hub`` when nobody asked (``current`` is None)."""
    if current is None:
        return "hub"
    if getattr(current, "kind", "user") == "service":
        return f"service:{current.name}"
    if current.name != owner and getattr(current, "admin", False):
        return f"admin:{current.name}"
    return current.name


@dataclass(frozen=True)
class ActionRequest:
    """The request behind a workspace action: ``actor`` as :func:`actor_name` gives it and
    the ``reason`` the caller gave (a hub service's stop says why; at most
    :data:`MAX_REASON_CHARS` characters, stripped; "" for none)."""

    actor: str
    reason: str = ""

    @classmethod
    def by(cls, current, owner: str, reason: object = "") -> ActionRequest:
        """The request of ``current`` (a JupyterHub user or service, or None) on ``owner``'s
        workspace; a ``reason`` that is not text is dropped."""
        reason = reason.strip()[:MAX_REASON_CHARS] if isinstance(reason, str) else ""
        return cls(actor_name(current, owner), reason)

    def describe(self, verb: str) -> str:
        """The journal's description, e.g. ``"stopped by service:lifecycle: idle for 2 h"``."""
        return f"{verb} by {self.actor}" + (f": {self.reason}" if self.reason else "")


HUB = ActionRequest("hub")  # nobody asked: the hub noticed (a container died, a start failed)
