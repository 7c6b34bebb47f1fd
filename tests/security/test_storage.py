"""One user cannot fill the host's disk (issue 11, hole 5), on a real hub with real volumes.

Hub "benchstor" runs with a per-user storage quota of 3 GB (BENCHHUB_STORAGE_USER_QUOTA), a
named-checkpoint quota of 20 MB, a resource model "tiny-disk" whose writable layer may hold
0.25 GB, and storage_max_gb raised so that only admission stands between a request and the
host. Each abuse is next to the legitimate use that must keep working. Volumes are sparse: a
refused request would have cost no disk space, an admitted one costs what the test writes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time

import pytest
import requests
from support.cluster_harness import (
    cluster_env,
    remove_cluster_leftovers,
)
from support.docker_cli import cleanup, docker, exec_in
from support.hub_harness import TEST_MODELS, TOKEN, HubProcess
from support.waiting import wait

PREFIX = "benchstor"
GIB, MIB = 1024**3, 1024**2
QUOTA_GB = 3
DISK_GB = 0.25
NAMED_QUOTA_MB = 20
MODELS = {**TEST_MODELS, "tiny-disk": {"cpus": 0.5, "memory_gb": 0.5, "disk_gb": DISK_GB}}


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    workdir = tmp_path_factory.mktemp(PREFIX)
    scratch = workdir / "scratch"
    h = HubProcess(
        workdir,
        prefix=PREFIX,
        extra_config=f"""
c.BenchSpawner.resource_models = {json.dumps(MODELS)}
c.BenchSpawner.storage_max_gb = 10**7  # only admission stands between a request and the host
c.WritableLayerWatch.max_interval = 5
""",
        env_overrides={
            "BENCHHUB_STORAGE_USER_QUOTA": str(QUOTA_GB),
            "BENCHHUB_CHECKPOINT_NAMED_QUOTA_GB": str(NAMED_QUOTA_MB / 1024),
            **cluster_env(scratch, "10.239.0.0/20"),
        },
    )
    h.scratch = scratch
    cleanup(PREFIX, h.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)
    h.start()
    yield h
    h.stop()
    cleanup(PREFIX, h.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)
    # what the tests wrote (random, so stored in full): not kept with pytest's old temp dirs
    shutil.rmtree(workdir / "state" / "checkpoints", ignore_errors=True)
    shutil.rmtree(h.storage_root, ignore_errors=True)


def refused(r: requests.Response, field: str) -> str:
    """The message of a 400 that names ``field``."""
    assert r.status_code == 400, (r.status_code, r.text)
    message = r.json()["message"]
    assert message.startswith(f"{field}: ") or f"; {field}: " in message, message
    return message


def image_gb(hub: HubProcess, user: str, name: str) -> float | None:
    image = hub.storage_root / user / name / "data.ext4"
    return image.stat().st_size / GIB if image.exists() else None


def nothing_created(hub: HubProcess, user: str, name: str) -> None:
    assert name not in hub.workspaces(user)
    assert not (hub.storage_root / user / name).exists()


# ---- /data: the host's capacity and the user's quota -------------------------------------


def test_a_data_volume_larger_than_the_host_has_free_is_a_400_saying_what_is_free(hub):
    hub.ensure_user("fay")
    hub.storage_root.mkdir(parents=True, exist_ok=True)
    st = os.statvfs(hub.storage_root)
    free_gb = st.f_bavail * st.f_frsize / GIB
    r = hub.api(
        "POST", "/users/fay/servers/huge", {"user_options": {"storage_gb": int(free_gb) + 50}}
    )
    message = refused(r, "storage_gb")
    shown = float(
        re.search(
            r"only ([\d.]+) GB is free for workspace and cluster storage on "
            r"this host",
            message,
        ).group(1)
    )
    assert shown <= free_gb + 1, message  # what is free here, less the host's reserve
    assert "choose at most" in message
    nothing_created(hub, "fay", "huge")

    hub.start_workspace("fay", "small", {"storage_gb": 1})  # what fits still starts
    assert image_gb(hub, "fay", "small") == 1
    hub.stop_workspace("fay", "small")


def test_over_the_user_quota_is_a_400_saying_what_is_left_and_others_still_get_theirs(hub):
    hub.ensure_user("quinn")
    hub.start_workspace("quinn", "first", {"storage_gb": 2})
    hub.stop_workspace("quinn", "first")  # stopped, its /data stays allocated
    r = hub.api("POST", "/users/quinn/servers/second", {"user_options": {"storage_gb": 2}})
    message = refused(r, "storage_gb")
    assert (
        "quinn's storage quota is 3 GB, of which 2 GB is allocated, so 1 GB is left; "
        "choose at most 1 GB"
    ) in message
    nothing_created(hub, "quinn", "second")

    hub.start_workspace("quinn", "second", {"storage_gb": 1})  # within the quota
    hub.stop_workspace("quinn", "second")
    hub.ensure_user("rex")
    hub.start_workspace("rex", "mine", {"storage_gb": 2})  # quinn's use is not rex's
    hub.stop_workspace("rex", "mine")


def test_growing_data_past_the_quota_is_refused_at_the_edit_and_again_at_the_restart(hub):
    hub.ensure_user("gus")
    hub.start_workspace("gus", "grow", {"storage_gb": 1})
    hub.stop_workspace("gus", "grow")
    r = hub.api("PATCH", "/users/gus/servers/grow", {"user_options": {"storage_gb": 5}})
    assert "growing /data from 1 GB to 5 GB (4 GB more) does not fit" in refused(r, "storage_gb")
    assert hub.workspaces("gus")["grow"]["user_options"]["storage_gb"] == 1  # unchanged

    # an edit that fits now, and then the quota is used elsewhere before the restart
    r = hub.api("PATCH", "/users/gus/servers/grow", {"user_options": {"storage_gb": 3}})
    assert r.ok, r.text
    hub.start_workspace("gus", "other", {"storage_gb": 1})
    r = hub.api("POST", "/users/gus/servers/grow")  # the restart applies the edit
    assert "gus's storage quota is 3 GB, of which 2 GB is allocated" in refused(r, "storage_gb")
    assert image_gb(hub, "gus", "grow") == 1  # nothing grew
    assert hub.workspaces("gus")["grow"]["status"] == "stopped"

    r = hub.api("PATCH", "/users/gus/servers/grow", {"user_options": {"storage_gb": 2}})
    assert r.ok, r.text  # growing within the quota still works
    hub.start_workspace("gus", "grow")
    assert image_gb(hub, "gus", "grow") == 2
    hub.stop_workspace("gus", "grow")
    hub.stop_workspace("gus", "other")


# ---- cluster scratch -----------------------------------------------------------------------


def clusters_api(hub, method, path, body=None, token=TOKEN):
    return requests.request(
        method,
        f"{hub.url}/services/clusters/api/clusters/{path}",
        json=body,
        headers={"Authorization": f"token {token}"},
        timeout=60,
    )


def test_a_cluster_whose_scratch_cannot_fit_is_a_400_naming_scratch_gb_and_starts_nothing(hub):
    hub.ensure_user("sam")
    hub.start_workspace("sam", "lab", {"storage_gb": 1})
    body = {"type": "static", "members": 2, "resource_model": "standard-small", "scratch_gb": 2}
    r = clusters_api(hub, "POST", "sam/lab", body)
    message = refused(r, "scratch_gb")
    assert message == (
        "scratch_gb: 2 x 2 GB of /scratch (4 GB in all) does not fit: sam's storage quota is "
        "3 GB, of which 1 GB is allocated, so 2 GB is left; choose at most 1 GB per member, or "
        "fewer members (1 fit at 2 GB)"
    )
    assert r.json()["errors"] == [
        {"field": "scratch_gb", "message": message[len("scratch_gb: ") :]}
    ]
    assert clusters_api(hub, "GET", "sam/lab").status_code == 404  # nothing was created

    body = {**body, "members": 1, "scratch_gb": 1}  # what fits
    assert clusters_api(hub, "POST", "sam/lab", body).status_code == 202

    def member_with_scratch():
        status = clusters_api(hub, "GET", "sam/lab").json()
        members = status.get("members") or []
        return members if members and members[0]["state"] == "idle" else None

    (member,) = wait(member_with_scratch, 120, "the member is up")
    claim = next(hub.scratch.glob(f"*/{member['name']}/allocation.json"))
    assert json.loads(claim.read_text()) == {"owner": "sam", "bytes": GIB}
    assert clusters_api(hub, "DELETE", "sam/lab").status_code == 202
    wait(lambda: clusters_api(hub, "GET", "sam/lab").status_code == 404, 60, "it is gone")
    assert not list(hub.scratch.glob("*/*/allocation.json"))  # the scratch went with it
    hub.stop_workspace("sam", "lab")


# ---- the writable layer --------------------------------------------------------------------


def sha256_in(container: str, path: str) -> str:
    done = exec_in(container, f"sha256sum {path}", user="1000")
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[0]


def test_writing_past_the_disk_limit_stops_the_workspace_and_its_checkpoint_restores(hub):
    hub.ensure_user("dora")
    hub.start_workspace("dora", "full", {"resource_model": "tiny-disk", "storage_gb": 1})
    container = hub.container_name("dora", "full")
    done = exec_in(container, "head -c 210M /dev/urandom > ~/keep.bin", user="1000")
    assert done.returncode == 0, done.stderr
    kept = sha256_in(container, "~/keep.bin")
    # 82% of its limit: the watch has measured it, and it keeps running
    wait(
        lambda: re.search(
            r"dora.*full.*writable layer at \d+% of its 0\.25 GB limit",
            hub.log_path.read_text(errors="replace"),
        ),
        60,
        "the watch measured the layer near its limit",
    )
    assert hub.workspaces("dora")["full"]["status"] == "running"

    # an unbounded writer (the test stops it after 60 s whatever happens)
    docker(
        "exec",
        "-d",
        "-u",
        "1000",
        container,
        "timeout",
        "60",
        "sh",
        "-c",
        "i=0; while head -c 10M /dev/urandom > ~/fill$i; do i=$((i+1)); done",
    )
    started = time.monotonic()
    ws = hub.wait_for("dora", "full", "errored", timeout=90)
    print(f"MEASURED stopped {time.monotonic() - started:.1f} s after the writer started")
    assert ws["reason"] == (
        "disk limit: the workspace's own files (home, /tmp, installed "
        "packages) passed 0.25 GB; /data is separate"
    )
    assert docker("ps", "-aq", "--filter", f"name=^{container}$").strip() == ""  # released

    # the stop took its checkpoint, and it holds about what was written: nothing else filled
    token = user_token(hub, "dora")
    listed = checkpoints_api(hub, "GET", "workspaces/dora/full/checkpoints", token=token).json()
    last = listed["checkpoints"][0]
    assert last["reason"] == "on stop"
    assert DISK_GB * GIB < last["size_bytes"] < 4 * DISK_GB * GIB, last

    hub.start_workspace("dora", "full")  # restores it: the workspace may clean up
    assert sha256_in(container, "~/keep.bin") == kept
    done = exec_in(container, "rm -f ~/fill* && du -sm ~", user="1000")
    assert done.returncode == 0, done.stderr
    assert hub.workspaces("dora")["full"]["status"] == "running"
    hub.stop_workspace("dora", "full")


# ---- the checkpoint store --------------------------------------------------------------------


def checkpoints_api(hub, method, path, body=None, token=TOKEN):
    return requests.request(
        method,
        f"{hub.url}/services/checkpoints/api/{path}",
        json=body,
        headers={"Authorization": f"token {token}"},
        timeout=120,
    )


def user_token(hub: HubProcess, user: str) -> str:
    r = hub.api("POST", f"/users/{user}/tokens", {"expires_in": 900})
    assert r.ok, r.text
    return r.json()["token"]


def test_the_named_checkpoint_quota_refuses_naming_past_it_and_accepts_within_it(hub):
    hub.ensure_user("nia")
    token = user_token(hub, "nia")
    hub.start_workspace("nia", "lab", {"storage_gb": 1})
    path = "workspaces/nia/lab/checkpoints"
    r = checkpoints_api(hub, "POST", path, {"name": "clean start"}, token=token)
    assert r.status_code == 201, r.text  # a small named checkpoint fits

    container = hub.container_name("nia", "lab")
    done = exec_in(container, "head -c 30M /dev/urandom > ~/results.bin", user="1000")
    assert done.returncode == 0, done.stderr
    r = checkpoints_api(hub, "POST", path, {"name": "with results"}, token=token)
    assert r.status_code == 409, r.text
    message = r.json()["message"]
    assert message.startswith(
        "name: nia's named checkpoints may keep 20 MB in the checkpoint "
        "store (the named-checkpoint quota) and keep "
    )
    assert "naming 'with_results' would make it" in message
    kept = re.search(r"kept as automatic checkpoint (\S+)$", message).group(1)
    listed = checkpoints_api(hub, "GET", path, token=token).json()["checkpoints"]
    listed = {c["id"]: c for c in listed}
    assert listed[kept]["kind"] == "automatic" and listed[kept]["name"] is None
    r = checkpoints_api(hub, "PATCH", f"{path}/{kept}", {"name": "with results"}, token=token)
    assert r.status_code == 409 and "named-checkpoint quota" in r.json()["message"]
    use = checkpoints_api(hub, "GET", "workspaces", token=token).json()["named_checkpoints"]
    assert use["used_bytes"] < use["quota_bytes"] == NAMED_QUOTA_MB * MIB

    exec_in(container, "rm ~/results.bin", user="1000")
    r = checkpoints_api(hub, "POST", path, {"name": "cleaned up"}, token=token)
    assert r.status_code == 201, r.text  # the same files as the first: within the quota
    hub.stop_workspace("nia", "lab")
