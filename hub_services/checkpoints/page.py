"""The checkpoints page (the hub's Services menu): a user's workspaces and their checkpoints.

``templates/checkpoints.html`` on the shared page template; :func:`page_context` gives it what
the API returns, so the page is tested without a hub. Jinja escapes all user-written text
(workspace and checkpoint names, reasons, error messages); the actions call the service's API
with the page's XSRF token (HubOAuth checks it for cookie-authenticated posts).
"""

from __future__ import annotations

from pathlib import Path

from jupyterhub.utils import url_path_join

from benchhub.service_pages import PageTemplates

__all__ = ["TEMPLATES", "TITLE", "human_bytes", "lineage", "page_context"]

TEMPLATES = PageTemplates(Path(__file__).parent / "templates")
TITLE = "Workspace checkpoints"


def human_bytes(count: int | None) -> str:
    """``1536`` -> ``"1.5 KiB"``; None -> ``"—"``."""
    if count is None:
        return "—"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # unreachable


def lineage(checkpoint: dict) -> str:
    """Where a checkpoint comes from: another workspace's checkpoint, or the one before."""
    if checkpoint["origin"]:
        origin = checkpoint["origin"]
        return f"from {origin['workspace']} / {origin['checkpoint']}"
    return f"after {checkpoint['parent']}" if checkpoint["parent"] else ""


def page_context(
    user: str, workspaces: list[dict], prefix: str, xsrf: bytes | str, readonly: bool = False
) -> dict:
    """The page's own variables for ``user``'s ``workspaces`` (each as
    ``CheckpointService.list`` returns it); the page script reads ``data``. ``readonly``: a
    project's workspaces shown to its members, without the owner's actions."""
    data = {
        "api": url_path_join(prefix, "api/workspaces/"),
        "xsrf": xsrf.decode() if isinstance(xsrf, bytes) else xsrf,
    }
    return {
        "owner": user,
        "readonly": readonly,
        "workspaces": workspaces,
        "data": data,
        "human_bytes": human_bytes,
        "lineage": lineage,
    }
