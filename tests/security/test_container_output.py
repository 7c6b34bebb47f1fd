"""What a command prints in a cluster or workspace container is read bounded in size and time.

The clusters service runs commands in the manager (qstat's XML holds the user's job names),
in members and in the user's own workspace (is ``qsub`` there?). A program there can print
without end: the service used to collect everything ``docker exec`` returned. It now reads at
most a limit, and stops reading at a deadline, and such a command counts as failed with the
reason. A real container on the real engine (the base image), no hub.
"""

from __future__ import annotations

import secrets
import time

import pytest
from support.docker_cli import docker

from benchhub.docker_engine import DockerEngine

MIB = 1024**2


@pytest.fixture(scope="module")
def container():
    name = f"benchsec-exec-{secrets.token_hex(3)}"
    docker(
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "none",
        "--user",
        "1000:100",
        "benchhub/base:bookworm",
        "sleep",
        "600",
    )
    yield name
    docker("rm", "-f", name, check=False)


async def test_a_command_that_prints_without_end_is_cut_at_the_limit(container):
    engine = DockerEngine(threads=2, timeout=30)
    try:
        result = await engine.exec(container, ["sh", "-c", "yes x"], max_output=1 * MIB)
    finally:
        engine.close()
    assert not result.ok and result.exit_code == -1
    assert len(result.output) <= 1 * MIB + 100
    assert result.output.endswith("[output cut at 1048576 bytes]")


async def test_a_command_that_trickles_is_cut_at_the_deadline(container):
    engine = DockerEngine(threads=2, timeout=3)
    started = time.monotonic()
    try:
        result = await engine.exec(container, ["sh", "-c", "while :; do echo x; sleep 0.2; done"])
    finally:
        engine.close()
    assert not result.ok and "still printing when its time was up" in result.output
    assert time.monotonic() - started < 15


async def test_an_ordinary_command_gives_its_exit_code_and_whole_output(container):
    engine = DockerEngine(threads=2, timeout=30)
    try:
        ok = await engine.exec(container, ["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' y"])
        failed = await engine.exec(container, ["sh", "-c", "echo no >&2; exit 3"])
        who = await engine.exec(container, ["id", "-u"], user="1000:100")
    finally:
        engine.close()
    assert ok.ok and ok.output == "y" * 300000
    assert (failed.exit_code, failed.output) == (3, "no\n")
    assert who.output.strip() == "1000"
