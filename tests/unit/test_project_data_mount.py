"""``/data/project`` in the container plan: a plain bind, read-only or read-write, or none
(what cluster members mirror from ``docker inspect``), without an engine."""

from __future__ import annotations

import dataclasses

import pytest

from bench_spawner.container import ContainerPlan, create_kwargs, host_config_kwargs
from benchhub.resource_models import ResourceModel

PLAN = ContainerPlan(
    name="bench-carl--align",
    image="benchhub/jupyterlab:latest",
    model=ResourceModel("m", cpus=1, memory_gb=1),
    network="bench-open",
    data_source="/srv/ws/mnt",
    environment={},
    labels={},
)
DATA = {"/srv/ws/mnt": {"bind": "/data", "mode": "rw"}}


@pytest.mark.parametrize(("read_only", "mode"), [(True, "ro"), (False, "rw")])
def test_project_data_is_bound_at_data_project_in_its_mode(read_only, mode):
    plan = dataclasses.replace(PLAN, project_data=("/srv/projects/lab/data/mnt", read_only))
    binds = host_config_kwargs(plan)["binds"]
    assert binds == {**DATA, "/srv/projects/lab/data/mnt": {"bind": "/data/project", "mode": mode}}
    assert create_kwargs(plan)["volumes"] == ["/data", "/data/project"]


def test_without_project_data_only_data_is_mounted():
    assert host_config_kwargs(PLAN)["binds"] == DATA
    assert create_kwargs(PLAN)["volumes"] == ["/data"]
