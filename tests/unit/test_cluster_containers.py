"""The Docker objects of a cluster as built before any engine sees them: names that stay
short host names, labels that say whose they are, limits from the resource model, the
workspace's /data with its rights, and what economy mode changes."""

import pytest

from hub_services.clusters.containers import (
    CAPABILITIES,
    LABEL,
    ClusterNames,
    Mount,
    NodePlan,
    create_kwargs,
    data_mounts,
    host_config_kwargs,
    labels,
    network_kwargs,
    networking_kwargs,
)

GIB = 1024**3


def plan(**changes) -> NodePlan:
    base = dict(
        name="bench-cluster-k3x9q2-m1",
        role="member",
        image="benchhub/cluster:latest",
        command=["member", "bench-cluster-k3x9q2-manager"],
        network="bench-cluster-k3x9q2",
        address="10.231.0.17",
        cpus=2,
        memory=8 * GIB,
        mounts=[
            Mount("/srv/ws/alice/lab/mnt", "/data"),
            Mount("/srv/project", "/data/project", read_only=True),
        ],
        labels=labels("bench", "k3x9q2", "alice", "lab", "member"),
    )
    return NodePlan(**{**base, **changes})


def test_names_are_short_host_names_and_members_are_numbered_up():
    names = ClusterNames("bench", "k3x9q2")
    assert names.network == "bench-cluster-k3x9q2"
    assert names.manager == "bench-cluster-k3x9q2-manager"
    assert [names.member(n) for n in (1, 2, 50)] == [
        "bench-cluster-k3x9q2-m1",
        "bench-cluster-k3x9q2-m2",
        "bench-cluster-k3x9q2-m50",
    ]
    assert len(ClusterNames("benchhub-site", "ffffff").member(9999)) <= 63
    with pytest.raises(ValueError, match="start at 1"):
        names.member(0)


def test_labels_say_whose_cluster_it_is_but_never_look_like_a_workspace():
    found = labels("bench", "k3x9q2", "alice", "lab", "manager")
    assert found == {
        f"{LABEL}.prefix": "bench",
        f"{LABEL}.id": "k3x9q2",
        f"{LABEL}.user": "alice",
        f"{LABEL}.workspace": "lab",
        f"{LABEL}.role": "manager",
    }
    # the lifecycle and checkpoint services list workspaces by these labels
    assert "org.benchhub.workspace" not in found and "org.benchhub.user" not in found
    assert f"{LABEL}.role" not in labels("bench", "k3x9q2", "alice", "lab", None)
    with pytest.raises(ValueError, match="manager, member"):
        labels("bench", "k3x9q2", "alice", "lab", "worker")


def test_the_network_has_its_own_subnet_gateway_mtu_and_is_internal_for_restricted():
    kwargs = network_kwargs("bench-cluster-k3x9q2", "10.231.0.64/26", True, 1400, {"a": "b"})
    pool = kwargs["ipam"]["Config"][0]
    assert (pool["Subnet"], pool["Gateway"]) == ("10.231.0.64/26", "10.231.0.65")
    assert kwargs["internal"] is True and kwargs["driver"] == "bridge"
    assert kwargs["options"] == {"com.docker.network.driver.mtu": "1400"}
    assert network_kwargs("n", "10.231.0.0/26", False, 1500, {})["internal"] is False


def test_data_mounts_are_the_workspaces_data_and_below_with_the_same_rights():
    workspace = {
        "Mounts": [
            {"Type": "bind", "Source": "/srv/p", "Destination": "/data/project", "RW": False},
            {"Type": "bind", "Source": "/srv/ws/mnt", "Destination": "/data", "RW": True},
            {"Type": "bind", "Source": "/srv/home", "Destination": "/home/jovyan", "RW": True},
            {"Type": "volume", "Source": "/var/lib/docker/v", "Destination": "/data/cache"},
            {"Type": "bind", "Source": "/srv/other", "Destination": "/database", "RW": True},
        ]
    }
    assert data_mounts(workspace) == [
        Mount("/srv/ws/mnt", "/data"),
        Mount("/srv/p", "/data/project", read_only=True),
    ]
    assert data_mounts({"Mounts": None}) == []


def test_a_member_is_limited_by_its_model_with_few_capabilities_and_fixed_address():
    config = host_config_kwargs(plan())
    assert (config["cpu_period"], config["cpu_quota"]) == (100_000, 200_000)
    assert config["mem_limit"] == config["memswap_limit"] == 8 * GIB  # no swap
    assert config["cap_drop"] == ["ALL"] and config["cap_add"] == CAPABILITIES
    assert CAPABILITIES == ["KILL", "SETGID", "SETUID"]  # to start daemons as their users
    assert config["security_opt"] == ["no-new-privileges:true"]
    assert config["binds"] == {
        "/srv/ws/alice/lab/mnt": {"bind": "/data", "mode": "rw"},
        "/srv/project": {"bind": "/data/project", "mode": "ro"},
    }
    assert config["restart_policy"] == {"Name": "no"} and config["network_mode"] == plan().network
    assert "oom_score_adj" not in config and "device_requests" not in config
    assert networking_kwargs(plan()) == {
        "bench-cluster-k3x9q2": {"ipv4_address": "10.231.0.17", "aliases": []}
    }


def test_the_host_name_is_the_container_name():
    kwargs = create_kwargs(plan())
    assert kwargs["name"] == kwargs["hostname"] == "bench-cluster-k3x9q2-m1"
    assert kwargs["command"] == ["member", "bench-cluster-k3x9q2-manager"]
    assert kwargs["volumes"] == ["/data", "/data/project"]
    assert kwargs["labels"][f"{LABEL}.role"] == "member"


def test_economy_members_are_reclaimed_first_and_gpus_are_requested():
    config = host_config_kwargs(plan(preemptible=True, gpus=1))
    assert config["oom_score_adj"] == 500 and config["cpu_shares"] == 512
    assert config["device_requests"] == [{"Driver": "", "Count": 1, "Capabilities": [["gpu"]]}]


def test_a_tiny_cpu_share_still_gets_a_valid_quota():
    assert host_config_kwargs(plan(cpus=0.001))["cpu_quota"] == 1000
