"""Hub SIGKILL + restart: running workspaces are re-adopted; a vanished one says why."""

from __future__ import annotations

import subprocess

import requests
from support.docker_cli import cleanup, docker, exec_in
from support.hub_harness import HubProcess

PREFIX = "benchrestart"


def test_hub_sigkill_and_restart_readopts_workspaces(tmp_path):
    hub = HubProcess(tmp_path, prefix=PREFIX)
    cleanup(PREFIX, hub.storage_root)
    try:
        hub.start()
        hub.ensure_user("ivy")
        hub.start_workspaces([("ivy", "one", {"storage_gb": 1}), ("ivy", "two", {"storage_gb": 1})])
        one, two = hub.container_name("ivy", "one"), hub.container_name("ivy", "two")
        exec_in(one, "echo still-here > /data/marker")
        one_id = docker("inspect", "-f", "{{.Id}}", one).strip()

        hub.kill()  # SIGKILL: no cleanup runs; the proxy is orphaned
        docker("rm", "-f", two)  # a workspace lost while the hub is down
        hub.start()

        pattern = f"hub_services.egress --config-dir={hub.egress_dir}"
        found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
        services = found.stdout.split()
        assert len(services) == 1  # the killed hub's egress service died with it
        ws = hub.workspaces("ivy")
        assert ws["one"]["status"] == "running"
        assert docker("inspect", "-f", "{{.Id}}", one).strip() == one_id  # the same container
        assert exec_in(one, "cat /data/marker").stdout == "still-here\n"
        # reachable through the proxy again, with the hub's routing
        r = requests.get(
            f"{hub.url}/user/ivy/one/api/status",
            headers={"Authorization": "token " + hub_token(hub, "ivy")},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        gone = hub.wait_for_stopped("ivy", "two")
        assert gone["status"] == "errored" and "vanished" in gone["reason"]
        assert "vanished" in hub.wait_for_activity("ivy", "two", "errored")["description"]
        hub.stop_workspace("ivy", "one")
    finally:
        hub.stop()
        cleanup(PREFIX, hub.storage_root)


def hub_token(hub: HubProcess, user: str) -> str:
    r = hub.api("POST", f"/users/{user}/tokens", {"note": "test", "expires_in": 600})
    assert r.status_code == 201, r.text
    return r.json()["token"]
