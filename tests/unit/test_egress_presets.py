"""The data-science whitelist preset follows the tools' configured indexes."""

import json

from benchhub.whitelist_presets import data_science_preset, parse_probe_output


def test_preset_is_the_configured_index_hosts_then_code_hosts():
    settings = {
        "pip": ["https://mirror.example.org/simple/", "https://files.example.org/"],
        "conda": ["https://conda.example.net/conda-forge", "https://conda.example.net/bioconda"],
        "r": ["https://cran.example.edu/"],
        "npm": ["https://npm.example.com/"],
    }
    assert data_science_preset(settings) == [
        "mirror.example.org",
        "files.example.org",
        "conda.example.net",
        "cran.example.edu",
        "npm.example.com",
        "github.com",
    ]


def test_a_site_mirror_replaces_the_default_and_nothing_is_hard_coded():
    assert data_science_preset({"pip": ["http://10.0.0.5:3141/root/pypi/"]}) == ["github.com"]
    assert data_science_preset({}) == ["github.com"]
    assert data_science_preset({"pip": ["https://Mirror.Example.ORG/x"]})[0] == "mirror.example.org"


def test_probe_output_parsing_tolerates_noise():
    line = json.dumps({"pip": ["https://a.example.org/"], "npm": [""], "conda": [], "r": [1]})
    assert parse_probe_output("warning\n" + line) == {
        "pip": ["https://a.example.org/"],
        "npm": [],
        "conda": [],
        "r": [],
    }
    assert parse_probe_output("") == {}
    assert parse_probe_output("not json") == {}
