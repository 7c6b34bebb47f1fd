"""A stand-in for a Grid Engine client (``qhost``, ``qstat``) in the unit tests of the watches
the clusters service runs in a manager: it prints given outputs one call after another (the
last again and again) and records the arguments of each call."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def run_with_scripted_command(
    tmp_path: Path, name: str, outputs: list[str], argv: list[str], after_each: str = ""
) -> tuple[subprocess.CompletedProcess, float, str]:
    """Run ``argv`` with ``name`` on its PATH scripted to print ``outputs``; ``after_each`` is
    shell run after each call. Returns what ran, its seconds, and the calls' arguments, one a
    line."""
    for i, text in enumerate(outputs):
        (tmp_path / f"out{i}").write_text(text)
    fake = tmp_path / name
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {tmp_path}/asked\n'
        f"n=$(cat {tmp_path}/n 2>/dev/null || echo 0)\n"
        f"[ $n -lt {len(outputs) - 1} ] && echo $((n + 1)) > {tmp_path}/n\n"
        f"cat {tmp_path}/out$n\n{after_each}"
    )
    fake.chmod(0o755)
    t0 = time.monotonic()
    done = subprocess.run(
        argv,
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done, time.monotonic() - t0, (tmp_path / "asked").read_text()
