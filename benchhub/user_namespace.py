"""Container user ids and host user ids: Docker's ``userns-remap``.

When the engine remaps user namespaces (``"userns-remap": "default"`` in ``daemon.json``,
set by ``scripts/host-setup.sh``), a container's uid 0 is host uid 100000, its uid 1000 is
host 101000, and so on through the remap user's subordinate ranges (``/etc/subuid``,
``/etc/subgid``). Host code that makes files a container uses (the ``/data`` root, files the
services write into ``/data``, the egress proxy's log directory) must give them the *host*
ids; code that reads owners off the host (the checkpoint scanner) must turn them back into
container ids. Without remapping both are the same (:data:`IDENTITY`).

:class:`IdMap` is the pure translation; :func:`id_map_from_engine` builds it from what the
engine reports (``docker info``) and the subordinate-id files; :func:`engine_id_map` is the
cached way for host-side code to get the map of the local engine; :func:`layer_id_map` the
map that applies to a path (a container layer under the engine's remapped data root, or an
ordinary directory). :func:`shift_tree` moves a tree made before the engine remapped
(``/data`` of an operator who upgraded) into the remapped range, once.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import pwd
import re
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "IDENTITY",
    "OVERFLOW_ID",
    "IdMap",
    "IdRange",
    "UserNamespaceError",
    "engine_id_map",
    "id_map_from_engine",
    "layer_id_map",
    "needs_shift",
    "remap_setting",
    "shift_tree",
    "shifted_owner",
    "subordinate_ranges",
]

log = logging.getLogger("benchhub.user_namespace")

# What the kernel shows for an id that has no mapping in a user namespace
# (/proc/sys/kernel/overflowuid and overflowgid: "nobody" and "nogroup").
OVERFLOW_ID = 65534
DEFAULT_REMAP_USER = "dockremap"  # the user Docker creates for "userns-remap": "default"
DAEMON_JSON = "/etc/docker/daemon.json"
SUBUID, SUBGID = "/etc/subuid", "/etc/subgid"


class UserNamespaceError(RuntimeError):
    """The engine's user-namespace mapping cannot be determined; the message says why and
    what to check."""


@dataclass(frozen=True)
class IdRange:
    """``length`` consecutive ids: container ``container`` is host ``host``, and so on."""

    container: int
    host: int
    length: int

    def host_of(self, container_id: int) -> int | None:
        offset = container_id - self.container
        return self.host + offset if 0 <= offset < self.length else None

    def container_of(self, host_id: int) -> int | None:
        offset = host_id - self.host
        return self.container + offset if 0 <= offset < self.length else None


def _translate(ranges: tuple[IdRange, ...], value: int, to_host: bool) -> int | None:
    if not ranges:
        return value  # no remapping: the same id on both sides
    for r in ranges:
        found = r.host_of(value) if to_host else r.container_of(value)
        if found is not None:
            return found
    return None


@dataclass(frozen=True)
class IdMap:
    """Container ids to host ids and back, for uids and gids. Empty ranges mean identity.

    An id without a mapping translates to :data:`OVERFLOW_ID` (container side) or to the host
    id of the container's :data:`OVERFLOW_ID` (host side): what the kernel itself shows a
    process for a file whose owner it cannot map.
    """

    uids: tuple[IdRange, ...] = ()
    gids: tuple[IdRange, ...] = ()

    @property
    def is_identity(self) -> bool:
        return not self.uids and not self.gids

    def host_ids(self, uid: int, gid: int) -> tuple[int, int]:
        """The host ``(uid, gid)`` of container ``(uid, gid)``."""
        return self._host(self.uids, uid), self._host(self.gids, gid)

    def container_ids(self, uid: int, gid: int) -> tuple[int, int]:
        """The container ``(uid, gid)`` of host ``(uid, gid)`` (a host id outside the
        ranges, e.g. host root, is :data:`OVERFLOW_ID`)."""
        return self._container(self.uids, uid), self._container(self.gids, gid)

    @staticmethod
    def _host(ranges, value: int) -> int:
        found = _translate(ranges, value, to_host=True)
        if found is None:
            found = _translate(ranges, OVERFLOW_ID, to_host=True)
        if found is None:
            raise UserNamespaceError(f"id {value} has no host id and neither has {OVERFLOW_ID}")
        return found

    @staticmethod
    def _container(ranges, value: int) -> int:
        found = _translate(ranges, value, to_host=False)
        return OVERFLOW_ID if found is None else found

    def describe(self) -> str:
        """For logs and progress messages: ``"container 0-65535 = host 100000-165535"``."""
        if self.is_identity:
            return "no user-namespace remapping (container ids are host ids)"
        return "; ".join(
            f"{kind} {r.container}-{r.container + r.length - 1} = host {r.host}-"
            f"{r.host + r.length - 1}"
            for kind, ranges in (("uids", self.uids), ("gids", self.gids))
            for r in ranges
        )


IDENTITY = IdMap()


# ---- building the map from the engine (pure) ---------------------------------------------------


def remap_setting(daemon_json_text: str | None) -> tuple[str, str | None]:
    """``(user, group or None)`` named by ``daemon.json``'s ``userns-remap`` (Docker's
    forms: ``"default"``, ``"user"``, ``"user:group"``, numeric ids); ``dockremap`` when the
    file is absent, unreadable or does not say (the engine was started with the flag)."""
    value = ""
    if daemon_json_text:
        try:
            value = str(json.loads(daemon_json_text).get("userns-remap") or "")
        except (ValueError, AttributeError):
            value = ""
    if not value or value == "default":
        return DEFAULT_REMAP_USER, None
    user, _, group = value.partition(":")
    return user, group or None


def subordinate_ranges(text: str, names: Iterable[str]) -> tuple[IdRange, ...]:
    """The ranges of ``/etc/subuid``-style ``text`` whose owner is one of ``names``, laid
    end to end from container id 0 in ascending host order (as Docker does)."""
    wanted = {n for n in names if n}
    found = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) != 3 or parts[0] not in wanted:
            continue
        try:
            start, count = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        if start >= 0 and count > 0:
            found.append((start, count))
    ranges, next_container = [], 0
    for start, count in sorted(found):
        ranges.append(IdRange(next_container, start, count))
        next_container += count
    return tuple(ranges)


_ROOT_SUFFIX = re.compile(r"(\d+)\.(\d+)$")


def id_map_from_engine(
    info: dict,
    subuid_text: str,
    subgid_text: str,
    remap: tuple[str, str | None] = (DEFAULT_REMAP_USER, None),
    user_ids: tuple[str, ...] = (),
    group_ids: tuple[str, ...] = (),
) -> IdMap:
    """The map of an engine from its ``docker info`` document.

    Identity unless ``SecurityOptions`` holds ``name=userns``. Otherwise the remap user's
    ranges (``remap``: user and group names, :func:`remap_setting`; ``user_ids`` and
    ``group_ids``: other spellings of them in the files, such as the numeric id), and the
    data root's ``<uid>.<gid>`` suffix (Docker names it after the host ids of container
    root) must agree with them. Raises :class:`UserNamespaceError` saying what disagrees.
    """
    options = info.get("SecurityOptions") or []
    if not any("name=userns" in str(option).split(",") for option in options):
        return IDENTITY
    user, group = remap
    uids = subordinate_ranges(subuid_text, (user, *user_ids))
    gids = subordinate_ranges(subgid_text, (group or user, *group_ids))
    if not uids or not gids:
        raise UserNamespaceError(
            f"the engine remaps user namespaces but {SUBUID} / {SUBGID} have no ranges for "
            f"{user!r}: check daemon.json's userns-remap and those files"
        )
    id_map = IdMap(uids, gids)
    root = str(info.get("DockerRootDir") or "")
    suffix = _ROOT_SUFFIX.search(root)
    if suffix and (int(suffix[1]), int(suffix[2])) != id_map.host_ids(0, 0):
        raise UserNamespaceError(
            f"the engine's data root {root} says container root is host "
            f"{suffix[1]}:{suffix[2]}, but the ranges of {user!r} say "
            f"{id_map.host_ids(0, 0)[0]}:{id_map.host_ids(0, 0)[1]}: check daemon.json's "
            f"userns-remap against {SUBUID} and {SUBGID}"
        )
    return id_map


# ---- the local engine (cached) -----------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _numeric_spellings(user: str, group: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Docker accepts a user's name or uid in the subordinate-id files: both spellings."""
    user_ids, group_ids = [], []
    try:
        entry = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
        user_ids += [entry.pw_name, str(entry.pw_uid)]
        if group is None:
            group_ids += [entry.pw_name, str(entry.pw_gid)]
    except (KeyError, ValueError):
        pass
    return tuple(user_ids), tuple(group_ids)


@dataclass(frozen=True)
class EngineUserNamespace:
    """The local engine's map and its data root (where its remapped layers live)."""

    id_map: IdMap
    data_root: str


_engine: EngineUserNamespace | None = None
_remote_engines: dict[str, EngineUserNamespace] = {}  # base_url -> its namespace
_engine_lock = threading.Lock()


def _ask_engine(base_url: str | None) -> EngineUserNamespace:
    import docker  # here: the pure parts above need no Docker client

    try:
        client = docker.APIClient(base_url=base_url, version="auto", timeout=30)
        try:
            info = client.info()
        finally:
            client.close()
    except Exception as e:
        raise UserNamespaceError(
            f"cannot ask the Docker engine whether it remaps user ids: {e}"
        ) from e
    # the subordinate-id files and daemon.json are this machine's: an engine reached by
    # URL is this machine's own engine seen over TCP (the hub on a swarm's manager), or
    # one that does not remap (id_map_from_engine reads "userns" in its security options)
    remap = remap_setting(_read(DAEMON_JSON))
    user_ids, group_ids = _numeric_spellings(*remap)
    id_map = id_map_from_engine(
        info, _read(SUBUID) or "", _read(SUBGID) or "", remap, user_ids, group_ids
    )
    log.info("Docker engine %s: %s", base_url or "(local)", id_map.describe())
    return EngineUserNamespace(id_map, str(info.get("DockerRootDir") or ""))


def _engine_namespace(base_url: str | None = None) -> EngineUserNamespace:
    global _engine
    with _engine_lock:
        if base_url:
            if base_url not in _remote_engines:
                _remote_engines[base_url] = _ask_engine(base_url)
            return _remote_engines[base_url]
        if _engine is None:
            _engine = _ask_engine(None)
        return _engine


def engine_id_map(base_url: str | None = None) -> IdMap:
    """The :class:`IdMap` of the local engine, or of the engine at ``base_url`` (e.g.
    ``tcp://manager:2375``: a swarm manager's, which runs the egress proxy), asked once per
    process (blocking: ``docker info``; call it in a worker thread from a coroutine). Raises
    :class:`UserNamespaceError` when the engine cannot be asked or its remapping contradicts
    the subordinate-id files."""
    return _engine_namespace(base_url).id_map


def layer_id_map(path: str | os.PathLike) -> IdMap:
    """The map for files at ``path``: the engine's for a path inside its data root (a
    container's overlay layer; an engine that remaps keeps its layers under
    ``<data-root>/<uid>.<gid>/``), :data:`IDENTITY` for anything else (a directory that no
    container's user namespace made)."""
    engine = _engine_namespace()
    if engine.id_map.is_identity or not engine.data_root:
        return IDENTITY
    root = os.path.realpath(engine.data_root)
    inside = os.path.realpath(path)
    return engine.id_map if os.path.commonpath([root, inside]) == root else IDENTITY


def forget_engine() -> None:
    """Ask the engine again on the next call (after it was restarted with another
    setting)."""
    global _engine
    with _engine_lock:
        _engine = None
        _remote_engines.clear()


# ---- shifting a tree made before remapping -----------------------------------------------------

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def shifted_owner(id_map: IdMap, uid: int, gid: int) -> tuple[int, int] | None:
    """The new host owner of an entry that a container made before the engine remapped
    (its host ids were container ids then): each id *below* the map's host ranges becomes
    the host id it maps to; None when nothing changes (ids inside or above the ranges, or
    the identity map)."""
    if id_map.is_identity:
        return None
    new_uid = id_map.host_ids(uid, 0)[0] if _below(id_map.uids, uid) else uid
    new_gid = id_map.host_ids(0, gid)[1] if _below(id_map.gids, gid) else gid
    return None if (new_uid, new_gid) == (uid, gid) else (new_uid, new_gid)


def needs_shift(id_map: IdMap, uid: int, gid: int) -> bool:
    """Whether an entry owned by host ``(uid, gid)`` predates the remapping."""
    return shifted_owner(id_map, uid, gid) is not None


def _below(ranges: tuple[IdRange, ...], value: int) -> bool:
    return value < min(r.host for r in ranges)


def shift_tree(top: str | os.PathLike, id_map: IdMap) -> int:
    """Give every entry of the tree at ``top`` whose owner is below ``id_map``'s host
    ranges the host ids its old ids map to (:func:`shifted_owner`); ``top`` itself last, so
    an interrupted shift is finished by the next call (entries already shifted are skipped).
    Links are never followed, other filesystems (mounts below ``top``) are not entered, and
    set-id bits that ``chown`` clears are put back. Returns how many entries changed."""
    top_fd = os.open(top, _DIR_FLAGS)
    try:
        device = os.fstat(top_fd).st_dev
        changed = _shift_children(top_fd, device, id_map)
        changed += _shift_fd(top_fd, id_map)
    finally:
        os.close(top_fd)
    return changed


def _shift_fd(fd: int, id_map: IdMap) -> int:
    st = os.fstat(fd)
    owner = shifted_owner(id_map, st.st_uid, st.st_gid)
    if owner is None:
        return 0
    os.fchown(fd, *owner)
    os.fchmod(fd, stat.S_IMODE(st.st_mode))  # chown clears set-id bits: keep them
    return 1


def _shift_children(dir_fd: int, device: int, id_map: IdMap) -> int:
    changed = 0
    with os.scandir(dir_fd) as listing:
        names = [item.name for item in listing]
    for name in names:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if st.st_dev != device:
            continue  # a mount point: not this volume's
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                changed += _shift_children(fd, device, id_map) + _shift_fd(fd, id_map)
            finally:
                os.close(fd)
        elif stat.S_ISREG(st.st_mode):
            if shifted_owner(id_map, st.st_uid, st.st_gid) is None:
                continue
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOENT):
                    continue  # replaced since listed
                raise
            try:
                changed += _shift_fd(fd, id_map)
            finally:
                os.close(fd)
        else:  # symlink, fifo, socket, device: lchown, nothing opened or followed
            owner = shifted_owner(id_map, st.st_uid, st.st_gid)
            if owner is not None:
                os.chown(name, *owner, dir_fd=dir_fd, follow_symlinks=False)
                changed += 1
    return changed
