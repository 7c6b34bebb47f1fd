"""The named-checkpoint quota: what counts under deduplication (pure), and naming through the
service against a real local store (checkpoints of real directories; no hub, no Docker)."""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from benchhub.checkpoints.backends import LocalDirectoryBackend
from benchhub.checkpoints.manifest import build_manifest
from benchhub.checkpoints.quota import format_bytes, named_bytes, quota_refusal
from benchhub.checkpoints.store import CheckpointStore
from benchhub.checkpoints.workspace import WorkspaceCheckpoints
from benchhub.hub_client import HubClient
from hub_services.checkpoints.service import CheckpointService, NamedQuotaExceeded

MIB = 1024**2
A, B, C = "a" * 64, "b" * 64, "c" * 64


def manifest(name, chunks):
    """A manifest of no files whose chunk table is ``chunks`` (all named_bytes reads)."""
    built = build_manifest("ann.lab.aaaaaa", [], {}, created=datetime.now(UTC), name=name)
    return replace(built, chunks=chunks)


def test_only_named_checkpoints_count_and_a_shared_chunk_counts_once():
    named = [
        manifest("one", {A: (100, 10), B: (100, 20)}),
        manifest("two", {B: (100, 20), C: (100, 30)}),
    ]
    automatic = manifest(None, {A: (100, 10), "d" * 64: (100, 99)})
    assert named_bytes([*named, automatic]) == 60
    assert named_bytes([automatic]) == 0


@pytest.mark.parametrize(
    ("quota", "used", "after", "refused"),
    [
        (100, 50, 100, False),
        (100, 50, 101, True),
        (0, 50, 10**12, False),
        (100, 150, 150, False),  # over already, but naming adds nothing (all chunks shared)
        (100, 150, 151, True),
    ],
)
def test_naming_is_refused_only_when_it_passes_the_quota_by_adding_bytes(
    quota, used, after, refused
):
    message = quota_refusal("ann", quota, used, after, "before_upgrade")
    assert (message is not None) is refused
    if refused:
        assert message.startswith("name: ann's named checkpoints may keep 100 bytes")
        assert f"keep {used} bytes now" in message and "'before_upgrade'" in message


def test_sizes_read_in_binary_units():
    assert [format_bytes(n) for n in (512, 2048, 20 * MIB, 3 * 1024**3 // 2)] == [
        "512 bytes",
        "2 KB",
        "20 MB",
        "1.5 GB",
    ]


# ---- through the service -------------------------------------------------------------------


@pytest.fixture
def service(tmp_path):
    store = CheckpointStore(backend=LocalDirectoryBackend(tmp_path / "store"), compression_level=1)
    return CheckpointService(
        store=store,
        storage_root=str(tmp_path / "root"),
        named_quota_gb=3 * MIB / 1024**3,
        hub=HubClient("http://127.0.0.1:1/hub/api", "unused"),
    )


def checkpoint(service, tmp_path, user, name, random_mib):
    """A checkpoint of a directory holding ``random_mib`` MiB of incompressible bytes."""
    upper = tmp_path / f"upper-{user}-{name}"
    upper.mkdir(exist_ok=True)
    (upper / "data.bin").write_bytes(os.urandom(random_mib * MIB))
    host_dir = tmp_path / "root" / user / name
    host_dir.mkdir(parents=True, exist_ok=True)
    ops = WorkspaceCheckpoints(service.store, host_dir, 30)
    ops.ensure(user, name)
    return ops.take(str(upper), (), "on stop")


async def test_naming_within_the_quota_works_and_past_it_is_refused_naming_quota_and_use(
    service, tmp_path
):
    small = checkpoint(service, tmp_path, "ann", "lab", 1)
    named = await service.rename("ann", "lab", small.checkpoint_id, "small one")
    assert named["name"] == "small_one" and named["kind"] == "named"
    used = service.named_use("ann")
    assert MIB <= used < 2 * MIB
    big = checkpoint(service, tmp_path, "ann", "other", 3)
    with pytest.raises(NamedQuotaExceeded) as refused:
        await service.rename("ann", "other", big.checkpoint_id, "big one")
    message = str(refused.value)
    assert "may keep 3 MB in the checkpoint store (the named-checkpoint quota)" in message
    assert f"keep {format_bytes(used)} now" in message and "'big_one'" in message
    assert service.store.load(big.workspace_id, big.checkpoint_id).kind == "automatic"
    assert service.named_use("ann") == used  # nothing changed


async def test_renaming_a_named_checkpoint_and_naming_what_is_already_kept_cost_nothing(
    service, tmp_path
):
    first = checkpoint(service, tmp_path, "ann", "lab", 2)
    await service.rename("ann", "lab", first.checkpoint_id, "first")
    service.named_quota_gb = 1 * MIB / 1024**3  # the quota was lowered: ann is over it now
    await service.rename("ann", "lab", first.checkpoint_id, "renamed")  # no new bytes
    same = WorkspaceCheckpoints(service.store, tmp_path / "root/ann/lab", 30).take(
        str(tmp_path / "upper-ann-lab"), (), "on stop"
    )  # the same files again
    named = await service.rename("ann", "lab", same.checkpoint_id, "again")  # shares every chunk
    assert named["name"] == "again"


async def test_unnaming_frees_the_quota_and_other_users_are_not_counted(service, tmp_path):
    first = checkpoint(service, tmp_path, "ann", "lab", 2)
    await service.rename("ann", "lab", first.checkpoint_id, "first")
    bobs = checkpoint(service, tmp_path, "bob", "lab", 2)
    await service.rename("bob", "lab", bobs.checkpoint_id, "bobs")  # his own quota
    second = checkpoint(service, tmp_path, "ann", "two", 2)
    with pytest.raises(NamedQuotaExceeded):
        await service.rename("ann", "two", second.checkpoint_id, "second")
    unnamed = await service.rename("ann", "lab", first.checkpoint_id, None)
    assert unnamed["kind"] == "automatic" and unnamed["name"] is None
    assert service.named_use("ann") == 0
    await service.rename("ann", "two", second.checkpoint_id, "second")
