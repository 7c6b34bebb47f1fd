"""Checkpoints of workspaces on a real hub with real containers (hub prefix "benchckpt").

What a user installed or deleted in a workspace is there after stop and start; a workspace
started as new from an older checkpoint has that state and not what came later; a checkpoint
interrupted by kill -9 leaves no trace but the previous one; a damaged chunk stops a start
from that checkpoint and the message offers the previous good one; the S3 store works the same
against a real S3 HTTP endpoint (moto's server).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import signal
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import boto3
import pytest
import requests
from moto.server import ThreadedMotoServer
from support.docker_cli import cleanup, docker, exec_in
from support.hub_harness import PASSWORD, TOKEN, HubProcess, free_port
from support.waiting import wait

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
    done = exec_in(
        container, f"pip install -q --no-index /tmp/{wheel.name} && rm /tmp/*.whl", user="0"
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    workdir = tmp_path_factory.mktemp(PREFIX)
    h = HubProcess(
        workdir,
        prefix=PREFIX,
        env_overrides={
            "BENCHHUB_CHECKPOINTS_PORT": str(free_port()),
            "BENCHHUB_CHECKPOINT_ORPHAN_GRACE": "0",
        },
    )
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

    # a renamed workspace keeps its checkpoints (its record moves with its directory)
    hub.stop_workspace("ada", "lab")
    r = hub.api("PATCH", "/users/ada/servers/lab", {"name": "lab2"})
    assert r.ok, r.text
    hub.start_workspace("ada", "lab2")
    assert exec_in(hub.container_name("ada", "lab2"), CHECK).stdout.splitlines() == before
    hub.stop_workspace("ada", "lab2")


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
        kept = docker(
            "ps", "-a", "--format", "{{.Names}}", "--filter", f"name=^{container}.unsaved"
        ).split()
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


def api(hub: HubProcess, method: str, path: str, body=None, token: str = TOKEN):
    """Call the checkpoints service's API through the proxy."""
    return requests.request(
        method,
        f"{hub.url}/services/checkpoints/api/{path.lstrip('/')}",
        json=body,
        headers={"Authorization": f"token {token}"},
        timeout=120,
    )


def user_token(hub: HubProcess, user: str) -> str:
    hub.ensure_user(user)
    r = hub.api("POST", f"/users/{user}/tokens", {"expires_in": 900})
    assert r.ok, r.text
    return r.json()["token"]


def write(hub, user, name, script: str, as_user: str | None = None) -> str:
    done = exec_in(hub.container_name(user, name), f"set -e\n{script}", user=as_user)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_start_as_new_from_an_older_checkpoint_has_that_state_and_not_later_changes(hub):
    token = user_token(hub, "cyd")
    hub.start_workspace("cyd", "source", {"description": "the original"})
    write(hub, "cyd", "source", "echo v1 > ~/version.txt; echo early > ~/early.txt")
    hub.stop_workspace("cyd", "source")
    hub.start_workspace("cyd", "source")
    write(hub, "cyd", "source", "echo v2 > ~/version.txt; rm ~/early.txt; touch ~/late.txt")
    hub.stop_workspace("cyd", "source")

    listed = api(hub, "GET", "workspaces/cyd/source/checkpoints", token=token)
    assert listed.ok, listed.text
    newer, older = listed.json()["checkpoints"]
    assert newer["parent"] == older["id"] and newer["current"] and not older["current"]
    assert newer["reason"] == older["reason"] == "on stop"
    assert older["size_bytes"] > 0 and older["stored_bytes"] > 0 and older["files"] >= 2

    # names: spaces become underscores, a clash is a 409, a bad name a 400
    path = f"workspaces/cyd/source/checkpoints/{older['id']}"
    r = api(hub, "PATCH", path, {"name": "first version"}, token=token)
    assert r.ok and r.json()["name"] == "first_version" and r.json()["kind"] == "named", r.text
    clash = api(
        hub,
        "PATCH",
        f"workspaces/cyd/source/checkpoints/{newer['id']}",
        {"name": "first_version"},
        token=token,
    )
    assert clash.status_code == 409 and "first_version" in clash.json()["message"]
    bad = api(hub, "PATCH", path, {"name": "../etc"}, token=token)
    assert bad.status_code == 400 and "must be" in bad.json()["message"]

    # another user may not look, let alone copy
    eve = user_token(hub, "eve")
    assert api(hub, "GET", "workspaces/cyd/source/checkpoints", token=eve).status_code == 403
    assert api(hub, "POST", f"{path}/start-as-new", {"name": "mine"}, token=eve).status_code == 403

    # the image template is fixed; an existing name is a 409
    refused = api(
        hub,
        "POST",
        f"{path}/start-as-new",
        {"name": "copy", "user_options": {"image": "missing"}},
        token=token,
    )
    assert refused.status_code == 400 and refused.json()["message"].startswith("image:")
    taken = api(hub, "POST", f"{path}/start-as-new", {"name": "source"}, token=token)
    assert taken.status_code == 409
    r = api(
        hub,
        "POST",
        f"{path}/start-as-new",
        {"name": "copy", "user_options": {"resource_model": "test-medium"}},
        token=token,
    )
    assert r.status_code == 201, r.text
    hub.wait_for("cyd", "copy", "running")
    state = write(hub, "cyd", "copy", "cat ~/version.txt; ls ~ | grep -E 'early|late' || true")
    assert state.split() == ["v1", "early.txt"]
    options = hub.workspaces("cyd")["copy"]["user_options"]
    assert options["resource_model"] == "test-medium"
    assert "first_version" in options["description"]

    # the copy's history starts at the origin checkpoint; later changes stay apart
    write(hub, "cyd", "copy", "echo copy-only > ~/version.txt")
    hub.stop_workspace("cyd", "copy")
    copy = api(hub, "GET", "workspaces/cyd/copy/checkpoints", token=token).json()
    assert copy["origin"]["checkpoint"] == older["id"]
    assert copy["checkpoints"][-1]["origin"] == {
        "workspace": workspace_id(hub, "cyd", "source"),
        "checkpoint": older["id"],
    }
    hub.start_workspace("cyd", "source")
    assert write(hub, "cyd", "source", "cat ~/version.txt") == "v2\n"
    hub.stop_workspace("cyd", "source")

    # deleting the origin deletes its checkpoints at the next cleanup, not the chunks the
    # copy shares: the copy still restores
    source_id = workspace_id(hub, "cyd", "source")
    assert hub.api("DELETE", "/users/cyd/servers/source", {"remove": True}).status_code == 204
    assert api(hub, "POST", "gc", token=token).status_code == 403  # admins only
    report = api(hub, "POST", "gc").json()
    assert report["deleted_workspaces"] == [source_id], report
    hub.start_workspace("cyd", "copy")
    assert write(hub, "cyd", "copy", "cat ~/version.txt; cat ~/early.txt") == "copy-only\nearly\n"
    hub.stop_workspace("cyd", "copy")


def test_the_page_is_in_the_services_menu_and_lists_a_users_checkpoints(hub):
    browser = requests.Session()
    browser.get(f"{hub.url}/hub/login")  # sets the _xsrf cookie the form posts back
    form = {"username": "cyd", "password": PASSWORD, "_xsrf": browser.cookies["_xsrf"]}
    assert browser.post(f"{hub.url}/hub/login", data=form).ok
    home = browser.get(f"{hub.url}/hub/home").text
    assert "/services/checkpoints/" in home  # the Services menu entry
    page = browser.get(f"{hub.url}/services/checkpoints/")  # OAuth without a confirm page
    assert page.ok and "Checkpoints of cyd" in page.text
    assert "first_version" in page.text and "start as new" in page.text


def test_kill_9_during_a_checkpoint_lists_nothing_partial_and_the_previous_one_restores(hub):
    token = user_token(hub, "kim")
    hub.start_workspace("kim", "big")
    write(hub, "kim", "big", "echo before > ~/state.txt")
    r = api(hub, "POST", "workspaces/kim/big/checkpoints", {"name": "baseline"}, token=token)
    assert r.status_code == 201, r.text
    baseline = r.json()
    write(hub, "kim", "big", "echo after > ~/state.txt; head -c 250000000 /dev/urandom > ~/big")

    store = hub.workdir / "state" / "checkpoints"
    chunks_before = sum(1 for _ in (store / "chunks").rglob("*"))

    def take_checkpoint():
        with contextlib.suppress(requests.RequestException):  # its process is killed
            api(hub, "POST", "workspaces/kim/big/checkpoints", {}, token=token)

    taking = threading.Thread(target=take_checkpoint)
    taking.start()
    wait(
        lambda: sum(1 for _ in (store / "chunks").rglob("*")) > chunks_before + 20,
        60,
        "the checkpoint is storing chunks of ~/big",
        step=0.05,
    )
    pid = hub.service_pid("checkpoints")
    os.kill(pid, signal.SIGKILL)
    taking.join(60)

    wait(
        lambda: hub.service_pid("checkpoints") not in (None, pid),
        60,
        "the hub starts the service again",
        1,
    )
    listed = wait(
        lambda: api(hub, "GET", "workspaces/kim/big/checkpoints", token=token),
        30,
        "the service answers again",
        0.5,
    ).json()
    assert [c["id"] for c in listed["checkpoints"]] == [baseline["id"]], "a partial one listed"
    assert [m["checkpoint"] for m in checkpoints_on_disk(hub, "kim", "big")] == [baseline["id"]]

    # the previous checkpoint restores: choose it for the next start from the service
    write(hub, "kim", "big", "rm ~/big")
    hub.stop_workspace("kim", "big")
    r = api(
        hub,
        "POST",
        f"workspaces/kim/big/checkpoints/{baseline['id']}/restore-at-next-start",
        token=token,
    )
    assert r.ok, r.text
    hub.start_workspace("kim", "big")
    assert write(hub, "kim", "big", "cat ~/state.txt; ls ~") == "before\nstate.txt\n"
    assert hub.workspaces("kim")["big"]["user_options"]["restore_checkpoint"] == ""  # once
    hub.stop_workspace("kim", "big")


def test_a_damaged_chunk_stops_the_start_and_the_message_offers_the_previous_good_one(hub):
    token = user_token(hub, "dan")
    hub.start_workspace("dan", "lab")
    write(hub, "dan", "lab", "echo one > ~/one.txt")
    hub.stop_workspace("dan", "lab")
    hub.start_workspace("dan", "lab")
    write(hub, "dan", "lab", "head -c 3000000 /dev/urandom > ~/two.bin")
    hub.stop_workspace("dan", "lab")
    good, bad = checkpoints_on_disk(hub, "dan", "lab")
    (two,) = [e for e in bad["entries"] if e["path"] == "home/jovyan/two.bin"]
    key = two["chunks"][0]
    (hub.workdir / "state" / "checkpoints" / "chunks" / key[:2] / key[2:]).write_bytes(b"rot")

    hub.api("POST", "/users/dan/servers/lab")  # refused: see the status
    status = hub.wait_for_stopped("dan", "lab")
    assert status["status"] == "errored", status
    assert f"checkpoint {bad['checkpoint']} is damaged" in status["reason"]
    assert "/home/jovyan/two.bin" in status["reason"]
    assert f"restore_checkpoint '{good['checkpoint']}'" in status["reason"], status["reason"]

    checks = {
        c["checkpoint"]: api(
            hub, "POST", f"workspaces/dan/lab/checkpoints/{c['checkpoint']}/verify", token=token
        ).json()
        for c in (good, bad)
    }
    assert checks[good["checkpoint"]]["ok"] is True
    assert checks[bad["checkpoint"]]["ok"] is False
    assert "two.bin" in checks[bad["checkpoint"]]["problem"]

    hub.start_workspace("dan", "lab", {"restore_checkpoint": good["checkpoint"]})
    assert write(hub, "dan", "lab", "cat ~/one.txt; ls ~") == "one\none.txt\n"
    hub.stop_workspace("dan", "lab")


# ---- the S3 store, against a real S3 HTTP endpoint ----------------------------------------------

S3_PREFIX = "benchckpts3"
BUCKET = "benchhub-checkpoints"
# the service gives up on S3 quickly here, so the outage below shows within seconds
FAST_S3_FAILURE = """
for service in c.JupyterHub.services:
    if service["name"] == "checkpoints":
        service["command"] += ["--S3Backend.operation_attempts=1", "--S3Backend.max_attempts=1",
                               "--S3Backend.connect_timeout=2"]
"""


@pytest.fixture(scope="module")
def moto():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=BUCKET)
    state = {"server": server, "endpoint": endpoint, "port": port}
    yield state
    state["server"].stop()


@pytest.fixture(scope="module")
def s3_hub(tmp_path_factory, moto):
    workdir = tmp_path_factory.mktemp(S3_PREFIX)
    h = HubProcess(
        workdir,
        prefix=S3_PREFIX,
        extra_config=FAST_S3_FAILURE,
        env_overrides={
            "BENCHHUB_CHECKPOINTS_PORT": str(free_port()),
            "BENCHHUB_CHECKPOINT_S3_BUCKET": BUCKET,
            "BENCHHUB_CHECKPOINT_S3_PREFIX": "site-a",
            "BENCHHUB_CHECKPOINT_S3_ENDPOINT": moto["endpoint"],
            "BENCHHUB_CHECKPOINT_INTERVAL": "4",
            "BENCHHUB_CHECKPOINT_TICK": "1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        },
    )
    cleanup(S3_PREFIX, h.storage_root)
    h.start()
    yield h
    h.stop()
    cleanup(S3_PREFIX, h.storage_root)


def test_s3_store_round_trip_and_periodic_checkpoints_survive_an_outage(s3_hub, moto):
    hub = s3_hub
    token = user_token(hub, "sam")
    hub.start_workspace("sam", "cloud")
    write(hub, "sam", "cloud", WORK)
    write(hub, "sam", "cloud", "rm /etc/debian_version", as_user="0")
    before = write(hub, "sam", "cloud", CHECK)

    def checkpoints():
        return api(hub, "GET", "workspaces/sam/cloud/checkpoints", token=token).json()

    wait(
        lambda: any(c["reason"] == "periodic" for c in checkpoints()["checkpoints"]),
        30,
        "a periodic checkpoint in the bucket",
        0.5,
    )

    def record():
        (row,) = api(hub, "GET", "workspaces", token=token).json()["workspaces"]
        return row

    moto["server"].stop()  # S3 goes away: periodic checkpoints fail, the workspace runs on
    try:
        error = wait(lambda: record()["periodic_error"], 30, "the failure is shown", 0.5)
        assert error["message"].startswith("periodic checkpoint failed: "), error
        assert hub.workspaces("sam")["cloud"]["status"] == "running"
        assert write(hub, "sam", "cloud", "echo still working") == "still working\n"
    finally:
        moto["server"] = ThreadedMotoServer(
            ip_address="127.0.0.1", port=moto["port"], verbose=False
        )
        moto["server"].start()
    wait(lambda: record()["periodic_error"] is None, 30, "the next one works again", 0.5)

    hub.stop_workspace("sam", "cloud")
    hub.start_workspace("sam", "cloud")
    assert write(hub, "sam", "cloud", CHECK) == before
    keys = [
        o["Key"]
        for o in boto3.client(
            "s3",
            endpoint_url=moto["endpoint"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).list_objects_v2(Bucket=BUCKET, Prefix="site-a/manifests/")["Contents"]
    ]
    assert any(k.startswith(f"site-a/manifests/{workspace_id(hub, 'sam', 'cloud')}/") for k in keys)
    hub.stop_workspace("sam", "cloud")
