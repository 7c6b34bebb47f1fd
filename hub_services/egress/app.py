"""``python -m hub_services.egress``: the egress hub service process.

Started by the hub (``c.JupyterHub.services``), it listens on the service URL the hub gives
it, authenticates people with HubOAuth and calls the hub with its own token (role
``egress-service``: list users and read their servers, for the whitelists of running
workspaces whose records were lost). It owns the egress proxy container. Settings are the
traits of :class:`~.service.EgressService`, from the command line (``--interval=10``) or a
config file (``--config=egress_config.py``).
"""

from __future__ import annotations

import secrets

from benchhub.service_process import ServiceApp, serve_until_stopped, service_prefix

from .service import EgressService
from .web import make_app

__all__ = ["EgressApp", "main"]


class EgressApp(ServiceApp):
    name = "benchhub-egress"
    description = __doc__.splitlines()[0]
    classes = [EgressService]

    aliases = {
        "config": "ServiceApp.config_file",
        "config-dir": "EgressService.config_dir",
        "container": "EgressService.container",
        "image": "EgressService.image",
        "outside-network": "EgressService.outside_network",
        "restricted-network": "EgressService.restricted_network",
        "mtu": "EgressService.mtu",
        "forbidden": "EgressService.forbidden_destinations",
        "interval": "EgressService.interval",
        "tick": "EgressService.tick",
        "restart-after": "EgressService.restart_after",
        "docker-host": "EgressService.docker_host",
        "workspaces-port": "EgressService.workspaces_port",
        "hub-port": "EgressService.hub_port",
        "hub-host": "EgressService.hub_host",
        "hub-api-port": "EgressService.hub_api_port",
        "hosts": "EgressService.hosts",
        "log-level": "Application.log_level",
    }

    async def serve(self) -> None:
        service = EgressService(parent=self, log=self.log)
        prefix = service_prefix("egress")
        app = make_app(service, prefix, secrets.token_bytes(32))
        self.log.info("egress service, prefix %s", prefix)
        await serve_until_stopped(app, "http://127.0.0.1:10101", service.loop(), self.log)


main = EgressApp.main
