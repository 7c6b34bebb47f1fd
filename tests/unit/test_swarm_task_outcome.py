"""What a workspace's Swarm task means for its start and for poll (bench_spawner.swarm).

The task samples have the shape the engine API returns (``GET /tasks``); the reasons are the
texts Swarm writes (seen on the test swarm, docs/swarm.md).
"""

from bench_spawner.swarm.task_outcome import (
    Phase,
    TaskView,
    decide_poll,
    decide_start,
    latest_task,
    task_view,
)

UNSCHEDULABLE = "no suitable node (insufficient resources on 2 nodes)"


def sample(state, err="", exit_code=None, port=None, index=10, node="n1"):
    status = {"State": state, "Message": state, "Timestamp": "2026-11-30T20:00:00Z"}
    if err:
        status["Err"] = err
    if exit_code is not None:
        status["ContainerStatus"] = {"ContainerID": "c", "PID": 0, "ExitCode": exit_code}
    if port:
        status["PortStatus"] = {
            "Ports": [
                {
                    "Protocol": "tcp",
                    "TargetPort": 8888,
                    "PublishedPort": port,
                    "PublishMode": "host",
                }
            ]
        }
    return {"ID": f"t{index}", "NodeID": node, "Version": {"Index": index}, "Status": status}


def test_a_running_task_gives_the_node_and_the_port_published_for_the_server():
    view = task_view(sample("running", port=30001), 8888)
    assert view == TaskView("running", "", "running", None, "n1", 30001)
    assert decide_start(view, 0, 2).phase is Phase.RUNNING


def test_a_port_published_for_another_container_port_is_not_the_servers():
    assert task_view(sample("running", port=30001), 9999).published_port is None


def test_a_running_task_without_a_published_port_fails_rather_than_hangs():
    decision = decide_start(task_view(sample("running"), 8888), 0, 2)
    assert (decision.phase, decision.kind) == (Phase.FAILED, "no-port")


def test_a_task_swarm_cannot_place_fails_after_the_grace_with_swarms_reason():
    view = task_view(sample("pending", err=UNSCHEDULABLE), 8888)
    waiting = decide_start(view, 1.0, 2.0)
    assert waiting.phase is Phase.WAITING and UNSCHEDULABLE in waiting.message
    failed = decide_start(view, 2.0, 2.0)
    assert failed.phase is Phase.FAILED and failed.kind == "unschedulable"
    assert failed.message == f"Swarm cannot place the workspace: {UNSCHEDULABLE}"


def test_a_pending_task_without_a_reason_is_still_being_scheduled():
    assert decide_start(task_view(sample("pending"), 8888), 60, 2).phase is Phase.WAITING


def test_a_rejected_task_fails_at_once_with_the_engines_error():
    err = "No such image: benchhub/not-built:0"
    decision = decide_start(task_view(sample("rejected", err=err), 8888), 0, 2)
    assert (decision.phase, decision.kind) == (Phase.FAILED, "rejected")
    assert decision.message == f"Swarm rejected the workspace: {err}"


def test_a_task_that_ends_while_starting_fails_with_its_exit():
    decision = decide_start(task_view(sample("failed", exit_code=3), 8888), 0, 2)
    assert (decision.phase, decision.kind) == (Phase.FAILED, "exited")
    assert "exit code 3" in decision.message
    with_err = task_view(sample("failed", err="task: non-zero exit (137)", exit_code=137), 8888)
    assert "non-zero exit (137)" in decide_start(with_err, 0, 2).message


def test_every_state_before_running_waits():
    for state in ("new", "allocated", "assigned", "accepted", "preparing", "ready", "starting"):
        assert decide_start(task_view(sample(state), 8888), 0, 2).phase is Phase.WAITING, state
    assert decide_start(None, 0, 2).phase is Phase.WAITING


def test_the_newest_task_is_the_one_with_the_highest_version():
    tasks = [sample("rejected", index=5), sample("running", index=12), sample("failed", index=7)]
    assert latest_task(tasks)["ID"] == "t12"
    assert latest_task([]) is None


def test_poll_sees_a_running_workspace_on_a_ready_node_as_running():
    assert decide_poll(task_view(sample("running", port=1), 8888), "ready").exit_status is None
    assert decide_poll(task_view(sample("starting"), 8888), "ready").exit_status is None


def test_poll_reports_node_lost_when_the_node_is_down_or_gone_though_swarm_says_running():
    view = task_view(sample("running", port=1), 8888)
    for node_state in ("down", None):
        result = decide_poll(view, node_state)
        assert result.exit_status == 1 and result.reason.startswith("node lost"), node_state


def test_poll_gives_the_exit_code_of_an_ended_workspace_and_0_for_a_removed_service():
    assert decide_poll(task_view(sample("failed", exit_code=137), 8888), "ready").exit_status == 137
    assert decide_poll(task_view(sample("complete", exit_code=0), 8888), "ready").exit_status == 0
    assert decide_poll(None, None).exit_status == 0
