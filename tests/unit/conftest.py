"""Shared unit-test fixtures."""

import pytest

from benchhub.resource_models import DEFAULT_RESOURCE_MODELS, load_catalog
from benchhub.workspace_spec import OptionsSchema


@pytest.fixture
def schema():
    return OptionsSchema(
        resource_models=load_catalog(DEFAULT_RESOURCE_MODELS),
        image_templates={"jupyterlab": "JupyterLab 4", "rstudio": "RStudio Server"},
        default_image="jupyterlab",
    )
