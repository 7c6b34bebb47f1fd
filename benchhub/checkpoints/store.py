"""The checkpoint store: create, restore, list, name, verify, clone, prune and collect.

:class:`CheckpointStore` coordinates the pure pieces (:mod:`.chunking`, :mod:`.manifest`),
the filesystem (:mod:`.overlay`) and a :class:`~.backends.ChunkBackend`. A checkpoint is
published by writing its manifest last, after every chunk it references is stored, so a
crash at any point leaves the previous checkpoints intact and at worst some orphan chunks
for :meth:`CheckpointStore.collect_garbage` (its scheme is described in :mod:`.garbage`).

Fast path: a manifest records the identity of the upper directory it was taken from
(``source``) and, for each file that was stable while read, its inode number and ctime. The
next checkpoint of the same upper directory (``parent=`` the previous one) re-uses a file's
chunk list without reading it when size, mtime, inode and ctime all match; ctime moves on
every write and cannot be set from inside the container, so a changed file always differs.

Every method blocks (file I/O, hashing, backend calls): the hub service calls them through
its executor helper, never on the event loop.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime

from traitlets import Float, Instance, Integer, List, Type, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from benchhub.user_namespace import IdMap, UserNamespaceError, layer_id_map

from .backends import (
    ChunkBackend,
    LocalDirectoryBackend,
    chunk_object,
    manifest_object,
    parse_manifest_object,
)
from .chunking import ChunkingParams, ChunkMismatch, chunk_key, compress, iter_chunks, unpack_chunk
from .errors import (
    CheckpointCorrupt,
    CheckpointError,
    CheckpointNameTaken,
    CheckpointNotFound,
    ManifestInvalid,
    ObjectMissing,
)
from .garbage import GarbageReport, LeaseManager, WriterLease, collect
from .manifest import (
    Entry,
    Manifest,
    build_manifest,
    check_id,
    make_checkpoint_id,
    normalise_excludes,
    normalise_name,
)
from .overlay import Scanned, file_data, restore_tree, scan_upper

__all__ = ["CheckpointStore", "utcnow"]

_NS = 1_000_000_000


def utcnow() -> datetime:
    """The current time, timezone-aware UTC; the module's one clock seam for tests."""
    return datetime.now(UTC)


class CheckpointStore(LoggingConfigurable):
    """Content-addressed, deduplicated checkpoints of workspace containers' upper dirs."""

    backend_class = Type(
        LocalDirectoryBackend,
        klass=ChunkBackend,
        help="Where chunks and manifests live: LocalDirectoryBackend (configure "
        "LocalDirectoryBackend.root) or S3Backend (configure S3Backend.bucket, prefix, "
        "endpoint_url).",
    ).tag(config=True)
    backend = Instance(ChunkBackend, help="The backend in use (built from backend_class).")
    chunk_avg_size = Integer(
        1024 * 1024,
        help="Target average chunk size in bytes (FastCDC adds about "
        "chunk_min_size), e.g. 1048576; a power of two.",
    ).tag(config=True)
    chunk_min_size = Integer(256 * 1024, help="Smallest chunk in bytes, e.g. 262144.").tag(
        config=True
    )
    chunk_max_size = Integer(4 * 1024 * 1024, help="Largest chunk in bytes, e.g. 4194304.").tag(
        config=True
    )
    compression_level = Integer(3, help="zstd level 1-22 for new chunks, e.g. 3.").tag(config=True)
    always_exclude = List(
        Unicode(),
        ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"],
        help="Container paths never checkpointed, on top of each call's mount points; "
        "Docker writes these files for every container.",
    ).tag(config=True)
    gc_grace = Float(
        86400.0,
        help="Seconds a chunk is kept after it was last written or re-used even if "
        "no manifest references it, e.g. 86400 (a day).",
    ).tag(config=True)
    gc_wait = Float(
        120.0,
        help="Seconds garbage collection waits for checkpoints in progress before it "
        "gives up for this run, e.g. 120.",
    ).tag(config=True)
    lease_ttl = Float(
        600.0,
        help="Seconds a writer lease or sweep lock stays valid without renewal; far "
        "above clock skew between hosts, e.g. 600.",
    ).tag(config=True)
    lock_poll_interval = Float(1.0, help="Seconds between looks at locks, e.g. 1.").tag(config=True)
    racy_window = Float(
        2.0,
        help="Files changed less than this many seconds before a checkpoint started are "
        "re-read by the next one instead of trusted by size/mtime/ctime, e.g. 2.",
    ).tag(config=True)

    upload_threads = Integer(
        4,
        help="Chunks stored (or fetched, on restore) in parallel by one operation: each "
        "waits on fsync or an S3 request. E.g. 4; memory use is up to 2 x this x "
        "chunk_max_size.",
    ).tag(config=True)

    @default("backend")
    def _default_backend(self):
        return self.backend_class(parent=self, log=self.log)

    @validate("upload_threads")
    def _positive_threads(self, proposal):
        if proposal["value"] < 1:
            raise ValueError(f"upload_threads must be at least 1, e.g. 4; got {proposal['value']}")
        return proposal["value"]

    @validate("gc_grace", "gc_wait", "lease_ttl", "lock_poll_interval", "racy_window")
    def _non_negative(self, proposal):
        if proposal["value"] < 0:
            raise ValueError(f"{proposal['trait'].name} must be >= 0 seconds, e.g. 60")
        return proposal["value"]

    @property
    def chunking(self) -> ChunkingParams:
        """The chunking parameters (raises ValueError naming the inconsistent setting)."""
        return ChunkingParams(
            self.chunk_avg_size, self.chunk_min_size, self.chunk_max_size, self.compression_level
        )

    @property
    def leases(self) -> LeaseManager:
        """The lease manager over this store's backend (tests replace its clock)."""
        if getattr(self, "_leases", None) is None or self._leases.backend is not self.backend:
            self._leases = LeaseManager(
                self.backend, self.lease_ttl, self.lease_ttl, self.lock_poll_interval
            )
        return self._leases

    # ---- reading manifests -------------------------------------------------------------

    def load(self, workspace_id: str, checkpoint_id: str) -> Manifest:
        """The validated manifest; raises :class:`CheckpointNotFound`."""
        check_id("workspace id", workspace_id)
        check_id("checkpoint id", checkpoint_id)
        try:
            raw = self.backend.get(manifest_object(workspace_id, checkpoint_id))
        except ObjectMissing:
            raise CheckpointNotFound(workspace_id, checkpoint_id) from None
        manifest = Manifest.from_bytes(raw)
        if (manifest.workspace_id, manifest.checkpoint_id) != (workspace_id, checkpoint_id):
            raise ManifestInvalid(f"manifest {workspace_id}/{checkpoint_id} names another")
        return manifest

    def list(self, workspace_id: str) -> list[Manifest]:
        """The workspace's checkpoints, oldest first; unreadable manifests are logged and
        left out."""
        check_id("workspace id", workspace_id)
        manifests = []
        for info in self.backend.list(f"manifests/{workspace_id}/"):
            ids = parse_manifest_object(info.key)
            if ids is None or ids[0] != workspace_id:
                continue
            try:
                manifests.append(self.load(*ids))
            except (CheckpointNotFound, ManifestInvalid, ValueError) as e:
                self.log.warning("checkpoint %s/%s is unreadable: %s", *ids, e)
        return sorted(manifests, key=lambda m: (m.created, m.checkpoint_id))

    def latest(self, workspace_id: str) -> Manifest | None:
        """The newest readable checkpoint of the workspace (the natural ``parent``), or None.

        Checkpoint ids begin with their creation time, so only the newest manifest is read
        (unless it is unreadable), not every one as :meth:`list` does."""
        check_id("workspace id", workspace_id)
        ids = []
        for info in self.backend.list(f"manifests/{workspace_id}/"):
            parsed = parse_manifest_object(info.key)
            if parsed is not None and parsed[0] == workspace_id:
                ids.append(parsed[1])
        for checkpoint_id in sorted(ids, reverse=True):
            try:
                return self.load(workspace_id, checkpoint_id)
            except (CheckpointNotFound, ManifestInvalid, ValueError) as e:
                self.log.warning(
                    "checkpoint %s/%s is unreadable: %s", workspace_id, checkpoint_id, e
                )
        return None

    # ---- creating ----------------------------------------------------------------------

    def create(
        self,
        workspace_id: str,
        upper_dir: str,
        exclude=(),
        name: str | None = None,
        parent: str | None = None,
        reason: str | None = None,
        image: dict | None = None,
        id_map: IdMap | None = None,
    ) -> Manifest:
        """Checkpoint ``upper_dir`` for ``workspace_id`` and publish its manifest.

        ``exclude`` are absolute container paths (mount points such as ``/data``) left out
        with everything below them, on top of :attr:`always_exclude`. ``name`` makes a named
        checkpoint (raises :class:`CheckpointNameTaken` if another has it). ``parent`` is the
        previous checkpoint's id: recorded as lineage, and its unchanged files are not read.
        ``reason`` says what took it (``"on stop"``, ``"periodic"``), shown in listings;
        ``image`` (``{"name", "id"}``) the image the container ran, which a restore needs.
        ``id_map`` turns the layer's host owners into the container ids the manifest holds
        (by default :func:`benchhub.user_namespace.layer_id_map` of ``upper_dir``).
        """
        check_id("workspace id", workspace_id)
        name = normalise_name(name) if name is not None else None
        excludes = normalise_excludes([*self.always_exclude, *exclude])
        id_map = _owners_map(upper_dir, id_map)
        with self.leases.writer(f"create {workspace_id}") as lease:
            if name is not None:
                self._require_name_free(workspace_id, name, None)
            previous = self.load(workspace_id, parent) if parent else None
            created = utcnow()
            manifest = self._capture(
                workspace_id,
                upper_dir,
                excludes,
                previous,
                created,
                lease,
                name,
                reason,
                image,
                id_map,
            )
            lease.check()
            self._publish(manifest)
        self.log.info("checkpoint %s/%s: %s", workspace_id, manifest.checkpoint_id, manifest.totals)
        return manifest

    def _capture(
        self,
        workspace_id,
        upper_dir,
        excludes,
        previous,
        created,
        lease,
        name,
        reason,
        image,
        id_map,
    ):
        source = _source_identity(upper_dir)
        reusable = {}
        if previous is not None and previous.source == source:
            reusable = {e.path: e for e in previous.entries if e.type == "file"}
        stable_before = int(created.timestamp() * _NS) - int(self.racy_window * _NS)
        entries = []  # (entry, chunk-key futures or None)
        with _ChunkSink(self.backend, self.chunking, lease, self.upload_threads) as sink:
            for scanned in scan_upper(upper_dir, excludes, id_map):
                entry, keys = scanned.entry, None
                if entry.type == "file":
                    old = reusable.get(entry.path)
                    if old is not None and _unchanged(old, entry):
                        sink.reuse(old.chunks, previous.chunks)
                        entry = replace(entry, chunks=old.chunks, holes=old.holes)
                    else:
                        entry, keys = _read_file(scanned, sink, stable_before)
                entries.append((entry, keys))
                lease.refresh()
            sink.finish()
        entries = [
            entry if keys is None else replace(entry, chunks=tuple(k.result() for k in keys))
            for entry, keys in entries
        ]
        return build_manifest(
            workspace_id,
            entries,
            sink.table,
            created=created,
            name=name,
            parent=previous.checkpoint_id if previous else None,
            source=source,
            reason=reason,
            image=image,
            chunking=self.chunking.describe(),
            new_chunks=sink.new_chunks,
            new_stored_bytes=sink.new_bytes,
        )

    def _publish(self, manifest: Manifest) -> None:
        key = manifest_object(manifest.workspace_id, manifest.checkpoint_id)
        self.backend.put(key, manifest.to_bytes(), overwrite=True)

    def _require_name_free(self, workspace_id: str, name: str, checkpoint_id: str | None):
        for other in self.list(workspace_id):
            if other.name == name and other.checkpoint_id != checkpoint_id:
                raise CheckpointNameTaken(workspace_id, name, other.checkpoint_id)

    # ---- restoring and verifying -------------------------------------------------------

    def restore(
        self, workspace_id: str, checkpoint_id: str, upper_dir: str, id_map: IdMap | None = None
    ) -> Manifest:
        """Fill the empty upper directory of a created, never-started container.

        Every chunk is verified as it is written into a staging directory beside
        ``upper_dir``; :class:`CheckpointCorrupt` (or any error) leaves ``upper_dir`` empty.
        The manifest's container owners become host owners with ``id_map`` (by default
        :func:`benchhub.user_namespace.layer_id_map` of ``upper_dir``).
        """
        id_map = _owners_map(upper_dir, id_map)
        manifest = self.load(workspace_id, checkpoint_id)
        wanted = [(entry.path, key) for entry in manifest.entries for key in entry.chunks]
        chunks = self._fetch_in_order(manifest, wanted)

        def read_file(entry: Entry):  # called in entry order, each file read to its end
            for _ in entry.chunks:
                yield next(chunks)

        try:
            restore_tree(upper_dir, manifest.entries, read_file, id_map)
        finally:
            chunks.close()
        self.log.info("restored %s/%s into %s", workspace_id, checkpoint_id, upper_dir)
        return manifest

    def verify(self, workspace_id: str, checkpoint_id: str) -> dict:
        """Check every chunk of the checkpoint is present and hashes right; returns counts.

        Raises :class:`CheckpointCorrupt` naming the first path a bad chunk breaks.
        """
        manifest = self.load(workspace_id, checkpoint_id)
        wanted = [(path, key) for key, path in manifest.chunk_paths().items()]
        for _ in self._fetch_in_order(manifest, wanted):
            pass
        return {"chunks": len(manifest.chunks), "bytes": manifest.totals.get("referenced_bytes")}

    def _fetch_in_order(self, manifest: Manifest, wanted: list[tuple[str, str]]):
        """Yield the verified bytes of each ``(path, key)`` in order, fetching up to
        ``2 x upload_threads`` ahead (S3 latency would otherwise dominate a restore)."""
        pool = ThreadPoolExecutor(self.upload_threads, thread_name_prefix="checkpoint-fetch")
        ahead = deque()
        pending = iter(wanted)
        try:
            for path, key in itertools.islice(pending, 2 * self.upload_threads):
                ahead.append(pool.submit(self._fetch, manifest, path, key))
            while ahead:
                data = ahead.popleft().result()
                for path, key in itertools.islice(pending, 1):
                    ahead.append(pool.submit(self._fetch, manifest, path, key))
                yield data
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _fetch(self, manifest: Manifest, path: str, key: str) -> bytes:
        def corrupt(reason: str) -> CheckpointCorrupt:
            return CheckpointCorrupt(
                manifest.workspace_id, manifest.checkpoint_id, path, key, reason
            )

        try:
            data = unpack_chunk(key, self.backend.get(chunk_object(key)))
        except ObjectMissing:
            raise corrupt("missing from the store") from None
        except ChunkMismatch as e:
            raise corrupt(f"corrupt ({e})") from None
        if len(data) != manifest.chunks[key][0]:
            raise corrupt(f"{len(data)} bytes, not {manifest.chunks[key][0]}")
        return data

    # ---- naming, cloning, pruning ------------------------------------------------------

    def rename(self, workspace_id: str, checkpoint_id: str, new_name: str) -> Manifest:
        """Name (or rename) a checkpoint, which makes it ``named`` and exempt from retention.

        Spaces become underscores; raises :class:`InvalidCheckpointName`,
        :class:`CheckpointNameTaken` or :class:`CheckpointNotFound`.
        """
        name = normalise_name(new_name)
        manifest = self.load(workspace_id, checkpoint_id)
        self._require_name_free(workspace_id, name, checkpoint_id)
        renamed = manifest.with_changes(name=name, kind="named")
        self._publish(renamed)
        return renamed

    def unname(self, workspace_id: str, checkpoint_id: str) -> Manifest:
        """Make a named checkpoint automatic again (retention prunes it like the others;
        its chunks then no longer count for the owner's named-checkpoint quota)."""
        manifest = self.load(workspace_id, checkpoint_id)
        if manifest.kind != "named":
            return manifest
        unnamed = manifest.with_changes(name=None, kind="automatic")
        self._publish(unnamed)
        return unnamed

    def clone_lineage(self, src_workspace: str, checkpoint_id: str, new_workspace: str) -> Manifest:
        """Start ``new_workspace`` from a checkpoint of ``src_workspace``: its first manifest
        references the same chunks (nothing is copied). Returns the new manifest."""
        check_id("workspace id", new_workspace)
        with self.leases.writer(f"clone {src_workspace} to {new_workspace}") as lease:
            source = self.load(src_workspace, checkpoint_id)  # under the lease: chunks stay
            created = utcnow()
            clone = source.with_changes(
                workspace_id=new_workspace,
                checkpoint_id=make_checkpoint_id(created),
                created=created.isoformat(),
                parent=None,
                source=None,
                origin={"workspace": src_workspace, "checkpoint": checkpoint_id},
                totals={**source.totals, "new_chunks": 0, "new_stored_bytes": 0},
            )
            lease.check()
            self._publish(clone)
        return clone

    def retention(self, workspace_id: str, keep_automatic: int) -> list[str]:
        """Delete all but the newest ``keep_automatic`` automatic checkpoints (named ones
        are always kept); returns the deleted ids. Chunks go at the next collection."""
        if keep_automatic < 0:
            raise ValueError(f"keep_automatic must be >= 0, got {keep_automatic}")
        automatic = [m for m in self.list(workspace_id) if m.kind == "automatic"]
        doomed = automatic[: max(0, len(automatic) - keep_automatic)]
        for manifest in doomed:
            self.backend.delete(manifest_object(workspace_id, manifest.checkpoint_id))
        return [m.checkpoint_id for m in doomed]

    def delete_workspace(self, workspace_id: str) -> int:
        """Delete every manifest of the workspace (also unreadable ones); returns how many.
        Deleting a workspace that has none is success."""
        check_id("workspace id", workspace_id)
        keys = [info.key for info in self.backend.list(f"manifests/{workspace_id}/")]
        for key in keys:
            self.backend.delete(key)
        return len(keys)

    def collect_garbage(self) -> GarbageReport:
        """Delete chunks no manifest references (see :mod:`.garbage` for why this is safe
        while checkpoints are being created)."""
        return collect(self.backend, self.leases, self.gc_grace, self.gc_wait)


class _ChunkSink:
    """Stores a checkpoint's chunks once each, ``threads`` at a time, and keeps the chunk
    table and new-byte totals. Hashing, compression and the store's fsync or S3 request all
    run in the worker threads (they release the GIL), so the reading thread only reads and
    cuts. Use as a context manager; a worker's error surfaces from :meth:`add` or
    :meth:`finish`."""

    def __init__(self, backend, params: ChunkingParams, lease: WriterLease, threads: int):
        self.backend = backend
        self.params = params
        self.lease = lease
        self.table: dict[str, tuple[int, int]] = {}
        self.new_chunks = 0
        self.new_bytes = 0
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="checkpoint-upload")
        self._pending: deque[Future] = deque()
        self._claimed: set[str] = set()  # keys a worker stores (or stored) in this checkpoint
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(2 * threads)  # bounds chunk copies in memory

    def __enter__(self) -> _ChunkSink:
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, data: memoryview) -> Future:
        """Queue one chunk (copied: the view dies with the next chunk); a future of its key."""
        self._slots.acquire()
        future = self._pool.submit(self._store, bytes(data))
        future.add_done_callback(lambda _: self._slots.release())
        self._pending.append(future)
        self._collect(wait=False)
        self.lease.refresh()
        return future

    def _store(self, data: bytes) -> str:
        key = chunk_key(data)
        with self._lock:
            if key in self._claimed:  # the same bytes again in this checkpoint
                return key
            self._claimed.add(key)
        info = self.backend.touch(chunk_object(key))  # re-use refreshes (grace rule)
        if info is not None:
            stored, new = info.size, False
        else:
            blob = compress(data, self.params.level)
            stored, new = len(blob), self.backend.put(chunk_object(key), blob)
        with self._lock:
            self.table[key] = (len(data), stored)
            self.new_chunks += new
            self.new_bytes += stored if new else 0
        return key

    def _collect(self, wait: bool) -> None:
        """Drop finished work from the queue, raising the first error."""
        while self._pending and (wait or self._pending[0].done()):
            self._pending.popleft().result()

    def finish(self) -> None:
        """Wait until every queued chunk is stored (raises the first error)."""
        self._collect(wait=True)

    def reuse(self, keys, table) -> None:
        with self._lock:
            for key in keys:
                self.table.setdefault(key, table[key])
                self._claimed.add(key)


def _owners_map(upper_dir: str, id_map: IdMap | None) -> IdMap:
    """``id_map``, or the map of the layer at ``upper_dir`` (a :class:`CheckpointError`
    saying why when the engine cannot tell it)."""
    if id_map is not None:
        return id_map
    try:
        return layer_id_map(upper_dir)
    except UserNamespaceError as e:
        raise CheckpointError(f"owners of {upper_dir} cannot be translated: {e}") from e


def _source_identity(upper_dir: str) -> str:
    st = os.stat(upper_dir, follow_symlinks=False)
    return f"{st.st_dev}:{st.st_ino}"


def _unchanged(old: Entry, new: Entry) -> bool:
    return old.ino is not None and (old.size, old.mtime_ns, old.ino, old.ctime_ns) == (
        new.size,
        new.mtime_ns,
        new.ino,
        new.ctime_ns,
    )


def _read_file(scanned: Scanned, sink: _ChunkSink, stable_before: int):
    """Chunk one file's data (its holes left out, up to its size when scanned) into the
    sink: ``(entry without chunks, futures of its chunk keys)``; the entry keeps its
    inode/ctime only if the file was stable while read."""
    keys = []
    with file_data(scanned) as stream:
        for data in iter_chunks(stream, sink.params):
            keys.append(sink.add(data))
    after = os.fstat(scanned.fd)
    before = scanned.stat
    same = (after.st_size, after.st_mtime_ns, after.st_ctime_ns) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ctime_ns,
    )
    stable = same and before.st_ctime_ns < stable_before
    fields = {} if stable else {"ino": None, "ctime_ns": None}
    return replace(scanned.entry, **fields), keys
