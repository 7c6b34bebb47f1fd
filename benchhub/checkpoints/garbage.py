"""Garbage collection of chunks, safe while checkpoints are being written.

Chunks are shared by every manifest that has the same bytes, so a chunk may only go when no
manifest references it — including manifests that are still being written. The scheme is a
mark-and-sweep with two independent safeguards:

1. **Grace rule.** A chunk whose modification time is younger than ``grace`` (default a
   day) is never swept. A writer that finds a chunk already stored refreshes its time
   (``ChunkBackend.put`` of an existing object touches it), so a chunk re-used by a checkpoint
   in progress looks new. This alone covers writers that take less than ``grace``, except for
   the instant between the collector's listing and its delete.

2. **Leases and a sweep lock** (a Dekker-style handshake over the object store, which is
   strongly consistent for single objects: local files, S3 since 2020). Every writer (create
   and clone) first writes a *lease* ``locks/writers/<token>.json``, then looks for *sweep
   locks* ``locks/gc/<token>.json``; if it finds a fresh one it withdraws its lease, waits for
   the lock to go and starts again. The collector marks without locking, then writes its sweep
   lock, then waits until no fresh lease remains (or gives up for this run), then *re-reads
   the manifest list* and drops from its candidates every chunk a manifest published since
   the mark references, and only then deletes. Because each side writes before it reads, at
   least one of them sees the other: a writer either finished before the re-read (its
   manifest protects its chunks), or it starts after the sweep lock (and waits), never both
   running at once. Leases are refreshed while a writer works; a writer that could not
   refresh for half the lease lifetime aborts before publishing (``CheckpointAborted``),
   because a collector may have taken its lease for a crashed writer's.

Locks and leases are judged by the object's modification time against this host's clock,
so lifetimes (minutes) must be far longer than clock skew. A crashed collector's or writer's
lock simply expires. Orphaned chunks of a crashed writer are swept once older than ``grace``.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .backends import ChunkBackend, ObjectInfo, chunk_object, parse_chunk_object
from .chunking import is_chunk_key
from .errors import CheckpointAborted, CheckpointError

__all__ = [
    "GarbageReport",
    "LeaseManager",
    "SweepLock",
    "WriterLease",
    "collect",
    "referenced_chunks",
    "sweep_candidates",
]

log = logging.getLogger("benchhub.checkpoints")

WRITER_PREFIX = "locks/writers/"
GC_PREFIX = "locks/gc/"


@dataclass
class GarbageReport:
    """What one collection did: chunk objects seen, unreferenced candidates older than the
    grace period, chunks deleted and their stored bytes; ``skipped`` says why none were."""

    chunks_seen: int = 0
    candidates: int = 0
    deleted: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    skipped: str | None = None


def referenced_chunks(raw_manifest: bytes) -> set[str]:
    """Chunk keys a stored manifest references, read leniently so that a manifest the store
    would reject still protects its chunks. Raises :class:`CheckpointError` if the bytes
    are not JSON at all (the collector must then not sweep)."""
    try:
        data = json.loads(raw_manifest)
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"a manifest is not JSON ({e}); not collecting garbage") from e
    if not isinstance(data, dict):
        return set()
    keys = set(data.get("chunks") or ())
    for entry in data.get("entries") or ():
        if isinstance(entry, dict):
            keys.update(entry.get("chunks") or ())
    return {k for k in keys if is_chunk_key(k)}


class WriterLease:
    """A writer's lease (see the module docstring); use via :meth:`LeaseManager.writer`."""

    def __init__(self, manager: LeaseManager, what: str):
        self.manager = manager
        self.key = f"{WRITER_PREFIX}{secrets.token_hex(8)}.json"
        self.body = json.dumps({"what": what}).encode()
        self.refreshed = 0.0

    def acquire(self) -> None:
        """Write the lease, then back off while any collector holds a sweep lock."""
        manager = self.manager
        while True:
            self._write()
            if not manager.fresh(GC_PREFIX, manager.gc_lock_ttl):
                return
            manager.backend.delete(self.key)
            log.info("checkpoint writer waits for garbage collection to finish")
            manager.sleep(manager.poll_interval)

    def _write(self) -> None:
        self.manager.backend.put(self.key, self.body, overwrite=True)
        self.refreshed = self.manager.monotonic()

    def refresh(self) -> None:
        """Rewrite the lease if a quarter of its lifetime has passed (cheap to call often)."""
        if self.manager.monotonic() - self.refreshed > self.manager.lease_ttl / 4:
            self.check()
            self._write()

    def check(self) -> None:
        """Raise :class:`CheckpointAborted` if the lease may have been taken for stale."""
        if self.manager.monotonic() - self.refreshed > self.manager.lease_ttl / 2:
            raise CheckpointAborted(
                "the checkpoint could not renew its lease in time (was the process paused?); "
                "it was not published, and retrying is safe"
            )

    def release(self) -> None:
        self.manager.backend.delete(self.key)


class LeaseManager:
    """Writer leases and sweep locks over one backend; lifetimes in seconds."""

    def __init__(
        self,
        backend: ChunkBackend,
        lease_ttl: float = 600.0,
        gc_lock_ttl: float = 600.0,
        poll_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.backend = backend
        self.lease_ttl = lease_ttl
        self.gc_lock_ttl = gc_lock_ttl
        self.poll_interval = poll_interval
        self.clock = clock
        self.monotonic = monotonic
        self.sleep = sleep

    def fresh(self, prefix: str, ttl: float) -> list[ObjectInfo]:
        """Lock objects under ``prefix`` younger than ``ttl``."""
        now = self.clock()
        return [info for info in self.backend.list(prefix) if now - info.modified < ttl]

    def remove_stale(self) -> int:
        """Delete leases and sweep locks left by crashed processes (older than twice their
        lifetime); returns how many."""
        now, removed = self.clock(), 0
        for prefix, ttl in ((WRITER_PREFIX, self.lease_ttl), (GC_PREFIX, self.gc_lock_ttl)):
            for info in self.backend.list(prefix):
                if now - info.modified > 2 * ttl:
                    self.backend.delete(info.key)
                    removed += 1
        return removed

    @contextmanager
    def writer(self, what: str) -> Iterator[WriterLease]:
        """Hold a writer lease for the block; ``what`` is recorded for operators."""
        lease = WriterLease(self, what)
        lease.acquire()
        try:
            yield lease
        finally:
            lease.release()

    @contextmanager
    def sweep_lock(self, wait: float) -> Iterator[SweepLock]:
        """Hold a sweep lock for the block; see :class:`SweepLock`."""
        lock = SweepLock(self)
        try:
            lock.acquire(wait)
            yield lock
        finally:
            self.backend.delete(lock.key)


class SweepLock:
    """A collector's sweep lock. ``clear`` is True once no fresh writer lease remains (False
    if some still did after the wait: then the collector must not delete)."""

    def __init__(self, manager: LeaseManager):
        self.manager = manager
        self.key = f"{GC_PREFIX}{secrets.token_hex(8)}.json"
        self.clear = False
        self.refreshed = 0.0

    def acquire(self, wait: float) -> None:
        manager = self.manager
        self._write()
        deadline = manager.monotonic() + wait
        while manager.fresh(WRITER_PREFIX, manager.lease_ttl):
            if manager.monotonic() >= deadline:
                return
            manager.sleep(manager.poll_interval)
        self._write()
        self.clear = True

    def _write(self) -> None:
        self.manager.backend.put(self.key, b"{}", overwrite=True)
        self.refreshed = self.manager.monotonic()

    def still_held(self) -> bool:
        """Refresh the lock when due; False if it went unrenewed so long that writers may
        have taken it for a crashed collector's (then stop deleting)."""
        elapsed = self.manager.monotonic() - self.refreshed
        if elapsed > self.manager.gc_lock_ttl / 2:
            return False
        if elapsed > self.manager.gc_lock_ttl / 4:
            self._write()
        return True


def _mark(backend: ChunkBackend, seen: dict[str, set[str]]) -> set[str]:
    """Chunk keys referenced by manifests, reading only manifests not already in ``seen``."""
    for info in backend.list("manifests/"):
        if info.key.endswith(".json") and info.key not in seen:
            try:
                seen[info.key] = referenced_chunks(backend.get(info.key))
            except KeyError:  # deleted since listed: protects nothing
                seen[info.key] = set()
    return set().union(*seen.values())


def sweep_candidates(
    chunks: Iterable[ObjectInfo], referenced: set[str], cutoff: float
) -> list[ObjectInfo]:
    """Chunk objects not referenced and last modified before ``cutoff`` (pure)."""
    return [
        info
        for info in chunks
        if (key := parse_chunk_object(info.key))
        and key not in referenced
        and info.modified < cutoff
    ]


def collect(
    backend: ChunkBackend, leases: LeaseManager, grace: float, wait: float
) -> GarbageReport:
    """One mark-and-sweep run (see the module docstring)."""
    report = GarbageReport()
    leases.remove_stale()
    chunks = list(backend.list("chunks/"))  # listed before the manifests: see grace rule
    report.chunks_seen = len(chunks)
    seen: dict[str, set[str]] = {}
    candidates = sweep_candidates(chunks, _mark(backend, seen), leases.clock() - grace)
    report.candidates = len(candidates)
    if not candidates:
        return report
    with leases.sweep_lock(wait) as lock:
        if not lock.clear:
            report.skipped = "checkpoints kept being written; will try again next run"
            return report
        referenced = _mark(backend, seen)  # manifests published since the mark
        for info in candidates:
            key = parse_chunk_object(info.key)
            if key in referenced:
                continue
            if not lock.still_held():
                report.skipped = "the sweep lock could not be renewed in time; stopped early"
                break
            backend.delete(chunk_object(key))
            report.deleted.append(key)
            report.bytes_freed += info.size
    log.info(
        "garbage collection removed %d chunks (%d bytes)", len(report.deleted), report.bytes_freed
    )
    return report
