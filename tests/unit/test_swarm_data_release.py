"""Deleting a swarm workspace's /data for good (data_release.py): when the removal can run, what
a refused start says, the deleter's service, and the deleter's program (move_agent.py, role
``delete``) against an engine API on a unix socket.

The engine here is a stand-in: a small HTTP server on a unix socket answering the one call
the deleter makes (``DELETE /volumes/<name>``) as Docker's engine does (204, 404, 409 while
a container holds the volume); the real engine is exercised by tests/swarm/test_swarm_delete.py.
"""

import http.server
import socketserver
import threading

import pytest

from bench_spawner.swarm import move_agent
from bench_spawner.swarm.data_release import (
    Progress,
    data_volume,
    decide_release,
    deleter_name,
    deleter_progress,
    pending_start_reason,
)
from bench_spawner.swarm.move_plan import MoverPlan, mover_service_kwargs
from bench_spawner.swarm.service_plan import NodeView
from bench_spawner.swarm.task_outcome import TaskView


def node(id_="n1", state="ready", availability="active", hostname="worker-1"):
    return NodeView(id_, hostname, "worker", availability, state, 2, 4, 0, "10.0.0.2")


def test_the_removal_runs_at_once_on_the_ready_node_that_holds_the_data():
    step = decide_release("n1", [node("n0"), node("n1")])
    assert step.run and not step.open_node


def test_a_drained_node_is_opened_for_the_removal_as_for_a_move():
    step = decide_release("n1", [node(availability="drain")])
    assert step.run and step.open_node


@pytest.mark.parametrize(
    ("nodes", "where"),
    [
        ([node(state="down")], "swarm node worker-1, which is down"),
        ([node(state="down", availability="drain")], "swarm node worker-1, which is down"),
        ([node(availability="pause")], "swarm node worker-1, which is paused"),
        ([node("other")], "swarm node n1, which left the swarm"),
    ],
)
def test_a_node_that_cannot_run_the_removal_now_keeps_it_pending_and_is_named(nodes, where):
    step = decide_release("n1", nodes)
    assert not step.run and step.reason == where


def test_a_refused_start_says_the_old_files_are_why_and_what_to_do():
    reason = pending_start_reason("swarm node worker-1, which is down")
    assert reason.startswith(
        "a deleted workspace of this name left its /data on swarm node worker-1, which is down"
    )
    assert "choose another name" in reason and "docs/swarm.md" in reason


def task(state, desired="shutdown"):
    return TaskView(state, desired_state=desired)


def test_only_a_completed_deleter_counts_as_done():
    assert deleter_progress([task("failed"), task("complete")]) is Progress.DONE
    for state in ("new", "pending", "running", "failed", "rejected", "shutdown"):
        assert deleter_progress([task(state, "running")]) is not Progress.DONE, state
    assert deleter_progress([]) is Progress.WORKING  # just created: Swarm makes its task


def test_a_deleter_that_failed_is_still_working_while_swarm_retries_it():
    # the failed task awaits the orchestrator (desired still running), or its retry exists
    assert deleter_progress([task("failed", "running")]) is Progress.WORKING
    assert deleter_progress([task("failed"), task("pending", "ready")]) is Progress.WORKING
    assert deleter_progress([task("rejected"), task("failed"), task("new", "ready")]) is (
        Progress.WORKING
    )


def test_a_deleter_whose_every_attempt_failed_and_was_handled_is_given_up():
    assert deleter_progress([task("failed")]) is Progress.GAVE_UP
    assert deleter_progress([task("failed"), task("rejected"), task("failed")]).gave_up


def test_the_deleter_is_retried_by_swarm_on_failure_a_bounded_number_of_times():
    plan = MoverPlan(
        name="bench-ann--ws-delete",
        image="benchhub/jupyterlab:latest",
        role="delete",
        constraints=("node.id==n1",),
        volume="",
        environment={},
        labels={},
        retries=3,
        retry_delay=5.0,
    )
    policy = mover_service_kwargs(plan)["task_template"]["RestartPolicy"]
    assert policy == {
        "Condition": "on-failure",
        "Delay": 5_000_000_000,
        "MaxAttempts": 3,
        "Window": 0,
    }
    # the movers of a move never restart: a failed move is the start's failure
    mover = MoverPlan("m", "img", "send", (), "v", {}, {})
    assert mover_service_kwargs(mover)["task_template"]["RestartPolicy"]["Condition"] == "none"


def test_the_deleter_mounts_the_nodes_engine_and_not_the_volume_it_removes():
    service = "bench-ann--ws"
    plan = MoverPlan(
        name=deleter_name(service),
        image="benchhub/jupyterlab:latest",
        role="delete",
        constraints=("node.id==n1",),
        volume="",
        environment={"BENCHHUB_MOVE_VOLUME": data_volume(service)},
        labels={"org.benchhub.delete": service},
        engine_socket="/var/run/docker.sock",
    )
    kwargs = mover_service_kwargs(plan)
    spec = kwargs["task_template"]["ContainerSpec"]
    assert kwargs["name"] == "bench-ann--ws-delete"
    assert spec["Mounts"] == [
        {
            "Target": "/var/run/docker.sock",
            "Source": "/var/run/docker.sock",
            "Type": "bind",
            "ReadOnly": False,
        }
    ]
    assert spec["Env"] == ["BENCHHUB_MOVE_VOLUME=bench-ann--ws-data"]
    assert spec["Command"][-1] == "delete"
    assert kwargs["task_template"]["RestartPolicy"]["Condition"] == "none"
    assert kwargs["task_template"]["Placement"]["Constraints"] == ["node.id==n1"]
    assert "endpoint_spec" not in kwargs


class FakeEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A stand-in engine: ``answers`` is the list of statuses it gives, one per request (the
    last repeats); ``paths`` records what was asked."""

    daemon_threads = True

    def __init__(self, path, answers):
        self.answers, self.paths = list(answers), []
        super().__init__(str(path), EngineHandler)


class EngineHandler(http.server.BaseHTTPRequestHandler):
    def do_DELETE(self):  # noqa: N802 (http.server's naming)
        self.server.paths.append(self.path)
        status = (
            self.server.answers.pop(0) if len(self.server.answers) > 1 else self.server.answers[0]
        )
        body = b"" if status == 204 else b'{"message": "volume is in use"}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self):
        return "engine"

    def log_message(self, *args):
        pass


@pytest.fixture
def engine(tmp_path):
    def serve(answers):
        server = FakeEngine(tmp_path / "docker.sock", answers)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    servers = []
    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_deleter_removes_the_volume_through_the_engine(engine, tmp_path):
    fake = engine([204])
    assert move_agent.remove_volume("bench-ann--ws-data", 5, str(tmp_path / "docker.sock")) == (
        "removed"
    )
    assert fake.paths == ["/volumes/bench-ann--ws-data"]


def test_a_volume_already_gone_is_a_removal_done(engine, tmp_path):
    engine([404])
    assert move_agent.remove_volume("v", 5, str(tmp_path / "docker.sock")) == "absent"


def test_the_deleter_waits_while_a_leaving_container_still_holds_the_volume(engine, tmp_path):
    fake = engine([409, 409, 204])
    assert move_agent.remove_volume("v", 30, str(tmp_path / "docker.sock")) == "removed"
    assert len(fake.paths) == 3


def test_a_volume_held_past_the_timeout_is_not_forced_and_the_deleter_fails_saying_so(
    engine, tmp_path
):
    engine([409])
    with pytest.raises(SystemExit) as failed:
        move_agent.remove_volume("v", 0, str(tmp_path / "docker.sock"))
    assert "did not remove volume v: 409" in str(failed.value)
