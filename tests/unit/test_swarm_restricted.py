"""Restricted access on a swarm, the spawner's side (bench_spawner/swarm/restricted.py): the
overlay a restricted workspace gets, its service spec, its environment, and the configuration
that turns it on. tests/swarm/test_swarm_restricted_workspaces.py runs it on the test swarm."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from test_swarm_service_plan import plan
from test_swarm_unsupported import spec
from traitlets import TraitError
from traitlets.config import Config

from bench_spawner.swarm.restricted import (
    gateway_environment,
    overlay_create_kwargs,
    proxy_address,
    task_address,
    use_egress_gateway,
)
from bench_spawner.swarm.service_plan import create_service_kwargs
from bench_spawner.swarm.spawner import BenchSwarmSpawner
from bench_spawner.swarm.task_outcome import Phase, TaskView, decide_start
from bench_spawner.swarm.unsupported import (
    config_problems,
    drop_unsupported_services,
    option_problems,
)
from benchhub.egress_state import EgressState
from benchhub.labels import NETWORK


def test_a_restricted_workspace_gets_its_own_internal_overlay_with_the_proxy_below_its_tasks():
    kwargs = overlay_create_kwargs("bench-ada--ws-restricted", "10.214.0.16/28", 1350, {"u": "ada"})
    assert kwargs["driver"] == "overlay" and kwargs["internal"] and kwargs["attachable"]
    pool = kwargs["ipam"]["Config"][0]
    assert pool["Subnet"] == "10.214.0.16/28" and pool["Gateway"] == "10.214.0.17"
    assert pool["IPRange"] == "10.214.0.24/29"  # tasks: the upper half
    proxy = proxy_address("10.214.0.16/28")
    assert proxy == "10.214.0.18"
    assert ipaddress.ip_address(proxy) not in ipaddress.ip_network(pool["IPRange"])
    assert kwargs["options"] == {"com.docker.network.driver.mtu": "1350"}
    assert kwargs["labels"] == {"u": "ada", NETWORK: "swarm-restricted"}


def test_a_restricted_service_publishes_nothing_uses_dnsrr_and_a_dns_server_that_never_answers():
    kwargs = create_service_kwargs(plan(network="ov", publish=False, dns=("10.214.0.18",)))
    assert kwargs["endpoint_spec"] == {"Mode": "dnsrr"}
    assert kwargs["task_template"]["ContainerSpec"]["DNSConfig"]["Nameservers"] == ["10.214.0.18"]
    assert kwargs["task_template"]["Networks"] == [{"Target": "ov"}]
    opened = create_service_kwargs(plan())
    assert opened["endpoint_spec"]["Ports"][0]["PublishMode"] == "host"
    assert "DNSConfig" not in opened["task_template"]["ContainerSpec"]


def test_the_workspace_reaches_the_hub_through_the_hub_port_and_all_else_through_the_forward_port():
    env = gateway_environment(
        {
            "JUPYTERHUB_API_URL": "http://192.168.250.1:8081/hub/api",
            "JUPYTERHUB_ACTIVITY_URL": "http://192.168.250.1:8081/hub/api/users/ada/activity",
            "JUPYTERHUB_USER": "ada",
        },
        "10.214.0.18",
        8081,
    )
    assert env["JUPYTERHUB_API_URL"] == "http://10.214.0.18:8081/hub/api"
    assert env["JUPYTERHUB_ACTIVITY_URL"] == "http://10.214.0.18:8081/hub/api/users/ada/activity"
    assert env["HTTPS_PROXY"] == env["http_proxy"] == "http://10.214.0.18:3128"
    assert "10.214.0.18" in env["no_proxy"].split(",")  # the hub relay is not proxied
    assert env["JUPYTERHUB_USER"] == "ada"


def test_the_task_address_is_read_from_its_attachment_to_its_own_overlay():
    task = {
        "NetworksAttachments": [
            {"Network": {"Spec": {"Name": "ingress"}}, "Addresses": ["10.0.0.5/24"]},
            {"Network": {"Spec": {"Name": "ov"}}, "Addresses": ["10.214.0.25/28"]},
        ]
    }
    assert task_address(task, "ov") == "10.214.0.25"
    assert task_address(task, "other") is None and task_address({}, "ov") is None


def test_a_running_restricted_task_needs_no_published_port():
    running = TaskView(state="running", node_id="n1")
    assert decide_start(running, 0, 2).phase is Phase.FAILED  # an open one does
    assert decide_start(running, 0, 2, needs_port=False).phase is Phase.RUNNING


def test_restricted_access_is_refused_unless_the_hub_runs_the_gateway():
    restricted = spec(access_mode="restricted")
    assert [p.field for p in option_problems(restricted)] == ["access_mode"]
    assert "allowed: open (restricted needs" in option_problems(restricted)[0].message
    assert option_problems(restricted, restricted_access=True) == []
    assert BenchSwarmSpawner().restricted_enabled is False


def single_host_config() -> Config:
    c = Config()
    c.JupyterHub.services = [
        {"name": "egress", "command": ["python", "-m", "hub_services.egress", "--config-dir=/e"]},
        {"name": "clusters", "command": ["x"]},
    ]
    c.JupyterHub.load_roles = [
        {"name": "egress-service", "services": ["egress"], "scopes": ["read:servers"]},
        {"name": "clusters-service", "services": ["clusters"], "scopes": ["read:servers"]},
    ]
    return c


def test_the_egress_service_made_the_swarms_gateway_is_kept_and_both_sides_get_the_same_ports():
    c = single_host_config()
    assert drop_unsupported_services(c, keep=["egress"]) == ["clusters"]
    use_egress_gateway(c, "tcp://manager:2375", "10.0.0.5", 8081, workspaces_port=10180)
    command = c.JupyterHub.services[0]["command"]
    assert "--docker-host=tcp://manager:2375" in command and "--workspaces-port=10180" in command
    assert "--hub-host=10.0.0.5" in command and "--hub-api-port=8081" in command
    assert config_problems(c.JupyterHub.services, None, None) == []
    BenchSwarmSpawner.check_config(c)
    spawner = BenchSwarmSpawner(config=c, client_kwargs={"base_url": "tcp://manager:2375"})
    assert spawner.restricted_enabled and spawner.gateway_workspaces_port == 10180
    assert spawner.gateway_host == "manager"  # the hub reaches the proxy's published port there
    # the proxy's ids are that engine's (the service's --docker-host), not client_kwargs' TLS API
    local = Config(c)
    use_egress_gateway(local, "unix:///var/run/docker.sock", "10.0.0.5", 8081)
    spawner = BenchSwarmSpawner(config=local, client_kwargs={"base_url": "tcp://manager:2376"})
    assert spawner.egress_state.engine_url == "unix:///var/run/docker.sock"
    assert BenchSwarmSpawner().egress_state.engine_url == ""  # no setting: the local engine


def test_the_single_host_egress_service_kept_as_it_is_does_not_start_a_swarm_hub():
    c = single_host_config()
    drop_unsupported_services(c, keep=["egress"])
    with pytest.raises(TraitError, match="'egress' service.*use_egress_gateway"):
        BenchSwarmSpawner.check_config(c)
    c = single_host_config()
    drop_unsupported_services(c)
    with pytest.raises(ValueError, match="keep it"):
        use_egress_gateway(c, "tcp://manager:2375", "10.0.0.5", 8081)


def test_an_overlay_subnet_too_small_for_the_proxy_and_the_tasks_is_refused():
    with pytest.raises(TraitError, match="28 or less"):
        BenchSwarmSpawner(restricted_subnet_prefix=29)
    with pytest.raises(TraitError, match="prefix_length"):
        BenchSwarmSpawner(restricted_subnet_pool="10.214.0.0/24", restricted_subnet_prefix=20)


def test_the_overlay_is_kept_in_the_state_until_it_is_removed():
    spawner = BenchSwarmSpawner()
    spawner.load_state({"object_name": "bench-ada--ws", "restricted_network": "ov"})
    assert spawner.restricted_network == "ov"
    assert spawner.get_state()["restricted_network"] == "ov"
    again = BenchSwarmSpawner()
    again.load_state({"object_name": "bench-ada--ws"})  # a state from before: none
    assert again.restricted_network == "" and "restricted_network" not in again.get_state()


def test_overlay_subnets_come_from_the_pool_in_the_egress_state_and_go_back(tmp_path):
    state = EgressState(tmp_path)
    pool = ("10.214.0.0/27", 28)
    first = state.allocate_subnet("ada/ws", *pool, 0, avoid=["10.214.0.0/28"])
    assert first == "10.214.0.16/28"  # the first overlaps another network
    assert state.allocate_subnet("ada/ws", *pool, 1) == first  # a key keeps its subnet
    state.release_subnet("ada/ws", *pool, 2)
    state.release_subnet("ada/ws", *pool, 3)  # nothing held: fine
    assert state.allocate_subnet("bob/ws", *pool, 100) == "10.214.0.0/28"


class Removing(BenchSwarmSpawner):
    """A spawner whose engine calls are recorded; ``remove_network`` fails ``busy`` times."""

    name = "ws"

    def __init__(self, busy=0, **kwargs):
        super().__init__(**kwargs)
        self.calls, self.busy = [], busy

    async def docker(self, method, *args, **kwargs):
        from docker.errors import APIError

        self.calls.append(method)
        if method == "remove_network" and self.busy:
            self.busy -= 1
            raise APIError("network has active endpoints")


def test_a_stop_forgets_the_egress_record_before_the_service_and_removes_the_overlay_after(
    tmp_path,
):
    c = Config()
    c.BenchSpawner.egress_config_dir = str(tmp_path)
    spawner = Removing(busy=2, config=c)
    spawner.user = type("U", (), {"name": "ada"})()
    spawner.object_id, spawner.restricted_network = "svc1", "ov"
    state = EgressState(tmp_path)
    state.register("ada/ws", "bench-ada--ws", "10.214.0.25", [], 1.0, {"network": "ov"})
    forgotten_before = []
    original = spawner.docker

    async def watching(method, *args, **kwargs):
        if method == "remove_service":
            forgotten_before.append("ada/ws" not in state.registered())
        return await original(method, *args, **kwargs)

    spawner.docker = watching
    asyncio.run(spawner.remove_object())
    assert forgotten_before == [True]
    assert spawner.calls == ["remove_service", *["remove_network"] * 3]  # retried while busy
    assert spawner.restricted_network == "" and spawner.object_id == ""


def test_an_overlay_that_stays_busy_is_left_for_the_next_start():
    spawner = Removing(busy=10**6, overlay_remove_timeout=0.3)
    spawner.user = type("U", (), {"name": "ada"})()
    spawner.restricted_network = "ov"
    asyncio.run(spawner.remove_overlay())
    assert spawner.restricted_network == "ov"  # kept in the state: the next start reuses it
