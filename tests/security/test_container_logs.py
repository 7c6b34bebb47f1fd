"""What a workspace prints cannot fill the host's disk.

A workspace's output (its server and kernels write to the container's stdout) goes to the
engine's log file on the host; without a limit, a notebook printing in a loop filled the disk
that every workspace shares. Docker rotates it at 10 MB and keeps 3 files.
"""

from __future__ import annotations

import json
import os

from support.docker_cli import docker, exec_in
from support.waiting import wait

MB = 1000 * 1000


def log_files(container: str) -> list[str]:
    path = json.loads(docker("inspect", container))[0]["LogPath"]
    folder, name = os.path.split(path)
    return [os.path.join(folder, f) for f in os.listdir(folder) if f.startswith(name)]


def test_a_workspace_printing_60_mb_keeps_at_most_30_mb_of_logs_on_the_host(hub):
    hub.ensure_user("loud")
    hub.start_workspace("loud", "printer")
    container = hub.container_name("loud", "printer")
    try:
        # as the workspace user, into the output of its own server (PID 1's stdout)
        printed = exec_in(
            container,
            "head -c 60000000 /dev/zero | tr '\\0' x | fold -w 1000 > /proc/1/fd/1; echo done",
        )
        assert printed.stdout.strip() == "done", printed.stderr
        # the engine writes the log asynchronously; once it rotated, the output went there ...
        files = wait(
            lambda: log_files(container),
            30,
            "the log rotated into three files",
            until=lambda found: len(found) >= 3,
        )
        sizes = [os.path.getsize(f) for f in files]
        assert len(files) <= 3 and sum(sizes) <= 31 * MB, sizes  # ... and was capped
        assert hub.workspaces("loud")["printer"]["status"] == "running"  # printing is allowed
    finally:
        hub.stop_workspace("loud", "printer")
