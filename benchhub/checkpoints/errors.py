"""What can go wrong with checkpoints, as exceptions the hub service maps to responses.

User-facing errors (the service answers 4xx): :class:`CheckpointNotFound` (404),
:class:`CheckpointNameTaken` (409), :class:`InvalidCheckpointName` (400). Everything else is
an operational failure the service logs with ``exc_info`` and reports as a status.
"""

from __future__ import annotations

__all__ = [
    "CheckpointAborted",
    "CheckpointCorrupt",
    "CheckpointError",
    "CheckpointNameTaken",
    "CheckpointNotFound",
    "InvalidCheckpointName",
    "ManifestInvalid",
    "ObjectMissing",
    "RestoreTargetNotEmpty",
]


class CheckpointError(Exception):
    """Base class of every checkpoint error; ``str(e)`` is a sentence for a log or a user."""


class ObjectMissing(CheckpointError, KeyError):
    """A backend object (chunk or manifest) does not exist; ``key`` names it."""

    def __init__(self, key: str):
        super().__init__(f"object {key!r} does not exist in the checkpoint store")
        self.key = key

    def __str__(self) -> str:
        return self.args[0]


class CheckpointNotFound(CheckpointError):
    """No checkpoint ``checkpoint_id`` exists for ``workspace_id``."""

    def __init__(self, workspace_id: str, checkpoint_id: str):
        super().__init__(f"workspace {workspace_id!r} has no checkpoint {checkpoint_id!r}")
        self.workspace_id = workspace_id
        self.checkpoint_id = checkpoint_id


class InvalidCheckpointName(CheckpointError, ValueError):
    """A checkpoint name breaks the naming rules; the message says which and how to fix it."""


class CheckpointNameTaken(CheckpointError):
    """Another checkpoint of the same workspace already has this name (the service's 409)."""

    def __init__(self, workspace_id: str, name: str, holder: str):
        super().__init__(
            f"workspace {workspace_id!r} already has a checkpoint named {name!r} ({holder}); "
            "choose another name or rename that checkpoint first"
        )
        self.workspace_id = workspace_id
        self.name = name
        self.holder = holder


class ManifestInvalid(CheckpointError, ValueError):
    """A manifest failed validation (bad JSON, unknown version, unsafe or duplicate path)."""


class CheckpointCorrupt(CheckpointError):
    """A chunk a checkpoint needs is missing or damaged.

    ``checkpoint_id`` is the checkpoint, ``path`` the first file it breaks (relative to the
    container's root), ``key`` the chunk and ``reason`` what is wrong with it.
    """

    def __init__(self, workspace_id: str, checkpoint_id: str, path: str, key: str, reason: str):
        super().__init__(
            f"checkpoint {checkpoint_id!r} of workspace {workspace_id!r} is damaged: "
            f"chunk {key[:16]}… of /{path} is {reason}"
        )
        self.workspace_id = workspace_id
        self.checkpoint_id = checkpoint_id
        self.path = path
        self.key = key
        self.reason = reason


class RestoreTargetNotEmpty(CheckpointError):
    """A restore was asked to write into an upper directory that already has content
    (the container was started, or restored into before)."""


class CheckpointAborted(CheckpointError):
    """A checkpoint could not be completed safely (e.g. it outlived its garbage-collection
    lease and a chunk it reused has gone); nothing was published, retrying is safe."""
