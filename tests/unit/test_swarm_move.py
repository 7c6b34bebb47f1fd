"""Moving /data between swarm nodes: the movers' program (move_agent.py, run here on
localhost between two directories, as it runs between two nodes) and the hub's pure
decisions about a move (move_plan.py)."""

import io
import json
import os
import socket
import tarfile
import threading

import pytest
from support.waiting import wait

from bench_spawner.swarm import move_agent
from bench_spawner.swarm.move_plan import (
    EVACUATING,
    MoveReport,
    MoverPlan,
    MoveTimeline,
    avoid_evacuating,
    evacuation_spec,
    moved_entry,
    mover_service_kwargs,
    parse_report,
    parse_times,
    restored_spec,
    verification_problem,
)
from bench_spawner.swarm.service_plan import NodeView


def make_tree(root):
    (root / "notes").mkdir()
    (root / "notes" / "a.txt").write_text("hello")
    (root / "big.bin").write_bytes(os.urandom(300_000))
    (root / "notes" / "link").symlink_to("/opt/venv/bin/python")  # absolute: the user's
    os.link(root / "notes" / "a.txt", root / "hard.txt")
    (root / "private.txt").write_text("secret")
    os.chmod(root / "private.txt", 0o600)
    os.chmod(root / "notes", 0o775)  # group-writable stays group-writable


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(port):
    try:
        return socket.create_connection(("127.0.0.1", port))
    except ConnectionRefusedError:
        return None


def copy(src, dst, token="t0ken", sender_token="t0ken"):
    port = free_port()
    errors = []

    def receiving():
        try:
            move_agent.receive(token, port, 20, str(dst))
        except BaseException as e:  # SystemExit included
            errors.append(e)

    thread = threading.Thread(target=receiving)
    thread.start()
    move_agent.send(sender_token, "127.0.0.1", port, 20, str(src))
    thread.join(30)
    return errors


def test_a_tree_streamed_to_the_receiver_digests_the_same_as_the_original(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    make_tree(src)
    (dst / "stale.txt").write_text("left by a failed earlier move")
    assert copy(src, dst) == []
    out = capsys.readouterr().out  # the report lines, and each role's step times
    sent, received = parse_report(out, "send"), parse_report(out, "receive")
    assert verification_problem(sent, received) is None
    assert sent.entries == 6 and sent.size == 300_000 + 5 + 5 + 6  # the hard link counts twice
    assert not (dst / "stale.txt").exists()
    assert os.readlink(dst / "notes" / "link") == "/opt/venv/bin/python"
    assert oct(os.stat(dst / "notes").st_mode & 0o777) == "0o775"


def test_a_copy_that_lost_or_changed_a_file_differs_in_its_digest(tmp_path):
    make_tree(tmp_path)
    before = move_agent.tree_digest(str(tmp_path))
    (tmp_path / "notes" / "a.txt").write_text("hellO")
    changed = move_agent.tree_digest(str(tmp_path))
    os.chmod(tmp_path / "private.txt", 0o644)
    chmodded = move_agent.tree_digest(str(tmp_path))
    assert len({before[0], changed[0], chmodded[0]}) == 3


def test_a_stream_without_the_moves_token_is_dropped_and_the_real_one_still_lands(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir(), dst.mkdir()
    make_tree(src)
    port = free_port()
    thread = threading.Thread(target=move_agent.receive, args=("right", port, 20, str(dst)))
    thread.start()
    intruder = tmp_path / "intruder"
    intruder.mkdir()
    (intruder / "planted.txt").write_text("x")
    move_agent.send("wrong", "127.0.0.1", port, 20, str(intruder))
    move_agent.send("right", "127.0.0.1", port, 20, str(src))
    thread.join(30)
    assert not (dst / "planted.txt").exists() and (dst / "big.bin").exists()


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/../../b"])
def test_a_tar_member_outside_data_is_refused(name):
    assert not move_agent.safe_member(tarfile.TarInfo(name))


def test_a_hard_link_out_of_data_is_refused_and_a_normal_one_kept():
    link = tarfile.TarInfo("inside")
    link.type, link.linkname = tarfile.LNKTYPE, "../../etc/shadow"
    assert not move_agent.safe_member(link)
    link.linkname = "notes/a.txt"
    assert move_agent.safe_member(link)


def test_an_unsafe_member_ends_the_receive_with_an_error_and_nothing_outside(tmp_path):
    dst = tmp_path / "dst"
    dst.mkdir()
    port = free_port()
    errors = []

    def receiving():
        try:
            move_agent.receive("tok", port, 20, str(dst))
        except SystemExit as e:
            errors.append(str(e))

    thread = threading.Thread(target=receiving)
    thread.start()
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    conn = wait(lambda: connect(port), 10, "the receiver listens")
    with conn:
        conn.sendall(b"tok\n" + payload.getvalue())
    thread.join(30)
    assert errors and "refused tar member '../outside.txt'" in errors[0]
    assert not (tmp_path / "outside.txt").exists()


def test_the_report_line_is_read_from_a_movers_logs_and_a_missing_one_is_a_problem():
    logs = "noise\nBENCHHUB-MOVE send abc 3 10\n"
    assert parse_report(logs, "send") == MoveReport("send", "abc", 3, 10)
    assert parse_report(logs, "receive") is None
    problem = verification_problem(parse_report(logs, "send"), None)
    assert problem == "the receiver reported no digest of the copy"
    differs = verification_problem(MoveReport("send", "a", 3, 10), MoveReport("receive", "b", 2, 9))
    assert differs.startswith("the copy differs from the original (2 entries and 9 bytes")


def test_a_drained_node_is_made_active_with_the_label_and_restored_without_it():
    spec = {"Availability": "drain", "Role": "worker", "Labels": {"site": "x"}}
    during = evacuation_spec(spec)
    assert during["Availability"] == "active" and during["Labels"][EVACUATING] == "true"
    after = restored_spec(during, "drain")
    assert after == spec
    assert avoid_evacuating() == "node.labels.benchhub.evacuating!=true"


def test_the_receiver_publishes_its_port_on_its_node_and_the_sender_reads_data_only():
    common = {"image": "img", "volume": "ws-data", "environment": {}, "labels": {}}
    receiver = mover_service_kwargs(MoverPlan("in", role="receive", constraints=(), **common))
    ports = receiver["endpoint_spec"]["Ports"]
    assert ports[0]["TargetPort"] == move_agent.PORT and ports[0]["PublishMode"] == "host"
    sender = mover_service_kwargs(
        MoverPlan("out", role="send", constraints=("node.id==n1",), read_only=True, **common)
    )
    spec = sender["task_template"]["ContainerSpec"]
    assert spec["Mounts"][0]["ReadOnly"] is True and spec["User"] == "0"
    assert spec["Command"][:2] == ["python3", "-c"] and spec["Command"][-1] == "send"
    assert sender["task_template"]["RestartPolicy"]["Condition"] == "none"
    assert "endpoint_spec" not in sender


def test_a_movers_step_times_are_read_from_its_logs_for_the_moves_phases():
    logs = "BENCHHUB-MOVE send abc 3 10\nBENCHHUB-MOVE-TIMES send digest=1.25 stream=3.50\n"
    assert parse_times(logs, "send") == {"digest": 1.25, "stream": 3.5}
    assert parse_times(logs, "receive") == {}
    timeline = MoveTimeline()
    timeline.mark("open")
    timeline.mark("send", parse_times(logs, "send"))
    phases = json.loads(timeline.as_json())
    assert list(phases) == ["open", "send", "send.digest", "send.stream"]
    assert phases["send.stream"] == 3.5 and phases["open"] >= 0


def test_the_journals_moved_entry_names_both_nodes_by_id_and_name():
    source = NodeView("n1", "worker-1", "worker", "drain", "ready", 2, 4, 0, "10.0.0.2")
    target = NodeView("n2", "worker-2", "worker", "active", "ready", 2, 4, 0, "10.0.0.3")
    description, fields = moved_entry(source, target, 8.04)
    assert description == (
        "/data moved from drained swarm node worker-1 to worker-2, copy verified, in 8.0 s"
    )
    assert fields == {
        "from_node": "n1",
        "from_hostname": "worker-1",
        "to_node": "n2",
        "to_hostname": "worker-2",
        "seconds": 8.0,
    }
