"""BenchSwarmSpawner's state: the node holding a workspace's /data outlives a stop."""

from bench_spawner.swarm.spawner import STATE_VERSION, BenchSwarmSpawner


def test_the_node_is_kept_in_the_state_across_a_stop_and_read_back():
    spawner = BenchSwarmSpawner()
    spawner.load_state({"object_id": "svc1", "object_name": "bench-ada--ws", "node_id": "n7"})
    assert spawner.node_id == "n7"
    spawner.object_id = ""  # a stop removed the service (remove_object)
    spawner.clear_state()  # and JupyterHub clears the state
    state = spawner.get_state()
    assert state == {"version": STATE_VERSION, "node_id": "n7"}  # the node stays


def test_a_state_from_before_the_node_was_kept_loads_as_no_node():
    spawner = BenchSwarmSpawner()
    spawner.load_state({"object_id": "svc1", "object_name": "bench-ada--ws"})
    assert spawner.node_id == "" and "node_id" not in spawner.get_state()
