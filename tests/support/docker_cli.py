"""Docker CLI helpers for tests and benchmarks: run, exec, and clean up after a test hub."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from benchhub import firewall


def docker(*args: str, check: bool = True) -> str:
    """Run the docker CLI; return stdout."""
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)
    if check and out.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {out.stderr}")
    return out.stdout


def exec_in(container: str, script: str, user: str | None = None) -> subprocess.CompletedProcess:
    """Run a shell script inside a workspace container (as its own user unless given)."""
    argv = ["docker", "exec"] + (["-u", user] if user else []) + [container, "sh", "-c", script]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def container_names(name_start: str, check: bool = True) -> list[str]:
    """The names of every container, running or not, whose name starts with ``name_start``."""
    return docker(
        "ps", "-a", "--format", "{{.Names}}", "--filter", f"name=^{name_start}", check=check
    ).split()


def container_logs(prefix: str, tail: int = 30) -> dict[str, str]:
    """``{"docker logs <name>": its last lines}`` of every container whose name starts with
    ``<prefix>-`` (what explains a failed test; the daemons in them log to stderr too)."""
    names = container_names(f"{prefix}-", check=False)
    found = {}
    for name in names:
        out = subprocess.run(
            ["docker", "logs", "--tail", str(tail), name],
            capture_output=True,
            text=True,
            timeout=30,
        )
        found[f"docker logs {name}"] = out.stdout + out.stderr
    return found


async def network_ids() -> list[str]:
    """The ids of every Docker network there is."""
    return (await asyncio.to_thread(docker, "network", "ls", "-q", "--no-trunc")).split()


def remove_network(name: str) -> None:
    """Remove a Docker network and the host firewall rules BenchHub made for its bridge (a
    network removed with ``docker network rm`` alone leaves its ``BENCH-*`` chains behind)."""
    found = docker(
        "network", "ls", "-q", "--no-trunc", "--filter", f"name=^{name}$", check=False
    ).split()
    for net_id in found:
        asyncio.run(firewall.remove(net_id))
        docker("network", "rm", net_id, check=False)
    asyncio.run(firewall.sweep(network_ids))  # and of any bridge gone without its rules


def cleanup(prefix: str, storage_root: Path) -> None:
    """Remove what a test hub with this prefix left: containers, networks, firewall, mounts."""
    ids = docker("ps", "-aq", "--filter", f"name=^{prefix}-", check=False).split()
    if ids:
        docker("rm", "-f", *ids, check=False)
    ours = docker(
        "network", "ls", "-q", "--no-trunc", "--filter", f"name=^{prefix}-", check=False
    ).split()
    for net_id in ours:  # every bridge's host firewall, also of cluster networks
        asyncio.run(firewall.remove(net_id))
    for net in (f"{prefix}-open", f"{prefix}-restricted", f"{prefix}-egress-out"):
        docker("network", "rm", net, check=False)
    asyncio.run(firewall.sweep(network_ids))  # and of any bridge gone without its rules
    # workspaces' /data and (the harness's layout: <workdir>/state/projects) projects' data
    for root in (storage_root, storage_root.parent / "state" / "projects"):
        if not root.exists():
            continue
        mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True)
        for target in mounts.stdout.split():
            if target.startswith(str(root)):
                subprocess.run(["umount", "-l", target], check=False)
        for image in root.rglob("data.ext4"):
            loops = subprocess.run(
                ["losetup", "-j", str(image), "-O", "NAME", "-n"], capture_output=True, text=True
            ).stdout.split()
            for loop in loops:
                subprocess.run(["losetup", "-d", loop], check=False)
