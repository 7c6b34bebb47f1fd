"""Logs and files a user controls are read in bounded memory and time, whatever their size.

The scaler log lives in the workspace's ``/data``: its user can make it a 20 GB sparse file
(which costs them no disk), and the clusters service showed it by reading the whole file in
its request handler, stalling the service for everyone. The egress proxy's access log grows
with every request of every restricted workspace. Both are now read from the end, at most a
fixed window, and the bytes actually read are counted here with the kernel's own counter
(``rchar`` in ``/proc/self/io``). Sparse files cost no disk on the test machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchhub.egress_state import EgressState
from benchhub.file_tail import TAIL_BYTES, open_regular_file, tail_lines
from benchhub.user_files import read_in_data, tail_in_data
from hub_services.clusters.scaler_log import LOG_IN_DATA, ScalerLog
from hub_services.clusters.service import ClusterController
from hub_services.clusters.spark import CLUSTER_FILE, remove_cluster_file
from hub_services.clusters.state import ClusterRecord
from hub_services.egress.policy import DENIED
from hub_services.egress.proxy import ACCESS_LOG_WINDOW
from hub_services.egress.service import EgressService

GIB = 1024**3
HUGE = 20 * GIB  # the size in the issue: a whole-file read of it stalls the service


def bytes_read() -> int:
    """Bytes this process has read with read(2)/pread(2) so far (the kernel's count)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def sparse(path: Path, size: int, tail: bytes = b"") -> Path:
    """A file of ``size`` bytes that is all hole but for ``tail`` at its very end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size - len(tail))
        f.seek(size - len(tail))
        f.write(tail)
    return path


@pytest.fixture
def data(tmp_path) -> Path:
    (tmp_path / "data").mkdir()
    return tmp_path / "data"


# --- the tail of a file ------------------------------------------------------------------------


def lines_of(tmp_path, content: bytes, **kwargs) -> list[str]:
    path = tmp_path / "log"
    path.write_bytes(content)
    fd = open_regular_file(path)
    try:
        return tail_lines(fd, **kwargs)
    finally:
        os.close(fd)


def test_a_short_log_is_shown_whole_and_the_last_line_needs_no_newline(tmp_path):
    assert lines_of(tmp_path, b"one\ntwo\nthree") == ["one", "two", "three"]
    assert lines_of(tmp_path, b"one\ntwo\n") == ["one", "two"]
    assert lines_of(tmp_path, b"") == []
    assert lines_of(tmp_path, b"a\nb\nc\n", count=2) == ["b", "c"]
    assert lines_of(tmp_path, b"a\nb\n", count=0) == []


def test_a_line_cut_by_the_window_is_left_out_not_shown_in_pieces(tmp_path):
    content = b"x" * 50 + b"\nfirst whole line\nlast line\n"
    assert lines_of(tmp_path, content, max_bytes=40) == ["first whole line", "last line"]
    assert lines_of(tmp_path, b"y" * 100, max_bytes=40) == []  # one line longer than the window


def test_undecodable_bytes_are_replaced_not_an_error(tmp_path):
    assert lines_of(tmp_path, b"caf\xe9\nok\n") == ["caf\ufffd", "ok"]


def test_a_link_a_fifo_or_a_directory_is_refused_without_blocking(tmp_path):
    target = tmp_path / "target"
    target.write_text("secret\n")
    (tmp_path / "link").symlink_to(target)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    for name in ("link", "fifo", "dir"):
        with pytest.raises(OSError):
            open_regular_file(tmp_path / name)


# --- the scaler log in /data -------------------------------------------------------------------


def test_a_20_gb_sparse_scaler_log_shows_its_last_lines_after_reading_a_window(data):
    lines = [f"2026-01-31T18:00:{i:02d}Z scaled to {i} members" for i in range(30)]
    sparse(data / LOG_IN_DATA, HUGE, ("\n".join(lines) + "\n").encode())
    before = bytes_read()
    shown = ScalerLog(data).tail(20)
    assert bytes_read() - before <= TAIL_BYTES + 4096
    assert shown == lines[-20:]


def test_a_20_gb_sparse_log_without_newlines_at_its_end_shows_nothing(data):
    sparse(data / LOG_IN_DATA, HUGE)  # all hole: 64 KiB of NULs are one cut line
    before = bytes_read()
    assert ScalerLog(data).tail(20) == []
    assert bytes_read() - before <= TAIL_BYTES + 4096


def test_the_scaler_log_is_not_read_through_a_link_or_a_fifo(data, tmp_path):
    (data / "logs").mkdir()
    (tmp_path / "elsewhere").write_text("a host file\n")
    (data / LOG_IN_DATA).symlink_to(tmp_path / "elsewhere")
    assert ScalerLog(data).tail(20) == []
    (data / LOG_IN_DATA).unlink()
    os.mkfifo(data / LOG_IN_DATA)
    assert ScalerLog(data).tail(20) == []
    with pytest.raises(OSError):
        tail_in_data(str(data), LOG_IN_DATA, 20)


def test_a_whole_file_read_refuses_a_file_over_its_limit_after_reading_the_limit(data):
    """``.spark/cluster.json`` is the service's, but in the user's /data: a 20 GB sparse file
    in its place is refused, not read, and removing the cluster leaves it be."""
    sparse(data / CLUSTER_FILE, HUGE, b'{"cluster_id": "abc123"}\n')
    before = bytes_read()
    with pytest.raises(OSError, match="larger than 65536 bytes"):
        read_in_data(str(data), CLUSTER_FILE)
    remove_cluster_file(str(data), "abc123")
    assert bytes_read() - before <= 2 * (64 * 1024 + 1) + 8192
    assert (data / CLUSTER_FILE).stat().st_size == HUGE
    (data / CLUSTER_FILE).write_text('{"cluster_id": "abc123"}\n')
    assert read_in_data(str(data), CLUSTER_FILE) == '{"cluster_id": "abc123"}\n'


async def test_the_cluster_status_shows_the_logs_tail_however_big_the_user_made_it(data, tmp_path):
    """What a user sees in ``GET api/clusters/<user>/<workspace>``: the status is built by
    the controller (no Docker call: the record is in memory), the log read in a worker
    thread and only its end."""
    controller = ClusterController(state_dir=str(tmp_path / "state"), network_mtu=1400)
    rec = ClusterRecord(
        user="ida",
        workspace="ws",
        cluster_id="abc123",
        settings={"type": "static", "members": 1},
        subnet="10.231.0.0/26",
        workspace_container="c0ffee",
        workspace_address="10.231.0.3",
        internal=False,
        model={"name": "test-small"},
        data_dir=str(data),
        created_at="2026-01-31T18:00:00+00:00",
        status="running",
    )
    controller.records[rec.key] = rec
    sparse(data / LOG_IN_DATA, HUGE, b"\n2026-01-31T18:00:00Z cluster abc123 started\n")
    before = bytes_read()
    status = await controller.status("ida", "ws")
    assert bytes_read() - before <= TAIL_BYTES + 64 * 1024
    assert status["scaler_log"] == ["2026-01-31T18:00:00Z cluster abc123 started"]
    controller.close()


# --- the egress proxy's access log -------------------------------------------------------------


def refusal(at: float, address: str, host: str) -> str:
    return f"{at:.3f} {address} {DENIED} CONNECT {host}:443"


def egress_service(tmp_path) -> EgressService:
    """An egress service over a state directory. ``refusals`` needs only the state; the
    Docker client and the hub are not involved, so the object is made without them."""
    service = EgressService.__new__(EgressService)
    service.state = EgressState(tmp_path / "egress")
    return service


def test_refusals_come_from_the_access_logs_end_whatever_its_size(tmp_path):
    service = egress_service(tmp_path)
    service.state.register("ida/ws", "c1", "10.9.0.10", ["a.example.org"])
    recent = (
        "\n"
        + "\n".join(
            refusal(1_800_000_000 + i, "10.9.0.10", "blocked.example.net") for i in range(3)
        )
        + "\n"
    )
    sparse(service.state.log_dir / "access.log", HUGE, recent.encode())
    before = bytes_read()
    found = service.refusals("ida/ws")
    assert bytes_read() - before <= ACCESS_LOG_WINDOW + 64 * 1024
    assert [(r["host"], r["count"]) for r in found["refusals"]] == [("blocked.example.net", 3)]


def test_refusals_without_an_access_log_are_none(tmp_path):
    service = egress_service(tmp_path)
    service.state.register("ida/ws", "c1", "10.9.0.10", [])
    assert service.refusals("ida/ws")["refusals"] == []


def test_refusals_just_after_a_rotation_come_from_the_previous_log_too(tmp_path):
    service = egress_service(tmp_path)
    service.state.register("ida/ws", "c1", "10.9.0.10", [])
    service.state.log_dir.mkdir(parents=True, exist_ok=True)
    older = refusal(1_800_000_000, "10.9.0.10", "before.example.net")
    newer = refusal(1_800_000_100, "10.9.0.10", "after.example.net")
    (service.state.log_dir / "access.log.0").write_text(older + "\n")
    (service.state.log_dir / "access.log").write_text(newer + "\n")
    hosts = {r["host"] for r in service.refusals("ida/ws")["refusals"]}
    assert hosts == {"before.example.net", "after.example.net"}
