"""Stopping BenchHub is quick and clean: every hub service ends within a second of its signal,
and the hub, stopped as Ctrl-C on ``make run`` or a service manager stops it, ends within a few
seconds without a traceback (issue 12: Ctrl-C took 34 s, with a traceback in between).

JupyterHub stops its managed services one after another: SIGINT, then after
``interrupt_timeout`` (10 s) SIGTERM, then SIGKILL, each time waiting for the process to end; a
service slow to end makes every shutdown slow. Services run in sessions of their own, so
Ctrl-C reaches only the hub, which then signals them. The hubs here log at debug level, so the
log says when the hub signalled each service ("Interrupting <pid>"); the test watches the
processes from outside every 10 ms.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from datetime import datetime
from pathlib import Path

import pytest
from support.docker_cli import cleanup
from support.hub_harness import HubProcess
from support.waiting import wait

PREFIX = "benchstop"
SERVICES = ("egress", "lifecycle", "checkpoints", "clusters")
SERVICE_END_S = 1.0  # each service, from its signal to its end
HUB_END_S = 5.0  # the hub, from Ctrl-C to its exit, its four services stopped one by one
INTERRUPTING = re.compile(r"^\[D (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) .*\] Interrupting (\d+)$")


def ended(pid: int) -> bool:
    """Whether process ``pid`` has ended (gone, or a zombie its parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


def service_ports(hub: HubProcess) -> dict[str, int]:
    return {
        "egress": hub.egress_port,
        "lifecycle": hub.lifecycle_port,
        "checkpoints": hub.checkpoints_port,
        "clusters": hub.clusters_port,
    }


def services_serving(hub: HubProcess, names=SERVICES, timeout: float = 90) -> dict[str, int]:
    """``{service: pid}`` once each of ``names`` runs and listens on its port (past its
    start-up: a signal is then handled as it will be in operation)."""
    ports = service_ports(hub)

    def serving() -> dict[str, int | None]:
        pids = {name: hub.service_pid(name) for name in names}
        return {name: pid if pid and listening(ports[name]) else None for name, pid in pids.items()}

    return wait(
        serving,
        timeout,
        f"{', '.join(names)} run and listen",
        until=lambda pids: all(pids.values()),
    )


def debug_hub(workdir: Path) -> HubProcess:
    return HubProcess(workdir, prefix=PREFIX, extra_config="c.JupyterHub.log_level = 'DEBUG'")


@pytest.fixture
def stoppable_hub(tmp_path):
    hub = debug_hub(tmp_path)
    cleanup(PREFIX, hub.storage_root)
    hub.start()
    yield hub
    hub.stop()
    cleanup(PREFIX, hub.storage_root)


@pytest.fixture(scope="module")
def running_hub(tmp_path_factory):
    hub = debug_hub(tmp_path_factory.mktemp(PREFIX))
    cleanup(PREFIX, hub.storage_root)
    hub.start()
    yield hub
    hub.stop()
    cleanup(PREFIX, hub.storage_root)


def signalled_at(log: str) -> dict[int, float]:
    """``{pid: epoch}`` of the hub's "Interrupting <pid>" lines (its local time, ms)."""
    found = {}
    for line in log.splitlines():
        if m := INTERRUPTING.match(line):
            when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            found[int(m.group(2))] = when
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stopping_the_hub_ends_each_service_within_a_second_and_the_hub_in_seconds(
    stoppable_hub, sig
):
    hub = stoppable_hub
    pids = services_serving(hub)
    log_start = hub.log_path.stat().st_size
    sent = time.time()
    os.killpg(hub.proc.pid, sig)  # the hub's process group, as the terminal's Ctrl-C does
    ended_at: dict[int, float] = {}

    def watch() -> bool:
        now = time.time()
        for pid in pids.values():
            if pid not in ended_at and ended(pid):
                ended_at[pid] = now
        return len(ended_at) == len(pids) and hub.proc.poll() is not None

    wait(watch, 60, "the services and the hub end", step=0.01)
    hub_end = time.time()
    with open(hub.log_path, errors="replace") as log_file:
        log_file.seek(log_start)
        log = log_file.read()
    signalled = signalled_at(log)
    took = {
        name: round(ended_at[pid] - signalled[pid], 3)
        for name, pid in pids.items()
        if pid in signalled
    }
    print(f"MEASURED signal -> end per service {took}; hub {hub_end - sent:.2f} s")
    assert set(took) == set(SERVICES), f"the hub did not interrupt every service: {log}"
    slow = {name: s for name, s in took.items() if s > SERVICE_END_S}
    assert not slow, f"services slower than {SERVICE_END_S} s to end: {slow}"
    assert hub_end - sent < HUB_END_S, f"the hub took {hub_end - sent:.1f} s:\n{log}"
    assert hub.proc.returncode == 0
    assert "Traceback" not in log, log


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_ends_within_a_second_of_sigterm(running_hub, service):
    pid = services_serving(running_hub, [service])[service]
    os.kill(pid, signal.SIGTERM)
    started = time.monotonic()
    wait(lambda: ended(pid), SERVICE_END_S, f"the {service} service ended", step=0.01)
    print(f"MEASURED {service}: SIGTERM -> end {time.monotonic() - started:.3f} s")
