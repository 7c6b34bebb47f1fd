"""The per-user quota of named checkpoints, the pure decision.

Automatic checkpoints (on stop, periodic) are pruned to ``keep_automatic`` per workspace and a
workspace's own files are limited by its resource model's ``disk_gb``, so what they keep in the
store is bounded. Named checkpoints are kept forever: they are what the quota limits.

**Usage under deduplication.** A user's use is the stored (compressed) bytes of the *distinct*
chunks that the user's named checkpoints reference, over all of the user's workspaces
(:func:`named_bytes`). A chunk counts once however many of them share it, and in full even if
an automatic checkpoint or another user's checkpoint shares it too: naming it is what keeps it
in the store. So naming a second checkpoint of an unchanged workspace costs almost nothing, a
workspace started as new from a named checkpoint costs nothing more, and use never depends on
what other users do. Naming an automatic checkpoint, or a checkpoint-now with a name, is
refused (:func:`quota_refusal`) when it would take the use above the quota; renaming a named
checkpoint changes nothing and is always allowed, and un-naming one (``{"name": null}``) frees
what only it kept.
"""

from __future__ import annotations

from collections.abc import Iterable

from .manifest import Manifest

__all__ = ["format_bytes", "named_bytes", "quota_refusal"]


def named_bytes(manifests: Iterable[Manifest]) -> int:
    """Stored bytes of the distinct chunks referenced by the ``named`` ones of ``manifests``."""
    stored: dict[str, int] = {}
    for manifest in manifests:
        if manifest.kind == "named":
            for key, (_raw, size) in manifest.chunks.items():
                stored[key] = size
    return sum(stored.values())


def format_bytes(size: int) -> str:
    """``"1.5 GB"``, ``"20 MB"``, ``"512 KB"`` (binary units, as BenchHub's GB are GiB)."""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def quota_refusal(
    user: str, quota_bytes: int, used_bytes: int, after_bytes: int, name: str
) -> str | None:
    """Why naming a checkpoint ``name`` is refused (None: it is not). ``used_bytes`` is the
    user's use now, ``after_bytes`` with it named; a quota of 0 means none."""
    if not quota_bytes or after_bytes <= quota_bytes or after_bytes <= used_bytes:
        return None
    return (
        f"name: {user}'s named checkpoints may keep {format_bytes(quota_bytes)} in the "
        f"checkpoint store (the named-checkpoint quota) and keep {format_bytes(used_bytes)} now; "
        f"naming {name!r} would make it {format_bytes(after_bytes)}; un-name a checkpoint "
        "you no longer need (PATCH its name to null) or free space in the workspace first"
    )
