"""A swarm workspace's status for the workspaces API: the shared report, the outcome kept in
the spawner state (the hub's database), and what a lost node reads as."""

import asyncio

from bench_spawner.swarm.spawner import BenchSwarmSpawner
from bench_spawner.swarm.task_outcome import TaskView, decide_poll
from bench_spawner.workspace_status import Outcome, status_report


def test_a_live_workspace_reports_its_live_status_since_its_last_record():
    report = status_report("running", Outcome("running", "", "t1"))
    assert report == {"status": "running", "reason": "", "since": "t1", "checkpoint": {}}


def test_a_workspace_that_is_not_live_reports_its_recorded_error_or_stopped():
    assert status_report(None, Outcome("errored", "node lost: x", "t2")) == {
        "status": "errored",
        "reason": "node lost: x",
        "since": "t2",
    }
    assert status_report(None, Outcome("stopped", "", "t3"))["status"] == "stopped"
    assert status_report(None, None) == {"status": "stopped", "reason": "", "since": None}


def test_the_last_outcome_is_kept_in_the_state_across_a_stop_and_read_back():
    spawner = BenchSwarmSpawner()
    spawner.load_state({"object_id": "svc1", "object_name": "bench-ada--ws", "node_id": "n7"})
    spawner.object_id = ""  # a stop removed the service
    spawner.outcome = Outcome("errored", "node lost: swarm node w1 is down", "t4")
    spawner.clear_state()
    again = BenchSwarmSpawner()
    again.load_state({"object_name": "bench-ada--ws", **spawner.get_state()})
    assert again.outcome == spawner.outcome and again.node_id == "n7"


def test_an_unreadable_outcome_in_the_state_reads_as_none():
    spawner = BenchSwarmSpawner()
    spawner.load_state({"object_name": "bench-ada--ws", "node_id": "n7", "outcome": {"a": 1}})
    assert spawner.outcome is None and spawner.node_id == "n7"


def test_a_running_task_on_a_down_node_is_node_lost_naming_the_node():
    running = TaskView("running", node_id="n1", published_port=30000)
    result = decide_poll(running, "down", "worker-1")
    assert result.exit_status == 1 and result.status == "errored"
    assert result.reason.startswith("node lost: swarm node worker-1 is down")


def test_a_server_that_exited_by_itself_with_code_0_is_stopped_not_errored():
    done = TaskView("complete", exit_code=0, node_id="n1")
    assert decide_poll(done, "ready").status == "stopped"
    failed = TaskView("failed", exit_code=137, node_id="n1")
    assert decide_poll(failed, "ready").status == "errored"


def test_a_fresh_swarm_spawner_is_not_taken_for_a_failed_one_by_jupyterhub():
    # JupyterHub replaces a spawner whose ``_failed`` is true (get_spawner(replace_failed=True)):
    # a method of that name would make every swarm spawner look failed and lose its outcome
    spawner = BenchSwarmSpawner()
    assert not spawner._failed


def test_a_running_workspace_whose_manager_does_not_answer_says_so_instead_of_failing():
    class Running(BenchSwarmSpawner):
        server = property(lambda self: object())  # what JupyterHub gives a running server

    async def unreachable():
        raise ConnectionError("connection refused")

    spawner = Running()
    spawner.load_state({"object_name": "bench-ada--ws", "node_id": "n7"})
    spawner._observe = unreachable
    report = asyncio.run(spawner.workspace_status())
    assert report["status"] == "running"
    assert report["reason"] == "the swarm's manager does not answer: connection refused"
