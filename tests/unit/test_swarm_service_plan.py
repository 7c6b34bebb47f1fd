"""A workspace's Swarm service spec and placement from its resource model (pure)."""

from bench_spawner.swarm.service_plan import (
    GIB,
    ServicePlan,
    create_service_kwargs,
    largest_worker,
    node_view,
    reservations,
    unfit_reason,
)
from benchhub.resource_models import HostCapacity, ResourceModel

SMALL = ResourceModel("test-small", cpus=0.5, memory_gb=0.5)


def node(id_, role="worker", cpus=2, memory_gb=4, state="ready", availability="active", gpus=0):
    resources = {"NanoCPUs": int(cpus * 1e9), "MemoryBytes": int(memory_gb * GIB)}
    if gpus:
        resources["GenericResources"] = [{"DiscreteResourceSpec": {"Kind": "gpu", "Value": gpus}}]
    return node_view(
        {
            "ID": id_,
            "Description": {"Hostname": f"host-{id_}", "Resources": resources},
            "Spec": {"Role": role, "Availability": availability},
            "Status": {"State": state, "Addr": f"10.0.0.{len(id_)}"},
        }
    )


def plan(**changes):
    fields = dict(
        name="bench-ada--ws",
        image="benchhub/jupyterlab:latest",
        model=SMALL,
        environment={"JUPYTERHUB_API_TOKEN": "t"},
        labels={"org.benchhub.user": "ada"},
        port=8888,
        data_volume="bench-ada--ws-data",
    )
    return ServicePlan(**{**fields, **changes})


def test_the_model_is_both_reserved_and_enforced_and_the_service_never_restarts():
    task = create_service_kwargs(plan())["task_template"]
    half_gib = GIB // 2
    assert task["Resources"] == {
        "Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": half_gib},
        "Reservations": {"NanoCPUs": 500_000_000, "MemoryBytes": half_gib},
    }
    assert task["RestartPolicy"]["Condition"] == "none"


def test_gpus_are_reserved_as_the_sites_generic_resource():
    gpu = ResourceModel("gpu-small", cpus=8, memory_gb=61, gpus=1, gpu_memory_gb=16)
    task = create_service_kwargs(plan(model=gpu, gpu_kind="NVIDIA-GPU"))["task_template"]
    generic = task["Resources"]["Reservations"]["GenericResources"]
    assert generic == [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}]


def test_workspaces_go_to_workers_and_a_known_node_pins_the_workspace_to_its_data():
    assert create_service_kwargs(plan())["task_template"]["Placement"]["Constraints"] == [
        "node.role==worker"
    ]
    pinned = create_service_kwargs(plan(node_id="abc", constraints=("node.labels.x==y",)))
    assert pinned["task_template"]["Placement"]["Constraints"] == [
        "node.labels.x==y",
        "node.id==abc",
    ]


def test_data_is_a_volume_on_the_node_and_the_port_is_published_on_the_nodes_own_address():
    kwargs = create_service_kwargs(plan())
    spec = kwargs["task_template"]["ContainerSpec"]
    assert spec["Mounts"] == [
        {"Target": "/data", "Source": "bench-ada--ws-data", "Type": "volume", "ReadOnly": False}
    ]
    assert spec["CapabilityDrop"] == ["ALL"]
    assert kwargs["endpoint_spec"]["Ports"] == [
        {"Protocol": "tcp", "PublishedPort": None, "TargetPort": 8888, "PublishMode": "host"}
    ]
    assert kwargs["name"] == "bench-ada--ws"


def test_the_largest_worker_counts_only_workers_that_take_workspaces():
    nodes = [
        node("m", role="manager", cpus=64, memory_gb=512),
        node("w1", cpus=2, memory_gb=8),
        node("w2", cpus=4, memory_gb=4, gpus=2),
        node("w3", cpus=32, state="down"),
        node("w4", cpus=32, availability="drain"),
    ]
    assert largest_worker(nodes) == HostCapacity(cpus=4, memory_gb=8, gpus=2)
    assert largest_worker([]) == HostCapacity(0, 0, 0)


def test_a_model_fits_only_if_one_worker_holds_all_of_it():
    nodes = [node("w1", cpus=4, memory_gb=1), node("w2", cpus=1, memory_gb=8)]
    assert unfit_reason(ResourceModel("a", cpus=1, memory_gb=1), nodes) is None
    both = unfit_reason(ResourceModel("b", cpus=2, memory_gb=2), nodes)
    assert both == "no single worker node has all of its CPUs, memory and GPUs"


def test_a_model_bigger_than_every_worker_says_what_it_needs_and_the_largest_has():
    nodes = [node("w1", cpus=2, memory_gb=4)]
    assert unfit_reason(ResourceModel("x", 4096, 1), nodes) == (
        "needs 4096 CPUs; the largest worker node has 2"
    )
    assert unfit_reason(ResourceModel("y", 1, 64), nodes) == (
        "needs 64 GB memory; the largest worker node has 4 GB"
    )
    gpu = ResourceModel("z", 1, 1, gpus=1, gpu_memory_gb=16)
    assert unfit_reason(gpu, nodes) == "needs 1 GPU; the largest worker node has none"
    assert unfit_reason(SMALL, []) == "no worker node of the swarm is ready and active"


def test_a_moves_receiver_reserves_the_model_without_its_limits():
    model = ResourceModel("m", cpus=1.5, memory_gb=2, gpus=1)
    reserved = reservations(model)
    assert reserved["Reservations"]["NanoCPUs"] == 1_500_000_000
    assert reserved["Reservations"]["MemoryBytes"] == 2 * 1024**3
    assert "Limits" not in reserved
