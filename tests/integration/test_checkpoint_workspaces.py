"""Checkpoints of workspaces on a real hub with real containers (hub prefix "benchckpt").

What a user installed or deleted in a workspace is there after stop and start; a workspace
started as new from an older checkpoint has that state and not what came later; a checkpoint
interrupted by kill -9 leaves no trace but the previous one; a damaged chunk stops a start
from that checkpoint and the message offers the previous good one; the S3 store works the same
against a real S3 HTTP endpoint (moto's server).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from docker_cli import cleanup, docker, exec_in
from hub_harness import HubProcess

PREFIX = "benchckpt"

WORK = r"""
set -e
mkdir -p /home/jovyan/analysis
echo 'print("step 1")' > /home/jovyan/analysis/run.py
head -c 2000000 /dev/urandom > /home/jovyan/analysis/model.bin
ln -s analysis/run.py /home/jovyan/run
echo kept > /data/on-the-volume.txt
"""
CHECK = r"""
cat /home/jovyan/analysis/run.py
sha256sum /home/jovyan/analysis/model.bin | cut -c1-64
readlink /home/jovyan/run
test -e /etc/debian_version && echo 'deleted file is back' || echo 'deleted file stays deleted'
python3 -c 'import benchdemo; print(benchdemo.VALUE)' 2>&1 | tail -1
cat /data/on-the-volume.txt
"""


def demo_wheel() -> bytes:
    """A minimal pure-Python wheel, so the test installs a package without an index."""
    files = {
        "benchdemo/__init__.py": b'VALUE = "installed before the stop"\n',
        "benchdemo-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: benchdemo\n"
        b"Version: 1.0\n",
        "benchdemo-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: benchhub-test\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append("benchdemo-1.0.dist-info/RECORD,,")
    files["benchdemo-1.0.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
    return buffer.getvalue()


def pip_install_demo(hub: HubProcess, user: str, name: str, tmp_path: Path) -> None:
    wheel = tmp_path / "benchdemo-1.0-py3-none-any.whl"
    wheel.write_bytes(demo_wheel())
    container = hub.container_name(user, name)
    docker("cp", str(wheel), f"{container}:/tmp/{wheel.name}")
    done = exec_in(container, f"pip install -q --no-index /tmp/{wheel.name} && rm /tmp/*.whl",
                   user="0")  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    workdir = tmp_path_factory.mktemp(PREFIX)
    h = HubProcess(workdir, prefix=PREFIX)
    cleanup(PREFIX, h.storage_root)
    h.start()
    yield h
    h.stop()
    cleanup(PREFIX, h.storage_root)


def checkpoints_on_disk(hub: HubProcess, user: str, name: str) -> list[dict]:
    """The workspace's manifests in the local store, oldest first (read like an operator)."""
    record = json.loads((hub.storage_root / user / name / "checkpoints.json").read_text())
    folder = hub.workdir / "state" / "checkpoints" / "manifests" / record["workspace_id"]
    manifests = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return sorted(manifests, key=lambda m: m["created"])


def test_stop_then_start_keeps_installs_and_files_and_deletions_stay_deleted(hub, tmp_path):
    hub.ensure_user("ada")
    hub.start_workspace("ada", "lab")
    container = hub.container_name("ada", "lab")
    assert exec_in(container, WORK).returncode == 0
    assert exec_in(container, "rm /etc/debian_version", user="0").returncode == 0
    pip_install_demo(hub, "ada", "lab", tmp_path)
    before = exec_in(container, CHECK).stdout.splitlines()
    assert before[3:5] == ["deleted file stays deleted", "installed before the stop"]

    t0 = time.monotonic()
    hub.stop_workspace("ada", "lab")
    stop_took = time.monotonic() - t0
    (manifest,) = checkpoints_on_disk(hub, "ada", "lab")
    assert manifest["kind"] == "automatic" and manifest["reason"] == "on stop"
    paths = {e["path"] for e in manifest["entries"]}
    assert "home/jovyan/analysis/model.bin" in paths and "etc/debian_version" in paths
    assert not any(p == "data" or p.startswith("data/") for p in paths), "mounted data copied"

    hub.start_workspace("ada", "lab")
    after = exec_in(hub.container_name("ada", "lab"), CHECK).stdout.splitlines()
    assert after == before
    assert f"Restoring checkpoint {manifest['checkpoint']}" in hub.log_path.read_text()
    print(f"stop with checkpoint: {stop_took:.1f} s")


def workspace_id(hub: HubProcess, user: str, name: str) -> str:
    record = json.loads((hub.storage_root / user / name / "checkpoints.json").read_text())
    return record["workspace_id"]


def immutable(path: Path, on: bool) -> None:
    """chattr +i: even root cannot create or delete entries in ``path`` (a real EPERM)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True)


def test_a_failed_checkpoint_on_stop_keeps_the_container_until_a_start_saves_it(hub):
    hub.ensure_user("bob")
    hub.start_workspace("bob", "fragile")
    container = hub.container_name("bob", "fragile")
    assert exec_in(container, "echo 'only in the container' > ~/notes.txt").returncode == 0
    manifests = hub.workdir / "state" / "checkpoints" / "manifests"
    blocked = manifests / workspace_id(hub, "bob", "fragile")
    immutable(blocked, True)  # the store cannot publish this workspace's manifest
    try:
        hub.api("DELETE", "/users/bob/servers/fragile")  # the hub answers 204 all the same
        status = hub.wait_for_stopped("bob", "fragile")
        assert status["status"] == "errored"
        assert status["reason"].startswith("checkpoint on stop failed: "), status
        assert "Operation not permitted" in status["reason"]
        kept = docker("ps", "-a", "--format", "{{.Names}}", "--filter",
                      f"name=^{container}.unsaved").split()  # fmt: skip
        assert len(kept) == 1, "the stopped container was not kept"

        # while the store still fails, a start fails too and the container stays
        hub.api("POST", "/users/bob/servers/fragile")  # fails: see the status
        failed = hub.wait_for_stopped("bob", "fragile")
        assert "the last stop's checkpoint still cannot be saved" in failed["reason"], failed
        assert docker("ps", "-aq", "--filter", f"name=^{kept[0]}$").strip()
    finally:
        immutable(blocked, False)

    hub.start_workspace("bob", "fragile")  # saves the kept container's changes, restores them
    restored = exec_in(hub.container_name("bob", "fragile"), "cat ~/notes.txt")
    assert restored.stdout == "only in the container\n"
    assert not docker("ps", "-aq", "--filter", f"name=^{kept[0]}$").strip()
    (manifest,) = checkpoints_on_disk(hub, "bob", "fragile")
    assert manifest["reason"] == "on stop (saved at the next start)"
