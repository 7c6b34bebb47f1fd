"""The spawn-form HTML: fields, prefill, unavailable models, escaping."""

import re
from html.parser import HTMLParser

from bench_spawner.form import render_options_form
from benchhub.resource_models import DEFAULT_RESOURCE_MODELS, HostCapacity
from benchhub.workspace_spec import options_from_form

BIG_HOST = HostCapacity(cpus=128, memory_gb=1024, gpus=8)
SMALL_HOST = HostCapacity(cpus=2, memory_gb=23.4, gpus=0)


class Elements(HTMLParser):
    """Collects every start tag as (tag, attrs) so tests can ask about the page."""

    def __init__(self, html):
        super().__init__()
        self.tags = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def by_id(self, element_id):
        matches = [attrs for _, attrs in self.tags if attrs.get("id") == element_id]
        assert len(matches) == 1, f"{element_id}: {len(matches)} elements"
        return matches[0]

    def tag_names(self):
        return [tag for tag, _ in self.tags]


def test_form_has_every_field_with_its_stable_id(schema):
    page = Elements(render_options_form(schema, None, BIG_HOST))
    expected = {
        "bench-image": ("image", None),
        "bench-storage": ("storage_gb", "number"),
        "bench-access-open": ("access_mode", "radio"),
        "bench-access-restricted": ("access_mode", "radio"),
        "bench-whitelist": ("whitelist", None),
        "bench-description": ("description", None),
        "bench-shutdown": ("auto_shutdown_hours", "number"),
        "bench-shutdown-mode": ("shutdown_mode", None),
        "bench-reminders": ("reminder_hours", "text"),
    }
    for element_id, (name, input_type) in expected.items():
        attrs = page.by_id(element_id)
        assert attrs["name"] == name
        assert attrs.get("type") == input_type
    for model in DEFAULT_RESOURCE_MODELS:
        attrs = page.by_id(f"bench-model-{model}")
        assert (attrs["type"], attrs["name"], attrs["value"]) == ("radio", "resource_model", model)


def test_form_is_only_fields_for_jupyterhubs_own_form(schema):
    html = render_options_form(schema, None, BIG_HOST)
    assert "form" not in Elements(html).tag_names()
    assert "<form" not in html


def test_defaults_are_prefilled(schema):
    page = Elements(render_options_form(schema, None, BIG_HOST))
    assert "checked" in page.by_id("bench-model-standard-small")
    assert "checked" in page.by_id("bench-access-open")
    assert "checked" not in page.by_id("bench-access-restricted")
    assert page.by_id("bench-storage")["value"] == "10"
    assert page.by_id("bench-storage")["min"] == "1"
    assert page.by_id("bench-storage")["max"] == "16384"
    assert page.by_id("bench-shutdown")["value"] == "0"
    assert page.by_id("bench-shutdown")["min"] == "0"
    assert "hidden" in page.by_id("bench-whitelist-group")


def test_model_table_has_the_columns_and_the_gpu_sizes(schema):
    html = render_options_form(schema, None, BIG_HOST)
    headers = re.findall(r"<th scope=\"col\">([^<]*)</th>", html)
    assert headers == ["Model", "CPU", "Memory (GB)", "GPU", "GPU memory (GB)", "Note"]
    row = html.split('id="bench-model-gpu-medium"')[1].split("</tr>")[0]
    assert re.findall(r"<td>([^<]*)</td>", row) == ["32", "244", "4", "64"]
    assert 'class="table table-sm"' in html


def test_current_spec_is_prefilled(schema):
    current = schema.parse(
        {
            "image": "rstudio",
            "resource_model": "himem-small",
            "storage_gb": 50,
            "access_mode": "restricted",
            "whitelist": "index.example.org\n.github.com",
            "description": "QC run",
            "auto_shutdown_hours": 4,
        }
    )
    html = render_options_form(schema, current, BIG_HOST)
    page = Elements(html)
    assert "checked" in page.by_id("bench-model-himem-small")
    assert "checked" not in page.by_id("bench-model-standard-small")
    assert "checked" in page.by_id("bench-access-restricted")
    assert "hidden" not in page.by_id("bench-whitelist-group")
    assert page.by_id("bench-storage")["value"] == "50"
    assert page.by_id("bench-storage")["min"] == "50"  # storage never shrinks
    assert page.by_id("bench-shutdown")["value"] == "4"
    assert '<option value="rstudio" selected>RStudio Server</option>' in html
    assert ">index.example.org\n.github.com</textarea>" in html
    assert ">QC run</textarea>" in html


def test_unavailable_models_are_disabled_with_their_reason(schema):
    html = render_options_form(schema, None, SMALL_HOST)
    page = Elements(html)
    assert "disabled" not in page.by_id("bench-model-standard-small")
    for model in ("standard-large", "himem-small", "gpu-small"):
        assert "disabled" in page.by_id(f"bench-model-{model}")
    assert "Unavailable: needs 8 CPUs; this host has 2" in html
    gpu_host = HostCapacity(cpus=64, memory_gb=512, gpus=0)
    html = render_options_form(schema, None, gpu_host)
    assert "disabled" in Elements(html).by_id("bench-model-gpu-small")
    assert "Unavailable: needs 1 GPU; this host has none" in html


def test_an_unavailable_current_model_falls_back_to_the_first_available(schema):
    current = schema.parse({"resource_model": "standard-large"})
    page = Elements(render_options_form(schema, current, SMALL_HOST))
    assert "checked" not in page.by_id("bench-model-standard-large")
    assert "checked" in page.by_id("bench-model-standard-small")


def test_description_and_whitelist_text_are_escaped(schema):
    current = schema.parse({"description": "<script>alert('x')</script> & more"})
    html = render_options_form(schema, current, BIG_HOST)
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more" in html


def test_help_texts_tell_the_rules(schema):
    html = render_options_form(schema, None, BIG_HOST)
    assert "can grow later, never shrink" in html
    assert "0 = no automatic shutdown" in html
    for phrase in ("One URL per line", "leading dot", "trailing slash", "only the host"):
        assert phrase in html


def test_rendered_defaults_submit_back_to_the_same_spec(schema):
    """What the browser would post for the untouched form parses to the defaults."""
    page = Elements(render_options_form(schema, None, SMALL_HOST))
    formdata = {
        "image": ["jupyterlab"],
        "resource_model": [
            attrs["value"]
            for tag, attrs in page.tags
            if attrs.get("name") == "resource_model" and "checked" in attrs
        ],
        "storage_gb": [page.by_id("bench-storage")["value"]],
        "access_mode": ["open"],
        "whitelist": [""],
        "description": [""],
        "auto_shutdown_hours": [page.by_id("bench-shutdown")["value"]],
        "shutdown_mode": ["after_start"],
        "reminder_hours": [page.by_id("bench-reminders")["value"]],
    }
    assert schema.parse(options_from_form(formdata), SMALL_HOST) == schema.parse(None)
