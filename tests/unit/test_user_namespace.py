"""Container ids and host ids under Docker's userns-remap, without an engine: the map, how it
is read from ``docker info`` and the subordinate-id files, and the one-time shift of a tree
made before the engine remapped (what keeps an upgraded host's ``/data`` usable)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchhub.user_namespace import (
    IDENTITY,
    OVERFLOW_ID,
    IdMap,
    IdRange,
    UserNamespaceError,
    id_map_from_engine,
    remap_setting,
    shift_tree,
    shifted_owner,
    subordinate_ranges,
)

REMAPPING_INFO = {
    "SecurityOptions": ["name=seccomp,profile=default", "name=userns"],
    "DockerRootDir": "/var/lib/docker/100000.100000",
}
PLAIN_INFO = {
    "SecurityOptions": ["name=seccomp,profile=default"],
    "DockerRootDir": "/var/lib/docker",
}
SUBIDS = "ubuntu:200000:65536\ndockremap:100000:65536\n"
DEFAULT = IdMap((IdRange(0, 100000, 65536),), (IdRange(0, 100000, 65536),))

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")


# ---- the map ------------------------------------------------------------------------------------


def test_without_remapping_container_ids_are_host_ids():
    assert IDENTITY.is_identity
    assert IDENTITY.host_ids(1000, 100) == (1000, 100)
    assert IDENTITY.container_ids(0, 0) == (0, 0)


def test_the_workspace_user_and_root_are_shifted_into_the_subordinate_range():
    assert DEFAULT.host_ids(1000, 100) == (101000, 100100)
    assert DEFAULT.host_ids(0, 0) == (100000, 100000)
    assert DEFAULT.container_ids(101000, 100100) == (1000, 100)
    assert DEFAULT.container_ids(165535, 165535) == (65535, 65535)


def test_a_host_id_outside_the_range_reads_as_nobody_as_the_kernel_shows_it():
    assert DEFAULT.container_ids(0, 0) == (OVERFLOW_ID, OVERFLOW_ID)
    assert DEFAULT.container_ids(165536, 99999) == (OVERFLOW_ID, OVERFLOW_ID)


def test_a_container_id_beyond_the_range_becomes_the_host_id_of_nobody():
    assert DEFAULT.host_ids(70000, 70000) == (100000 + OVERFLOW_ID, 100000 + OVERFLOW_ID)


def test_several_ranges_are_laid_end_to_end():
    split = IdMap((IdRange(0, 100000, 10), IdRange(10, 300000, 65526)), (IdRange(0, 5000, 65536),))
    assert split.host_ids(9, 9) == (100009, 5009)
    assert split.host_ids(10, 10) == (300000, 5010)
    assert split.container_ids(300005, 5000) == (15, 0)


def test_the_map_describes_itself_for_the_log():
    text = "uids 0-65535 = host 100000-165535; gids 0-65535 = host 100000-165535"
    assert DEFAULT.describe() == text
    assert "no user-namespace remapping" in IDENTITY.describe()


# ---- reading it from the engine -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, ("dockremap", None)),
        ("", ("dockremap", None)),
        ('{"userns-remap": "default"}', ("dockremap", None)),
        ('{"live-restore": true}', ("dockremap", None)),
        ('{"userns-remap": "bench"}', ("bench", None)),
        ('{"userns-remap": "bench:benchgroup"}', ("bench", "benchgroup")),
        ("not json", ("dockremap", None)),
    ],
)
def test_the_remap_user_comes_from_daemon_json(text, expected):
    assert remap_setting(text) == expected


def test_only_the_remap_users_ranges_are_taken_in_ascending_order():
    text = "dockremap:300000:5\n# comment\nother:1:2\ndockremap:100000:10\nbroken:x:1\n"
    assert subordinate_ranges(text, ["dockremap"]) == (
        IdRange(0, 100000, 10),
        IdRange(10, 300000, 5),
    )
    assert subordinate_ranges(text, ["nobody-here"]) == ()


def test_an_engine_without_userns_has_the_identity_map():
    assert id_map_from_engine(PLAIN_INFO, SUBIDS, SUBIDS) is IDENTITY


def test_a_remapping_engine_maps_through_dockremaps_ranges():
    assert id_map_from_engine(REMAPPING_INFO, SUBIDS, SUBIDS) == DEFAULT


def test_a_remap_user_named_by_number_in_the_files_is_found():
    text = "1234:400000:65536\n"
    info = dict(REMAPPING_INFO, DockerRootDir="/var/lib/docker/400000.400000")
    found = id_map_from_engine(info, text, text, ("bench", None), ("bench", "1234"), ("1234",))
    assert found.host_ids(0, 0) == (400000, 400000)


def test_a_remapping_engine_without_ranges_is_an_error_naming_the_files():
    with pytest.raises(UserNamespaceError, match="/etc/subuid"):
        id_map_from_engine(REMAPPING_INFO, "ubuntu:200000:65536\n", SUBIDS)


def test_a_data_root_that_contradicts_the_ranges_is_an_error():
    info = dict(REMAPPING_INFO, DockerRootDir="/var/lib/docker/200000.200000")
    with pytest.raises(UserNamespaceError, match="200000:200000"):
        id_map_from_engine(info, SUBIDS, SUBIDS)


# ---- the one-time shift of a volume made before remapping ---------------------------------------


def test_ids_below_the_range_are_shifted_and_others_are_left_alone():
    assert shifted_owner(DEFAULT, 1000, 100) == (101000, 100100)
    assert shifted_owner(DEFAULT, 0, 0) == (100000, 100000)
    assert shifted_owner(DEFAULT, 101000, 100100) is None  # already shifted
    assert shifted_owner(DEFAULT, 200000, 100100) is None  # above: not ours to guess
    assert shifted_owner(DEFAULT, 101000, 100) == (101000, 100100)
    assert shifted_owner(IDENTITY, 1000, 100) is None


def _tree(top: Path, outside: Path) -> None:
    (top / "notebooks").mkdir(parents=True)
    (top / "notebooks" / "a.ipynb").write_text("{}")
    os.mkfifo(top / "pipe")
    (top / "run.sh").write_text("#!/bin/sh\n")
    (top / "escape").symlink_to(outside)  # planted by the user: must not be followed
    (top / "loop").symlink_to(top)
    for path in [top, top / "notebooks", top / "notebooks" / "a.ipynb", top / "pipe"]:
        os.chown(path, 1000, 100)
    os.chown(top / "run.sh", 1000, 100)
    os.chmod(top / "run.sh", 0o6755)
    for link in ["escape", "loop"]:
        os.lchown(top / link, 1000, 100)


@as_root
def test_a_tree_made_before_remapping_is_shifted_without_following_links(tmp_path):
    top, outside = tmp_path / "mnt", tmp_path / "host-file"
    outside.write_text("host secret")
    _tree(top, outside)
    changed = shift_tree(top, DEFAULT)
    owners = {p.name: (p.lstat().st_uid, p.lstat().st_gid) for p in [top, *top.rglob("*")]}
    assert set(owners.values()) == {(101000, 100100)}
    assert changed == len(owners) == 7
    assert (outside.stat().st_uid, outside.stat().st_gid) == (0, 0)  # the link's target
    assert (top / "run.sh").stat().st_mode & 0o7777 == 0o6755  # chown cleared them: put back


@as_root
def test_a_second_shift_changes_nothing_and_an_interrupted_one_is_finished(tmp_path):
    top = tmp_path / "mnt"
    _tree(top, tmp_path / "x")
    os.chown(top / "notebooks", 101000, 100100)  # as if the first pass stopped after it
    assert shift_tree(top, DEFAULT) == 6
    assert shift_tree(top, DEFAULT) == 0
