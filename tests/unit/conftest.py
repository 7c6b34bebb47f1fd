"""Shared unit-test fixtures."""

import pytest

from bench_spawner.options import OptionsSchema
from bench_spawner.resource_models import DEFAULT_RESOURCE_MODELS, load_catalog


@pytest.fixture
def schema():
    return OptionsSchema(
        resource_models=load_catalog(DEFAULT_RESOURCE_MODELS),
        image_templates={"jupyterlab": "JupyterLab 4", "rstudio": "RStudio Server"},
        default_image="jupyterlab",
    )
