"""Checkpoints on the real Docker Engine: what a user did in one container is there, and what
they deleted stays deleted, in a fresh container restored from the checkpoint."""

from __future__ import annotations

import json
import os
import secrets

import pytest
from support.docker_cli import docker, exec_in
from support.host_ids import workspace_user_host_ids

from benchhub.checkpoints.backends import LocalDirectoryBackend
from benchhub.checkpoints.store import CheckpointStore

IMAGE = "benchhub/jupyterlab:latest"
MOUNTS = ["/data", "/data/project", "/data/mounts"]


WORK = r"""
set -e
mkdir -p /home/jovyan/project/lib
cp -r /usr/lib/python3*/email /home/jovyan/project/lib/
echo 'print("analysis")' > /home/jovyan/project/run.py
chmod 700 /home/jovyan/project/run.py
ln -s project/run.py /home/jovyan/run
ln /home/jovyan/project/run.py /home/jovyan/run.hardlink
head -c 3000000 /dev/urandom > /home/jovyan/project/model.bin
echo 'on the volume' > /data/scratch.txt
"""
AS_ROOT = r"""
set -e
rm /etc/debian_version
rm -rf /etc/apt && mkdir /etc/apt && echo 'deb http://deb.example.org/ x main' > /etc/apt/only
echo '#!/bin/sh' > /usr/local/bin/tool && chmod 4755 /usr/local/bin/tool
"""
CHECK = r"""
cat /home/jovyan/project/run.py
stat -c '%a %U' /home/jovyan/project/run.py /usr/local/bin/tool
readlink /home/jovyan/run
stat -c '%h' /home/jovyan/run.hardlink
ls /home/jovyan/project/lib/email | wc -l
sha256sum /home/jovyan/project/model.bin | cut -c1-64
ls /etc/apt
test -e /etc/debian_version && echo 'deleted file is back' || echo 'deleted file stays deleted'
test -e /data/scratch.txt && echo 'volume content leaked' || echo 'volume content not copied'
"""


def upper_dir(container: str) -> str:
    return json.loads(docker("inspect", container))[0]["GraphDriver"]["Data"]["UpperDir"]


@pytest.fixture
def containers(tmp_path):
    prefix = f"ckpttest-{secrets.token_hex(3)}"
    yield prefix
    ids = docker("ps", "-aq", "--filter", f"name=^{prefix}-", check=False).split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)


def test_a_restored_container_has_the_users_changes_and_not_their_deletions(tmp_path, containers):
    store = CheckpointStore(backend=LocalDirectoryBackend(tmp_path / "store"), racy_window=0)
    volume = tmp_path / "volume"
    volume.mkdir()
    os.chown(volume, *workspace_user_host_ids())  # the container's 1000:100
    src, dst = f"{containers}-src", f"{containers}-dst"
    docker("run", "-d", "--name", src, "-v", f"{volume}:/data", IMAGE, "sleep", "infinity")
    assert exec_in(src, WORK).returncode == 0
    assert exec_in(src, AS_ROOT, user="0").returncode == 0
    before = exec_in(src, CHECK).stdout
    docker("stop", "-t", "1", src)

    manifest = store.create("alice--analysis", upper_dir(src), exclude=MOUNTS)
    docker("create", "--name", dst, IMAGE, "sleep", "infinity")
    store.restore("alice--analysis", manifest.checkpoint_id, upper_dir(dst))
    docker("start", dst)

    after = exec_in(dst, CHECK).stdout.splitlines()
    assert after[0] == 'print("analysis")'
    assert after[1:3] == ["700 jovyan", "4755 root"]
    assert after[3:5] == ["project/run.py", "2"]
    assert after[5:8] == before.splitlines()[5:8]  # library files, model bytes, /etc/apt
    assert after[7] == "only"  # the image's /etc/apt is hidden, as in the original
    assert after[8:] == ["deleted file stays deleted", "volume content not copied"]


def test_a_second_checkpoint_of_a_container_stores_only_what_changed(tmp_path, containers):
    store = CheckpointStore(backend=LocalDirectoryBackend(tmp_path / "store"), racy_window=0)
    src = f"{containers}-src"
    docker("run", "-d", "--name", src, IMAGE, "sleep", "infinity")
    assert (
        exec_in(src, WORK.replace("echo 'on the volume' > /data/scratch.txt", "")).returncode == 0
    )
    docker("stop", "-t", "1", src)
    first = store.create("alice--analysis", upper_dir(src), exclude=MOUNTS)

    docker("start", src)
    assert exec_in(src, "echo 'print(2)' >> /home/jovyan/project/run.py").returncode == 0
    docker("stop", "-t", "1", src)
    second = store.create(
        "alice--analysis", upper_dir(src), exclude=MOUNTS, parent=first.checkpoint_id
    )

    assert second.totals["new_chunks"] == 1  # the edited script; the rest is re-used
    assert second.totals["new_stored_bytes"] < 1000 < first.totals["new_stored_bytes"]
    assert second.totals["files"] == first.totals["files"]
