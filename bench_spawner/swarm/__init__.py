"""BenchHub on a Docker Swarm (docs/swarm.md): :class:`BenchSwarmSpawner` and the pure
decisions it coordinates (:mod:`.service_plan`, :mod:`.task_outcome`, :mod:`.unsupported`).

Use it with ``c.JupyterHub.spawner_class = "bench_spawner.swarm.spawner.BenchSwarmSpawner"``.
"""
