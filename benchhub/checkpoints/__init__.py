"""Workspace checkpoints: a container's filesystem changes, stored deduplicated, restorable.

The library the checkpoints hub service and the spawner share: :class:`CheckpointStore`
(create, restore, list, rename, verify, clone, retention, garbage collection) over a
:class:`ChunkBackend` (:class:`LocalDirectoryBackend` or :class:`S3Backend`).
"""

from .backends import ChunkBackend, LocalDirectoryBackend, ObjectInfo, S3Backend
from .chunking import ChunkingParams
from .errors import (
    CheckpointAborted,
    CheckpointCorrupt,
    CheckpointError,
    CheckpointNameTaken,
    CheckpointNotFound,
    InvalidCheckpointName,
    ManifestInvalid,
    ObjectMissing,
    RestoreTargetNotEmpty,
)
from .garbage import GarbageReport
from .manifest import Entry, Manifest
from .store import CheckpointStore

__all__ = [
    "CheckpointAborted",
    "CheckpointCorrupt",
    "CheckpointError",
    "CheckpointNameTaken",
    "CheckpointNotFound",
    "CheckpointStore",
    "ChunkBackend",
    "ChunkingParams",
    "Entry",
    "GarbageReport",
    "InvalidCheckpointName",
    "LocalDirectoryBackend",
    "Manifest",
    "ManifestInvalid",
    "ObjectInfo",
    "ObjectMissing",
    "RestoreTargetNotEmpty",
    "S3Backend",
]
