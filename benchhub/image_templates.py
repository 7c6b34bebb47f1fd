"""The image-template catalogue: what a user picks a workspace from, and the app it opens.

A template is configured as a plain dict (so the ``c.BenchSpawner.image_templates`` traitlets
``Dict`` can hold it) and turned into an :class:`ImageTemplate` by
:func:`load_image_templates`, which refuses a malformed catalogue with a sentence per problem
naming the template and the field. The old shape, ``{"image", "display_name"}``, is still a
complete template (JupyterLab, the spawner's default resource model).

The app a template opens is JupyterLab unless it says otherwise:

- ``{"command": [...], "port": N}``: any web app. The workspace's Jupyter server starts the
  command on first use and proxies it (jupyter-server-proxy, ``images/jupyterlab/app/``) at
  ``<server>/app/``, behind the server's own login: only the owner and admins reach it, as for
  JupyterLab. The spawner hands the app to the container in :data:`APP_ENV` and makes
  ``/app/`` the server's default URL, so the workspace's link on the home page opens the app.
- ``{"path": "/rstudio/"}``: a page the image's server already serves (an app a
  jupyter-server-proxy plugin such as jupyter-rsession-proxy registers); it becomes the
  default URL.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from numbers import Real

__all__ = [
    "APP_ENV",
    "APP_NAME",
    "SERVER_PORT",
    "TEMPLATE_KEYS",
    "ImageTemplate",
    "TemplateApp",
    "load_image_templates",
]

TEMPLATE_KEYS = ("image", "display_name", "description", "version", "app", "resource_model")
APP_KEYS = ("command", "port", "timeout", "path")
JUPYTERLAB = "jupyterlab"
# the jupyter-server-proxy entry of a command app: <server>/app/ (a name no Jupyter route uses)
APP_NAME = "app"
# the environment variable the image's app-proxy configuration reads (JSON, see environment())
APP_ENV = "BENCHHUB_APP"
SERVER_PORT = 8888  # the single-user server's own port in the container: an app cannot take it
DEFAULT_APP_TIMEOUT = 60  # seconds jupyter-server-proxy waits for a started app to answer
MAX_APP_TIMEOUT = 600
MAX_TEXT = {"display_name": 100, "description": 1000, "version": 100}
# a URL path inside the server: absolute, no "..", no "//", only characters URLs keep as is
_PATH = re.compile(r"/(?:[A-Za-z0-9._~!$&'()*+,;=:@%-]+/)*[A-Za-z0-9._~!$&'()*+,;=:@%-]*")
_EXAMPLE = (
    "{'image': 'benchhub/vscode:latest', 'display_name': 'VS Code', 'description': '...', "
    "'version': '4.117', 'resource_model': 'standard-small', "
    "'app': {'command': ['code-server', '--bind-addr', '127.0.0.1:{port}'], 'port': 13777}}"
)


@dataclass(frozen=True)
class TemplateApp:
    """The app a template's workspace opens: JupyterLab (the default: no command, no path),
    a ``command`` listening on ``port`` in the container (proxied at ``/app/``; ``timeout``
    seconds to answer after it starts), or a ``path`` the server already serves."""

    command: tuple[str, ...] = ()
    port: int = 0
    timeout: int = DEFAULT_APP_TIMEOUT
    path: str = ""

    @property
    def kind(self) -> str:
        """``"jupyterlab"``, ``"command"`` or ``"path"``."""
        return "command" if self.command else "path" if self.path else JUPYTERLAB

    @property
    def default_url(self) -> str | None:
        """The server's default URL for this app; None for JupyterLab (the configured
        ``Spawner.default_url`` stays, e.g. ``/lab``)."""
        if self.command:
            return f"/{APP_NAME}/"
        return self.path or None

    def environment(self, title: str) -> dict[str, str]:
        """What the container needs to serve this app: ``{APP_ENV: JSON}`` for a command app
        (name, command, port, timeout and the launcher ``title``), else nothing."""
        if not self.command:
            return {}
        app = {
            "name": APP_NAME,
            "command": list(self.command),
            "port": self.port,
            "timeout": self.timeout,
            "title": title,
        }
        return {APP_ENV: json.dumps(app)}

    def as_json(self) -> dict:
        """``{"kind", "url"}`` plus the command, port and timeout, or the path."""
        shown: dict = {"kind": self.kind, "url": self.default_url or "/lab"}
        if self.command:
            shown.update(command=list(self.command), port=self.port, timeout=self.timeout)
        return shown


@dataclass(frozen=True)
class ImageTemplate:
    """One template of the catalogue. ``resource_model`` is preselected when the template is
    chosen ("" = the spawner's ``default_resource_model``); the schema checks it is in the
    resource-model catalogue. ``description`` and ``version`` are shown in the spawn form."""

    key: str
    image: str
    display_name: str
    description: str = ""
    version: str = ""
    app: TemplateApp = TemplateApp()
    resource_model: str = ""

    def environment(self) -> dict[str, str]:
        """The container environment this template adds (see :meth:`TemplateApp.environment`)."""
        return self.app.environment(self.display_name)

    def as_json(self) -> dict:
        """The template as ``GET /hub/api/bench/templates`` lists it."""
        return {
            "name": self.key,
            "display_name": self.display_name,
            "description": self.description,
            "version": self.version,
            "image": self.image,
            "app": self.app.as_json(),
            "resource_model": self.resource_model,
        }


def load_image_templates(raw: object) -> dict[str, ImageTemplate]:
    """Check the configured catalogue (``{key: {"image": ..., ...}}``, keys
    :data:`TEMPLATE_KEYS`) and return ``{key: ImageTemplate}`` in the same order.

    Each key must be non-empty text; ``image`` a local image reference; ``display_name``
    (default: the key), ``description``, ``version`` and ``resource_model`` text; ``app``
    ``"jupyterlab"`` or a dict of :data:`APP_KEYS` (see the module docstring); other keys are
    refused. Raises :class:`ValueError` listing every problem (joined with ``"; "``), each
    naming the template and the field and how to fix it."""
    if not isinstance(raw, dict) or not raw:
        raise ValueError(
            f"the image templates must be a non-empty dict of {{key: {_EXAMPLE}}}; "
            "define at least one template"
        )
    problems: list[str] = []
    templates = {}
    for key, entry in raw.items():
        if not isinstance(key, str) or not key.strip():
            problems.append(f"image template key {key!r} is invalid; use a short name")
        elif not isinstance(entry, dict):
            problems.append(f"image template {key!r} must be a dict like {_EXAMPLE}")
        else:
            found = [f"image template {key!r}: {p}" for p in _template_problems(entry)]
            problems.extend(found)
            if not found:
                templates[key] = _template(key, entry)
    if problems:
        raise ValueError("; ".join(problems))
    return templates


def _template(key: str, entry: dict) -> ImageTemplate:
    """The ImageTemplate of an entry :func:`_template_problems` found nothing wrong with."""
    return ImageTemplate(
        key=key,
        image=entry["image"].strip(),
        display_name=entry.get("display_name") or key,
        description=entry.get("description", ""),
        version=entry.get("version", ""),
        app=_app(entry.get("app", JUPYTERLAB)),
        resource_model=entry.get("resource_model", ""),
    )


def _template_problems(entry: dict) -> list[str]:
    """Each problem of one template's dict, as "field: what is wrong and how to fix it"."""
    problems = []
    unknown = sorted(str(k) for k in entry if k not in TEMPLATE_KEYS)
    if unknown:
        problems.append(
            f"unknown key(s) {', '.join(unknown)}; allowed keys: {', '.join(TEMPLATE_KEYS)}"
        )
    image = entry.get("image")
    if not isinstance(image, str) or not image.strip() or len(image.split()) != 1:
        problems.append(
            f"'image' must name a local image, e.g. 'benchhub/jupyterlab:latest'; got {image!r}"
        )
    for field, limit in MAX_TEXT.items():
        value = entry.get(field, "")
        if not isinstance(value, str) or len(value) > limit:
            problems.append(f"'{field}' must be text of at most {limit} characters")
    if not isinstance(entry.get("resource_model", ""), str):
        problems.append(
            "'resource_model' must be the name of a resource model, e.g. 'standard-small' "
            "(or leave it out for the default model)"
        )
    problems.extend(_app_problems(entry.get("app", JUPYTERLAB)))
    return problems


def _app_problems(app: object) -> list[str]:
    """The problems of an ``app`` value, each starting with ``'app'``."""
    if app == JUPYTERLAB:
        return []
    if not isinstance(app, dict):
        return [
            "'app' must be 'jupyterlab', {'command': [...], 'port': N} (any web app) or "
            f"{{'path': '/rstudio/'}} (a page the server serves); got {app!r}"
        ]
    unknown = sorted(str(k) for k in app if k not in APP_KEYS)
    if unknown:
        return [f"'app' has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(APP_KEYS)}"]
    if "path" in app:
        if set(app) != {"path"}:
            return ["'app' gives either a 'path' alone or a 'command' with its 'port'"]
        path = app["path"]
        if not isinstance(path, str) or not _PATH.fullmatch(path) or "/../" in f"{path}/":
            return [
                f"'app' 'path' must be a URL path in the server, e.g. '/rstudio/'; got {path!r}"
            ]
        return []
    problems = []
    command = app.get("command")
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(arg, str) and arg for arg in command)
    ):
        problems.append(
            "'app' 'command' must be a non-empty list of non-empty strings, e.g. "
            f"['python3', '-m', 'http.server', '{{port}}']; got {command!r}"
        )
    port = _whole(app.get("port"))
    if port is None or not 1 <= port <= 65535 or port == SERVER_PORT:
        problems.append(
            f"'app' 'port' must be a whole number from 1 to 65535 other than {SERVER_PORT} (the "
            f"server's own port): the port the command listens on, e.g. 13777; got "
            f"{app.get('port')!r}"
        )
    timeout = _whole(app.get("timeout", DEFAULT_APP_TIMEOUT))
    if timeout is None or not 1 <= timeout <= MAX_APP_TIMEOUT:
        problems.append(
            f"'app' 'timeout' must be whole seconds from 1 to {MAX_APP_TIMEOUT} (how long the "
            f"app may take to answer after it starts); got {app.get('timeout')!r}"
        )
    return problems


def _app(app: object) -> TemplateApp:
    """The TemplateApp of a checked ``app`` value."""
    if not isinstance(app, dict):
        return TemplateApp()
    if "path" in app:
        return TemplateApp(path=app["path"])
    return TemplateApp(
        command=tuple(app["command"]),
        port=_whole(app["port"]),
        timeout=_whole(app.get("timeout", DEFAULT_APP_TIMEOUT)),
    )


def _whole(value: object) -> int | None:
    """``value`` as an int when it is a whole number (not a bool, not text), else None."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    return int(value) if float(value).is_integer() else None
