"""Which image name a swarm node runs (bench_spawner/swarm/image_names.py): the template's
own name by default, the site registry's name for it when one is configured."""

import pytest

from bench_spawner.swarm.image_names import names_registry, node_image, registry_problem


def test_without_a_registry_nodes_run_the_templates_image_as_loaded():
    assert node_image("benchhub/jupyterlab:latest", "") == "benchhub/jupyterlab:latest"


def test_with_a_registry_nodes_pull_the_name_build_sh_pushed():
    assert node_image("benchhub/jupyterlab:latest", "manager:5000") == (
        "manager:5000/benchhub/jupyterlab:latest"
    )
    assert node_image("busybox", "127.0.0.1:5000") == "127.0.0.1:5000/busybox"


@pytest.mark.parametrize(
    "image", ["127.0.0.1:5000/benchhub/r:latest", "localhost/x:1", "reg.site.lan/team/img"]
)
def test_an_image_that_names_its_own_registry_is_left_as_it_is(image):
    assert names_registry(image)
    assert node_image(image, "manager:5000") == image


@pytest.mark.parametrize("registry", ["", "manager", "manager:5000", "192.168.250.5:5000"])
def test_a_host_or_host_and_port_is_a_registry_address(registry):
    assert registry_problem(registry) is None


@pytest.mark.parametrize(
    "registry", ["http://manager:5000", "manager:5000/", "manager:port", "-bad", "a b"]
)
def test_anything_else_is_refused_naming_the_setting_and_the_form(registry):
    problem = registry_problem(registry)
    assert problem.startswith("image_registry must be host or host:port"), problem
    assert repr(registry) in problem
