"""Cluster settings as a user submits them (REST JSON or form text): what is accepted, the
defaults, and the sentence each refusal shows."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchhub.resource_models import DEFAULT_RESOURCE_MODELS, load_catalog
from benchhub.workspace_spec import OptionsError
from hub_services.clusters.scaling import Capacity, ScalingPolicy
from hub_services.clusters.settings import SETTING_NAMES, ClusterSchema, ClusterSettings

MIB = 1024**2
MODELS = load_catalog(DEFAULT_RESOURCE_MODELS)


@pytest.fixture
def schema():
    return ClusterSchema(MODELS)


def refusal(schema, raw, prefix="") -> list[tuple[str, str]]:
    with pytest.raises(OptionsError) as err:
        schema.parse(raw, prefix=prefix)
    return [(e.field, e.message) for e in err.value.errors]


def test_a_static_cluster_has_fixed_members_and_defaults_for_the_rest(schema):
    assert schema.parse({"type": "static", "members": 3}) == ClusterSettings(
        type="static",
        min_members=3,
        max_members=3,
        resource_model="standard-medium",
        dedicated_manager=False,
        scratch_gb=0,
        web_access=False,
        preemptible=False,
    )


def test_a_dynamic_cluster_scales_from_zero_by_default(schema):
    settings = schema.parse({"type": "dynamic", "max_members": 50})
    assert (settings.min_members, settings.max_members) == (0, 50)


def test_form_text_is_accepted(schema):
    raw = {
        "type": "dynamic",
        "min_members": "2",
        "max_members": " 8 ",
        "dedicated_manager": "on",
        "web_access": "True",
        "preemptible": "no",
        "scratch_gb": "100",
        "resource_model": "himem-small",
    }
    assert schema.parse(raw) == ClusterSettings(
        "dynamic", 2, 8, "himem-small", True, 100, True, False
    )


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "static", "members": 1},
        {"type": "static", "members": 50, "scratch_gb": 16384},
        {"type": "dynamic", "min_members": 5, "max_members": 5, "preemptible": True},
        {"type": "dynamic", "max_members": 1, "resource_model": "gpu-small", "web_access": True},
    ],
)
def test_canonical_options_parse_back_to_the_same_settings(schema, raw):
    settings = schema.parse(raw)
    options = settings.to_options()
    assert schema.parse(options) == settings
    members_keys = {"members"} if settings.type == "static" else {"min_members", "max_members"}
    assert set(options) == set(SETTING_NAMES) - (
        {"members", "min_members", "max_members"} - members_keys
    )


@pytest.mark.parametrize(
    "raw, field, message",
    [
        ({}, "type", "must be one of: static, dynamic; got nothing"),
        ({"type": "elastic"}, "type", "must be one of: static, dynamic; got 'elastic'"),
        ({"type": "static"}, "members", "must be a whole number from 1 to 50, got nothing"),
        ({"type": "static", "members": 0}, "members", "must be a whole number from 1 to 50, got 0"),
        (
            {"type": "static", "members": 51},
            "members",
            "must be a whole number from 1 to 50, got 51",
        ),
        (
            {"type": "static", "members": 2.5},
            "members",
            "must be a whole number from 1 to 50, got 2.5",
        ),
        (
            {"type": "static", "members": True},
            "members",
            "must be a whole number from 1 to 50, got True",
        ),
        ({"type": "dynamic"}, "max_members", "must be a whole number from 1 to 50, got nothing"),
        (
            {"type": "dynamic", "max_members": 51},
            "max_members",
            "must be a whole number from 1 to 50, got 51",
        ),
        (
            {"type": "dynamic", "min_members": -1, "max_members": 3},
            "min_members",
            "must be a whole number from 0 to 50, got -1",
        ),
        (
            {"type": "dynamic", "min_members": 4, "max_members": 3},
            "min_members",
            "must not exceed max_members (3), got 4; lower min_members or raise max_members",
        ),
        (
            {"type": "static", "members": 1, "resource_model": "huge"},
            "resource_model",
            "'huge' is not a resource model; allowed: " + ", ".join(MODELS),
        ),
        (
            {"type": "static", "members": 1, "dedicated_manager": "maybe"},
            "dedicated_manager",
            "must be true or false, got 'maybe'",
        ),
        (
            {"type": "static", "members": 1, "web_access": 1},
            "web_access",
            "must be true or false, got 1",
        ),
        (
            {"type": "static", "members": 1, "scratch_gb": -1},
            "scratch_gb",
            "must be a whole number of GB from 0 (no scratch) to 16384, got -1",
        ),
        (
            {"type": "static", "members": 1, "scratch_gb": "lots"},
            "scratch_gb",
            "must be a whole number of GB from 0 (no scratch) to 16384, got 'lots'",
        ),
    ],
)
def test_each_refusal_names_the_field_and_what_is_allowed(schema, raw, field, message):
    assert refusal(schema, raw) == [(field, message)]


@pytest.mark.parametrize(
    "raw, field, message",
    [
        (
            {"type": "static", "members": 2, "max_members": 4},
            "max_members",
            "is only for type 'dynamic'; a static cluster takes members",
        ),
        (
            {"type": "dynamic", "members": 2, "max_members": 4},
            "members",
            "is only for type 'static'; a dynamic cluster takes min_members and max_members",
        ),
    ],
)
def test_member_counts_of_the_other_cluster_type_are_refused(schema, raw, field, message):
    assert (field, message) in refusal(schema, raw)


def test_unknown_settings_are_refused_not_ignored(schema):
    assert refusal(schema, {"type": "static", "members": 1, "nodes": 3}) == [
        ("nodes", "unknown setting 'nodes'; allowed settings: " + ", ".join(SETTING_NAMES))
    ]


def test_every_problem_is_reported_at_once_with_the_prefix(schema):
    raw = {
        "type": "dynamic",
        "min_members": 9,
        "max_members": 2,
        "resource_model": "x",
        "scratch_gb": 10**6,
        "preemptible": "?",
        "color": "red",
    }
    fields = [field for field, _ in refusal(schema, raw, prefix="cluster.")]
    assert fields == [
        "cluster.color",
        "cluster.min_members",
        "cluster.resource_model",
        "cluster.preemptible",
        "cluster.scratch_gb",
    ]


@pytest.mark.parametrize("raw", [None, [], "static"])
def test_settings_must_be_an_object(schema, raw):
    [(field, message)] = refusal(schema, raw, prefix="cluster.")
    assert field == "cluster"
    assert message.startswith("must be a JSON object of setting: value, got ")


def test_the_error_is_the_workspace_options_error_with_its_json_body(schema):
    with pytest.raises(OptionsError) as err:
        schema.parse({"type": "static"})
    assert err.value.as_json() == {
        "errors": [
            {"field": "members", "message": "must be a whole number from 1 to 50, got nothing"}
        ]
    }
    assert str(err.value) == "members: must be a whole number from 1 to 50, got nothing"


def test_a_one_core_model_needs_a_dedicated_manager():
    small = ClusterSchema(load_catalog({"one": {"cpus": 1, "memory_gb": 4}}), "one")
    assert refusal(small, {"type": "static", "members": 1}) == [
        (
            "resource_model",
            "resource model 'one' (1 CPU, 4 GB) leaves no core or memory for jobs "
            "after one core is reserved for scheduling; "
            "choose a larger model or a dedicated manager",
        )
    ]
    assert small.parse({"type": "static", "members": 1, "dedicated_manager": True}).max_members == 1


def test_settings_give_the_scalers_bounds_and_member_capacity(schema):
    settings = schema.parse({"type": "dynamic", "min_members": 1, "max_members": 4})
    policy = settings.scaling_policy(MODELS[settings.resource_model])
    assert policy == ScalingPolicy(1, 4, Capacity(3, 14745 * MIB))


def test_a_schema_with_a_default_model_outside_the_catalog_is_refused():
    with pytest.raises(ValueError, match="default_resource_model 'nope' is not in the catalog"):
        ClusterSchema(MODELS, default_resource_model="nope")


@given(st.integers(-3, 53), st.integers(-3, 53))
def test_property_dynamic_bounds_are_accepted_exactly_when_valid(low, high):
    schema = ClusterSchema(MODELS)
    valid = 0 <= low <= high <= 50 and high >= 1
    try:
        settings = schema.parse({"type": "dynamic", "min_members": low, "max_members": high})
    except OptionsError:
        assert not valid
    else:
        assert valid and (settings.min_members, settings.max_members) == (low, high)
