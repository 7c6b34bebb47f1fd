"""The workspace options schema: what a user may ask for and what they are told when wrong."""

import json

import pytest

from benchhub.resource_models import (
    DEFAULT_RESOURCE_MODELS,
    HostCapacity,
    load_catalog,
)
from benchhub.workspace_spec import (
    FieldError,
    OptionsError,
    OptionsSchema,
    WorkspaceSpec,
    options_from_form,
    validate_workspace_name,
)

MODEL_NAMES = ", ".join(DEFAULT_RESOURCE_MODELS)
ALLOWED_OPTIONS = (
    "access_mode, auto_shutdown_hours, description, image, keep_until, packages, permissions, "
    "project, reminder_hours, resource_model, restore_checkpoint, shutdown_mode, storage_gb, "
    "whitelist"
)


def refusal(schema, raw, host=None):
    """The FieldErrors raised for ``raw``."""
    with pytest.raises(OptionsError) as caught:
        schema.parse(raw, host)
    return caught.value.errors


def only_error(schema, raw, host=None):
    errors = refusal(schema, raw, host)
    assert len(errors) == 1, errors
    return errors[0]


# --- defaults and the canonical form ----------------------------------------------------


@pytest.mark.parametrize("raw", [None, {}])
def test_missing_options_take_the_defaults(schema, raw):
    assert schema.parse(raw) == WorkspaceSpec(
        image="jupyterlab",
        resource_model="standard-small",
        storage_gb=10,
        access_mode="open",
        whitelist=(),
        description="",
        auto_shutdown_hours=0,
    )


def test_full_options_are_parsed_and_normalised(schema):
    spec = schema.parse(
        {
            "image": "rstudio",
            "resource_model": "himem-small",
            "storage_gb": 200,
            "access_mode": "restricted",
            "whitelist": ["Index.Example.org", ".GitHub.com/org/"],
            "description": "RNA-seq QC",
            "auto_shutdown_hours": 12,
        }
    )
    assert spec.whitelist == ("index.example.org", ".github.com/org/")
    assert spec.storage_gb == 200 and spec.auto_shutdown_hours == 12


def test_to_user_options_is_json_and_parses_back_to_the_same_spec(schema):
    spec = schema.parse({"access_mode": "restricted", "whitelist": "example.com\nhttps://b.org/x/"})
    stored = json.loads(json.dumps(spec.to_user_options()))
    assert stored["whitelist"] == ["example.com", "https://b.org/x/"]
    assert set(stored) == set(ALLOWED_OPTIONS.split(", "))
    assert schema.parse(stored) == spec


def test_schema_refuses_defaults_that_are_not_allowed():
    with pytest.raises(ValueError, match="default_image 'nope' is not an image template"):
        OptionsSchema(load_catalog(DEFAULT_RESOURCE_MODELS), {"a": "A"}, "nope")
    with pytest.raises(ValueError, match="default_resource_model 'tiny' is not in the catalog"):
        OptionsSchema(
            load_catalog(DEFAULT_RESOURCE_MODELS), {"a": "A"}, "a", default_resource_model="tiny"
        )
    with pytest.raises(ValueError, match="storage_min_gb <= default_storage_gb"):
        OptionsSchema(load_catalog(DEFAULT_RESOURCE_MODELS), {"a": "A"}, "a", storage_min_gb=20)


# --- one field at a time ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["python2", 3, None, ["jupyterlab"]])
def test_bad_image_names_the_templates(schema, value):
    error = only_error(schema, {"image": value})
    assert error.field == "image"
    assert "is not an image template; allowed: jupyterlab, rstudio" in error.message


@pytest.mark.parametrize("value", ["huge", "", 4, None])
def test_bad_resource_model_names_the_catalog(schema, value):
    error = only_error(schema, {"resource_model": value})
    assert error == FieldError(
        "resource_model", f"{value!r} is not a resource model; allowed: {MODEL_NAMES}"
    )


def test_str_of_the_error_is_field_colon_message(schema):
    with pytest.raises(OptionsError) as caught:
        schema.parse({"resource_model": "huge"})
    assert str(caught.value) == (
        f"resource_model: 'huge' is not a resource model; allowed: {MODEL_NAMES}"
    )


@pytest.mark.parametrize("value", [0, -5, 16385, "0", "abc", "", 2.5, True, None, "1e3"])
def test_bad_storage_names_the_range(schema, value):
    error = only_error(schema, {"storage_gb": value})
    assert error == FieldError(
        "storage_gb", f"must be a whole number of GB from 1 to 16384, got {value!r}"
    )


@pytest.mark.parametrize(
    "value, gb", [(1, 1), ("20", 20), (" 20 ", 20), (30.0, 30), (16384, 16384)]
)
def test_storage_accepts_whole_numbers_and_form_strings(schema, value, gb):
    assert schema.parse({"storage_gb": value}).storage_gb == gb


@pytest.mark.parametrize("value", ["closed", "Open", "", None, 1])
def test_bad_access_mode_names_the_modes(schema, value):
    error = only_error(schema, {"access_mode": value})
    assert error == FieldError(
        "access_mode", f"{value!r} is not an access mode; allowed: open, restricted"
    )


def test_whitelist_with_open_access_is_refused(schema):
    error = only_error(schema, {"whitelist": "example.com"})
    assert error.field == "whitelist"
    assert "only allowed with access_mode 'restricted'" in error.message


@pytest.mark.parametrize("value", ["", "\n  \n", []])
def test_empty_whitelist_is_fine_with_open_access(schema, value):
    assert schema.parse({"access_mode": "open", "whitelist": value}).whitelist == ()


def test_restricted_without_whitelist_means_no_internet(schema):
    spec = schema.parse({"access_mode": "restricted"})
    assert spec.access_mode == "restricted" and spec.whitelist == ()


@pytest.mark.parametrize("value", [5, None, {"a": 1}, ["example.com", 7]])
def test_whitelist_of_the_wrong_type_says_what_is_expected(schema, value):
    error = only_error(schema, {"access_mode": "restricted", "whitelist": value})
    assert error.field == "whitelist"
    assert "must be text with one URL per line, or a list of URL strings" in error.message


def test_each_whitelist_problem_is_one_error_with_its_line(schema):
    raw = {"access_mode": "restricted", "whitelist": "example.com\n\nexa--.com\nlocalhost"}
    errors = refusal(schema, raw)
    assert errors == [
        FieldError("whitelist", "line 3 'exa--.com': label 'exa--' must not end with '-' or '_'"),
        FieldError("whitelist", errors[1].message),
    ]
    assert errors[1].message.startswith("line 4 'localhost': host 'localhost' has a single")


@pytest.mark.parametrize("value", [7, None, "x" * 1001])
def test_bad_description_names_the_limit(schema, value):
    error = only_error(schema, {"description": value})
    assert error.field == "description"
    assert "must be text of at most 1000 characters" in error.message


def test_description_of_exactly_the_limit_is_fine(schema):
    assert schema.parse({"description": "x" * 1000}).description == "x" * 1000


@pytest.mark.parametrize("value", [-1, 8761, "soon", 1.5, False])
def test_bad_auto_shutdown_names_the_range(schema, value):
    error = only_error(schema, {"auto_shutdown_hours": value})
    assert error == FieldError(
        "auto_shutdown_hours",
        f"must be a whole number of hours from 0 to 8760 (0 = no automatic shutdown), "
        f"got {value!r}",
    )


@pytest.mark.parametrize("value, hours", [(0, 0), ("8", 8), (8760, 8760)])
def test_auto_shutdown_zero_means_never(schema, value, hours):
    assert schema.parse({"auto_shutdown_hours": value}).auto_shutdown_hours == hours


def test_unknown_keys_are_refused_and_name_the_allowed_options(schema):
    errors = refusal(schema, {"colour": "red", "gpu": 1})
    assert errors == [
        FieldError("colour", f"unknown option 'colour'; allowed options: {ALLOWED_OPTIONS}"),
        FieldError("gpu", f"unknown option 'gpu'; allowed options: {ALLOWED_OPTIONS}"),
    ]


@pytest.mark.parametrize("raw", [["image"], "jupyterlab", 3])
def test_options_that_are_not_an_object_are_refused(schema, raw):
    error = only_error(schema, raw)
    assert error.field == "options" and "must be a JSON object" in error.message


def test_all_errors_are_collected_together(schema):
    raw = {
        "colour": "red",
        "image": "nope",
        "resource_model": "huge",
        "storage_gb": 0,
        "access_mode": "closed",
        "whitelist": "bad..com",
        "description": 1,
        "auto_shutdown_hours": -1,
    }
    errors = refusal(schema, raw)
    fields = [e.field for e in errors]
    assert fields == [
        "colour",
        "image",
        "resource_model",
        "storage_gb",
        "access_mode",
        "description",
        "auto_shutdown_hours",
        "whitelist",
    ]


def test_errors_serialise_for_a_json_body(schema):
    with pytest.raises(OptionsError) as caught:
        schema.parse({"storage_gb": 0})
    body = caught.value.as_json()
    assert body == {"errors": [{"field": "storage_gb", "message": body["errors"][0]["message"]}]}
    json.dumps(body)


# --- host availability -----------------------------------------------------------------

SMALL_HOST = HostCapacity(cpus=2, memory_gb=23.4, gpus=0)


def test_model_the_host_cannot_run_is_refused(schema):
    error = only_error(schema, {"resource_model": "standard-large"}, SMALL_HOST)
    assert error == FieldError(
        "resource_model",
        "'standard-large' is unavailable on this host: needs 8 CPUs; this host has 2",
    )


def test_gpu_model_on_a_host_without_gpus_is_refused(schema):
    host = HostCapacity(cpus=64, memory_gb=512, gpus=0)
    error = only_error(schema, {"resource_model": "gpu-small"}, host)
    assert error.message.endswith("needs 1 GPU; this host has none")


def test_model_the_host_can_run_is_accepted(schema):
    assert schema.parse({}, SMALL_HOST).resource_model == "standard-small"


def test_without_a_host_any_catalog_model_is_accepted(schema):
    assert schema.parse({"resource_model": "gpu-medium"}).resource_model == "gpu-medium"


# --- changes between starts ------------------------------------------------------------


def test_storage_cannot_shrink(schema):
    old = schema.parse({"storage_gb": 20})
    new = schema.parse({"storage_gb": 10})
    with pytest.raises(OptionsError) as caught:
        schema.check_change(old, new)
    assert caught.value.errors == [
        FieldError(
            "storage_gb",
            "cannot shrink storage from 20 GB to 10 GB; storage can only grow "
            "(stop the workspace and choose ≥ 20)",
        )
    ]


@pytest.mark.parametrize(
    "old_raw, new_raw",
    [
        ({"storage_gb": 20}, {"storage_gb": 20}),
        ({"storage_gb": 20}, {"storage_gb": 500}),
        ({"image": "jupyterlab"}, {"image": "rstudio"}),
        ({}, {"resource_model": "himem-large", "access_mode": "restricted"}),
    ],
)
def test_growing_storage_and_other_changes_are_allowed(schema, old_raw, new_raw):
    schema.check_change(schema.parse(old_raw), schema.parse(new_raw))


def test_a_new_workspace_has_no_previous_spec(schema):
    schema.check_change(None, schema.parse({"storage_gb": 1}))


# --- workspace names -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "rna-seq", "ws-2-b", "x" * 30, "a9"])
def test_good_workspace_names(name):
    validate_workspace_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 31,
        "my workspace",
        "ws.1",
        "café",
        "日本",
        "a/b",
        "ws\n",
        None,
        7,
        "My_Workspace",
        "proj--2",
        "-lead",
        "9",
        "trail-",
    ],
)
def test_bad_workspace_names_state_the_rule_and_the_name(name):
    with pytest.raises(OptionsError) as caught:
        validate_workspace_name(name)
    (error,) = caught.value.errors
    assert error.field == "name"
    rule = "1 to 30 characters: lower-case letters a-z, digits 0-9 and single hyphens"
    assert rule in error.message
    assert error.message.endswith(f"got {name!r}")


# --- the spawn form --------------------------------------------------------------------


def test_form_values_are_unwrapped_and_empty_fields_omitted():
    formdata = {
        "_xsrf": ["token"],
        "image": ["rstudio"],
        "resource_model": ["standard-medium"],
        "storage_gb": ["25"],
        "access_mode": ["open"],
        "whitelist": ["example.com"],
        "description": [""],
        "auto_shutdown_hours": [" "],
    }
    assert options_from_form(formdata) == {
        "image": "rstudio",
        "resource_model": "standard-medium",
        "storage_gb": "25",
        "access_mode": "open",
    }


def test_form_keeps_the_whitelist_text_when_restricted_with_lf_line_ends():
    formdata = {
        "access_mode": ["restricted"],
        "whitelist": ["index.example.org\r\n.github.com\r\n"],
    }
    assert options_from_form(formdata) == {
        "access_mode": "restricted",
        "whitelist": "index.example.org\n.github.com\n",
    }


def test_form_without_access_mode_drops_the_whitelist():
    assert options_from_form({"whitelist": ["index.example.org"]}) == {}


def test_form_with_repeated_values_is_refused_by_parse(schema):
    raw = options_from_form({"image": ["jupyterlab", "rstudio"]})
    assert raw == {"image": ["jupyterlab", "rstudio"]}
    assert only_error(schema, raw).field == "image"


def test_form_unknown_field_is_refused_by_parse(schema):
    error = only_error(schema, options_from_form({"colour": ["red"]}))
    assert error.field == "colour"


def test_form_round_trip(schema):
    formdata = {
        "image": ["rstudio"],
        "resource_model": ["himem-small"],
        "storage_gb": ["64"],
        "access_mode": ["restricted"],
        "whitelist": ["Index.Example.org\r\n\r\nfiles.example.org\r\nftp.example.net/folder/"],
        "description": ["Variant calling <b>v2</b>\r\nsecond line"],
        "auto_shutdown_hours": ["8"],
    }
    spec = schema.parse(options_from_form(formdata))
    assert spec == WorkspaceSpec(
        image="rstudio",
        resource_model="himem-small",
        storage_gb=64,
        access_mode="restricted",
        whitelist=("index.example.org", "files.example.org", "ftp.example.net/folder/"),
        description="Variant calling <b>v2</b>\nsecond line",
        auto_shutdown_hours=8,
    )
    assert schema.parse(spec.to_user_options()) == spec


# --- the run-time policy options (editable while running) --------------------------------


def test_lifecycle_options_default_and_normalise(schema):
    spec = schema.parse({})
    assert spec.shutdown_mode == "after_start" and spec.keep_until == ""
    assert spec.reminder_hours == (24, 1)
    spec = schema.parse(
        {
            "shutdown_mode": "idle",
            "keep_until": "2026-03-02T19:30:00+01:00",
            "reminder_hours": "1, 48,1",
        }
    )
    assert spec.shutdown_mode == "idle"
    assert spec.keep_until == "2026-03-02T18:30:00+00:00"
    assert spec.reminder_hours == (48, 1)
    assert schema.parse({"reminder_hours": []}).reminder_hours == ()


@pytest.mark.parametrize(
    "raw, field, fragment",
    [
        ({"shutdown_mode": "sometimes"}, "shutdown_mode", "allowed: after_start, idle"),
        ({"shutdown_mode": 1}, "shutdown_mode", "allowed: after_start, idle"),
        ({"keep_until": "tomorrow"}, "keep_until", "ISO 8601 time with a timezone"),
        ({"keep_until": "2026-03-02T18:00:00"}, "keep_until", "with a timezone"),
        ({"keep_until": 1740938400}, "keep_until", "ISO 8601"),
        ({"reminder_hours": [0]}, "reminder_hours", "from 1 to 8760"),
        ({"reminder_hours": [1, 2, 3, 4, 5, 6]}, "reminder_hours", "at most 5"),
        ({"reminder_hours": "soon"}, "reminder_hours", "whole numbers of hours"),
        ({"reminder_hours": 24}, "reminder_hours", "list"),
    ],
)
def test_bad_lifecycle_options_name_the_field(schema, raw, field, fragment):
    error = only_error(schema, raw)
    assert error.field == field and fragment in error.message


# --- restore_checkpoint: what the next start restores ---------------------------------------


@pytest.mark.parametrize(
    "value, stored",
    [
        (None, ""),
        ("", ""),
        ("none", "none"),
        (" before upgrade ", "before_upgrade"),
        ("20250101T120000123Z-a1b2c3", "20250101T120000123Z-a1b2c3"),
    ],
)
def test_restore_checkpoint_is_latest_none_or_a_checkpoint(schema, value, stored):
    assert schema.parse({"restore_checkpoint": value}).restore_checkpoint == stored


@pytest.mark.parametrize("value", ["../etc", "a/b", 7, ["x"], "-dash-first", "x" * 201])
def test_bad_restore_checkpoint_says_what_is_allowed(schema, value):
    with pytest.raises(OptionsError) as err:
        schema.parse({"restore_checkpoint": value})
    (error,) = err.value.errors
    assert error.field == "restore_checkpoint"
    assert "'none'" in error.message and "latest" in error.message
