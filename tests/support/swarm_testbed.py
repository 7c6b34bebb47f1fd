"""The one runner of ``scripts/swarm-testbed.sh`` (the test swarm: docs/swarm.md), shared by
the swarm tests' fixture (tests/swarm/conftest.py) and the swarm benchmarks."""

from __future__ import annotations

import subprocess
from pathlib import Path

TESTBED = Path(__file__).resolve().parents[2] / "scripts" / "swarm-testbed.sh"


def run_testbed(command: str) -> str:
    """Run ``swarm-testbed.sh <command>`` (up, down, status, env; up takes ~60 s from
    nothing): its standard output. RuntimeError with both outputs when it fails."""
    out = subprocess.run(
        ["bash", str(TESTBED), command], capture_output=True, text=True, timeout=900
    )
    if out.returncode != 0:
        raise RuntimeError(f"swarm-testbed.sh {command} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout
