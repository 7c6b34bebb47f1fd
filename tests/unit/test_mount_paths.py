"""The rules of a fast-mount request: where it may mount, what it may mount, in which mode."""

import pytest

from hub_services.mounts.paths import (
    MAX_DEPTH,
    FieldProblem,
    MountRequest,
    nested,
    parse_mount_path,
    parse_mount_request,
)


def test_a_mount_of_a_project_directory_under_data_mounts_is_read_only_by_default():
    request = parse_mount_request({"mount_path": "/data/mounts/ref", "source": "/data/project/x"})
    assert request == MountRequest(("ref",), ("x",), read_only=True)
    assert (request.mount_path, request.source_path, request.mode) == (
        "/data/mounts/ref",
        "/data/project/x",
        "read-only",
    )


def test_nested_paths_and_read_write_are_accepted():
    request = parse_mount_request(
        {
            "mount_path": "/data/mounts/a/b-1/c_2",
            "source": "/data/project/runs/2026.11/.hidden",
            "mode": "read-write",
        }
    )
    assert request.target == ("a", "b-1", "c_2")
    assert request.source == ("runs", "2026.11", ".hidden")
    assert not request.read_only


@pytest.mark.parametrize(
    "mount_path",
    [
        "/data/mounts",
        "/data/mounts/",
        "/data/mounts/../etc",
        "/data/mounts/a/../../x",
        "/data/mounts/./a",
        "/data/mounts//a",
        "/data/mounts/a/",
        "/data/mountsx/a",
        "/data/a",
        "/etc/passwd",
        "data/mounts/a",
        "/data/mounts/a b",
        "/data/mounts/a\nb",
        "/data/mounts/-rf",
        "/data/mounts/ä",
        "/data/mounts/" + "x" * 129,
        "/data/mounts/" + "/".join(["a"] * (MAX_DEPTH + 1)),
        None,
        5,
        ["/data/mounts/a"],
    ],
)
def test_a_mount_path_outside_data_mounts_or_not_plain_segments_is_refused_naming_the_field(
    mount_path,
):
    with pytest.raises(FieldProblem) as refused:
        parse_mount_request({"mount_path": mount_path, "source": "/data/project/x"})
    assert refused.value.field == "mount_path"
    assert "/data/mounts/" in refused.value.message


@pytest.mark.parametrize(
    "source",
    ["/data/project", "/data/project/", "/data/project/../x", "/data/x", "/etc", "/data/projectx"],
)
def test_a_source_outside_data_project_is_refused_naming_the_field(source):
    with pytest.raises(FieldProblem) as refused:
        parse_mount_request({"mount_path": "/data/mounts/a", "source": source})
    assert refused.value.field == "source"
    assert "/data/project/" in refused.value.message


def test_an_unknown_mode_is_refused_listing_the_modes():
    with pytest.raises(FieldProblem) as refused:
        parse_mount_request(
            {"mount_path": "/data/mounts/a", "source": "/data/project/a", "mode": "rw"}
        )
    assert refused.value.field == "mode"
    assert "read-only, read-write" in refused.value.message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"source": "/data/project/a"}, "mount_path"),
        ({"mount_path": "/data/mounts/a"}, "source"),
        ({"mount_path": "/data/mounts/a", "source": "/data/project/a", "owner": "bob"}, "owner"),
        ([], "body"),
        (None, "body"),
    ],
)
def test_missing_or_unknown_fields_are_refused_by_name(body, field):
    with pytest.raises(FieldProblem) as refused:
        parse_mount_request(body)
    assert refused.value.field == field


def test_a_delete_names_its_mount_path_the_same_way():
    assert parse_mount_path("/data/mounts/a/b") == ("a", "b")
    with pytest.raises(FieldProblem):
        parse_mount_path(None)


def test_paths_nest_when_one_is_the_other_or_lies_below_it():
    assert nested(("a",), ("a",))
    assert nested(("a",), ("a", "b"))
    assert nested(("a", "b"), ("a",))
    assert not nested(("a",), ("ab",))
    assert not nested(("a", "b"), ("a", "c"))
