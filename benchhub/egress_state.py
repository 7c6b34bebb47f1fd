"""What the egress proxy should allow: one record per running restricted workspace.

The spawner writes the desired state (a restricted workspace's fixed address and its
normalised whitelist, before its container is created; dropped when it stops); the egress
service owns the proxy and makes it so (renders ``squid.conf`` from the records, starts and
reloads squid) and says which records the proxy has loaded. Layout of ``config_dir``::

    workspaces/<user>%2F<workspace>.json  one per running restricted workspace: its key,
                                          container, address, entries, registered_at
                                          (the key URL-quoted: unambiguous for any names)
    addresses.json                        the address book (:mod:`benchhub.addresses`)
    subnets.json                          on a swarm: the pool of the restricted workspaces'
                                          own overlay subnets (:mod:`benchhub.subnets`)
    generation                            a counter every change of the records increments
                                          (the service watches it to act at once)
    loaded.json                           written by the service after squid was told to load
                                          a configuration: {generation, keys: {key: registered_at}}
    squid/squid.conf, log/access.log      the service's (the proxy mounts these directories)

On a swarm a record also names the workspace's own overlay (``gateway``: its ``network``, the
proxy's ``proxy_address`` on it, the server's URL ``prefix`` and ``port``): the egress service
joins the proxy to that network and routes the prefix to the workspace's address.

Changes of the records and the book happen under one exclusive lock (``.lock``). All methods
block (file I/O): call them in a worker thread.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from .addresses import AddressBook
from .atomic import atomic_write
from .subnets import SubnetPool
from .user_namespace import engine_id_map

__all__ = ["PROXY_GID", "PROXY_UID", "EgressState"]

PROXY_UID = 13  # Debian's "proxy" user, which squid runs as inside the proxy image
PROXY_GID = 13


class EgressState:
    """The files under ``config_dir`` (see the module docstring). ``engine_url`` names the
    engine that runs the proxy when it is not the local one (a swarm manager's, e.g.
    ``tcp://manager:2375``): the log directory is given to squid's user as that engine maps
    it."""

    def __init__(self, config_dir: str | os.PathLike, engine_url: str = ""):
        self.dir = Path(config_dir)
        self.engine_url = engine_url
        self.workspaces_dir = self.dir / "workspaces"
        self.squid_dir = self.dir / "squid"
        self.conf_path = self.squid_dir / "squid.conf"
        self.log_dir = self.dir / "log"
        self.generation_path = self.dir / "generation"
        self.loaded_path = self.dir / "loaded.json"

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.workspaces_dir.mkdir(parents=True, exist_ok=True)
        self.squid_dir.mkdir(exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:  # squid writes its log there, as "proxy" seen from the host
            ids = engine_id_map(self.engine_url or None).host_ids(PROXY_UID, PROXY_GID)
            os.chown(self.log_dir, *ids)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    # ---- the address book ---------------------------------------------------------------------

    def _book(self, subnet: str | None) -> AddressBook | None:
        """The stored book (a new one for another subnet); None if none and no subnet given."""
        path = self.dir / "addresses.json"
        if path.exists():
            book = AddressBook.from_dict(json.loads(path.read_text()))
            if subnet is None or book.subnet == subnet:
                return book
        return AddressBook(subnet) if subnet else None

    def _save_book(self, book: AddressBook) -> None:
        atomic_write(self.dir / "addresses.json", json.dumps(book.to_dict()))

    def assign(self, key: str, subnet: str, now: float) -> str:
        """The workspace's address on the restricted network (stable, never recently reused)."""
        with self.locked():
            book = self._book(subnet)
            address = book.assign(key, now)
            self._save_book(book)
            return address

    # ---- the swarm's overlay subnets ------------------------------------------------------------

    def allocate_subnet(
        self, key: str, pool: str, prefix_length: int, now: float, avoid=(), quarantine_s=60.0
    ) -> str:
        """The subnet of ``key``'s own overlay from ``pool`` (its held one, else the next
        free ``/prefix_length`` not overlapping ``avoid``); raises
        :class:`~benchhub.subnets.SubnetsExhausted` when none is free."""
        with self.locked():
            subnets = self._subnets(pool, prefix_length, quarantine_s)
            subnet = subnets.allocate(key, now, avoid)
            atomic_write(self.dir / "subnets.json", json.dumps(subnets.to_dict()))
            return subnet

    def release_subnet(
        self, key: str, pool: str, prefix_length: int, now: float, quarantine_s=60.0
    ) -> None:
        """Give up ``key``'s overlay subnet (its network is gone); nothing held is fine."""
        with self.locked():
            subnets = self._subnets(pool, prefix_length, quarantine_s)
            if subnets.release(key, now) is not None:
                atomic_write(self.dir / "subnets.json", json.dumps(subnets.to_dict()))

    def _subnets(self, pool: str, prefix_length: int, quarantine_s: float) -> SubnetPool:
        try:
            data = json.loads((self.dir / "subnets.json").read_text())
        except (FileNotFoundError, ValueError):
            data = {}
        return SubnetPool.from_dict(data, pool, prefix_length, quarantine_s)

    # ---- the records --------------------------------------------------------------------------

    def register(
        self,
        key: str,
        container: str,
        address: str,
        entries: list[str],
        now: float | None = None,
        gateway: dict | None = None,
    ) -> float:
        """Record a workspace's address and its whitelist ``entries`` (normalised, as the
        workspace options store them); returns the record's ``registered_at`` (``now``, the
        current time by default), by which :meth:`is_loaded` tells this registration from an
        earlier one. ``gateway`` (on a swarm): ``{"network", "proxy_address", "prefix",
        "port"}`` of the workspace's own overlay (see the module docstring); ``container``
        is then its Swarm service."""
        now = time.time() if now is None else now
        record = {
            "key": key,
            "container": container,
            "address": address,
            "entries": list(entries),
            "registered_at": now,
        }
        if gateway is not None:
            record["gateway"] = dict(gateway)
        with self.locked():
            atomic_write(self._record_path(key), json.dumps(record))
            self._bump()
        return now

    def adopt(
        self, key: str, container: str, address: str, entries: list[str], subnet: str, now: float
    ) -> None:
        """Take in a running workspace whose record was lost (its address is kept)."""
        with self.locked():
            book = self._book(subnet)
            book.adopt(key, address, now)
            self._save_book(book)
        self.register(key, container, address, entries, now)

    def forget(self, key: str, now: float) -> bool:
        """Drop a stopped workspace's record and quarantine its address; False if it had none."""
        with self.locked():
            paths = [p for p in self.workspaces_dir.glob("*.json") if _key_of(p) == key]
            if not paths:
                return False
            for path in paths:  # also a record named the old way ("user--workspace.json")
                path.unlink()
            book = self._book(None)
            if book is not None:
                book.release(key, now)
                self._save_book(book)
            self._bump()
            return True

    def _record_path(self, key: str) -> Path:
        """The record file of ``key`` ("user/workspace"). Quoting "/" (and "%") makes it
        unambiguous: with "--" as the separator, user "bob--proj"'s workspace "2" and user
        "bob"'s "proj--2" shared a file."""
        return self.workspaces_dir / f"{quote(key, safe='')}.json"

    def registered(self) -> dict[str, dict]:
        if not self.workspaces_dir.is_dir():
            return {}
        found = (_record_of(p) for p in self.workspaces_dir.glob("*.json"))
        return {rec["key"]: rec for rec in found if rec is not None}

    # ---- what the proxy has loaded ------------------------------------------------------------

    def _bump(self) -> None:
        atomic_write(self.generation_path, str(self.generation() + 1))

    def generation(self) -> int:
        """How many times the records changed (0 before the first change)."""
        try:
            return int(self.generation_path.read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def mark_loaded(self, generation: int, records: dict[str, dict]) -> None:
        """(The egress service) squid was told to load the configuration made from
        ``records``, which were the records at ``generation``."""
        keys = {key: rec.get("registered_at") for key, rec in records.items()}
        text = json.dumps({"generation": generation, "keys": keys})
        if _text_of(self.loaded_path) != text:  # the service calls this every pass
            atomic_write(self.loaded_path, text)

    def is_loaded(self, key: str, registered_at: float) -> bool:
        """Whether the proxy has loaded ``key``'s registration of ``registered_at``."""
        try:
            loaded = json.loads(self.loaded_path.read_text())
        except (FileNotFoundError, ValueError):
            return False
        return (loaded.get("keys") or {}).get(key) == registered_at


def _text_of(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _record_of(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # removed meanwhile
    return record if isinstance(record, dict) and "key" in record else None


def _key_of(path: Path) -> str | None:
    record = _record_of(path)
    return record["key"] if record else None
