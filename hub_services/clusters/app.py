"""``python -m hub_services.clusters``: the clusters hub service process.

Started by the hub (``c.JupyterHub.services``), it listens on the service URL the hub gives it,
authenticates people with HubOAuth and calls the hub with its own token (role
``clusters-service``: list users and read their servers, to know which workspaces run; read the
resource-model catalog). It talks to the local Docker Engine as the hub does. Settings are the
traits of :class:`~.controller.ClusterController`, from the command line
(``--interval=5 --min-lifetime=300``) or a config file (``--config=clusters_config.py``).
"""

from __future__ import annotations

import asyncio
import secrets

from traitlets import Unicode
from traitlets.config import Application

from bench_spawner.storage_allocations import StorageAdmission
from bench_spawner.writable_layer import WritableLayerWatch
from hub_services.egress.service import die_with_parent
from hub_services.service_process import serve_until_stopped, service_prefix

from .controller import ClusterController
from .service import make_app

__all__ = ["ClustersApp", "main"]


class ClustersApp(Application):
    name = "benchhub-clusters"
    description = __doc__.splitlines()[0]
    classes = [ClusterController, StorageAdmission, WritableLayerWatch]

    config_file = Unicode("", help="Python config file to load, e.g. clusters_config.py").tag(
        config=True
    )
    default_resource_model = Unicode(
        "standard-medium",
        help="""Members' resource model when a request names none (the catalog's first model
        when this one is not in it), e.g. standard-medium.""",
    ).tag(config=True)

    aliases = {
        "config": "ClustersApp.config_file",
        "default-resource-model": "ClustersApp.default_resource_model",
        "prefix": "ClusterController.prefix",
        "image": "ClusterController.image",
        "state-dir": "ClusterController.state_dir",
        "scratch-root": "ClusterController.scratch_root",
        "subnet-pool": "ClusterController.subnet_pool",
        "subnet-prefix-length": "ClusterController.subnet_prefix_length",
        "address-quarantine": "ClusterController.address_quarantine",
        "interval": "ClusterController.interval",
        "stabilisation": "ClusterController.stabilisation",
        "min-lifetime": "ClusterController.min_lifetime",
        "join-timeout": "ClusterController.join_timeout",
        "parallel-starts": "ClusterController.parallel_starts",
        "manager-cpus": "ClusterController.manager_cpus",
        "manager-memory-gb": "ClusterController.manager_memory_gb",
        "mtu": "ClusterController.network_mtu",
        "log-level": "Application.log_level",
    }

    def initialize(self, argv=None):
        self.parse_command_line(argv)
        if self.config_file:
            self.load_config_file(self.config_file)
            self.parse_command_line(argv)  # the command line wins over the file

    async def serve(self) -> None:
        controller = ClusterController(parent=self, log=self.log)
        await controller.setup()
        prefix = service_prefix("clusters")
        app = make_app(controller, prefix, secrets.token_bytes(32), self.default_resource_model)
        self.log.info("clusters service, prefix %s", prefix)
        await serve_until_stopped(app, "http://127.0.0.1:10104", controller.loop(), self.log)
        controller.engine.close()


def main(argv=None) -> None:
    die_with_parent()
    app = ClustersApp()
    app.initialize(argv)
    asyncio.run(app.serve())
