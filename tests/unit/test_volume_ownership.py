"""Who owns ``/data`` on the host: the workspace user as the engine maps it, and a volume made
before the engine remapped user ids is moved into the remapped range at its first attach,
with nothing lost (an operator upgrading an existing host). Needs root (chown, and
losetup/mount for the ext4 volume)."""

from __future__ import annotations

import logging
import os

import pytest

from benchhub.user_namespace import IDENTITY, IdMap, IdRange
from benchhub.volumes import DirectoryVolume, LoopbackVolume

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
REMAPPED = IdMap((IdRange(0, 100000, 65536),), (IdRange(0, 100000, 65536),))


def owner(path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def work_of_a_user(mnt) -> None:
    """What a scientist left in /data before the upgrade (owned as the container made it)."""
    (mnt / "notebooks").mkdir()
    (mnt / "notebooks" / "analysis.ipynb").write_text('{"cells": []}')
    (mnt / "results.csv").write_text("a,b\n1,2\n")
    (mnt / "to-etc").symlink_to("/etc/passwd")  # a link must be changed, never followed
    for path in [mnt / "notebooks", mnt / "notebooks" / "analysis.ipynb", mnt / "results.csv"]:
        os.chown(path, 1000, 100)
    os.lchown(mnt / "to-etc", 1000, 100)


async def test_a_new_data_directory_belongs_to_the_workspace_user_as_the_engine_maps_it(tmp_path):
    remapped = await DirectoryVolume(tmp_path, "alice", "lab", REMAPPED).attach(1)
    assert owner(remapped) == (101000, 100100)
    plain = await DirectoryVolume(tmp_path, "bob", "lab", IDENTITY).attach(1)
    assert owner(plain) == (1000, 100)


async def test_data_made_before_the_engine_remapped_is_shifted_once_and_kept(tmp_path, caplog):
    old = await DirectoryVolume(tmp_path, "alice", "lab", IDENTITY).attach(1)
    work_of_a_user(old)
    passwd = owner("/etc/passwd")
    with caplog.at_level(logging.WARNING, logger="benchhub.volumes"):
        mnt = await DirectoryVolume(tmp_path, "alice", "lab", REMAPPED).attach(1)
    assert mnt == old
    assert {p.name: owner(p) for p in [mnt, *mnt.rglob("*")]} == {
        "mnt": (101000, 100100),
        "notebooks": (101000, 100100),
        "analysis.ipynb": (101000, 100100),
        "results.csv": (101000, 100100),
        "to-etc": (101000, 100100),
    }
    assert (mnt / "notebooks" / "analysis.ipynb").read_text() == '{"cells": []}'
    assert owner("/etc/passwd") == passwd
    assert "made before the Docker engine remapped user ids" in caplog.text
    assert "5 entries given their remapped owners" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="benchhub.volumes"):
        await DirectoryVolume(tmp_path, "alice", "lab", REMAPPED).attach(1)
    assert "remapped" not in caplog.text  # once: the next attach has nothing to do


async def test_an_ext4_volume_made_before_remapping_is_shifted_at_attach(tmp_path):
    volume = LoopbackVolume(tmp_path, "alice", "lab", IDENTITY)
    try:
        mnt = await volume.attach(1)
        assert owner(mnt) == (1000, 100)
        work_of_a_user(mnt)
        await volume.detach()
        upgraded = LoopbackVolume(tmp_path, "alice", "lab", REMAPPED)
        mnt = await upgraded.attach(1)
        assert owner(mnt) == owner(mnt / "results.csv") == (101000, 100100)
        assert owner(mnt / "lost+found") == (100000, 100000)  # root's, as the container saw it
        assert (mnt / "results.csv").read_text() == "a,b\n1,2\n"
    finally:
        await volume.detach()
    assert await volume.leftovers() == [str(volume.dir)]


async def test_a_new_ext4_volume_is_made_with_the_mapped_owner(tmp_path):
    volume = LoopbackVolume(tmp_path, "alice", "lab", REMAPPED)
    try:
        assert owner(await volume.attach(1)) == (101000, 100100)
    finally:
        await volume.detach()
