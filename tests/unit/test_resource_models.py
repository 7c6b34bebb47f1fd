"""Resource model catalog: defaults, validation messages, host availability."""

import pytest

from benchhub.resource_models import (
    DEFAULT_RESOURCE_MODELS,
    HostCapacity,
    ResourceModel,
    load_catalog,
    unavailable_reason,
)

ICA_SIZES = {
    "standard-small": (2, 8, 0, 0),
    "standard-medium": (4, 16, 0, 0),
    "standard-large": (8, 32, 0, 0),
    "standard-xlarge": (16, 64, 0, 0),
    "standard-2xlarge": (32, 128, 0, 0),
    "himem-small": (8, 64, 0, 0),
    "himem-medium": (16, 128, 0, 0),
    "himem-large": (48, 384, 0, 0),
    "hicpu-small": (16, 32, 0, 0),
    "hicpu-medium": (36, 72, 0, 0),
    "hicpu-large": (72, 144, 0, 0),
    "gpu-small": (8, 61, 1, 16),
    "gpu-medium": (32, 244, 4, 64),
}


def test_default_catalog_has_the_ica_sizes_in_order():
    catalog = load_catalog(DEFAULT_RESOURCE_MODELS)
    assert list(catalog) == list(ICA_SIZES)
    for name, (cpus, memory, gpus, gpu_memory) in ICA_SIZES.items():
        assert catalog[name] == ResourceModel(name, cpus, memory, gpus, gpu_memory)


def test_default_catalog_is_plain_dicts_for_a_traitlets_dict():
    for fields in DEFAULT_RESOURCE_MODELS.values():
        assert type(fields) is dict
        assert all(type(v) in (int, float) for v in fields.values())


@pytest.mark.parametrize(
    "model, text",
    [
        (ResourceModel("standard-small", 2, 8), "2 CPU, 8 GB"),
        (ResourceModel("half", 0.5, 1.5), "0.5 CPU, 1.5 GB"),
        (ResourceModel("gpu-small", 8, 61, 1, 16), "8 CPU, 61 GB, 1 GPU (16 GB)"),
        (ResourceModel("gpu-medium", 32, 244, 4, 64), "32 CPU, 244 GB, 4 GPU (64 GB)"),
    ],
)
def test_describe(model, text):
    assert model.describe() == text


def test_load_catalog_converts_numbers():
    model = load_catalog({"tiny": {"cpus": 1, "memory_gb": 2}})["tiny"]
    assert model == ResourceModel("tiny", 1.0, 2.0, 0, 0.0)
    assert isinstance(model.cpus, float) and isinstance(model.gpus, int)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({}, "define at least one model"),
        ([], "define at least one model"),
        ({"big box": {"cpus": 1, "memory_gb": 1}}, "'big box' is invalid; use 1 to 63"),
        ({"a.b": {"cpus": 1, "memory_gb": 1}}, "'a.b' is invalid"),
        ({"x" * 64: {"cpus": 1, "memory_gb": 1}}, "is invalid; use 1 to 63 characters"),
        ({"m": 4}, "resource model 'm' must be a dict like"),
        ({"m": {"memory_gb": 1}}, "resource model 'm': 'cpus' is missing"),
        ({"m": {"cpus": 1}}, "resource model 'm': 'memory_gb' is missing"),
        ({"m": {"cpus": 0, "memory_gb": 1}}, "'cpus' must be a number greater than 0"),
        ({"m": {"cpus": "2", "memory_gb": 1}}, "'cpus' must be a number greater than 0"),
        ({"m": {"cpus": True, "memory_gb": 1}}, "'cpus' must be a number greater than 0"),
        ({"m": {"cpus": 1, "memory_gb": -1}}, "'memory_gb' must be a number greater than 0"),
        ({"m": {"cpus": 1, "memory_gb": 1, "gpus": -1}}, "'gpus' must be a whole number 0"),
        ({"m": {"cpus": 1, "memory_gb": 1, "gpus": 1.5}}, "'gpus' must be a whole number 0"),
        (
            {"m": {"cpus": 1, "memory_gb": 1, "gpu_memory_gb": 16}},
            "'gpu_memory_gb' is set but 'gpus' is 0",
        ),
        (
            {"m": {"cpus": 1, "memory_gb": 1, "gpus": 1, "gpu_memory_gb": -2}},
            "'gpu_memory_gb' must be a number 0 or more",
        ),
        (
            {"m": {"cpus": 1, "memory_gb": 1, "ram": 4}},
            "unknown key(s) ram; allowed keys: cpus, memory_gb, gpus, gpu_memory_gb",
        ),
    ],
)
def test_load_catalog_refuses_with_a_fix(raw, expected):
    with pytest.raises(ValueError) as caught:
        load_catalog(raw)
    assert expected in str(caught.value)


def test_load_catalog_reports_every_bad_model():
    raw = {"a": {"cpus": 0, "memory_gb": 1}, "b": {"cpus": 1, "memory_gb": 0}}
    with pytest.raises(ValueError) as caught:
        load_catalog(raw)
    assert "resource model 'a'" in str(caught.value)
    assert "resource model 'b'" in str(caught.value)


SMALL_HOST = HostCapacity(cpus=2, memory_gb=23.4321, gpus=0)


@pytest.mark.parametrize(
    "model, host, reason",
    [
        (ResourceModel("s", 2, 8), SMALL_HOST, None),
        (ResourceModel("x", 16, 8), SMALL_HOST, "needs 16 CPUs; this host has 2"),
        (ResourceModel("one", 1, 8), HostCapacity(0.5, 8, 0), "needs 1 CPU; this host has 0.5"),
        (ResourceModel("m", 2, 64), SMALL_HOST, "needs 64 GB memory; this host has 23.4 GB"),
        (ResourceModel("g", 1, 8, 1, 16), SMALL_HOST, "needs 1 GPU; this host has none"),
        (ResourceModel("g4", 1, 8, 4, 64), HostCapacity(8, 64, 1), "needs 4 GPUs; this host has 1"),
        (ResourceModel("exact", 8, 64, 1, 16), HostCapacity(8, 64, 1), None),
    ],
)
def test_unavailable_reason(model, host, reason):
    assert unavailable_reason(model, host) == reason


def test_unavailable_reason_gives_the_first_shortfall_only():
    model = ResourceModel("huge", 16, 64, 1, 16)
    assert unavailable_reason(model, SMALL_HOST) == "needs 16 CPUs; this host has 2"
