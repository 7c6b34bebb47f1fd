"""The image-template catalogue: loading (old and new shapes), refusals that name the template
and the field, the app a template opens, the resource model it preselects, the spawn form's
template details, and the image's app-proxy configuration that reads what the spawner passes."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest
from traitlets import TraitError
from traitlets.config import Config

from bench_spawner.form import render_options_form
from bench_spawner.spawner import BenchSpawner
from benchhub.image_templates import (
    APP_ENV,
    ImageTemplate,
    TemplateApp,
    load_image_templates,
)
from benchhub.resource_models import DEFAULT_RESOURCE_MODELS, HostCapacity, load_catalog
from benchhub.workspace_spec import OptionsSchema

REPO = Path(__file__).resolve().parents[2]
APP_PROXY_CONFIG = REPO / "images" / "jupyterlab" / "app" / "jupyter_server_config.py"
VSCODE = {
    "image": "benchhub/vscode:latest",
    "display_name": "VS Code",
    "description": "code-server on /data",
    "version": "code-server 4.117.0",
    "resource_model": "standard-medium",
    "app": {"command": ["code-server", "--bind-addr=127.0.0.1:{port}"], "port": 13777},
}
BIG_HOST = HostCapacity(cpus=128, memory_gb=1024, gpus=8)


def problems(raw) -> str:
    with pytest.raises(ValueError) as caught:
        load_image_templates(raw)
    return str(caught.value)


# ---- loading ------------------------------------------------------------------------------------


def test_an_old_template_with_image_and_display_name_only_is_still_a_jupyterlab_template():
    templates = load_image_templates(
        {"jupyterlab": {"image": "benchhub/jupyterlab:latest", "display_name": "JupyterLab"}}
    )
    assert templates == {
        "jupyterlab": ImageTemplate(
            key="jupyterlab", image="benchhub/jupyterlab:latest", display_name="JupyterLab"
        )
    }
    lab = templates["jupyterlab"]
    assert lab.app.kind == "jupyterlab" and lab.app.default_url is None
    assert lab.environment() == {}
    assert lab.resource_model == ""  # the spawner's default model


def test_a_template_without_a_display_name_shows_its_key():
    assert load_image_templates({"r": {"image": "benchhub/r:latest"}})["r"].display_name == "r"


def test_a_full_template_keeps_every_field_in_catalogue_order():
    templates = load_image_templates({"vscode": VSCODE, "lab": {"image": "benchhub/jupyterlab"}})
    assert list(templates) == ["vscode", "lab"]
    vscode = templates["vscode"]
    assert (vscode.description, vscode.version, vscode.resource_model) == (
        "code-server on /data",
        "code-server 4.117.0",
        "standard-medium",
    )
    assert vscode.app == TemplateApp(
        command=("code-server", "--bind-addr=127.0.0.1:{port}"), port=13777, timeout=60
    )


def test_a_command_app_is_opened_at_app_and_handed_to_the_container_as_json():
    vscode = load_image_templates({"vscode": VSCODE})["vscode"]
    assert vscode.app.kind == "command"
    assert vscode.app.default_url == "/app/"
    env = vscode.environment()
    assert list(env) == [APP_ENV]
    assert json.loads(env[APP_ENV]) == {
        "name": "app",
        "command": ["code-server", "--bind-addr=127.0.0.1:{port}"],
        "port": 13777,
        "timeout": 60,
        "title": "VS Code",
    }


def test_a_path_app_opens_a_page_the_server_already_serves():
    rstudio = load_image_templates(
        {"rstudio": {"image": "site/rstudio:1", "app": {"path": "/rstudio/"}}}
    )["rstudio"]
    assert (rstudio.app.kind, rstudio.app.default_url) == ("path", "/rstudio/")
    assert rstudio.environment() == {}  # the image's own proxy plugin serves it


def test_the_templates_api_shape_names_the_app_and_its_url():
    shown = load_image_templates({"vscode": VSCODE})["vscode"].as_json()
    assert shown["name"] == "vscode" and shown["image"] == "benchhub/vscode:latest"
    assert shown["app"]["kind"] == "command" and shown["app"]["url"] == "/app/"
    lab = load_image_templates({"lab": {"image": "x"}})["lab"].as_json()
    assert lab["app"] == {"kind": "jupyterlab", "url": "/lab"}


# ---- refusals name the template and the field ---------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ({}, "image template 'bad': 'image' must name a local image"),
        ({"image": "two words"}, "'image' must name a local image"),
        ({"image": "x", "colour": "red"}, "unknown key(s) colour; allowed keys: image,"),
        ({"image": "x", "description": 3}, "'description' must be text of at most 1000"),
        ({"image": "x", "version": "v" * 101}, "'version' must be text of at most 100"),
        ({"image": "x", "display_name": ["X"]}, "'display_name' must be text"),
        ({"image": "x", "resource_model": 2}, "'resource_model' must be the name of a resource"),
        ({"image": "x", "app": "rstudio"}, "'app' must be 'jupyterlab', {'command'"),
        ({"image": "x", "app": {"command": []}}, "'app' 'command' must be a non-empty list"),
        ({"image": "x", "app": {"command": "code-server", "port": 1}}, "'command' must be a"),
        ({"image": "x", "app": {"command": ["a", ""], "port": 1}}, "non-empty strings"),
        ({"image": "x", "app": {"command": ["a"]}}, "'app' 'port' must be a whole number"),
        ({"image": "x", "app": {"command": ["a"], "port": 8888}}, "other than 8888"),
        ({"image": "x", "app": {"command": ["a"], "port": 70000}}, "from 1 to 65535"),
        ({"image": "x", "app": {"command": ["a"], "port": "80"}}, "'app' 'port'"),
        ({"image": "x", "app": {"command": ["a"], "port": True}}, "'app' 'port'"),
        ({"image": "x", "app": {"command": ["a"], "port": 1, "timeout": 0}}, "'timeout'"),
        ({"image": "x", "app": {"command": ["a"], "port": 1, "env": {}}}, "unknown key(s) env"),
        ({"image": "x", "app": {"path": "rstudio/"}}, "'path' must be a URL path"),
        ({"image": "x", "app": {"path": "/a/../hub/"}}, "'path' must be a URL path"),
        ({"image": "x", "app": {"path": "//evil.example/"}}, "'path' must be a URL path"),
        ({"image": "x", "app": {"path": "/r/", "port": 1}}, "either a 'path' alone"),
    ],
)
def test_a_bad_template_is_refused_naming_the_template_and_the_field(template, expected):
    message = problems({"bad": template})
    assert message.startswith("image template 'bad': ")
    assert expected in message


def test_every_problem_of_every_template_is_listed_at_once():
    message = problems({"a": {}, "b": {"image": "x", "app": {"command": ["c"], "port": 0}}})
    assert "image template 'a': 'image'" in message
    assert "image template 'b': 'app' 'port'" in message


@pytest.mark.parametrize("raw", [{}, None, [], {"": {"image": "x"}}, {"lab": "benchhub/x"}])
def test_a_catalogue_that_is_not_a_dict_of_templates_is_refused_with_an_example(raw):
    assert "image" in problems(raw)


# ---- the hub refuses a bad catalogue at start, with the setting named ---------------------------


def hub_config(**settings) -> Config:
    config = Config()
    for name, value in settings.items():
        setattr(config.BenchSpawner, name, value)
    return config


def test_the_hub_does_not_start_with_a_bad_template_and_says_which_setting():
    bad = hub_config(image_templates={"vscode": {**VSCODE, "app": {"command": ["x"]}}})
    with pytest.raises(TraitError) as caught:
        BenchSpawner.check_config(bad)
    message = str(caught.value)
    assert "c.BenchSpawner.image_templates" in message
    assert "image template 'vscode': 'app' 'port'" in message


def test_the_hub_does_not_start_when_a_template_names_a_model_not_in_the_catalogue():
    bad = hub_config(
        image_templates={"vscode": {**VSCODE, "resource_model": "huge"}},
        default_image_template="vscode",
    )
    with pytest.raises(TraitError, match="image template 'vscode': resource_model 'huge' is not"):
        BenchSpawner.check_config(bad)


def test_a_good_catalogue_passes_the_hubs_check():
    BenchSpawner.check_config(
        hub_config(
            image_templates={"lab": {"image": "benchhub/jupyterlab:latest"}, "vscode": VSCODE},
            default_image_template="lab",
        )
    )


# ---- the resource model a template preselects -----------------------------------------------


@pytest.fixture
def catalogue_schema() -> OptionsSchema:
    return OptionsSchema(
        resource_models=load_catalog(DEFAULT_RESOURCE_MODELS),
        image_templates={"lab": "JupyterLab", "vscode": "VS Code"},
        default_image="lab",
        template_resource_models={"vscode": "standard-medium"},
    )


def test_a_request_without_a_resource_model_gets_the_templates_model(catalogue_schema):
    assert catalogue_schema.parse({"image": "vscode"}).resource_model == "standard-medium"


def test_a_template_without_a_model_gets_the_default_model(catalogue_schema):
    assert catalogue_schema.parse({"image": "lab"}).resource_model == "standard-small"
    assert catalogue_schema.parse(None).resource_model == "standard-small"


def test_a_resource_model_the_request_names_wins_over_the_templates(catalogue_schema):
    spec = catalogue_schema.parse({"image": "vscode", "resource_model": "standard-large"})
    assert spec.resource_model == "standard-large"


def test_the_default_templates_model_is_the_default_of_a_new_workspace():
    schema = OptionsSchema(
        resource_models=load_catalog(DEFAULT_RESOURCE_MODELS),
        image_templates={"vscode": "VS Code"},
        default_image="vscode",
        template_resource_models={"vscode": "himem-small"},
    )
    assert schema.parse(None).resource_model == "himem-small"


# ---- the spawn form ---------------------------------------------------------------------------


def test_the_form_shows_the_chosen_templates_description_and_version(catalogue_schema):
    templates = load_image_templates({"lab": {"image": "x"}, "vscode": VSCODE})
    current = catalogue_schema.parse({"image": "vscode"})
    html = render_options_form(catalogue_schema, current, BIG_HOST, None, templates)
    assert '<span id="bench-image-description">code-server on /data</span>' in html
    assert "Version code-server 4.117.0" in html
    assert '<option value="vscode" selected>VS Code (code-server 4.117.0)</option>' in html
    assert 'id="bench-model-standard-medium" value="standard-medium" checked' in html


def test_the_form_knows_each_templates_model_for_its_script(catalogue_schema):
    templates = load_image_templates({"lab": {"image": "x"}, "vscode": VSCODE})
    html = render_options_form(catalogue_schema, None, BIG_HOST, None, templates)
    data = html.split('<script type="application/json" id="bench-image-data">')[1]
    data = json.loads(data.split("</script>")[0])
    assert data["vscode"] == {
        "description": "code-server on /data",
        "version": "code-server 4.117.0",
        "model": "standard-medium",
    }
    assert data["lab"]["model"] == "standard-small"


def test_template_text_in_the_form_is_escaped(catalogue_schema):
    evil = {**VSCODE, "description": "</script><script>alert(1)</script>"}
    templates = load_image_templates({"lab": {"image": "x"}, "vscode": evil})
    html = render_options_form(catalogue_schema, None, BIG_HOST, None, templates)
    assert "<script>alert(1)" not in html


# ---- the image's app-proxy configuration --------------------------------------------------------


def app_proxy_servers(monkeypatch, app: str | None) -> dict:
    """``c.ServerProxy.servers`` as the image's configuration file sets it with BENCHHUB_APP."""
    if app is None:
        monkeypatch.delenv(APP_ENV, raising=False)
    else:
        monkeypatch.setenv(APP_ENV, app)
    monkeypatch.setenv("JUPYTERHUB_ROOT_DIR", "/data")
    config = Config()
    runpy.run_path(str(APP_PROXY_CONFIG), init_globals={"c": config})
    return dict(config.ServerProxy.get("servers", {}))


def test_the_image_proxies_the_app_the_spawner_hands_it(monkeypatch):
    vscode = load_image_templates({"vscode": VSCODE})["vscode"]
    servers = app_proxy_servers(monkeypatch, vscode.environment()[APP_ENV])
    assert servers == {
        "app": {
            "command": ["code-server", "--bind-addr=127.0.0.1:{port}"],
            "port": 13777,
            "timeout": 60,
            "absolute_url": False,
            "launcher_entry": {"enabled": True, "title": "VS Code"},
        }
    }


@pytest.mark.parametrize("app", [None, "", "not json", "[]", '{"command": []}'])
def test_without_a_usable_app_the_image_proxies_nothing(monkeypatch, app):
    assert app_proxy_servers(monkeypatch, app) == {}
