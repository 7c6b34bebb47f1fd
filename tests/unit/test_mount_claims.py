"""Fast mounts as the kernel lists them, and the one-writer rule derived from them."""

from hub_services.mounts.claims import holder_of
from hub_services.mounts.mountinfo import FastMount, fast_mounts, parse_mountinfo, project_mount

# a workspace's mount table (trimmed from a real one): /data, /data/project read-write, two
# fast mounts of it and a mount of something else under /data/mounts
MOUNTINFO = """\
1203 1100 0:52 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/x
1210 1203 7:3 / /data rw,relatime - ext4 /dev/loop3 rw
1211 1210 254:0 /srv/p/genomics /data/project rw,relatime - ext4 /dev/vda rw
1300 1210 254:0 /srv/p/genomics/ref /data/mounts/ref ro,nosuid,nodev - ext4 /dev/vda rw
1301 1210 254:0 /srv/p/genomics/runs\\0402026 /data/mounts/my\\040runs rw,nosuid - ext4 /dev/vda rw
1302 1210 0:60 / /data/mounts/tmp rw - tmpfs tmpfs rw
not a mountinfo line
"""


def test_the_project_mount_and_its_mode_are_read_from_the_mount_table():
    entries = parse_mountinfo(MOUNTINFO)
    project = project_mount(entries)
    assert project.root == "/srv/p/genomics"
    assert not project.read_only
    assert project_mount(
        parse_mountinfo(MOUNTINFO.replace("/data/project rw", "/data/project ro"))
    ).read_only


def test_fast_mounts_are_listed_with_their_source_under_data_project_and_mode():
    mounts = fast_mounts(parse_mountinfo(MOUNTINFO))
    assert [m.as_json() for m in mounts] == [
        {
            "mount_path": "/data/mounts/my runs",
            "source": "/data/project/runs 2026",
            "mode": "read-write",
        },
        {"mount_path": "/data/mounts/ref", "source": "/data/project/ref", "mode": "read-only"},
        {"mount_path": "/data/mounts/tmp", "source": None, "mode": "read-write"},
    ]


def test_a_workspace_without_project_data_has_no_project_mount_and_sources_are_unknown():
    table = "\n".join(line for line in MOUNTINFO.splitlines() if "/data/project " not in line)
    entries = parse_mountinfo(table)
    assert project_mount(entries) is None
    assert {m.source for m in fast_mounts(entries)} == {None}


def test_a_later_mount_at_the_same_point_hides_the_earlier_one():
    table = MOUNTINFO + (
        "1400 1300 254:0 /srv/p/genomics/other /data/mounts/ref rw - ext4 /dev/vda rw\n"
    )
    (ref,) = [m for m in fast_mounts(parse_mountinfo(table)) if m.mount_path.endswith("ref")]
    assert ref.source == "/data/project/other"
    assert not ref.read_only


def _rw(path: str, root: str, device: str = "254:0") -> FastMount:
    return FastMount(path, "/data/project/" + root, False, device, "/p/" + root)


def _ro(path: str, root: str) -> FastMount:
    return FastMount(path, "/data/project/" + root, True, "254:0", "/p/" + root)


def test_a_directory_held_read_write_by_another_running_workspace_names_the_holder():
    mounts = {"alice/lab": [_rw("/data/mounts/a", "a")], "bob/ws": []}
    holder = holder_of("254:0", "/p/a", "bob/ws", mounts)
    assert (holder.key, holder.mount_path, holder.source) == (
        "alice/lab",
        "/data/mounts/a",
        "/data/project/a",
    )


def test_a_directory_inside_or_around_a_held_one_is_held_too():
    mounts = {"alice/lab": [_rw("/data/mounts/a", "a/b")]}
    assert holder_of("254:0", "/p/a", "bob/ws", mounts).key == "alice/lab"
    assert holder_of("254:0", "/p/a/b/c", "bob/ws", mounts).key == "alice/lab"
    assert holder_of("254:0", "/p/a/bc", "bob/ws", mounts) is None
    assert holder_of("254:0", "/p/ab", "bob/ws", mounts) is None


def test_read_only_mounts_other_devices_and_the_asking_workspace_hold_nothing():
    mounts = {
        "alice/lab": [_ro("/data/mounts/a", "a"), _rw("/data/mounts/b", "a", device="7:1")],
        "bob/ws": [_rw("/data/mounts/a", "a")],
    }
    assert holder_of("254:0", "/p/a", "bob/ws", mounts) is None


def test_a_workspace_that_stopped_holds_nothing_because_it_has_no_mount_table():
    assert holder_of("254:0", "/p/a", "bob/ws", {}) is None
