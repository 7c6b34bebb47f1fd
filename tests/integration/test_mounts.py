"""Fast mounts of project data in running workspaces, with workspace-ctl, on a real hub.

What a user notices: ``workspace-ctl data create-mount`` (run in the workspace as its user,
with the workspace's own token) makes a directory of /data/project appear at /data/mounts/...
at once, on the workspace's cluster member too; a read-only mount gives EROFS and cannot be
remounted read-write even by root inside; only one running workspace may hold a directory
read-write (the refusal names the holder), and the claim ends when the holder stops; another
user's token, a path out of /data/mounts or /data/project, or through a link, are refused
and change nothing. The project is a JupyterHub group with BenchHub's property; its
/data/project is the projects' own mount (bench_spawner/project_membership.py).
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import requests
from support.cluster_harness import Clusters, cluster_env, remove_cluster_leftovers
from support.docker_cli import cleanup, docker, exec_in
from support.hub_harness import HubProcess, free_port
from support.waiting import wait

from benchhub.projects import PROPERTY

PREFIX = "mounttest"
PROJECT = "genomics"
MEMBER = "standard-small"  # a cluster member's model: one core for jobs beside scheduling
CONTRIBUTOR = {"role": "contributor", "data_level": "contributor", "upload": True, "download": True}
READ_WRITE = {"upload": True, "download": True, "project_data": "contributor"}
READ_ONLY = {"upload": True, "download": True, "project_data": "viewer"}
WORKSPACES = {  # (user, workspace): its /data/project permission
    ("alice", "lab"): READ_WRITE,
    ("alice", "view"): READ_ONLY,
    ("bob", "ws"): READ_WRITE,
}


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    workdir = tmp_path_factory.mktemp(PREFIX)
    scratch = workdir / "scratch"
    hub = HubProcess(
        workdir,
        prefix=PREFIX,
        env_overrides={
            **cluster_env(scratch, "10.242.0.0/20", 2, 5),
            "BENCHHUB_MOUNTS_PORT": str(free_port()),
            "BENCHHUB_MOUNTS_INTERVAL": "1",
            "BENCHHUB_STORAGE_CAPACITY_GB": "1000",
        },
    )
    cleanup(PREFIX, hub.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)
    hub.start()
    for user in ("alice", "bob", "carol"):
        hub.ensure_user(user)
    r = hub.api("POST", f"/groups/{PROJECT}", {"users": ["alice", "bob"]})
    assert r.status_code == 201, r.text
    settings = {
        PROPERTY: {
            "owner": "carol",
            "storage_gb": 1,
            "members": {"alice": CONTRIBUTOR, "bob": CONTRIBUTOR},
        }
    }
    r = hub.api("PUT", f"/groups/{PROJECT}/properties", settings)
    assert r.ok, r.text
    for (user, name), permissions in WORKSPACES.items():
        options = {"resource_model": "test-small", "project": PROJECT, "permissions": permissions}
        hub.start_workspace(user, name, options)
    found = Clusters(hub, scratch)
    put_project_file(found, "shared/from-workspace.txt", "hello member")
    yield found
    hub.stop()
    cleanup(PREFIX, hub.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)
    unmount_below(workdir)


def unmount_below(directory) -> None:
    """Detach what the run left mounted under ``directory`` (the project's data volume)."""
    mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True)
    for target in mounts.stdout.split():
        if target.startswith(str(directory)):
            subprocess.run(["umount", "-l", target], check=False)


def container(clusters: Clusters, user: str = "alice", name: str = "lab") -> str:
    return clusters.hub.container_name(user, name)


def sh(clusters: Clusters, script: str, user="alice", name="lab", as_uid="1000"):
    return exec_in(container(clusters, user, name), script, user=as_uid)


def ctl(clusters: Clusters, *args: str, user="alice", name="lab") -> subprocess.CompletedProcess:
    """workspace-ctl data ... in the workspace, as its user, with its own environment."""
    argv = ["docker", "exec", "-u", "1000", container(clusters, user, name), "workspace-ctl"]
    return subprocess.run([*argv, "data", *args], capture_output=True, text=True, timeout=180)


def server_token(clusters: Clusters, user="alice", name="lab") -> str:
    return sh(clusters, 'printf %s "$JUPYTERHUB_API_TOKEN"', user, name).stdout


def mounts_api(clusters, method, path="alice/lab", token=None, **kwargs) -> requests.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.request(
        method,
        f"{clusters.hub.url}/services/mounts/api/mounts/{path}",
        headers=headers,
        timeout=120,
        **kwargs,
    )


def listed(clusters, user="alice", name="lab") -> list[dict]:
    r = mounts_api(clusters, "GET", f"{user}/{name}", clusters.token(user))
    assert r.ok, r.text
    return r.json()["mounts"]


def put_project_file(clusters, relative: str, text: str) -> None:
    out = sh(
        clusters,
        f"mkdir -p /data/project/$(dirname {relative}) && "
        f"printf %s '{text}' > /data/project/{relative}",
    )
    assert out.returncode == 0, out.stderr


def test_a_read_only_mount_appears_at_once_is_listed_refuses_writes_and_is_deleted(clusters):
    put_project_file(clusters, "refs/genome.fa", ">chr1 ACGT")
    made = ctl(
        clusters,
        "create-mount",
        "--mount-path",
        "/data/mounts/refs",
        "--source",
        "/data/project/refs",
    )
    assert made.returncode == 0, made.stderr
    assert "read-only" in made.stdout
    assert sh(clusters, "cat /data/mounts/refs/genome.fa").stdout == ">chr1 ACGT"
    assert listed(clusters) == [
        {"mount_path": "/data/mounts/refs", "source": "/data/project/refs", "mode": "read-only"}
    ]
    shown = ctl(clusters, "get-mounts")
    assert "/data/mounts/refs" in shown.stdout and "/data/project/refs" in shown.stdout
    write = sh(clusters, "echo x > /data/mounts/refs/new")
    assert write.returncode != 0 and "Read-only file system" in write.stderr
    # root inside the workspace (sudo) cannot lift it: no CAP_SYS_ADMIN there
    remount = sh(clusters, "mount -o remount,rw /data/mounts/refs", as_uid="0")
    assert remount.returncode != 0
    unmount = sh(clusters, "umount /data/mounts/refs", as_uid="0")
    assert unmount.returncode != 0
    assert sh(clusters, "echo x > /data/mounts/refs/new").returncode != 0
    gone = ctl(clusters, "delete-mount", "--mount-path", "/data/mounts/refs")
    assert gone.returncode == 0, gone.stderr
    assert listed(clusters) == []
    assert sh(clusters, "test -e /data/mounts/refs").returncode != 0  # mount point removed
    again = ctl(clusters, "delete-mount", "--mount-path", "/data/mounts/refs")
    assert again.returncode == 0 and "was not mounted" in again.stdout


def test_a_read_write_mount_writes_through_to_the_project_data(clusters):
    made = ctl(
        clusters,
        "create-mount",
        "--mount-path",
        "/data/mounts/out",
        "--source",
        "/data/project/refs",
        "--mode",
        "read-write",
    )
    assert made.returncode == 0, made.stderr
    assert sh(clusters, "echo result > /data/mounts/out/r.txt").returncode == 0
    assert sh(clusters, "cat /data/project/refs/r.txt").stdout.strip() == "result"
    owner = sh(clusters, "stat -c %u:%g /data/mounts/out /data/mounts").stdout.split()
    assert owner == ["1000:100", "1000:100"]  # the mount point is the workspace user's
    assert ctl(clusters, "delete-mount", "--mount-path", "/data/mounts/out").returncode == 0


def test_cluster_members_see_data_project_and_fast_mounts_of_their_workspace(clusters):
    r = clusters.api("POST", body={"type": "static", "members": 1, "resource_model": MEMBER})
    assert r.status_code in (200, 201, 202), r.text
    status = wait(
        clusters.status,
        240,
        "alice/lab's cluster has a running member",
        step=1,
        until=lambda s: s and any(m.get("state") == "idle" for m in s.get("members", [])),
    )
    member = next(m["name"] for m in status["members"] if m.get("state") == "idle")

    def on_member(script: str) -> subprocess.CompletedProcess:
        return exec_in(member, script, user="1000")

    # /data/project on the member: the workspace's, with its mode
    assert on_member("cat /data/project/shared/from-workspace.txt").stdout == "hello member"
    # a fast mount made now appears on the member without a restart
    made = ctl(
        clusters,
        "create-mount",
        "--mount-path",
        "/data/mounts/shared",
        "--source",
        "/data/project/shared",
    )
    assert made.returncode == 0, made.stderr
    assert "mounted" in made.stdout and member in made.stdout
    assert on_member("cat /data/mounts/shared/from-workspace.txt").stdout == "hello member"
    write = on_member("echo x > /data/mounts/shared/y")
    assert write.returncode != 0 and "Read-only file system" in write.stderr
    assert ctl(clusters, "delete-mount", "--mount-path", "/data/mounts/shared").returncode == 0
    wait(
        lambda: on_member("test -e /data/mounts/shared").returncode != 0,
        30,
        "the mount is gone from the member",
    )
    clusters.api("DELETE")
    wait(lambda: clusters.status() is None, 120, "alice/lab's cluster is gone")


def test_data_project_of_a_read_only_workspace_is_read_only_on_its_member(clusters):
    """A member of a workspace whose /data/project is read-only gets it read-only (EROFS)."""
    workspace = container(clusters, "alice", "view")
    inspected = docker(
        "inspect",
        "-f",
        '{{range .Mounts}}{{if eq .Destination "/data/project"}}{{.RW}}{{end}}{{end}}',
        workspace,
    ).strip()
    assert inspected == "false"
    r = requests.post(
        f"{clusters.hub.url}/services/clusters/api/clusters/alice/view",
        json={"type": "static", "members": 1, "resource_model": MEMBER},
        headers={"Authorization": f"token {clusters.token('alice')}"},
        timeout=60,
    )
    assert r.status_code in (200, 201, 202), r.text

    def view_status():
        s = requests.get(
            f"{clusters.hub.url}/services/clusters/api/clusters/alice/view",
            headers={"Authorization": f"token {clusters.token('alice')}"},
            timeout=30,
        )
        return s.json() if s.ok else None

    status = wait(
        view_status,
        240,
        "alice/view's cluster has a running member",
        step=1,
        until=lambda s: s and any(m.get("state") == "idle" for m in s.get("members", [])),
    )
    member = next(m["name"] for m in status["members"] if m.get("state") == "idle")
    assert exec_in(member, "cat /data/project/shared/from-workspace.txt", user="1000").stdout == (
        "hello member"
    )
    write = exec_in(member, "echo x > /data/project/shared/z", user="1000")
    assert write.returncode != 0 and "Read-only file system" in write.stderr
    requests.delete(
        f"{clusters.hub.url}/services/clusters/api/clusters/alice/view",
        headers={"Authorization": f"token {clusters.token('alice')}"},
        timeout=60,
    )


def test_read_write_is_refused_where_data_project_is_read_only_and_read_only_works(clusters):
    refused = ctl(
        clusters,
        "create-mount",
        "--mount-path",
        "/data/mounts/w",
        "--source",
        "/data/project/shared",
        "--mode",
        "read-write",
        user="alice",
        name="view",
    )
    assert refused.returncode != 0
    assert "refused (403)" in refused.stderr and "read-only" in refused.stderr
    assert listed(clusters, "alice", "view") == []
    made = ctl(
        clusters,
        "create-mount",
        "--mount-path",
        "/data/mounts/r",
        "--source",
        "/data/project/shared",
        user="alice",
        name="view",
    )
    assert made.returncode == 0, made.stderr
    assert (
        ctl(
            clusters, "delete-mount", "--mount-path", "/data/mounts/r", user="alice", name="view"
        ).returncode
        == 0
    )


def test_paths_out_of_place_or_through_links_are_refused_400_naming_the_field(clusters):
    assert (
        sh(
            clusters,
            "ln -sfn /etc /data/project/etc-link && mkdir -p /data/mounts && "
            "ln -sfn /etc /data/mounts/evil",
        ).returncode
        == 0
    )
    token = server_token(clusters)
    cases = {
        "mount_path": [
            {"mount_path": "/data/mounts/../x", "source": "/data/project/shared"},
            {"mount_path": "/etc/x", "source": "/data/project/shared"},
            {"mount_path": "/data/mounts/evil/x", "source": "/data/project/shared"},
        ],
        "source": [
            {"mount_path": "/data/mounts/x", "source": "/etc"},
            {"mount_path": "/data/mounts/x", "source": "/data/project/../../etc"},
            {"mount_path": "/data/mounts/x", "source": "/data/project/etc-link"},
            {"mount_path": "/data/mounts/x", "source": "/data/project/missing"},
        ],
        "mode": [{"mount_path": "/data/mounts/x", "source": "/data/project/shared", "mode": "rw"}],
    }
    for field, bodies in cases.items():
        for body in bodies:
            r = mounts_api(clusters, "POST", token=token, json=body)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["field"] == field, (body, r.text)
            assert r.json()["message"].startswith(field), r.text
    assert listed(clusters) == []
    # nothing was made through the link: /etc of the workspace has no x
    assert sh(clusters, "test -e /etc/x").returncode != 0
    assert sh(clusters, "rm /data/project/etc-link /data/mounts/evil").returncode == 0
    r = mounts_api(clusters, "DELETE", token=token, params={"mount_path": "/data/x"})
    assert r.status_code == 400 and r.json()["field"] == "mount_path"


def test_other_users_tokens_another_workspaces_token_and_no_token_are_refused(clusters):
    body = {"mount_path": "/data/mounts/x", "source": "/data/project/shared"}
    bob = clusters.token("bob")
    for method, kwargs in (
        ("GET", {}),
        ("POST", {"json": body}),
        ("DELETE", {"params": {"mount_path": "/data/mounts/x"}}),
    ):
        r = mounts_api(clusters, method, token=bob, **kwargs)
        assert r.status_code == 403, r.text
        assert "access:servers!server=alice/lab" in r.json()["message"]
        assert mounts_api(clusters, method, **kwargs).status_code == 403  # no token at all
    # the token of alice's workspace "lab" reaches "lab" only, not her workspace "view"
    lab_token = server_token(clusters)
    assert mounts_api(clusters, "GET", "alice/view", lab_token).status_code == 403
    assert mounts_api(clusters, "GET", "alice/lab", lab_token).status_code == 200
    # through the hub's relay (the workspace's way in) the same: bob's workspace's token
    bob_ws = server_token(clusters, "bob", "ws")
    relay = f"{clusters.hub.url}/hub/api/bench/mounts/alice/lab"
    r = requests.post(relay, json=body, headers={"Authorization": f"token {bob_ws}"}, timeout=60)
    assert r.status_code == 403, r.text
    assert listed(clusters) == []


def test_one_running_workspace_holds_a_directory_read_write_until_it_stops(clusters):
    held = ctl(
        clusters,
        "create-mount",
        "--mount-path",
        "/data/mounts/work",
        "--source",
        "/data/project/shared",
        "--mode",
        "read-write",
    )
    assert held.returncode == 0, held.stderr
    refused = ctl(
        clusters,
        "create-mount",
        "--mount-path",
        "/data/mounts/work",
        "--source",
        "/data/project/shared",
        "--mode",
        "read-write",
        user="bob",
        name="ws",
    )
    assert refused.returncode != 0
    assert "refused (409)" in refused.stderr and "alice/lab" in refused.stderr
    # a directory inside the held one is held too
    inner = ctl(
        clusters,
        "create-mount",
        "--mount-path",
        "/data/mounts/inner",
        "--source",
        "/data/project/shared/sub",
        "--mode",
        "read-write",
        user="bob",
        name="ws",
    )
    assert "alice/lab" in inner.stderr or "does not exist" in inner.stderr
    # the service keeps no record to lose: restarted, it still sees the claim
    service = clusters.hub.service_pid("mounts")
    os.kill(service, signal.SIGKILL)
    wait(
        lambda: (
            clusters.hub.service_pid("mounts") not in (None, service)
            and mounts_api(clusters, "GET", "bob/ws", clusters.token("bob")).ok
        ),
        60,
        "the hub restarted the mounts service",
    )
    again = ctl(
        clusters,
        "create-mount",
        "--mount-path",
        "/data/mounts/work",
        "--source",
        "/data/project/shared",
        "--mode",
        "read-write",
        user="bob",
        name="ws",
    )
    assert "refused (409)" in again.stderr and "alice/lab" in again.stderr
    # read-only mounts of it are unlimited
    reader = ctl(
        clusters,
        "create-mount",
        "--mount-path",
        "/data/mounts/peek",
        "--source",
        "/data/project/shared",
        user="bob",
        name="ws",
    )
    assert reader.returncode == 0, reader.stderr
    # the holder stops: its claim goes with its container
    clusters.hub.stop_workspace("alice", "lab")
    taken = ctl(
        clusters,
        "create-mount",
        "--mount-path",
        "/data/mounts/work",
        "--source",
        "/data/project/shared",
        "--mode",
        "read-write",
        user="bob",
        name="ws",
    )
    assert taken.returncode == 0, taken.stderr
    assert (
        exec_in(
            container(clusters, "bob", "ws"), "echo mine > /data/mounts/work/b", user="1000"
        ).returncode
        == 0
    )


def test_a_restricted_workspace_reaches_the_service_through_the_hub(clusters):
    """A restricted workspace's only ways out are the hub's API and its egress proxy: the
    relay on the hub's API port carries workspace-ctl's requests."""
    options = {
        "resource_model": "test-small",
        "project": PROJECT,
        "permissions": READ_ONLY,
        "access_mode": "restricted",
        "whitelist": "example.org",
    }
    clusters.hub.start_workspace("bob", "closed", options)
    made = ctl(
        clusters,
        "create-mount",
        "--mount-path",
        "/data/mounts/shared",
        "--source",
        "/data/project/shared",
        user="bob",
        name="closed",
    )
    assert made.returncode == 0, made.stderr
    shown = ctl(clusters, "get-mounts", user="bob", name="closed")
    assert "/data/mounts/shared" in shown.stdout and "read-only" in shown.stdout
    clusters.hub.stop_workspace("bob", "closed")
