"""The spawn-form HTML for workspace options (``Spawner.options_form``).

:func:`render_options_form` fills ``templates/options_form.html``; its field names are the
option names that :func:`benchhub.workspace_spec.options_from_form` and
:meth:`benchhub.workspace_spec.OptionsSchema.parse` read back, so form and REST API share
one schema.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import jinja2

from benchhub.image_templates import ImageTemplate
from benchhub.package_spec import INSTALLERS, MAX_PACKAGES
from benchhub.resource_models import HostCapacity, unavailable_reason
from benchhub.whitelist import MAX_ENTRIES
from benchhub.workspace_spec import OptionsSchema, WorkspaceSpec

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATE_NAME = "options_form.html"


@cache
def _environment() -> jinja2.Environment:
    # Autoescape everything: descriptions and whitelist text are user-written.
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _quantity(value: float) -> str:
    """``8.0`` -> ``"8"``; zero shows as an em dash so a CPU-only model reads clearly."""
    return f"{value:g}" if value else "—"


def _model_rows(schema: OptionsSchema, chosen: str, host: HostCapacity) -> list[dict]:
    """One row per resource model; ``chosen`` is checked if the host can run it, else the
    first model it can run (a disabled radio is never submitted)."""
    rows = [
        {
            "name": model.name,
            "cpus": f"{model.cpus:g}",
            "memory": f"{model.memory_gb:g}",
            "gpus": _quantity(model.gpus),
            "gpu_memory": _quantity(model.gpu_memory_gb),
            "reason": unavailable_reason(model, host),
            "checked": False,
        }
        for model in schema.resource_models.values()
    ]
    available = [row for row in rows if not row["reason"]]
    preferred = [row for row in available if row["name"] == chosen]
    for row in (preferred or available)[:1]:
        row["checked"] = True
    return rows


def _image_rows(
    schema: OptionsSchema, chosen: str, templates: dict[str, ImageTemplate]
) -> list[dict]:
    """One row per image template: its key, display name, description, version and the
    resource model choosing it preselects; ``chosen`` is selected."""
    return [
        {
            "key": key,
            "display": display,
            "selected": key == chosen,
            "description": templates[key].description if key in templates else "",
            "version": templates[key].version if key in templates else "",
            "model": schema.model_of(key),
        }
        for key, display in schema.image_templates.items()
    ]


def render_options_form(
    schema: OptionsSchema,
    current: WorkspaceSpec | None,
    host: HostCapacity,
    whitelist_presets: dict[str, list[str]] | None = None,
    templates: dict[str, ImageTemplate] | None = None,
) -> str:
    """HTML fields (no ``<form>`` tag) for choosing workspace options on ``host``.

    Prefilled from ``current`` (the workspace's stored spec) or the schema defaults.
    Models the host cannot run have a disabled radio and show why. The storage minimum is
    the current size, since storage never shrinks. ``whitelist_presets`` (name -> lines) are
    offered as buttons that add their lines to the whitelist. ``templates`` (the catalogue)
    gives each image template's description and version, shown for the chosen one; choosing
    a template checks its resource model. All user text is HTML-escaped.
    """
    spec = current or schema.parse(None)
    storage_min = max(schema.storage_min_gb, current.storage_gb if current else 0)
    images = _image_rows(schema, spec.image, templates or {})
    context = {
        "images": images,
        # what the form's script shows and preselects when another template is chosen
        "image_data": {
            image["key"]: {k: image[k] for k in ("description", "version", "model")}
            for image in images
        },
        "models": _model_rows(schema, spec.resource_model, host),
        "storage": {"min": storage_min, "max": schema.storage_max_gb, "value": spec.storage_gb},
        "access_mode": spec.access_mode,
        "whitelist": "\n".join(spec.whitelist),
        "max_whitelist_entries": MAX_ENTRIES,
        "description": spec.description,
        "max_description_chars": schema.max_description_chars,
        "shutdown_hours": spec.auto_shutdown_hours,
        "max_shutdown_hours": schema.max_auto_shutdown_hours,
        "shutdown_mode": spec.shutdown_mode,
        "reminder_hours": ", ".join(map(str, spec.reminder_hours)),
        "presets": {name: "\n".join(lines) for name, lines in (whitelist_presets or {}).items()},
        "packages": {name: "\n".join(spec.packages.of(name)) for name in INSTALLERS},
        "max_packages": MAX_PACKAGES,
    }
    return _environment().get_template(TEMPLATE_NAME).render(context)
