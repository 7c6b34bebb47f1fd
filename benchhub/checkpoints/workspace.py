"""One workspace's checkpoints: its stable id, its state record, and taking or restoring a
checkpoint under the workspace's lock. Shared by the spawner (restore on start, checkpoint on
stop) and the hub service (periodic checkpoints, the API), so both do it the same way.

**The workspace id.** A workspace's checkpoints are filed in the store under an id that never
changes, e.g. ``alice.analysis.3f9a2c``, kept in ``checkpoints.json`` in the workspace's host
directory (``<storage_root>/<user>/<workspace>/``, beside its ``/data`` volume and status
record). Renaming a workspace moves that directory, so a renamed workspace keeps its
checkpoints; a workspace deleted and created again under the same name gets a new id and does
not inherit the deleted one's checkpoints. A workspace *started as new* from a checkpoint of
another gets its id from a *pending clone* record the service writes before it asks the hub to
create the workspace (:func:`write_pending_clone`); the workspace adopts it on its first start.

**The state record** (``checkpoints.json``, written atomically)::

    {"version": 1, "workspace_id": "alice.analysis.3f9a2c", "user": "alice",
     "workspace": "analysis", "created": "<iso>",
     "origin": null | {"workspace_id", "checkpoint", "user", "workspace"},
     "last": null | {"checkpoint": "<id>", "at": "<iso>", "reason": "on stop"},
     "periodic_error": null | {"at": "<iso>", "message": "..."},
     "unsaved": null | {"container": "<kept container>", "at": "<iso>", "message": "..."}}

``last`` is the checkpoint the container's content derives from (the one restored at start,
then each one taken): the next checkpoint's parent. ``unsaved`` names a stopped container
kept because its checkpoint on stop failed; the next start saves it first.

**The lock** (``flock`` on ``checkpoints.lock`` beside the record) serialises the spawner and
the service on one workspace: a stop waits for a periodic checkpoint in progress, then takes
its own with the periodic one as parent (so only changed files are read). The kernel drops the
lock of a killed process.

Everything here blocks (file I/O, the store); callers run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from benchhub.atomic import atomic_write

from .errors import CheckpointCorrupt, CheckpointError, CheckpointNotFound, ManifestInvalid
from .manifest import Manifest
from .store import CheckpointStore

__all__ = [
    "CLONES_DIR",
    "STATE_NAME",
    "WorkspaceCheckpoints",
    "WorkspaceState",
    "find_workspaces",
    "new_workspace_id",
    "pending_clone_ids",
    "read_state",
    "remove_pending_clone",
    "write_pending_clone",
]

log = logging.getLogger("benchhub.checkpoints")

STATE_NAME = "checkpoints.json"
LOCK_NAME = "checkpoints.lock"
CLONES_DIR = ".checkpoint-clones"
PENDING_CLONE_TTL = 86400.0  # a start-as-new whose workspace never started is forgotten after this
STATE_VERSION = 1
_UNSAFE = re.compile(r"[^A-Za-z0-9-]")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_workspace_id(user: str, workspace: str) -> str:
    """A fresh store id, readable in a bucket listing: ``alice.analysis.3f9a2c``.

    Characters outside ``A-Za-z0-9-`` become ``+xx`` (hex of each UTF-8 byte); the random
    suffix makes it unique even for a workspace re-created under the same name.
    """

    def slug(text: str, limit: int) -> str:
        escaped = _UNSAFE.sub(lambda m: "".join(f"+{b:02x}" for b in m[0].encode()), text)
        return escaped[:limit] or "x"

    identifier = f"{slug(user, 90)}.{slug(workspace, 90)}.{secrets.token_hex(3)}"
    return identifier if identifier[0].isalnum() else "w" + identifier


@dataclass(frozen=True)
class WorkspaceState:
    """The state record of one workspace (see the module docstring)."""

    workspace_id: str
    user: str
    workspace: str
    created: str
    origin: dict | None = None
    last: dict | None = None
    periodic_error: dict | None = None
    unsaved: dict | None = None
    version: int = field(default=STATE_VERSION)

    @property
    def parent(self) -> str | None:
        return self.last["checkpoint"] if self.last else None

    def to_json(self) -> dict:
        return asdict(self)


def read_state(host_dir: str | os.PathLike) -> WorkspaceState | None:
    """The workspace's state record, or None if it has none (never started with
    checkpoints). A record that cannot be read raises :class:`CheckpointError` (never
    silently replaced: that would detach the workspace from its checkpoints)."""
    path = Path(host_dir) / STATE_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint record {path} is unreadable: {e}") from e
    known = {k: data[k] for k in WorkspaceState.__dataclass_fields__ if k in data}
    try:
        return WorkspaceState(**known)
    except TypeError as e:
        raise CheckpointError(f"checkpoint record {path} is incomplete: {e}") from e


def _write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=1))


def _write_state(host_dir: Path, state: WorkspaceState) -> None:
    _write_json(host_dir / STATE_NAME, state.to_json())


@contextlib.contextmanager
def _locked(host_dir: Path) -> Iterator[None]:
    fd = os.open(host_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# ---- pending clones (start as new) ------------------------------------------------------------


def _clone_path(storage_root: str | os.PathLike, user: str, workspace: str) -> Path:
    digest = hashlib.sha256(f"{user}/{workspace}".encode()).hexdigest()[:40]
    return Path(storage_root) / CLONES_DIR / f"{digest}.json"


def write_pending_clone(
    storage_root, user: str, workspace: str, workspace_id: str, origin: dict
) -> None:
    """Record that ``user``'s new workspace ``workspace`` starts from ``origin`` (a clone
    already published, or about to be, under ``workspace_id``)."""
    path = _clone_path(storage_root, user, workspace)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_json(
        path,
        {
            "user": user,
            "workspace": workspace,
            "workspace_id": workspace_id,
            "origin": origin,
            "expires": time.time() + PENDING_CLONE_TTL,
        },
    )


def remove_pending_clone(storage_root, user: str, workspace: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_clone_path(storage_root, user, workspace))


def _pending_clone(storage_root, user: str, workspace: str) -> dict | None:
    try:
        data = json.loads(_clone_path(storage_root, user, workspace).read_text())
    except (FileNotFoundError, ValueError):
        return None
    ours = (data.get("user"), data.get("workspace")) == (user, workspace)
    return data if ours and data.get("expires", 0) > time.time() else None


def pending_clone_ids(storage_root) -> set[str]:
    """Workspace ids of clones not yet adopted (the collector must keep their checkpoints)."""
    ids = set()
    folder = Path(storage_root) / CLONES_DIR
    for path in folder.glob("*.json") if folder.is_dir() else ():
        with contextlib.suppress(OSError, ValueError):
            ids.add(json.loads(path.read_text())["workspace_id"])
    return ids


def find_workspaces(storage_root) -> dict[tuple[str, str], Path]:
    """``{(user, workspace): host_dir}`` of every workspace that has a state record under
    ``storage_root`` (``<root>/<escaped user>/<workspace>/checkpoints.json``). The user is
    the record's (names on disk are escaped), the workspace the directory's (renames move
    it)."""
    found = {}
    for record in Path(storage_root).glob(f"[!.]*/*/{STATE_NAME}"):
        try:
            state = read_state(record.parent)
        except CheckpointError:
            continue
        if state is not None:
            found[(state.user, record.parent.name)] = record.parent
    return found


# ---- the operations ---------------------------------------------------------------------------


class WorkspaceCheckpoints:
    """Checkpoints of the workspace whose host directory is ``host_dir``."""

    def __init__(self, store: CheckpointStore, host_dir: str | os.PathLike, keep_automatic: int):
        if keep_automatic < 1:
            raise ValueError(f"keep_automatic must be at least 1, e.g. 30; got {keep_automatic}")
        self.store = store
        self.host_dir = Path(host_dir)
        self.keep_automatic = keep_automatic

    def state(self) -> WorkspaceState | None:
        return read_state(self.host_dir)

    def _update(self, **changes) -> WorkspaceState:
        """Change the record (caller holds the lock and knows it exists)."""
        state = replace(self.state(), **changes)
        _write_state(self.host_dir, state)
        return state

    def ensure(self, user: str, workspace: str, storage_root=None) -> WorkspaceState:
        """The workspace's record, created on first use: adopting a pending clone for
        ``(user, workspace)`` under ``storage_root`` if there is one, else with a new id."""
        with _locked(self.host_dir):
            state = self.state()
            if state is not None:
                return state
            pending = _pending_clone(storage_root, user, workspace) if storage_root else None
            workspace_id = pending["workspace_id"] if pending else new_workspace_id(user, workspace)
            origin = pending["origin"] if pending else None
            state = WorkspaceState(workspace_id, user, workspace, _now(), origin)
            _write_state(self.host_dir, state)
            if pending:  # only after the record: the collector keeps the clone meanwhile
                remove_pending_clone(storage_root, user, workspace)
            return state

    # ---- taking -------------------------------------------------------------------------------

    def take(
        self,
        upper_dir: str,
        excludes,
        reason: str,
        name: str | None = None,
        image: dict | None = None,
    ) -> Manifest:
        """Checkpoint ``upper_dir`` (parent: the record's ``last``), make it ``last``, and
        prune automatic checkpoints beyond ``keep_automatic``. Raises what the store raises;
        the record is changed only after the manifest is published."""
        with _locked(self.host_dir):
            state = self.state()
            if state is None:
                raise CheckpointError(f"{self.host_dir} has no checkpoint record (not started?)")
            parent = state.parent
            if parent and not self._exists(state.workspace_id, parent):
                parent = None  # pruned or damaged: a full checkpoint, which is always correct
            manifest = self.store.create(
                state.workspace_id,
                upper_dir,
                exclude=excludes,
                name=name,
                parent=parent,
                reason=reason,
                image=image,
            )
            last = {"checkpoint": manifest.checkpoint_id, "at": manifest.created, "reason": reason}
            self._update(last=last)
        try:
            self.store.retention(state.workspace_id, self.keep_automatic)
        except Exception:  # the checkpoint is durable; pruning is retried after the next one
            log.warning("pruning checkpoints of %s failed", state.workspace_id, exc_info=True)
        return manifest

    def _exists(self, workspace_id: str, checkpoint_id: str) -> bool:
        try:
            self.store.load(workspace_id, checkpoint_id)
        except (CheckpointNotFound, ManifestInvalid):
            return False
        return True

    def note_periodic(self, error: str | None) -> None:
        """Record the outcome of a periodic checkpoint: the error shown on the workspace, or
        None to clear it."""
        with _locked(self.host_dir):
            if self.state() is not None:
                self._update(periodic_error={"at": _now(), "message": error} if error else None)

    def mark_unsaved(self, container: str, message: str) -> None:
        """Record the kept container whose checkpoint on stop failed."""
        with _locked(self.host_dir):
            self._update(unsaved={"container": container, "at": _now(), "message": message})

    def clear_unsaved(self) -> None:
        with _locked(self.host_dir):
            self._update(unsaved=None)

    # ---- restoring ----------------------------------------------------------------------------

    def choose(self, requested: str) -> Manifest | None:
        """The checkpoint a start restores: ``""`` the latest (None if there is none),
        ``"none"`` none, else the checkpoint with that id or name (raises
        :class:`CheckpointNotFound` listing what there is)."""
        workspace_id = self.state().workspace_id
        if requested == "none":
            return None
        if requested == "":
            return self.store.latest(workspace_id)
        manifests = self.store.list(workspace_id)
        for manifest in reversed(manifests):
            if requested in (manifest.checkpoint_id, manifest.name):
                return manifest
        raise CheckpointNotFound(workspace_id, requested)

    def restore(self, manifest: Manifest | None, upper_dir: str) -> None:
        """Restore ``manifest`` into the empty upper directory of a created container (or
        nothing, for a start from the image) and make it the next checkpoint's parent."""
        with _locked(self.host_dir):
            if manifest is not None:
                self.store.restore(manifest.workspace_id, manifest.checkpoint_id, upper_dir)
                last = {"checkpoint": manifest.checkpoint_id, "at": _now(), "reason": "restored"}
            else:
                last = None
            self._update(last=last)

    def previous_good(self, damaged: str, limit: int = 5) -> Manifest | None:
        """The newest checkpoint older than ``damaged`` that verifies (at most ``limit``
        tried: damaged chunks are often shared by neighbours), or None."""
        manifests = self.store.list(self.state().workspace_id)
        ids = [m.checkpoint_id for m in manifests]
        older = manifests[: ids.index(damaged)] if damaged in ids else manifests
        for manifest in list(reversed(older))[:limit]:
            try:
                self.store.verify(manifest.workspace_id, manifest.checkpoint_id)
            except (CheckpointCorrupt, CheckpointNotFound, ManifestInvalid):
                continue
            return manifest
        return None


# ---- what a user is told ----------------------------------------------------------------------


def label(manifest: Manifest) -> str:
    """How a checkpoint is named to people: ``'before_upgrade' (20250101T…-a1b2c3)``."""
    ident = manifest.checkpoint_id
    return f"'{manifest.name}' ({ident})" if manifest.name else ident


def damaged_message(error: CheckpointCorrupt, good: Manifest | None) -> str:
    """Why a start from a damaged checkpoint was refused, and what to start from instead
    (short enough for a status line: the offer comes before the details end)."""
    problem = f"/{error.path}: {error.reason}"
    problem = problem if len(problem) <= 120 else problem[:119] + "…"
    if good is not None:
        offer = (
            f"start it from the previous good checkpoint {label(good)}, taken "
            f"{good.created[:19].replace('T', ' ')} UTC, with the option restore_checkpoint "
            f"'{good.name or good.checkpoint_id}' (or 'none' for the image as built)"
        )
    else:
        offer = "no earlier checkpoint is intact: start with restore_checkpoint 'none'"
    return (
        f"checkpoint {error.checkpoint_id} is damaged ({problem}), so the workspace was not "
        f"started from it; {offer}"
    )


def image_mismatch(manifest: Manifest, image: str) -> str | None:
    """Why ``manifest`` cannot be restored into a container of ``image`` (None if it can):
    its files are changes to the image it was taken on, and would corrupt another."""
    taken_on = (manifest.image or {}).get("name")
    if not taken_on or taken_on == image:
        return None
    return (
        f"image: checkpoint {label(manifest)} holds changes to {taken_on}, not to {image}; "
        "start with the image template it was taken on, or set restore_checkpoint to 'none' "
        f"to start {image} without the checkpoint (it stays available)"
    )


def unknown_message(workspace: str, requested: str, manifests: list[Manifest]) -> str:
    """restore_checkpoint names no checkpoint of the workspace: say which there are."""
    newest = [m.name or m.checkpoint_id for m in reversed(manifests)][:5]
    there = f"its newest are: {', '.join(newest)}" if newest else "it has none yet"
    return (
        f"restore_checkpoint: workspace '{workspace}' has no checkpoint {requested!r}; {there} "
        "(or '' for the latest, 'none' for the image as built)"
    )
