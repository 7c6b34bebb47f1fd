"""What BenchSwarmSpawner refuses, and that the legitimate configuration still passes."""

import dataclasses

import pytest
from traitlets import TraitError
from traitlets.config import Config

from bench_spawner.swarm.spawner import BenchSwarmSpawner
from bench_spawner.swarm.unsupported import (
    config_problems,
    drop_unsupported_services,
    option_problems,
)
from benchhub.package_spec import parse_packages
from benchhub.resource_models import load_catalog
from benchhub.workspace_spec import OptionsSchema


def spec(**changes):
    schema = OptionsSchema(
        resource_models=load_catalog({"s": {"cpus": 1, "memory_gb": 1}}),
        image_templates={"jupyterlab": "JupyterLab"},
        template_resource_models={},
        storage_min_gb=1,
        storage_max_gb=10,
        default_image="jupyterlab",
        default_resource_model="s",
        default_storage_gb=1,
    )
    return dataclasses.replace(schema.parse({}), **changes)


def test_an_open_personal_workspace_has_nothing_refused():
    assert option_problems(spec()) == []
    assert option_problems(spec(restore_checkpoint="none")) == []


def test_restricted_access_packages_checkpoints_and_projects_are_refused_naming_the_field():
    problems = option_problems(
        spec(
            access_mode="restricted",
            packages=parse_packages({"pip": ["numpy"]})[0],
            restore_checkpoint="ckpt-1",
            project="genomics",
        )
    )
    assert [p.field for p in problems] == [
        "access_mode",
        "packages",
        "restore_checkpoint",
        "project",
    ]
    assert "allowed: open" in problems[0].message and "docs/swarm.md" in problems[0].message


def test_the_services_acting_on_the_hubs_engine_are_refused_and_others_pass():
    services = [
        {"name": "lifecycle", "command": ["x"]},
        {"name": "clusters", "command": ["x"]},
        {"name": "egress", "command": ["x"]},
        {"name": "tester", "api_token": "t"},
    ]
    problems = config_problems(services, None, None)
    assert len(problems) == 2
    assert "'clusters' service" in problems[0] and "'egress' service" in problems[1]
    assert config_problems([services[0], services[3]], False, None) == []


def test_asking_for_checkpoints_or_the_size_enforced_volume_is_refused():
    assert "checkpoints" in config_problems([], True, None)[0]
    loop = config_problems([], None, "benchhub.volumes.LoopbackVolume")
    assert "size-enforced /data" in loop[0]


def test_a_hub_configured_for_what_a_swarm_cannot_do_does_not_start():
    c = Config()
    c.JupyterHub.services = [{"name": "checkpoints", "command": ["python"]}]
    with pytest.raises(TraitError, match="'checkpoints' service"):
        BenchSwarmSpawner.check_config(c)


def test_the_swarm_spawner_takes_the_catalogue_configured_for_benchspawner():
    c = Config()
    c.BenchSpawner.resource_models = {"tiny": {"cpus": 0.5, "memory_gb": 0.5}}
    c.BenchSpawner.default_resource_model = "tiny"
    c.BenchSpawner.prefix = "site"
    BenchSwarmSpawner.check_config(c)  # a usable configuration passes
    spawner = BenchSwarmSpawner(config=c)
    assert list(spawner.schema.resource_models) == ["tiny"]
    assert spawner.prefix == "site"
    c.BenchSwarmSpawner.default_resource_model = "tiny"  # its own setting wins
    assert BenchSwarmSpawner(config=c).default_resource_model == "tiny"


def test_dropping_the_unsupported_services_removes_their_roles_and_scopes_only():
    c = Config()
    c.JupyterHub.services = [
        {"name": "lifecycle", "command": ["x"]},
        {"name": "clusters", "command": ["x"]},
    ]
    c.JupyterHub.load_roles = [
        {
            "name": "user",
            "scopes": [
                "self",
                "access:services!service=lifecycle",
                "access:services!service=clusters",
            ],
        },
        {"name": "lifecycle-service", "services": ["lifecycle"], "scopes": ["servers"]},
        {"name": "clusters-service", "services": ["clusters"], "scopes": ["servers"]},
        {"name": "admin", "services": ["tester"]},
    ]
    assert drop_unsupported_services(c) == ["clusters"]
    assert [s["name"] for s in c.JupyterHub.services] == ["lifecycle"]
    assert c.JupyterHub.load_roles == [
        {"name": "user", "scopes": ["self", "access:services!service=lifecycle"]},
        {"name": "lifecycle-service", "services": ["lifecycle"], "scopes": ["servers"]},
        {"name": "admin", "services": ["tester"]},  # no scopes added (JupyterHub refuses them)
    ]
    BenchSwarmSpawner.check_config(c)
