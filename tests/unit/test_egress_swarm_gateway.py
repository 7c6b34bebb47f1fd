"""The egress service as a swarm's gateway (hub_services/egress, ``workspaces_port`` set): the
proxy joins each restricted workspace's own overlay, the gateway routes each record's prefix,
and a registration counts as loaded only once the proxy is on its overlay. The engine is a
fake here; tests/swarm/test_swarm_restricted_workspaces.py runs the real thing."""

from __future__ import annotations

import asyncio

import pytest
from docker.errors import APIError, NotFound

from benchhub.egress_state import EgressState
from benchhub.hub_client import HubClient, HubServer
from hub_services.egress.service import EgressService
from hub_services.egress.swarm_records import lost_record

ROUTE = {"network": "ov-ada", "proxy_address": "10.214.0.18", "prefix": "/user/ada/ws/"}


class FakeEngine:
    """The manager's engine as the service sees it: one proxy container, its networks."""

    base_url = "tcp://manager:2375"

    def __init__(self, services=("bench-ada--ws",), unjoinable=()):
        self.networks = {"bench-egress-out": {"IPAddress": "172.20.0.2"}, "ov-gone": {}}
        self.services, self.unjoinable, self.calls = set(services), set(unjoinable), []

    async def inspect(self, container):
        return {"State": {"Running": True}, "NetworkSettings": {"Networks": dict(self.networks)}}

    async def call(self, method, *args, **kwargs):
        self.calls.append((method, args, kwargs))
        if method == "connect_container_to_network":
            if args[1] in self.unjoinable:
                raise APIError("network not found")
            self.networks[args[1]] = {"IPAddress": kwargs["ipv4_address"]}
        elif method == "disconnect_container_from_network":
            self.networks.pop(args[1])
        elif method == "inspect_service" and args[0] not in self.services:
            raise NotFound("no such service")


def gateway_service(tmp_path, engine) -> EgressService:
    service = EgressService(
        config_dir=str(tmp_path),
        workspaces_port=10180,
        hub_port=8081,
        hub_host="10.0.0.5",
        hub_api_port=8081,
    )
    service.engine = service.proxy.engine = engine
    return service


def register(state, key="ada/ws", address="10.214.0.25", gateway=None, service="bench-ada--ws"):
    route = {**ROUTE, "port": 8888} if gateway is None else gateway
    return state.register(key, service, address, ["allowed.test"], None, route)


def test_a_registration_is_loaded_once_the_proxy_is_on_its_overlay_with_its_route(tmp_path):
    engine = FakeEngine()
    service = gateway_service(tmp_path, engine)
    stamp = register(service.state)
    asyncio.run(service.reconcile(full=False))
    assert engine.networks["ov-ada"] == {"IPAddress": "10.214.0.18"}
    assert "ov-gone" not in engine.networks  # no record names it: left, so it can be removed
    assert "bench-egress-out" in engine.networks
    assert service.state.is_loaded("ada/ws", stamp)
    conf = service.state.conf_path.read_text()
    assert (
        "cache_peer 10.214.0.25 parent 8888 0 no-query originserver login=PASSTHRU name=gw0" in conf
    )
    assert "acl gw0_path urlpath_regex ^/user/ada/ws/" in conf
    assert "http_port 10180 accel name=gateway_workspaces" in conf
    assert "acl ws0 src 10.214.0.25/32" in conf  # and its own whitelist on the forward port


def test_a_record_whose_overlay_the_proxy_cannot_join_is_never_loaded(tmp_path):
    engine = FakeEngine(unjoinable={"ov-ada"})
    service = gateway_service(tmp_path, engine)
    stamp = register(service.state)
    asyncio.run(service.reconcile(full=False))
    assert not service.state.is_loaded("ada/ws", stamp)  # the start fails closed


def test_a_record_without_a_route_squid_can_match_is_left_out_and_never_loaded(tmp_path):
    service = gateway_service(tmp_path, FakeEngine())
    bad = register(service.state, gateway={**ROUTE, "prefix": "/user/ada/my ws/", "port": 8888})
    none = register(service.state, key="bob/ws", address="10.214.0.41", gateway={})
    asyncio.run(service.reconcile(full=False))
    assert not service.state.is_loaded("ada/ws", bad)
    assert not service.state.is_loaded("bob/ws", none)
    assert "10.214.0.41" not in service.state.conf_path.read_text()


def test_a_forgotten_workspace_loses_its_route_and_the_proxy_leaves_its_overlay(tmp_path):
    engine = FakeEngine()
    service = gateway_service(tmp_path, engine)
    register(service.state)
    asyncio.run(service.reconcile(full=False))
    service.state.forget("ada/ws", 1.0)
    asyncio.run(service.reconcile(full=False))
    assert "ov-ada" not in engine.networks
    assert "10.214.0.25" not in service.state.conf_path.read_text()


def test_a_record_whose_swarm_service_is_gone_is_dropped_after_the_start_grace(tmp_path):
    engine = FakeEngine(services=())
    service = gateway_service(tmp_path, engine)
    service.start_grace = 0
    register(service.state)
    asyncio.run(service._drop_stopped())
    assert service.state.registered() == {}
    kept = gateway_service(tmp_path, FakeEngine())
    kept.start_grace = 0
    register(kept.state)
    asyncio.run(kept._drop_stopped())
    assert list(kept.state.registered()) == ["ada/ws"]


def test_the_proxy_publishes_the_workspaces_port_and_the_state_knows_its_engine(tmp_path):
    with pytest.raises(ValueError, match="hub_host must be"):  # the service does not start
        EgressService(config_dir=str(tmp_path), workspaces_port=10180)
    service = EgressService(
        config_dir=str(tmp_path),
        workspaces_port=10180,
        docker_host="tcp://manager:2375",
        hub_host="10.0.0.5",
    )
    assert service.proxy.published_port == 10180
    assert service.engine.base_url == "tcp://manager:2375"
    assert EgressState(tmp_path, "tcp://manager:2375").engine_url == "tcp://manager:2375"
    single = EgressService(config_dir=str(tmp_path))
    assert single.gateway is None and single.proxy.published_port is None


def test_the_gateway_proxy_publishes_its_port_and_knows_the_configured_names(tmp_path):
    class Creating(FakeEngine):
        async def inspect(self, container):
            created = any(call[0] == "start" for call in self.calls)
            return await super().inspect(container) if created else None

        async def remove(self, container):
            pass

    engine = Creating()
    service = gateway_service(tmp_path, engine)
    service.proxy.hosts = {"mirror.site": "10.0.0.7"}
    service.proxy._wait_listening = lambda: asyncio.sleep(0)
    asyncio.run(service.proxy.ensure(None, None))
    host_config = next(kw for method, _, kw in engine.calls if method == "create_host_config")
    assert host_config["port_bindings"] == {10180: 10180}
    assert host_config["extra_hosts"] == {"mirror.site": "10.0.0.7"}
    assert not [c for c in engine.calls if c[0] == "connect_container_to_network"]


OVERLAY = {
    "Id": "net1",
    "Name": "bench-ada--ws-restricted",
    "Labels": {"org.benchhub.network": "swarm-restricted"},
    "IPAM": {"Config": [{"Subnet": "10.214.0.16/28"}]},
}
SERVICE = {
    "ID": "svc1",
    "Spec": {
        "Name": "bench-ada--ws",
        "Labels": {"org.benchhub.user": "ada", "org.benchhub.workspace": "ws"},
        "TaskTemplate": {
            "Networks": [{"Target": "net1"}],
            "ContainerSpec": {"Env": ["JUPYTERHUB_SERVICE_URL=http://0.0.0.0:8890/user/ada/ws/"]},
        },
    },
}
TASKS = [
    {"Status": {"State": "shutdown"}, "NetworksAttachments": []},
    {
        "Status": {"State": "running"},
        "NetworksAttachments": [{"Network": {"ID": "net1"}, "Addresses": ["10.214.0.25/28"]}],
    },
]
SERVER = {
    "url": "/user/ada/ws/",
    "user_options": {
        "access_mode": "restricted",
        "whitelist": ["allowed.test", ".x.org", "a.x.org"],
    },
}


def test_a_lost_record_is_rebuilt_from_the_service_its_overlay_its_task_and_the_hub():
    record = lost_record(SERVICE, OVERLAY, TASKS, SERVER)
    assert record == {
        "container": "bench-ada--ws",
        "address": "10.214.0.25",
        "entries": ["allowed.test", ".x.org"],  # normalised, as the options store them
        "gateway": {
            "network": "bench-ada--ws-restricted",
            "proxy_address": "10.214.0.18",
            "prefix": "/user/ada/ws/",
            "port": 8890,
        },
    }


@pytest.mark.parametrize(
    ("service", "network", "tasks", "server"),
    [
        (SERVICE, {**OVERLAY, "Labels": {}}, TASKS, SERVER),  # not a restricted overlay
        (SERVICE, OVERLAY, TASKS[:1], SERVER),  # its task does not run
        (SERVICE, OVERLAY, TASKS, {}),  # the hub does not list it running
        (SERVICE, OVERLAY, TASKS, {**SERVER, "user_options": {"access_mode": "open"}}),
    ],
)
def test_nothing_is_adopted_that_is_no_running_restricted_workspace(
    service, network, tasks, server
):
    assert lost_record(service, network, tasks, server) is None


def test_the_service_adopts_a_running_restricted_workspace_whose_record_was_lost(tmp_path):
    class Swarm(FakeEngine):
        async def call(self, method, *args, **kwargs):
            await super().call(method, *args, **kwargs)
            return {"services": [SERVICE], "inspect_network": OVERLAY, "tasks": TASKS}.get(method)

    class Hub(HubClient):
        async def active_servers(self):
            yield HubServer("ada", "ws", SERVER)

    service = gateway_service(tmp_path, Swarm())
    service.hub = Hub()
    asyncio.run(service.reconcile(full=True))
    record = service.state.registered()["ada/ws"]
    assert record["address"] == "10.214.0.25" and record["gateway"]["prefix"] == "/user/ada/ws/"
    assert service.state.is_loaded("ada/ws", record["registered_at"])
    assert "acl gw0_path urlpath_regex ^/user/ada/ws/" in service.state.conf_path.read_text()
