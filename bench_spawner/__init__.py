"""BenchHub's JupyterHub spawner: sized Docker workspaces with persistent, size-enforced /data.

``BenchSpawner`` is imported lazily so that its pure modules (options, whitelist, resource
models) can be imported by the hub services without pulling in the spawner.
"""

__all__ = ["BenchSpawner"]


def __getattr__(name: str):
    if name == "BenchSpawner":
        from .spawner import BenchSpawner

        return BenchSpawner
    raise AttributeError(f"module 'bench_spawner' has no attribute {name!r}")
