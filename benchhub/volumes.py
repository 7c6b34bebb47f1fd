"""Per-workspace persistent storage for ``/data``.

Each workspace owns a directory on the host, ``<root>/<user>/<workspace>/``. The default
backend, :class:`LoopbackVolume`, keeps an ext4 filesystem image there (``data.ext4``), attaches
it to a loop device and mounts it at ``mnt/``; the spawner bind-mounts ``mnt/`` at ``/data``.
Because ``/data`` is its own filesystem of the chosen size, writing past it fails inside the
workspace with "No space left on device" and nothing else on the host fills up.

Why this and not a Docker volume: a ``local`` volume with ``o=loop`` is not size-enforced on
this engine, and XFS project quotas need an XFS host. Loop attachments do not survive a host
reboot, so :meth:`LoopbackVolume.attach` is called on every start and is idempotent.

:class:`DirectoryVolume` is the fallback for a hub that is not root: a plain directory whose
size is *not* enforced (the operator is told so in the log).

**Ownership.** The root of ``/data`` belongs to the workspace user (container uid 1000, gid
100), which on an engine that remaps user namespaces is another host id (101000:100100 with
the default ranges; :mod:`benchhub.user_namespace`). A volume made before the engine
remapped still belongs to the unmapped ids, which the container cannot use: the first attach
on the remapping engine shifts every entry owned below the remapped range into it, once
(:func:`benchhub.user_namespace.shift_tree`), and logs it, so an upgraded host keeps its data.

All methods are coroutines; external commands run as asyncio subprocesses with a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path

from .atomic import atomic_write
from .user_namespace import IdMap, engine_id_map, needs_shift, shift_tree

GIB = 1024**3
DATA_UID = 1000  # the workspace user inside the container (jovyan)
DATA_GID = 100  # its group (users)
# What a volume directory holds (storage admission counts their sizes): the ext4 image, the
# image being made (renamed into place when mkfs is done), a DirectoryVolume's size marker.
IMAGE_NAME, IMAGE_IN_PROGRESS, SIZE_MARKER = "data.ext4", "data.tmp", "size_gb"

log = logging.getLogger(__name__)


class StorageError(RuntimeError):
    """A storage operation failed; the message says which and why."""


async def run(*argv: str, limit_s: float = 120) -> str:
    """Run a command, return stdout; raise :class:`StorageError` with stderr on failure."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise StorageError(f"{argv[0]} timed out after {limit_s:.0f} s") from None
    if proc.returncode != 0:
        msg = (err or out).decode(errors="replace").strip()
        raise StorageError(f"{' '.join(argv)} failed ({proc.returncode}): {msg}")
    return out.decode()


def set_file_size(path: Path, size: int) -> None:
    """Create or extend a sparse file: it takes no disk space until written."""
    with open(path, "ab") as f:
        f.truncate(size)


async def data_owner(id_map: IdMap | None = None) -> tuple[int, int]:
    """The host ``(uid, gid)`` of the workspace user: what files made for ``/data`` get
    (``id_map``: the engine's when None)."""
    if id_map is None:
        id_map = await asyncio.to_thread(engine_id_map)
    return id_map.host_ids(DATA_UID, DATA_GID)


async def shift_if_made_before_remap(path: Path, id_map: IdMap) -> int:
    """Shift the tree at ``path`` into ``id_map``'s ranges when its root is owned below
    them (made before the engine remapped; see the module docstring). Returns how many
    entries changed (0: nothing to do)."""
    st = await asyncio.to_thread(os.stat, path, follow_symlinks=False)
    if not needs_shift(id_map, st.st_uid, st.st_gid):
        return 0
    log.warning(
        "%s was made before the Docker engine remapped user ids (owner %d:%d): moving its "
        "owners into the remapped range (%s)",
        path,
        st.st_uid,
        st.st_gid,
        id_map.describe(),
    )
    changed = await asyncio.to_thread(shift_tree, path, id_map)
    log.warning("%s: %d entries given their remapped owners", path, changed)
    return changed


class WorkspaceVolume:
    """Base class: the host directory of one workspace and the ``/data`` source inside it.

    ``id_map`` translates container ids to host ids (the local engine's, asked at the first
    attach, when None)."""

    enforces_size = False

    def __init__(
        self, root: str | os.PathLike, user: str, workspace: str, id_map: IdMap | None = None
    ):
        self.dir = Path(root) / user / workspace
        self._id_map = id_map

    async def id_map(self) -> IdMap:
        if self._id_map is None:
            self._id_map = await asyncio.to_thread(engine_id_map)
        return self._id_map

    @property
    def mount_path(self) -> Path:
        """Host path to bind-mount at ``/data``."""
        return self.dir / "mnt"

    async def size_gb(self) -> int | None:
        """Current provisioned size in GB, or None when the volume does not exist yet."""
        raise NotImplementedError

    async def attach(self, size_gb: int) -> Path:
        """Create or grow the volume to ``size_gb`` and make it available; return mount_path."""
        raise NotImplementedError

    async def detach(self) -> None:
        """Release host resources (mounts, loop devices); data stays. Idempotent."""

    async def delete(self) -> None:
        """Detach and remove everything the workspace had on the host. Idempotent."""
        await self.detach()
        await asyncio.to_thread(shutil.rmtree, self.dir, ignore_errors=True)
        parent = self.dir.parent
        try:
            parent.rmdir()  # the user's directory, when this was their last workspace
        except OSError:
            pass

    async def leftovers(self) -> list[str]:
        """What is still on the host for this workspace (for tests and operators)."""
        return [str(self.dir)] if self.dir.exists() else []


class DirectoryVolume(WorkspaceVolume):
    """A plain directory: works without root, does not enforce the size."""

    async def size_gb(self) -> int | None:
        marker = self.dir / SIZE_MARKER
        if not marker.exists():
            return None
        return int(marker.read_text())

    async def attach(self, size_gb: int) -> Path:
        log.warning("storage size of %s is not enforced (DirectoryVolume)", self.dir)
        self.mount_path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            id_map = await self.id_map()
            await shift_if_made_before_remap(self.mount_path, id_map)
            os.chown(self.mount_path, *await data_owner(id_map))
        atomic_write(self.dir / SIZE_MARKER, str(size_gb))
        return self.mount_path


class LoopbackVolume(WorkspaceVolume):
    """ext4 image on a loop device, mounted on the host: size enforced by the filesystem."""

    enforces_size = True

    @property
    def image_path(self) -> Path:
        return self.dir / IMAGE_NAME

    async def size_gb(self) -> int | None:
        try:
            return self.image_path.stat().st_size // GIB
        except FileNotFoundError:
            return None

    async def attach(self, size_gb: int) -> Path:
        current = await self.size_gb()
        if current is None:
            await self._create(size_gb)
        elif size_gb > current:
            await self._grow(size_gb)
        elif size_gb < current:
            raise StorageError(
                f"refusing to shrink {self.image_path} from {current} to {size_gb} GB"
            )
        if not await self._mounted_source():
            device = await self._loop_device() or await self._attach_loop()
            self.mount_path.mkdir(parents=True, exist_ok=True)
            await run("mount", "-t", "ext4", "-o", "nodev,nosuid", device, str(self.mount_path))
        await shift_if_made_before_remap(self.mount_path, await self.id_map())
        return self.mount_path

    async def detach(self, attempts: int = 25) -> None:
        """Unmount and free the loop device. If another container still bind-mounts /data,
        the device stays busy: ``losetup -d`` then marks it to be freed by the kernel when the
        last user goes, and after ``attempts`` tries (0.2 s apart) this logs who holds it and
        returns; the next attach reuses that device, so the filesystem is never mounted twice."""
        if await self._mounted_source():
            await run("umount", str(self.mount_path))
        device = await self._loop_device()
        for _ in range(attempts):
            if not device:
                return
            await run("losetup", "-d", device)
            device = await self._loop_device()
            if device:
                await asyncio.sleep(0.2)
        if device:
            log.warning(
                "%s of %s is still in use (another container mounts it?); the kernel "
                "frees it when the last user goes",
                device,
                self.image_path,
            )

    async def leftovers(self) -> list[str]:
        found = await super().leftovers()
        if await self._mounted_source():
            found.append(f"mount {self.mount_path}")
        device = await self._loop_device()
        if device:
            found.append(f"loop device {device}")
        return found

    async def _create(self, size_gb: int) -> None:
        uid, gid = await data_owner(await self.id_map())
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / IMAGE_IN_PROGRESS
        await asyncio.to_thread(set_file_size, tmp, size_gb * GIB)
        await run(
            "mkfs.ext4",
            "-q",
            "-F",
            "-m",
            "0",
            "-L",
            "benchdata",
            "-E",
            f"root_owner={uid}:{gid},lazy_itable_init=1,lazy_journal_init=1",
            str(tmp),
        )
        os.replace(tmp, self.image_path)  # a crash before this leaves no half-made volume

    async def _grow(self, size_gb: int) -> None:
        await self.detach()
        if await self._loop_device():
            raise StorageError(
                f"cannot grow {self.image_path}: it is still in use by another container; "
                "stop what mounts this workspace's /data and start again"
            )
        await asyncio.to_thread(set_file_size, self.image_path, size_gb * GIB)
        await run("e2fsck", "-f", "-p", str(self.image_path), limit_s=600)
        await run("resize2fs", str(self.image_path), limit_s=600)

    async def _attach_loop(self) -> str:
        return (await run("losetup", "--find", "--show", str(self.image_path))).strip()

    async def _loop_device(self) -> str | None:
        if not self.image_path.exists():
            return None
        out = await run("losetup", "-j", str(self.image_path), "-O", "NAME", "-n")
        devices = out.split()
        return devices[0] if devices else None

    async def _mounted_source(self) -> str | None:
        proc = await asyncio.create_subprocess_exec(
            "findmnt",
            "-n",
            "-o",
            "SOURCE",
            "--mountpoint",
            str(self.mount_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await proc.communicate()
        return out.decode().strip() or None
