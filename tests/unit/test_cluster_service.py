"""The 400 a bad start request gets, and the resource catalogue the service reads from the hub.

Who may see and change a workspace's cluster is the one access rule: tests/unit/test_access.py."""

import pytest

from benchhub.resource_models import load_catalog
from benchhub.service_web import ApiError
from hub_services.clusters.web import ResourceCatalog, check_request

MODELS = load_catalog(
    {
        "test-small": {"cpus": 0.5, "memory_gb": 0.5},
        "standard-small": {"cpus": 2, "memory_gb": 8},
        "standard-xlarge": {"cpus": 16, "memory_gb": 64},
    }
)
UNAVAILABLE = {"standard-xlarge": "needs 16 CPUs; this host has 2"}


def refused(raw) -> ApiError:
    with pytest.raises(ApiError) as err:
        check_request(raw, MODELS, UNAVAILABLE, "standard-medium")
    assert err.value.status_code == 400
    return err.value


def test_a_good_request_gives_settings_and_the_members_model():
    settings, model = check_request(
        {"type": "dynamic", "max_members": 4, "resource_model": "standard-small"},
        MODELS,
        UNAVAILABLE,
        "standard-medium",
    )
    assert (settings.min_members, settings.max_members, model.cpus) == (0, 4, 2)


def test_schema_errors_name_every_field():
    error = refused(
        {"type": "static", "members": 99, "colour": "blue", "resource_model": "standard-small"}
    )
    fields = [e["field"] for e in error.extra["errors"]]
    assert fields == ["colour", "members"]
    assert error.message.startswith("colour: unknown setting 'colour'")


def test_what_this_service_cannot_do_is_a_400_too():
    error = refused(
        {"type": "static", "members": 1, "web_access": True, "resource_model": "standard-xlarge"}
    )
    assert [e["field"] for e in error.extra["errors"]] == ["resource_model"]
    assert "standard-xlarge needs 16 CPUs; this host has 2; choose a smaller model" in error.message


def test_without_the_default_model_in_the_catalog_its_first_model_is_the_default():
    error = refused({"type": "static", "members": 1})  # test-small: no core left for jobs
    assert error.extra["errors"][0]["field"] == "resource_model"
    assert "test-small" in error.message


class FakeHub:
    def __init__(self):
        self.calls = 0

    async def request(self, method, path):
        self.calls += 1
        return {
            "resource_models": [
                {
                    "name": "standard-small",
                    "cpus": 2.0,
                    "memory_gb": 8.0,
                    "gpus": 0,
                    "gpu_memory_gb": 0.0,
                    "unavailable_reason": None,
                },
                {
                    "name": "standard-xlarge",
                    "cpus": 16.0,
                    "memory_gb": 64.0,
                    "gpus": 0,
                    "gpu_memory_gb": 0.0,
                    "unavailable_reason": "needs 16 CPUs; this host has 2",
                },
            ],
            "host": {"cpus": 2, "memory_gb": 23.4, "gpus": 0},
        }


async def test_the_catalog_is_the_hubs_and_is_cached():
    hub = FakeHub()
    catalog = ResourceCatalog(hub, ttl=60)
    models, unavailable = await catalog.get()
    assert list(models) == ["standard-small", "standard-xlarge"]
    assert unavailable == {"standard-xlarge": "needs 16 CPUs; this host has 2"}
    await catalog.get()
    assert hub.calls == 1
