"""Workspaces through the hub REST API on the real Docker Engine: limits, storage, errors."""

from __future__ import annotations

import json
import subprocess

from support.docker_cli import docker, exec_in
from support.host_ids import container_root_host_uid
from support.hub_harness import UNRUNNABLE_MODEL
from support.waiting import wait

from bench_spawner.container import ROOT_CAPABILITIES

GIB = 1024**3


def inspect(name: str) -> dict:
    return json.loads(docker("inspect", name))[0]


def test_start_applies_limits_and_security_baseline(hub):
    hub.ensure_user("alice")
    ws = hub.start_workspace("alice", "limits", {"resource_model": "test-small", "storage_gb": 1})
    assert ws["url"] == "/user/alice/limits/"
    c = inspect(hub.container_name("alice", "limits"))
    host = c["HostConfig"]
    assert host["CpuQuota"] == 50_000 and host["CpuPeriod"] == 100_000
    assert host["Memory"] == GIB // 2 and host["MemorySwap"] == GIB // 2
    assert host["PidsLimit"] == 4096
    remapped = container_root_host_uid() != 0  # root inside is an unprivileged host uid
    assert host["CapDrop"] == ["ALL"]
    if remapped:  # sudo for apt-get: exactly what package installation needs, and set-uid works
        assert sorted(host["CapAdd"]) == sorted(ROOT_CAPABILITIES)
        assert not host["SecurityOpt"]
    else:  # no root at all
        assert not host["CapAdd"]
        assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert not host["Privileged"]
    assert [m["Destination"] for m in c["Mounts"]] == ["/data"]  # no Docker socket, nothing else

    inside = exec_in(
        hub.container_name("alice", "limits"),
        "id -u; cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes cpu/cpu.cfs_quota_us;"
        " grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; df -B1 --output=size /data | tail -1;"
        " ls /var/run/docker.sock 2>&1; env | grep -c JUPYTERHUB_API_TOKEN",
    )
    lines = inside.stdout.split("\n")
    assert lines[0] == "1000"  # non-root
    assert lines[1] == str(GIB // 2) and lines[2] == "50000"
    assert "CapEff:\t0000000000000000" in lines  # the user's own processes: none
    assert f"NoNewPrivs:\t{0 if remapped else 1}" in lines
    size = int(lines[5])
    assert 0.85 * GIB < size <= GIB  # an ext4 filesystem of 1 GB, minus its metadata
    assert "No such file" in inside.stdout
    hub.stop_workspace("alice", "limits")


def test_data_survives_stop_and_start_reuses_options(hub):
    hub.ensure_user("bob")
    hub.start_workspace("bob", "keep", {"resource_model": "test-medium", "storage_gb": 1})
    name = hub.container_name("bob", "keep")
    assert exec_in(name, "echo precious > /data/result.txt").returncode == 0
    hub.stop_workspace("bob", "keep")
    assert hub.workspaces("bob")["keep"]["status"] == "stopped"
    assert docker("ps", "-aq", "--filter", f"name=^{name}$") == ""  # container removed on stop

    hub.start_workspace("bob", "keep")  # no options: the last ones are reused
    assert inspect(name)["HostConfig"]["Memory"] == GIB  # test-medium again
    assert exec_in(name, "cat /data/result.txt").stdout == "precious\n"
    hub.stop_workspace("bob", "keep")


def test_storage_full_gives_enospc_and_hub_stays_fine(hub):
    hub.ensure_user("carol")
    hub.start_workspace("carol", "full", {"storage_gb": 1})
    name = hub.container_name("carol", "full")
    fill = exec_in(name, "dd if=/dev/zero of=/data/fill bs=1M count=2048 2>&1; echo rc=$?")
    assert "No space left on device" in fill.stdout
    assert "rc=0" not in fill.stdout
    assert hub.api("GET", "/").ok
    assert hub.workspaces("carol")["full"]["status"] == "running"
    host_free = docker("info", "--format", "{{.DockerRootDir}}")  # the engine still answers
    assert host_free.strip()
    assert exec_in(name, "rm /data/fill && echo ok > /data/after").returncode == 0
    hub.stop_workspace("carol", "full")


def test_storage_grows_while_stopped_and_never_shrinks(hub):
    hub.ensure_user("dave")
    hub.start_workspace("dave", "grow", {"storage_gb": 1})
    name = hub.container_name("dave", "grow")
    exec_in(name, "echo kept > /data/kept")
    r = hub.api("PATCH", "/users/dave/servers/grow", {"user_options": {"storage_gb": 2}})
    assert r.status_code == 409 and "running" in r.json()["message"]  # stop first
    hub.stop_workspace("dave", "grow")

    r = hub.api("PATCH", "/users/dave/servers/grow", {"user_options": {"storage_gb": 2}})
    assert r.status_code == 200, r.text
    hub.start_workspace("dave", "grow")
    size = int(exec_in(name, "df -B1 --output=size /data | tail -1").stdout)
    assert size > 1.7 * GIB
    assert exec_in(name, "cat /data/kept").stdout == "kept\n"
    hub.stop_workspace("dave", "grow")

    r = hub.api("PATCH", "/users/dave/servers/grow", {"user_options": {"storage_gb": 1}})
    assert r.status_code == 400
    assert "storage_gb" in r.json()["message"] and "shrink" in r.json()["message"]
    opts = hub.api("GET", "/users/dave").json()["servers"]
    assert opts == {} or "grow" not in opts  # stopped
    assert hub.workspaces("dave")["grow"]["user_options"]["storage_gb"] == 2  # unchanged


def test_bad_options_are_400_naming_the_field_and_create_nothing(hub):
    hub.ensure_user("erin")
    cases = [
        ({"resource_model": "huge"}, "resource_model"),
        ({"resource_model": UNRUNNABLE_MODEL}, "unavailable"),  # 4096 CPUs: on no host
        ({"storage_gb": 0}, "storage_gb"),
        ({"access_mode": "sideways"}, "access_mode"),
        ({"colour": "blue"}, "colour"),
        ({"access_mode": "restricted", "whitelist": "exa--.com"}, "whitelist"),
        ({"image": "nope"}, "image"),
    ]
    for options, word in cases:
        r = hub.api("POST", "/users/erin/servers/bad", {"user_options": options})
        assert r.status_code == 400, (options, r.text)
        assert word in r.json()["message"], (options, r.json())
        assert "bad" not in hub.workspaces("erin")
    r = hub.api("POST", "/users/erin/servers/bad.name", {"user_options": {}})
    assert r.status_code == 400 and "name" in r.json()["message"]
    assert hub.workspaces("erin") == {}
    assert docker("ps", "-aq", "--filter", "name=^benchtest-erin--") == ""


def test_oom_kill_shows_errored_with_reason(hub):
    hub.ensure_user("frank")
    hub.start_workspace("frank", "oom", {"resource_model": "test-small", "storage_gb": 1})
    name = hub.container_name("frank", "oom")
    # The server (PID under tini) volunteers as the OOM victim, then memory is exhausted:
    # the container's main process dies of OOM, as when a server itself outgrows its limit.
    exec_in(
        name,
        "for p in $(ps -o pid= --ppid 1); do echo 1000 > /proc/$p/oom_score_adj; done;"
        " python3 -c 'a = bytearray(900 * 1024 * 1024)'",
    )
    ws = hub.wait_for("frank", "oom", "errored", timeout=30)
    assert ws["reason"] == "out of memory: limit 0.5 GB"
    # the hub notices on its next poll, notes why and removes the container
    wait(
        lambda: docker("ps", "-aq", "--filter", f"name=^{name}$") == "",
        30,
        "the dead container is removed",
    )
    assert hub.workspaces("frank")["oom"]["reason"] == "out of memory: limit 0.5 GB"  # kept
    entry = hub.wait_for_activity("frank", "oom", "errored")  # and in the activity log
    assert entry["description"] == "out of memory: limit 0.5 GB" and entry["actor"] == "hub"


def test_restricted_has_no_route_out_but_reaches_the_hub(hub):
    hub.ensure_user("gina")
    hub.start_workspace(
        "gina",
        "closed",
        {"access_mode": "restricted", "whitelist": "example.com\n.example.org", "storage_gb": 1},
    )
    hub.start_workspace("gina", "opened", {"storage_gb": 1})
    closed = hub.container_name("gina", "closed")
    assert inspect(closed)["HostConfig"]["NetworkMode"] == "benchtest-restricted"
    assert json.loads(docker("network", "inspect", "benchtest-restricted"))[0]["Internal"] is True
    for shared in ("benchtest-open", "benchtest-restricted"):  # every user's workspaces: apart
        options = json.loads(docker("network", "inspect", shared))[0]["Options"]
        assert options["com.docker.network.bridge.enable_icc"] == "false"
    # Docker gives internal networks no NAT and drops their forwarded traffic: the open
    # network's subnet is masqueraded out, the restricted one's is not.
    nat = subprocess.run(
        ["iptables", "-t", "nat", "-S", "POSTROUTING"], capture_output=True, text=True
    ).stdout
    subnet = {
        n: json.loads(docker("network", "inspect", n))[0]["IPAM"]["Config"][0]["Subnet"]
        for n in ("benchtest-open", "benchtest-restricted")
    }
    assert f"-s {subnet['benchtest-open']} ! -o" in nat
    assert subnet["benchtest-restricted"] not in nat
    hub_api = 'curl -s -o /dev/null -w "%{http_code}" "$JUPYTERHUB_API_URL/"'
    assert exec_in(closed, hub_api).stdout == "200"  # the hub stays reachable
    direct = exec_in(closed, "curl -s -m 3 --noproxy '*' http://192.0.2.1/ ; echo rc=$?").stdout
    assert direct.strip() in ("rc=7", "rc=28")  # refused or timed out: nothing leaves directly
    proxied = exec_in(closed, 'curl -s -m 5 -o /dev/null -w "%{http_code}" http://192.0.2.1/')
    assert proxied.stdout == "403"  # and the egress proxy refuses what is not whitelisted
    hub.stop_workspace("gina", "closed")
    hub.stop_workspace("gina", "opened")


def test_delete_refused_while_running_then_leaves_nothing_behind(hub):
    hub.ensure_user("hank")
    hub.start_workspace("hank", "gone", {"storage_gb": 1})
    name = hub.container_name("hank", "gone")
    r = hub.api("DELETE", "/users/hank/servers/gone", {"remove": True})
    assert r.status_code == 400 and "stop it first" in r.json()["message"]
    assert hub.workspaces("hank")["gone"]["status"] == "running"

    hub.stop_workspace("hank", "gone")
    r = hub.api("DELETE", "/users/hank/servers/gone", {"remove": True})
    assert r.status_code in (202, 204), r.text
    wait(lambda: "gone" not in hub.workspaces("hank"), 30, "the deleted workspace is gone")
    assert docker("ps", "-aq", "--filter", f"name=^{name}$") == ""
    workspace_dir = hub.storage_root / "hank" / "gone"
    assert not workspace_dir.exists()
    attached = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    assert str(workspace_dir) not in attached
    mounts = open("/proc/mounts").read()
    assert str(workspace_dir) not in mounts


def test_missing_image_shows_errored_with_reason(hub):
    hub.ensure_user("jack")
    r = hub.api("POST", "/users/jack/servers/noimg", {"user_options": {"image": "missing"}})
    assert r.status_code >= 400 or r.status_code == 202
    ws = hub.wait_for_stopped("jack", "noimg")
    assert ws["status"] == "errored"
    assert ws["reason"].startswith("image missing: benchhub/not-built:0")
    assert docker("ps", "-aq", "--filter", "name=^benchtest-jack--") == ""


def test_resource_models_api_shows_availability_on_this_host(hub):
    hub.ensure_user("kim")
    token = hub.api("POST", "/users/kim/tokens", {"expires_in": 600}).json()["token"]
    r = hub.api("GET", "/bench/resource-models", token=token)
    assert r.status_code == 200, r.text
    models = {m["name"]: m for m in r.json()["resource_models"]}
    assert models["test-small"]["unavailable_reason"] is None
    assert "needs 4096 CPUs; this host has" in models[UNRUNNABLE_MODEL]["unavailable_reason"]
