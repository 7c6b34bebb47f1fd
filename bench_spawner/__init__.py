"""BenchHub's JupyterHub spawner: sized Docker workspaces with persistent, size-enforced /data.

The Spawner (:class:`BenchSpawner`, entry point ``bench``), its hub handlers (``hub_api``),
the options form and the container plan. What it shares with the hub services is in the
``benchhub`` core.
"""

from .spawner import BenchSpawner

__all__ = ["BenchSpawner"]
