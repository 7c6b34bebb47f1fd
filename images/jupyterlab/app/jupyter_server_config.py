# BenchHub: the web app of the workspace's image template (docs/templates.md). The spawner puts
# the template's app in BENCHHUB_APP (JSON: name, command, port, timeout, title) and makes
# /<name>/ the server's default URL; jupyter-server-proxy starts the command on first use and
# proxies it at /user/<user>/<workspace>/<name>/ behind this server's own login (only the
# owner and admins get in, as for JupyterLab). "{port}" in the command is the app's port.
# Installed as /etc/jupyter/jupyter_server_config.py: the image's other configuration
# (spark/jupyter_server_config.py, in the venv) is a separate file and both are loaded.
import json
import os


def _template_app() -> dict | None:
    try:
        app = json.loads(os.environ.get("BENCHHUB_APP") or "null")
    except ValueError:
        return None
    return app if isinstance(app, dict) and app.get("command") else None


_app = _template_app()
if _app is not None:
    c.ServerProxy.servers = {  # noqa: F821 (c is the config object)
        _app["name"]: {
            "command": _app["command"],
            "port": int(_app["port"]),
            "timeout": int(_app.get("timeout", 60)),
            "absolute_url": False,
            "launcher_entry": {"enabled": True, "title": _app.get("title") or _app["name"]},
        }
    }

# BenchHub: the workspace's upload and download rights (docs/security.md, "Upload and download
# rights"), enforced by the benchhub_rights server extension. It lives in /opt/benchhub/jupyter,
# root-owned and ahead of the venv on sys.path, so a package of the same name that the user
# installs into their venv neither shadows nor replaces it.
import sys  # noqa: E402

sys.path.insert(0, "/opt/benchhub/jupyter")
c.ServerApp.jpserver_extensions.update({"benchhub_rights": True})  # noqa: F821

# BenchHub: revoking a share (docs/sharing.md) takes effect at the collaborator's next request.
# The server asks the hub who each request is from and keeps the answer this many seconds
# (JupyterHub's default is 300; 0 would mean forever): one second, the shortest it takes.
c.HubOAuth.cache_max_age = 1  # noqa: F821
