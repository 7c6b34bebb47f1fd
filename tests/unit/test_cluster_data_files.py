"""The clusters service writes into a workspace's ``/data`` as root, where the workspace's
user can plant symbolic links: it never follows one out of the data directory, replaces
files atomically and leaves what it creates to the workspace user (uid 1000, gid 100 in the
container: the host ids the engine maps them to)."""

import contextlib
import os

import pytest
from support.host_ids import workspace_user_host_ids

from benchhub.user_files import (
    append_in_data,
    read_in_data,
    remove_in_data,
    write_in_data,
)

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="ownership changes need root")


@pytest.fixture
def data(tmp_path):
    """A workspace's data directory, next to a directory outside it."""
    (tmp_path / "data").mkdir()
    (tmp_path / "outside").mkdir()
    return tmp_path / "data"


@pytest.fixture
def outside(data):
    return data.parent / "outside"


def secret(outside):
    """A file outside the data directory that a planted link points at."""
    path = outside / "secret"
    path.write_text("root's file\n")
    return path


# --- writing --------------------------------------------------------------------------------------


def test_write_creates_missing_parent_directories(data):
    write_in_data(str(data), ".spark/conf/cluster.json", "{}\n")
    assert (data / ".spark" / "conf" / "cluster.json").read_text() == "{}\n"
    assert (data / ".spark" / "conf").is_dir()


def test_write_leaves_the_file_readable_and_no_temporary_files(data):
    write_in_data(str(data), ".spark/cluster.json", "first\n")
    write_in_data(str(data), ".spark/cluster.json", "second\n")
    path = data / ".spark" / "cluster.json"
    assert path.read_text() == "second\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert os.listdir(data / ".spark") == ["cluster.json"]


def test_write_uses_the_mode_asked_for(data):
    write_in_data(str(data), "private.txt", "x", mode=0o600)
    assert (data / "private.txt").stat().st_mode & 0o777 == 0o600


def test_write_replaces_the_file_instead_of_rewriting_it(data):
    path = data / "cluster.json"
    path.write_text("old\n")
    with open(path) as reader:  # a kernel reading while the service writes
        write_in_data(str(data), "cluster.json", "new\n")
        assert reader.read() == "old\n"
    assert path.read_text() == "new\n"


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(data, monkeypatch):
    write_in_data(str(data), ".spark/cluster.json", "good\n")

    def fail(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="No space left"):
        write_in_data(str(data), ".spark/cluster.json", "half")
    monkeypatch.undo()
    assert (data / ".spark" / "cluster.json").read_text() == "good\n"
    assert os.listdir(data / ".spark") == ["cluster.json"]


def test_write_replaces_a_planted_link_instead_of_writing_through_it(data, outside):
    target = secret(outside)
    (data / "cluster.json").symlink_to(target)
    write_in_data(str(data), "cluster.json", "{}\n")
    assert not (data / "cluster.json").is_symlink()
    assert (data / "cluster.json").read_text() == "{}\n"
    assert target.read_text() == "root's file\n"


def test_write_through_a_linked_parent_directory_is_refused(data, outside):
    (data / ".spark").symlink_to(outside)
    with pytest.raises(OSError):
        write_in_data(str(data), ".spark/cluster.json", "{}\n")
    assert os.listdir(outside) == []


def test_write_through_a_deeper_linked_directory_is_refused(data, outside):
    (data / ".spark").mkdir()
    (data / ".spark" / "conf").symlink_to(outside)
    with pytest.raises(OSError):
        write_in_data(str(data), ".spark/conf/cluster.json", "{}\n")
    assert os.listdir(outside) == []


def test_write_through_a_dangling_linked_directory_creates_nothing(data, outside):
    (data / ".spark").symlink_to(outside / "made-by-root")
    with pytest.raises(OSError):
        write_in_data(str(data), ".spark/cluster.json", "{}\n")
    assert os.listdir(outside) == []
    assert (data / ".spark").is_symlink()


# --- appending ------------------------------------------------------------------------------------


def test_append_creates_the_file_then_appends(data):
    append_in_data(str(data), "logs/scaler.log", "one\n")
    append_in_data(str(data), "logs/scaler.log", "two\n")
    assert (data / "logs" / "scaler.log").read_text() == "one\ntwo\n"


def test_append_keeps_what_the_user_wrote(data):
    (data / "scaler.log").write_text("user's note\n")
    append_in_data(str(data), "scaler.log", "scale up\n")
    assert (data / "scaler.log").read_text() == "user's note\nscale up\n"


def test_append_to_a_linked_file_is_refused(data, outside):
    target = secret(outside)
    (data / "scaler.log").symlink_to(target)
    with pytest.raises(OSError):
        append_in_data(str(data), "scaler.log", "scale up\n")
    assert target.read_text() == "root's file\n"


def test_append_to_a_dangling_link_creates_nothing_outside(data, outside):
    (data / "scaler.log").symlink_to(outside / "new-file")
    with pytest.raises(OSError):
        append_in_data(str(data), "scaler.log", "scale up\n")
    assert os.listdir(outside) == []


def test_append_through_a_linked_parent_directory_is_refused(data, outside):
    target = secret(outside)
    (data / "logs").symlink_to(outside)
    with pytest.raises(OSError):
        append_in_data(str(data), "logs/secret", "scale up\n")
    with pytest.raises(OSError):
        append_in_data(str(data), "logs/scaler.log", "scale up\n")
    assert target.read_text() == "root's file\n"
    assert os.listdir(outside) == ["secret"]


def test_append_to_a_directory_is_refused(data):
    (data / "scaler.log").mkdir()
    with pytest.raises(OSError):
        append_in_data(str(data), "scaler.log", "scale up\n")
    assert os.listdir(data / "scaler.log") == []


def test_append_to_a_fifo_is_refused_without_blocking(data):
    os.mkfifo(data / "scaler.log")
    with pytest.raises(OSError):
        append_in_data(str(data), "scaler.log", "scale up\n")


# --- reading --------------------------------------------------------------------------------------


def test_read_returns_the_text(data):
    write_in_data(str(data), ".spark/cluster.json", '{"cluster_id": "k3x9q2"}\n')
    assert read_in_data(str(data), ".spark/cluster.json") == '{"cluster_id": "k3x9q2"}\n'


def test_read_of_a_linked_file_is_refused(data, outside):
    (data / "cluster.json").symlink_to(secret(outside))
    with pytest.raises(OSError):
        read_in_data(str(data), "cluster.json")


def test_read_through_a_linked_parent_directory_is_refused(data, outside):
    secret(outside)
    (data / ".spark").symlink_to(outside)
    with pytest.raises(OSError):
        read_in_data(str(data), ".spark/secret")


def test_read_of_a_missing_file_or_directory_raises_file_not_found(data):
    with pytest.raises(FileNotFoundError):
        read_in_data(str(data), ".spark/cluster.json")
    assert not (data / ".spark").exists()  # reading creates nothing
    (data / ".spark").mkdir()
    with pytest.raises(FileNotFoundError):
        read_in_data(str(data), ".spark/cluster.json")


def test_read_of_a_fifo_is_refused_without_blocking(data):
    os.mkfifo(data / "cluster.json")
    with pytest.raises(OSError):
        read_in_data(str(data), "cluster.json")


# --- removing -------------------------------------------------------------------------------------


def test_remove_deletes_the_file(data):
    write_in_data(str(data), ".spark/cluster.json", "{}\n")
    remove_in_data(str(data), ".spark/cluster.json")
    assert os.listdir(data / ".spark") == []


def test_removing_a_missing_file_or_directory_is_no_error(data):
    remove_in_data(str(data), ".spark/cluster.json")
    (data / ".spark").mkdir()
    remove_in_data(str(data), ".spark/cluster.json")
    assert os.listdir(data) == [".spark"]


def test_remove_of_a_link_removes_the_link_not_its_target(data, outside):
    target = secret(outside)
    (data / "cluster.json").symlink_to(target)
    remove_in_data(str(data), "cluster.json")
    assert not (data / "cluster.json").is_symlink()
    assert target.read_text() == "root's file\n"


def test_remove_through_a_linked_parent_directory_leaves_the_outside_file(data, outside):
    target = secret(outside)
    (data / ".spark").symlink_to(outside)
    with contextlib.suppress(OSError):
        remove_in_data(str(data), ".spark/secret")
    assert target.read_text() == "root's file\n"


# --- paths ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "relative",
    [
        "../outside/secret",
        ".spark/../../outside/secret",
        "..",
        "/etc/passwd",
        str(os.devnull),
        "",
        ".",
    ],
)
@pytest.mark.parametrize(
    "call",
    [
        lambda d, r: write_in_data(d, r, "x"),
        lambda d, r: append_in_data(d, r, "x"),
        read_in_data,
        remove_in_data,
    ],
)
def test_paths_leaving_the_data_directory_are_value_errors(data, outside, relative, call):
    target = secret(outside)
    with pytest.raises(ValueError, match="must be a relative path inside /data"):
        call(str(data), relative)
    assert target.read_text() == "root's file\n"
    assert os.listdir(data) == []


# --- ownership ------------------------------------------------------------------------------------


@as_root
def test_what_the_service_creates_belongs_to_the_workspace_user(data):
    write_in_data(str(data), ".spark/conf/cluster.json", "{}\n")
    append_in_data(str(data), "logs/scaler.log", "one\n")
    for path in [".spark", ".spark/conf", ".spark/conf/cluster.json", "logs", "logs/scaler.log"]:
        info = os.stat(data / path)
        assert (path, info.st_uid, info.st_gid) == (path, *workspace_user_host_ids())
    assert os.stat(data).st_uid == 0  # the data directory itself is left as it was


@as_root
def test_appending_to_a_root_owned_file_hands_it_to_the_workspace_user(data):
    (data / "scaler.log").write_text("one\n")
    assert os.stat(data / "scaler.log").st_uid == 0
    append_in_data(str(data), "scaler.log", "two\n")
    info = os.stat(data / "scaler.log")
    assert (info.st_uid, info.st_gid) == workspace_user_host_ids()


@as_root
def test_appending_keeps_another_users_file_theirs(data):
    (data / "scaler.log").write_text("one\n")
    os.chown(data / "scaler.log", 1234, 1234)
    append_in_data(str(data), "scaler.log", "two\n")
    info = os.stat(data / "scaler.log")
    assert (info.st_uid, info.st_gid) == (1234, 1234)
