"""What every container BenchHub runs has in common: the CPU period and the log limit.

Workspaces (``bench_spawner.container``), cluster nodes (``hub_services.clusters.containers``)
and the egress proxy are created from these, so their limits are set in one place.
"""

from __future__ import annotations

__all__ = ["CPU_PERIOD_US", "GIB", "LOG_CONFIG"]

CPU_PERIOD_US = 100_000
GIB = 1024**3
# What a container prints goes to the engine's log file on the host: without a size limit, a
# loop printing in a notebook fills the host's disk. Docker keeps at most 3 x 10 MB (the hub
# reads only the last lines, to say why a container stopped).
LOG_CONFIG = {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}}
