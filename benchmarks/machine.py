"""What a benchmark ran on and when, for the line above its table: figures are only comparable
on one machine, so every report names it."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import UTC, datetime

__all__ = ["describe", "now"]


def now() -> str:
    """The current time, e.g. ``2026-12-01 10:15 UTC``."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def describe() -> str:
    """e.g. ``Debian GNU/Linux 12 (bookworm), x86_64, 2 cores, 23.4 GiB, Docker 20.10.24
    (overlay2, cgroup v1)``."""
    os_name = platform.system()
    try:
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        os_name = fields.get("PRETTY_NAME", os_name).strip('"')
    except OSError:
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    engine_format = "{{.ServerVersion}} ({{.Driver}}, cgroup v{{.CgroupVersion}})"
    engine = subprocess.run(
        ["docker", "info", "--format", engine_format], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    return (
        f"{os_name}, {platform.machine()}, {os.cpu_count()} cores, {memory_gib:.1f} GiB, "
        f"Docker {engine or 'unknown'}"
    )
