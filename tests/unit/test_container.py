"""The container plan: limits and the security baseline, without an engine."""

from bench_spawner.container import (
    NO_ROOT_NOTICE,
    ROOT_CAPABILITIES,
    ContainerPlan,
    create_kwargs,
    host_config_kwargs,
    root_inside,
)
from benchhub.resource_models import ResourceModel

GIB = 1024**3


def plan(model: ResourceModel) -> ContainerPlan:
    return ContainerPlan(
        name="bench-alice--ws",
        image="benchhub/jupyterlab:latest",
        model=model,
        network="bench-open",
        data_source="/srv/ws/mnt",
        environment={"A": "1"},
        labels={"org.benchhub.user": "alice"},
    )


def test_cpu_and_memory_become_quota_and_limit_without_swap():
    hc = host_config_kwargs(plan(ResourceModel("m", cpus=2, memory_gb=8)))
    assert hc["cpu_quota"] == 200_000 and hc["cpu_period"] == 100_000
    assert hc["mem_limit"] == 8 * GIB == hc["memswap_limit"]
    assert "device_requests" not in hc


def test_fractional_cpus_and_gpus():
    hc = host_config_kwargs(plan(ResourceModel("g", cpus=0.5, memory_gb=0.5, gpus=2)))
    assert hc["cpu_quota"] == 50_000 and hc["mem_limit"] == GIB // 2
    assert hc["device_requests"] == [{"Driver": "", "Count": 2, "Capabilities": [["gpu"]]}]


def test_security_baseline_and_only_data_mounted():
    hc = host_config_kwargs(plan(ResourceModel("m", cpus=1, memory_gb=1)))
    assert hc["cap_drop"] == ["ALL"] and "cap_add" not in hc
    assert hc["security_opt"] == ["no-new-privileges:true"]
    assert hc["pids_limit"] == 4096
    assert hc["binds"] == {"/srv/ws/mnt": {"bind": "/data", "mode": "rw"}}
    assert hc["network_mode"] == "bench-open"
    assert "privileged" not in hc


def test_with_root_inside_the_workspace_gets_only_the_capabilities_apt_needs():
    from dataclasses import replace

    rooted = replace(plan(ResourceModel("m", cpus=1, memory_gb=1)), root_inside=True)
    hc = host_config_kwargs(rooted)
    assert hc["cap_drop"] == ["ALL"] and hc["cap_add"] == ROOT_CAPABILITIES
    assert hc["security_opt"] == []  # sudo is set-uid: no-new-privileges would stop it
    assert not {"SYS_ADMIN", "NET_ADMIN", "NET_RAW", "MKNOD", "SYS_MODULE"} & set(hc["cap_add"])
    assert "privileged" not in hc and hc["pids_limit"] == 4096


def test_root_inside_only_where_the_engine_remaps_and_the_operator_allows():
    assert root_inside(engine_remaps=True, allowed=True) == (True, None)
    assert root_inside(engine_remaps=False, allowed=True) == (False, NO_ROOT_NOTICE)
    assert root_inside(engine_remaps=True, allowed=False) == (False, None)
    assert "System packages are unavailable" in NO_ROOT_NOTICE
    assert "does not remap user ids" in NO_ROOT_NOTICE


def test_create_kwargs_carry_name_image_env_and_labels():
    kw = create_kwargs(plan(ResourceModel("m", cpus=1, memory_gb=1)))
    assert kw["name"] == "bench-alice--ws" and kw["image"] == "benchhub/jupyterlab:latest"
    assert kw["environment"] == {"A": "1"} and kw["labels"]["org.benchhub.user"] == "alice"
    assert kw["ports"] == [8888]


def test_restricted_network_is_internal_with_our_subnet_and_gateway_first():
    from benchhub.networks import network_create_kwargs

    kw = network_create_kwargs("bench-restricted", "restricted", "10.213.0.0/16", 1400)
    assert kw["internal"] is True
    pool = kw["ipam"]["Config"][0]
    assert (pool["Subnet"], pool["Gateway"]) == ("10.213.0.0/16", "10.213.0.1")
    assert kw["options"] == {
        "com.docker.network.driver.mtu": "1400",
        "com.docker.network.bridge.enable_icc": "false",
    }
    opened = network_create_kwargs("bench-open", "open", None, 1500)
    assert opened["internal"] is False and opened["ipam"] is None


def test_the_engine_keeps_at_most_30_mb_of_a_workspaces_output():
    hc = host_config_kwargs(plan(ResourceModel("m", cpus=1, memory_gb=1)))
    assert hc["log_config"] == {"type": "json-file", "config": {"max-size": "10m", "max-file": "3"}}


def test_a_restricted_workspace_fails_a_name_lookup_after_one_short_try():
    from dataclasses import replace

    restricted = replace(plan(ResourceModel("m", cpus=1, memory_gb=1)), dns=["10.213.0.2"])
    hc = host_config_kwargs(restricted)
    assert hc["dns"] == ["10.213.0.2"] and hc["dns_opt"] == ["timeout:1", "attempts:1"]
    assert "dns_opt" not in host_config_kwargs(plan(ResourceModel("m", cpus=1, memory_gb=1)))
