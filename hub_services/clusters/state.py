"""What the clusters service remembers: the clusters users asked for, and the subnet pool.

One JSON file (``clusters.json`` in the service's state directory), written atomically (temp
file, fsync, ``os.replace``, fsync of the directory): a crash at any line leaves the previous
good file. It holds what finds the running objects again (cluster id, subnet, member names and
addresses) and the desired state (settings, stopping or not); everything else (which member
runs what, pending jobs) is observed from Docker and Grid Engine on every pass.

:func:`utcnow` is the one clock seam of the package.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchhub.atomic import atomic_write

__all__ = ["ClusterRecord", "ClusterStore", "MemberRecord", "utcnow"]

STATE_VERSION = 1
STATUSES = ("starting", "running", "stopping", "errored")


def utcnow() -> datetime:
    """Now, as an aware UTC datetime (tests replace this one function)."""
    return datetime.now(UTC)


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass
class MemberRecord:
    """One member the service started: ``started_at`` is ISO time of its container start
    (while ``waiting_to_start``: of the scale-up that decided it, :mod:`.pacing`), ``joined``
    whether its execution daemon has reported to the manager at least once (``joined_at``:
    first seen so), ``spark_worker`` whether it was started with (or later given) a Spark
    worker."""

    name: str
    address: str
    started_at: str
    preemptible: bool = False
    draining: bool = False
    scratch: bool = False
    joined: bool = False
    spark_worker: bool = False
    waiting_to_start: bool = False
    joined_at: str | None = None


@dataclass
class ClusterRecord:
    """One workspace's cluster. ``settings`` is :meth:`ClusterSettings.to_options` output,
    ``model`` the members' resource model (its fields, so a changed catalog does not change a
    running cluster); ``data_dir`` the host directory behind the workspace's ``/data``;
    ``addresses`` the member address book's state; ``status`` one of :data:`STATUSES` with
    ``reason`` saying why (for ``errored``) or what happens (for the others)."""

    user: str
    workspace: str
    cluster_id: str
    settings: dict
    subnet: str
    workspace_container: str
    workspace_address: str
    internal: bool
    model: dict
    data_dir: str
    created_at: str
    status: str = "starting"
    reason: str = ""
    next_member: int = 1
    members: dict[str, MemberRecord] = field(default_factory=dict)
    addresses: dict = field(default_factory=dict)
    last_operation_at: str | None = None
    reported: list[str] = field(default_factory=list)
    spark_in_use: bool = False  # its members run Spark workers (:mod:`.spark_use`)
    spares: dict[str, str] = field(default_factory=dict)  # name -> address (:mod:`.spares`)

    @property
    def key(self) -> str:
        return f"{self.user}/{self.workspace}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ClusterRecord:
        data = dict(data)
        members = {n: MemberRecord(**m) for n, m in (data.pop("members", None) or {}).items()}
        return cls(members=members, **data)


class ClusterStore:
    """The state file ``path``. :meth:`load` gives ``(pool state, {key: ClusterRecord})``;
    an absent file is an empty state, a file of a newer version is refused."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self) -> tuple[dict, dict[str, ClusterRecord]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}, {}
        if data.get("version", 0) > STATE_VERSION:
            raise ValueError(
                f"{self.path} has state version {data['version']}, newer than this service "
                f"understands ({STATE_VERSION}); run the newer service or move the file aside"
            )
        records = {key: ClusterRecord.from_dict(rec) for key, rec in data["clusters"].items()}
        return data.get("subnets") or {}, records

    @staticmethod
    def dump(pool: dict, records: dict[str, ClusterRecord]) -> str:
        """The file's text for this state (made on the event loop, where the records change;
        :meth:`write` it in a thread)."""
        clusters = {key: rec.to_dict() for key, rec in sorted(records.items())}
        data = {"version": STATE_VERSION, "subnets": pool, "clusters": clusters}
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    def write(self, text: str) -> None:
        atomic_write(self.path, text, 0o600)
