"""BenchHub's JupyterHub spawner: sized Docker workspaces with persistent, size-enforced /data."""

from .spawner import BenchSpawner

__all__ = ["BenchSpawner"]
