"""``python -m hub_services.checkpoints``: the checkpoints hub service process.

Started by the hub (``c.JupyterHub.services``), it listens on the service URL the hub gives
it, authenticates people with HubOAuth and calls the hub with its own token (role
``checkpoints-service``: read users and servers, create and start servers for start-as-new).
Settings are the traits of :class:`CheckpointService`, :class:`CheckpointStore` and its
backends, from the command line (``--interval=300``, ``--store-dir=...``,
``--s3-bucket=...``) or a config file (``--config=checkpoints_config.py``).
"""

from __future__ import annotations

import secrets

from benchhub.checkpoints.backends import LocalDirectoryBackend, S3Backend
from benchhub.checkpoints.store import CheckpointStore
from benchhub.service_process import ServiceApp, serve_until_stopped, service_prefix

from .service import CheckpointService
from .web import make_app

__all__ = ["CheckpointsApp", "main"]


class CheckpointsApp(ServiceApp):
    name = "benchhub-checkpoints"
    description = __doc__.splitlines()[0]
    classes = [CheckpointService, CheckpointStore, LocalDirectoryBackend, S3Backend]

    aliases = {
        "config": "ServiceApp.config_file",
        "interval": "CheckpointService.interval",
        "tick": "CheckpointService.tick",
        "prefix": "CheckpointService.prefix",
        "storage-root": "CheckpointService.storage_root",
        "keep": "CheckpointService.keep_automatic",
        "gc-interval": "CheckpointService.gc_interval",
        "orphan-grace": "CheckpointService.orphan_grace",
        "backend": "CheckpointStore.backend_class",
        "store-dir": "LocalDirectoryBackend.root",
        "s3-bucket": "S3Backend.bucket",
        "s3-prefix": "S3Backend.prefix",
        "s3-endpoint": "S3Backend.endpoint_url",
        "log-level": "Application.log_level",
    }

    async def serve(self) -> None:
        service = CheckpointService(parent=self, log=self.log)
        prefix = service_prefix("checkpoints")
        app = make_app(service, prefix, secrets.token_bytes(32))
        self.log.info("checkpoints service, prefix %s", prefix)
        await serve_until_stopped(app, "http://127.0.0.1:10103", service.loop(), self.log)


main = CheckpointsApp.main
