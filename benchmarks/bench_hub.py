"""The test hub harness, started for a benchmark: its log kept under ``.cache/bench/``.

Benchmarks that spawn through a real hub share this start: a :class:`HubProcess` in a
temporary directory, its log at ``.cache/bench/<name>-hub.log`` (kept after the run, so a
failed spawn can be read afterwards), leftovers of an earlier run with the same prefix removed.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.docker_cli import cleanup
from tests.support.hub_harness import HubProcess

REPO = Path(__file__).resolve().parent.parent


def start_bench_hub(
    workdir: Path,
    prefix: str,
    extra_config: str,
    name: str,
    env_overrides: dict[str, str] | None = None,
) -> HubProcess:
    """A started hub for the benchmark ``name`` (the caller stops it); ``env_overrides`` as
    :class:`HubProcess` takes them (e.g. the services' production intervals)."""
    hub = HubProcess(workdir, prefix=prefix, extra_config=extra_config, env_overrides=env_overrides)
    hub.log_path = REPO / ".cache" / "bench" / f"{name}-hub.log"
    hub.log_path.parent.mkdir(parents=True, exist_ok=True)
    hub.log_path.unlink(missing_ok=True)
    cleanup(prefix, hub.storage_root)
    hub.start()
    return hub
