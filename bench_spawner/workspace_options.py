"""Workspace options, the spawner's side: the settings users choose within, the schema made
from them, and the checks a start or an edit goes through.

A mixin of :class:`bench_spawner.spawner.BenchSpawner` (kept apart so the spawner stays an
orchestrator). The settings (catalogue, image templates, storage range, defaults) are checked
when they are loaded: a bad one is a :class:`~traitlets.TraitError` naming the setting and the
fix, raised at hub start by :meth:`WorkspaceOptions.check_config` (end of
``jupyterhub_config.py``) and whenever a spawner is made. The schema is built once from them.

A start's options are parsed once: by the spawn form's hook or BenchHub's REST handler (both
refuse bad options before JupyterHub stores anything), else by ``apply_user_options``, which
stores them in canonical form and leaves the spec for ``start()``. It relies on the spawner's
``host_capacity``, ``whitelist_presets``, ``volume``, ``check_storage``, ``handler``,
``user_options``, ``orm_spawner``, ``active`` and ``name``.
"""

from __future__ import annotations

import asyncio
import dataclasses

import docker
from tornado import web
from traitlets import Dict, Integer, TraitError, Unicode, default, observe, validate
from traitlets.config import LoggingConfigurable

from benchhub.image_templates import ImageTemplate, load_image_templates
from benchhub.resource_models import DEFAULT_RESOURCE_MODELS, load_catalog
from benchhub.whitelist_presets import data_science_preset, probe_image
from benchhub.workspace_spec import (
    LIFECYCLE_OPTIONS,
    OptionsError,
    OptionsSchema,
    WorkspaceSpec,
    options_from_form,
)

from .form import render_options_form

__all__ = ["WorkspaceOptions"]


class WorkspaceOptions(LoggingConfigurable):
    """What users may choose for a workspace (``c.BenchSpawner.*``) and the option checks."""

    # the package-index settings read from each image, for the whitelist presets (per process)
    _tool_settings: dict[str, dict] = {}

    async def whitelist_presets(self) -> dict[str, list[str]]:
        """{"data-science": [...]}, from the default image's tool configuration (cached)."""
        image = self.image_templates[self.default_image_template]["image"]
        if image not in WorkspaceOptions._tool_settings:
            try:
                settings = await asyncio.to_thread(lambda: probe_image(docker.from_env(), image))
            except Exception:
                self.log.warning("could not read index settings of %s", image, exc_info=True)
                return {}
            WorkspaceOptions._tool_settings[image] = settings
        return {"data-science": data_science_preset(WorkspaceOptions._tool_settings[image])}

    resource_models = Dict(
        DEFAULT_RESOURCE_MODELS,
        help="""Resource models users choose from: name -> {cpus, memory_gb, gpus,
        gpu_memory_gb, disk_gb}.

        CPUs in cores, memory and disk in GB (GiB). Applied as Docker CPU quota, memory limit
        (no swap), GPU device requests and the writable layer's limit. Models this host cannot
        run are shown as unavailable and refused at start.
        Example: {"tiny": {"cpus": 0.5, "memory_gb": 1}}
        """,
    ).tag(config=True)

    image_templates = Dict(
        {"jupyterlab": {"image": "benchhub/jupyterlab:latest", "display_name": "JupyterLab"}},
        help="""The template catalogue users choose from: key -> {image, display_name,
        description, version, app, resource_model} (docs/templates.md).

        ``image`` is a local image (built by images/build.sh; nothing is pulled), the only
        required key. ``display_name`` defaults to the key; ``description`` and ``version`` are
        shown in the spawn form. ``app`` is "jupyterlab" (the default), {"command": [...],
        "port": N, "timeout": seconds} for any web app (proxied at <server>/app/ behind the
        server's login) or {"path": "/rstudio/"} for a page the image's server serves.
        ``resource_model`` (one of resource_models) is preselected when the template is
        chosen. Example: {"vscode": {"image": "benchhub/vscode:latest", "display_name":
        "VS Code", "app": {"command": ["code-server", "--auth", "none", "--bind-addr",
        "127.0.0.1:{port}"], "port": 13777}}}
        """,
    ).tag(config=True)

    default_image_template = Unicode(
        "jupyterlab",
        help="Key of the preselected image template (one of image_templates), e.g. jupyterlab.",
    ).tag(config=True)
    default_resource_model = Unicode(
        "standard-small",
        help="Preselected resource model (one of resource_models), e.g. standard-small.",
    ).tag(config=True)
    storage_min_gb = Integer(
        1, help="Smallest /data size a user may choose, in GB (GiB), at least 1, e.g. 1."
    ).tag(config=True)
    storage_max_gb = Integer(
        16384, help="Largest /data size a user may choose, in GB (GiB), e.g. 16384."
    ).tag(config=True)
    default_storage_gb = Integer(
        10, help="Preselected /data size in GB (GiB), from storage_min_gb to storage_max_gb."
    ).tag(config=True)

    @default("options_form")
    def _default_options_form(self):
        async def form(spawner):
            return render_options_form(
                spawner.schema,
                spawner.current_spec(),
                await spawner.host_capacity(),
                await spawner.whitelist_presets(),
                spawner.templates,
            )

        return form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        async def apply(spawner, user_options):
            # refuses bad options before anything happens; start() uses the spec
            await spawner.apply_options(user_options)

        return apply

    @default("options_from_form")
    def _default_options_from_form(self):
        async def from_form(formdata, spawner):
            # validated and canonical before JupyterHub stores it: a refused form changes nothing
            spec = await spawner.validate_options(options_from_form(formdata))
            options = spec.to_user_options()
            spawner._form_parsed = (options, spec)  # JupyterHub passes this dict on to apply
            return options

        return from_form

    # ---- the schema and the spec -------------------------------------------------------------

    _CATALOGUE = (
        "resource_models",
        "image_templates",
        "default_image_template",
        "default_resource_model",
        "storage_min_gb",
        "storage_max_gb",
        "default_storage_gb",
    )
    _schema: OptionsSchema | None = None
    _templates: dict[str, ImageTemplate] | None = None
    # the template of the start under way (use_template), whose app get_env passes on
    _template: ImageTemplate | None = None
    # this start's parsed options: (the options dict, its spec); see apply_options
    _form_parsed: tuple[dict, WorkspaceSpec] | None = None
    _applied: tuple[dict, WorkspaceSpec] | None = None

    @property
    def schema(self) -> OptionsSchema:
        """The options schema of these settings: built once (the settings were checked when
        they were loaded), again only after one of them changes."""
        if self._schema is None:
            self._schema = self._build_schema()
        return self._schema

    @validate(*_CATALOGUE)
    def _check_catalogue(self, proposal):
        """A bad catalogue, image template or default is refused when the configuration is
        loaded (see :meth:`check_config`), with a sentence naming the setting and the fix."""
        name, value = proposal["trait"].name, proposal["value"]
        try:
            self._build_schema(**{name: value})
        except ValueError as e:
            raise TraitError(f"c.BenchSpawner.{name} is not usable: {e}") from None
        return value

    @property
    def templates(self) -> dict[str, ImageTemplate]:
        """The image-template catalogue (checked with the schema), key -> template."""
        if self._templates is None:
            self._templates = load_image_templates(self.image_templates)
        return self._templates

    def use_template(self, key: str) -> ImageTemplate:
        """Make this start use template ``key``'s image and app (see :meth:`get_env`)."""
        self._template = self.templates[key]
        self.image = self._template.image
        return self._template

    def get_env(self):
        """The server's environment, with the started template's app: the app's own
        variables and, for an app other than JupyterLab, the default URL that opens it (so the
        workspace's link opens the app)."""
        env = super().get_env()
        if self._template is not None:
            env.update(self._template.environment())
            if self._template.app.default_url:
                env["JUPYTERHUB_DEFAULT_URL"] = self._template.app.default_url
        return env

    @observe(*_CATALOGUE)
    def _forget_schema(self, change) -> None:
        self._schema = None
        self._templates = None

    def _build_schema(self, **settings) -> OptionsSchema:
        """The schema from the settings (``settings`` overriding the current ones); raises
        ValueError naming each problem and how to fix it."""
        values = {name: settings.get(name, getattr(self, name)) for name in self._CATALOGUE}
        templates = load_image_templates(values["image_templates"])
        return OptionsSchema(
            resource_models=load_catalog(values["resource_models"]),
            image_templates={key: t.display_name for key, t in templates.items()},
            template_resource_models={
                key: t.resource_model for key, t in templates.items() if t.resource_model
            },
            storage_min_gb=values["storage_min_gb"],
            storage_max_gb=values["storage_max_gb"],
            default_image=values["default_image_template"],
            default_resource_model=values["default_resource_model"],
            default_storage_gb=values["default_storage_gb"],
        )

    @classmethod
    def check_config(cls, config) -> None:
        """Raise :class:`~traitlets.TraitError` naming the setting and how to fix it when the
        catalogue, image templates or defaults in ``config`` cannot work. Called at the end of
        ``jupyterhub_config.py``, so such a hub does not start; spawners check the same when
        they are made (a configuration layered on top is checked then)."""
        spawner = cls(config=config)
        try:
            spawner._build_schema()
        except ValueError as e:
            raise TraitError(f"c.BenchSpawner settings are not usable: {e}") from None

    def current_spec(self) -> WorkspaceSpec | None:
        """The spec last stored for this workspace, if it is valid."""
        try:
            return (
                self.schema.parse(self.orm_spawner.user_options or {}) if self.orm_spawner else None
            )
        except OptionsError:
            return None

    async def edit_options(self, changes: dict) -> tuple[dict, list[str]]:
        """Merge ``changes`` into the stored options: ``(canonical options, changed names)``.

        Keys given replace the stored ones, others are kept. The result is validated like a
        start (400 naming each bad field). While the workspace runs only the run-time policy
        (:data:`~benchhub.workspace_spec.LIFECYCLE_OPTIONS`) may change: anything else is a 409
        that says to stop first. Nothing is stored here: the caller stores and records.
        """
        if not isinstance(changes, dict):
            raise web.HTTPError(400, "user_options must be a JSON object of option: value")
        before = self.current_spec() or self.schema.parse(None)
        merged = {**before.to_user_options(), **changes}
        after = (await self.validate_options(merged)).to_user_options()
        old = before.to_user_options()
        changed = sorted(key for key in after if after[key] != old.get(key))
        frozen = [key for key in changed if key not in LIFECYCLE_OPTIONS]
        if self.active and frozen:
            raise web.HTTPError(
                409,
                f"workspace '{self.name}' is running: {', '.join(frozen)} can change only while "
                f"it is stopped (stop it, edit, start it); while it runs you may change "
                f"{', '.join(LIFECYCLE_OPTIONS)}",
            )
        return after, changed

    async def apply_options(self, user_options: dict) -> WorkspaceSpec:
        """This start's options, checked once: the spec this request already parsed from them
        (see :meth:`_parsed_by_this_request`) or a fresh check (400 naming each bad field).
        They are stored in canonical form, so the whitelist is normalised once and everything
        that reads them back (the workspaces API, the lifecycle service, the next start) reads
        what the hub applied; :meth:`start` takes the spec."""
        spec = self._parsed_by_this_request(user_options)
        if spec is None:
            spec = await self.validate_options(user_options)
        canonical = spec.to_user_options()
        self.user_options = canonical
        self.orm_spawner.user_options = canonical  # JupyterHub commits it as start() begins
        self._applied = (canonical, spec)
        return spec

    def _parsed_by_this_request(self, user_options: dict) -> WorkspaceSpec | None:
        """The spec already parsed from ``user_options`` in this start's request: the spawn
        form's (``options_from_form`` returned this very dict), or BenchHub's REST handler's
        (``self.handler.checked_options``: the options it validated before JupyterHub stored
        them; JupyterHub sets ``handler`` to the requesting handler for each start)."""
        form, self._form_parsed = self._form_parsed, None
        if form is not None and form[0] is user_options:
            return form[1]
        checked = getattr(self.handler, "checked_options", None)
        if checked is not None and checked[0] == user_options:
            return checked[1]
        return None

    def _take_applied_spec(self) -> WorkspaceSpec | None:
        """The spec :meth:`apply_options` made for this start's options, forgetting it."""
        applied, self._applied = self._applied, None
        if applied is not None and applied[0] is self.user_options:
            return applied[1]
        return None

    async def validate_options(self, raw: dict | None) -> WorkspaceSpec:
        """Parse options for a start or an edit; HTTP 400 naming each bad field.

        The size of an existing volume (not the stored options) is what storage may not
        shrink below: the volume on disk is the truth. A new or larger ``/data`` must fit the
        host's storage capacity and the user's quota (``c.StorageAdmission``).
        """
        try:
            spec = self.schema.parse(raw or {}, host=await self.host_capacity())
            current_gb = await self.volume.size_gb()
            if current_gb:
                self.schema.check_change(dataclasses.replace(spec, storage_gb=current_gb), spec)
            await self.check_storage(spec)
        except OptionsError as e:
            raise web.HTTPError(400, str(e)) from None
        return spec
