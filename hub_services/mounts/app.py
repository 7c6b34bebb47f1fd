"""``python -m hub_services.mounts``: the mounts hub service process.

Started by the hub (``c.JupyterHub.services``), it listens on the service URL the hub gives
it, authenticates callers with HubOAuth and reads the hub with its own token (role
``mounts-service``: read users, their servers' options and groups, to re-check a caller's
project standing). It runs as root on the host: it joins workspace containers' mount
namespaces to make and remove bind mounts (:mod:`.namespace`). Settings are the traits of
:class:`~.service.MountService`, from the command line (``--interval=5``) or a config file.
"""

from __future__ import annotations

import secrets

from benchhub.service_process import ServiceApp, serve_until_stopped, service_prefix

from .service import MountService
from .web import make_app

__all__ = ["MountsApp", "main"]


class MountsApp(ServiceApp):
    name = "benchhub-mounts"
    description = __doc__.splitlines()[0]
    classes = [MountService]

    aliases = {
        "config": "ServiceApp.config_file",
        "prefix": "MountService.prefix",
        "interval": "MountService.interval",
        "max-mounts": "MountService.max_mounts",
        "log-level": "Application.log_level",
    }

    async def serve(self) -> None:
        service = MountService(parent=self, log=self.log)
        prefix = service_prefix("mounts")
        app = make_app(service, prefix, secrets.token_bytes(32))
        self.log.info("mounts service, prefix %s", prefix)
        await serve_until_stopped(app, "http://127.0.0.1:10105", service.loop(), self.log)


main = MountsApp.main
