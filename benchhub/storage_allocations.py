"""Storage admission on the host: the allocations on disk, the lock, and the claim records.

:class:`StorageAdmission` is the one configurable class the hub (workspace ``/data``) and the
clusters service (members' ``/scratch``) use, so both count the same things and take the same
lock. It gathers the facts for :func:`benchhub.storage_admission.decide`:

* **Allocations** are read from disk, not remembered: every volume directory two levels
  below a volume root (``<root>/<user>/<workspace>/``, ``<root>/<cluster>/<member>/``)
  counts with the larger of its images' apparent size (``data.ext4``, a half-made
  ``data.tmp``, a ``DirectoryVolume``'s ``size_gb``) and its **claim record**
  (``allocation.json``: owner and admitted bytes). A restart of any process loses nothing.
* **A claim** (:meth:`StorageAdmission.admit`) checks and writes the record in one critical
  section under an exclusive ``flock`` on one lock file shared by every process on the host
  (``<first volume root>/.storage-admission.lock``). The record exists before the image is
  made, so two starts in the hub or a start and a member's scratch in the clusters service
  cannot both pass the check and overcommit; the slow part (``mkfs``, ``resize2fs``) runs
  after the lock is released. :meth:`settle` puts the record back to what is on disk when the
  creation failed. Deleting a volume's directory deletes its record.
* The owner of a volume is its record's; a volume without one (made before admission
  existed) counts for its directory's first component under a workspace root.
* **A user's own quota**: :meth:`StorageAdmission.set_owner_quota` replaces ``user_quota``
  for one owner (their ``max_storage_gb`` limit, :func:`benchhub.quotas.storage_quota`), in
  every check and claim of that owner's volumes by this object: the hub sets it per start,
  the clusters service whenever it reads the owner's limits from the hub.

Every method blocks (directory scans, ``statvfs``, the lock): call it in a worker thread.
``flock`` covers processes on one host; volume roots on a network filesystem shared by several
hosts are not supported.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from traitlets import Float, List, Unicode, validate
from traitlets.config import LoggingConfigurable

from .atomic import atomic_write
from .storage_admission import (
    GIB,
    AdmissionPolicy,
    Allocations,
    FilesystemFacts,
    Quota,
    StorageRequest,
    Verdict,
    decide,
    parse_quota,
)
from .volumes import IMAGE_IN_PROGRESS, IMAGE_NAME, SIZE_MARKER

__all__ = ["RECORD_NAME", "StorageAdmission", "StorageRefused", "VolumeAllocation"]

RECORD_NAME = "allocation.json"
LOCK_NAME = ".storage-admission.lock"
_IMAGES = (IMAGE_NAME, IMAGE_IN_PROGRESS)


class StorageRefused(Exception):
    """Admission refused; ``str(e)`` is ``"<field>: <sentence>"`` for a 400."""

    def __init__(self, field: str, message: str, verdict: Verdict | None = None):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.verdict = verdict


@dataclass(frozen=True)
class VolumeAllocation:
    """One volume directory: who it is for, its allocated (apparent) bytes, the bytes its
    images occupy on disk, and the device of its filesystem."""

    path: str
    owner: str
    allocated_bytes: int
    used_bytes: int
    device: int


class StorageAdmission(LoggingConfigurable):
    """Capacity and per-user quota for volumes (``c.StorageAdmission``; see module docs)."""

    volume_roots = List(
        Unicode(),
        help="""Every directory holding BenchHub volumes on this host, in every process that
        allocates them (the hub: workspaces; the clusters service: scratch), e.g.
        ["/var/lib/benchhub/workspaces", "/var/lib/benchhub/cluster-scratch"]. Each process
        adds its own root; list the others so each counts what the other allocated.""",
    ).tag(config=True)
    capacity_gb = Float(
        0,
        help="""GB (GiB) that all volumes together may be allocated before overcommit, e.g.
        2000. 0 = derive it per filesystem: the space available there plus what BenchHub's
        images already occupy, less reserve_percent, so that every volume can fill up.""",
    ).tag(config=True)
    overcommit = Float(
        1.0,
        help="""Factor on the capacity: allocations may add up to capacity x overcommit, e.g.
        1.5. Above 1, volumes are promised more than the disk holds (they are sparse and most
        never fill); if the filesystem fills first, writes into every volume on it fail.""",
    ).tag(config=True)
    reserve_percent = Float(
        5,
        help="""Percent of the volume filesystem's size that derived capacity leaves for
        everything else on it (containers' writable layers, checkpoints, logs), e.g. 5.""",
    ).tag(config=True)
    user_quota = Unicode(
        "50%",
        help="""What one user's volumes (workspaces' /data and their clusters' /scratch) may
        add up to: GB, e.g. "200", or a share of the admitted total, e.g. "50%"; "" = no
        per-user quota. Default "50%": no one user can take all of it.""",
    ).tag(config=True)

    @validate("capacity_gb", "reserve_percent")
    def _not_negative(self, proposal):
        if proposal.value < 0:
            name, value = proposal.trait.name, proposal.value
            raise ValueError(f"{name} must be 0 or more, e.g. 5; got {value}")
        return proposal.value

    @validate("overcommit")
    def _positive(self, proposal):
        if not proposal.value > 0:
            raise ValueError(f"overcommit must be above 0, e.g. 1 or 1.5; got {proposal.value}")
        return proposal.value

    @validate("user_quota")
    def _quota(self, proposal):
        parse_quota(proposal.value)  # raises ValueError saying how to write it
        return proposal.value

    def __init__(self, roots=(), **kwargs):
        """``roots``: the calling process's own volume roots (added to ``volume_roots``)."""
        super().__init__(**kwargs)
        self.roots = sorted({os.path.abspath(r) for r in [*roots, *self.volume_roots]})
        if not self.roots:
            raise ValueError("StorageAdmission needs at least one volume root")
        self.owner_quotas: dict[str, Quota | None] = {}  # owner -> their own (None: none)

    def set_owner_quota(self, owner: str, quota: str | None, source: str = "") -> None:
        """Admit ``owner``'s volumes against ``quota`` instead of ``user_quota``: GB as text
        (``parse_quota``), ``""`` for no quota, None to go back to ``user_quota``.
        ``source`` names the limit in refusals, e.g. "max_storage_gb, limit of user alice"."""
        if quota is None:
            self.owner_quotas.pop(owner, None)
        else:
            self.owner_quotas[owner] = parse_quota(quota, source)

    def policy_for(self, owner: str | None = None) -> AdmissionPolicy:
        """The settings, with ``owner``'s own quota when one is set for them."""
        if owner is not None and owner in self.owner_quotas:
            quota = self.owner_quotas[owner]
        else:
            quota = parse_quota(self.user_quota)
        return AdmissionPolicy(
            capacity_bytes=int(self.capacity_gb * GIB) if self.capacity_gb else None,
            overcommit=self.overcommit,
            reserve_fraction=self.reserve_percent / 100,
            quota=quota,
        )

    @property
    def policy(self) -> AdmissionPolicy:
        """The settings, with the site's ``user_quota``."""
        return self.policy_for()

    # ---- the operations -------------------------------------------------------------------

    def check(self, target: str | os.PathLike, request: StorageRequest) -> Verdict:
        """The verdict for new volumes under ``target`` (a volume root, or a directory in
        one), without claiming anything (e.g. a cluster's scratch before it has members)."""
        return self._decide(Path(os.path.abspath(target)), request, self.allocations())

    def check_volume(self, volume_dir: str | os.PathLike, request: StorageRequest) -> Verdict:
        """The verdict for the one volume in ``volume_dir`` growing (or being created) to
        ``request.unit_bytes``, without claiming anything (e.g. to refuse options early)."""
        volume_dir = Path(os.path.abspath(volume_dir))
        return self._volume_verdict(volume_dir, request, self.allocations())[0]

    def admit(self, volume_dir: str | os.PathLike, request: StorageRequest) -> Verdict:
        """Claim ``request.unit_bytes`` for the one volume in ``volume_dir``: under the lock,
        decide against what is on disk (this volume's current allocation is what it grows
        from) and, if admitted, write its claim record. Raises :class:`StorageRefused`."""
        volume_dir = Path(os.path.abspath(volume_dir))
        with self._locked():
            verdict, current = self._volume_verdict(volume_dir, request, self.allocations())
            if not verdict.admitted:
                raise StorageRefused(request.field, verdict.message, verdict)
            claimed = max(current, request.unit_bytes)
            record = _read_record(volume_dir)
            if record is None or (record["owner"], record["bytes"]) != (request.owner, claimed):
                _write_record(volume_dir, request.owner, claimed)
        return verdict

    def settle(self, volume_dir: str | os.PathLike) -> None:
        """After a failed creation or growth: the claim becomes what is on disk (removed when
        nothing is), so a failure does not hold space."""
        volume_dir = Path(os.path.abspath(volume_dir))
        with self._locked():
            record = _read_record(volume_dir)
            if record is None:
                return
            on_disk = _image_bytes(volume_dir)[0]
            if on_disk:
                _write_record(volume_dir, record["owner"], on_disk)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(volume_dir / RECORD_NAME)

    def allocations(self) -> list[VolumeAllocation]:
        """Every volume under the roots (see the module docstring)."""
        found = []
        for root in self.roots:
            root_path = Path(root)
            root_path.mkdir(parents=True, exist_ok=True)
            device = os.stat(root_path).st_dev
            for group in _subdirs(root_path):
                for volume_dir in _subdirs(group):
                    allocation = _allocation(volume_dir, group.name, device)
                    if allocation is not None:
                        found.append(allocation)
        return found

    def usage(self, owner: str) -> int:
        """Bytes allocated to ``owner`` on every root."""
        return sum(a.allocated_bytes for a in self.allocations() if a.owner == owner)

    # ---- helpers --------------------------------------------------------------------------

    def _volume_verdict(self, volume_dir: Path, request: StorageRequest, found):
        """``(verdict, current bytes)`` for one volume resized to ``request.unit_bytes``."""
        mine = next((a for a in found if a.path == str(volume_dir)), None)
        current = mine.allocated_bytes if mine else 0
        request = StorageRequest(
            request.field, request.owner, request.unit_bytes, 1, current, request.what
        )
        return self._decide(volume_dir, request, found), current

    def _decide(self, target: Path, request: StorageRequest, found) -> Verdict:
        root = self._root_of(target)
        root.mkdir(parents=True, exist_ok=True)
        device = os.stat(root).st_dev
        policy = self.policy_for(request.owner)
        stats = os.statvfs(root)
        ours_here = [a for a in found if a.device == device]
        fs = FilesystemFacts(
            size_bytes=stats.f_blocks * stats.f_frsize,
            available_bytes=stats.f_bavail * stats.f_frsize,
            ours_used_bytes=sum(a.used_bytes for a in ours_here),
        )
        scope = found if policy.capacity_bytes is not None else ours_here
        allocations = Allocations(
            total_bytes=sum(a.allocated_bytes for a in scope),
            owner_bytes=sum(a.allocated_bytes for a in found if a.owner == request.owner),
        )
        return decide(policy, fs, allocations, request)

    def _root_of(self, target: Path) -> Path:
        for root in self.roots:
            if target == Path(root) or Path(root) in target.parents:
                return Path(root)
        raise ValueError(f"{target} is not under a volume root ({', '.join(self.roots)})")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock_dir = Path(self.roots[0])
        lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock (also when the process dies)


def _subdirs(path: Path) -> list[Path]:
    """Directories directly in ``path`` (not symlinks, not dot-names such as the lock or
    ``.checkpoint-clones``)."""
    try:
        with os.scandir(path) as listing:
            return [
                Path(e.path)
                for e in listing
                if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)
            ]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _image_bytes(volume_dir: Path) -> tuple[int, int]:
    """``(apparent, on disk)`` bytes of the volume's images (a size marker: apparent only)."""
    apparent = used = 0
    for name in _IMAGES:
        try:
            st = os.stat(volume_dir / name, follow_symlinks=False)
        except FileNotFoundError:
            continue
        apparent += st.st_size
        used += st.st_blocks * 512
    try:
        apparent = max(apparent, int((volume_dir / SIZE_MARKER).read_text()) * GIB)
    except (FileNotFoundError, ValueError):
        pass
    return apparent, used


def _allocation(volume_dir: Path, group: str, device: int) -> VolumeAllocation | None:
    record = _read_record(volume_dir)
    apparent, used = _image_bytes(volume_dir)
    claimed = int(record["bytes"]) if record else 0
    if not apparent and not claimed:
        return None  # e.g. a workspace that never got storage: nothing allocated
    owner = record["owner"] if record else group
    return VolumeAllocation(str(volume_dir), owner, max(apparent, claimed), used, device)


def _read_record(volume_dir: Path) -> dict | None:
    try:
        record = json.loads((volume_dir / RECORD_NAME).read_text())
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    ok = isinstance(record, dict) and isinstance(record.get("owner"), str)
    return record if ok and isinstance(record.get("bytes"), int) else None


def _write_record(volume_dir: Path, owner: str, size_bytes: int) -> None:
    """A crash leaves the old record or the new one (:func:`~benchhub.atomic.atomic_write`)."""
    atomic_write(volume_dir / RECORD_NAME, json.dumps({"owner": owner, "bytes": size_bytes}))
