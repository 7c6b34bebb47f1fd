"""``python -m hub_services.clusters``: the clusters hub service process.

Started by the hub (``c.JupyterHub.services``), it listens on the service URL the hub gives it,
authenticates people with HubOAuth and calls the hub with its own token (role
``clusters-service``: list users and read their servers, to know which workspaces run; read the
resource-model catalog). It talks to the local Docker Engine as the hub does. Settings are the
traits of :class:`~.service.ClusterController`, from the command line
(``--interval=5 --min-lifetime=300``) or a config file (``--config=clusters_config.py``).
"""

from __future__ import annotations

import secrets

from traitlets import Bool, Int, Unicode

from benchhub.service_process import ServiceApp, serve_until_stopped, service_prefix
from benchhub.storage_allocations import StorageAdmission
from benchhub.writable_layer import WritableLayerWatch

from . import spares
from .metrics import ClusterMetrics
from .quota_gate import ClusterQuotaGate
from .service import ClusterController
from .web import make_app

__all__ = ["ClustersApp", "main"]


class ClustersApp(ServiceApp):
    name = "benchhub-clusters"
    description = __doc__.splitlines()[0]
    classes = [ClusterController, StorageAdmission, WritableLayerWatch]

    default_resource_model = Unicode(
        "standard-medium",
        help="""Members' resource model when a request names none (the catalog's first model
        when this one is not in it), e.g. standard-medium.""",
    ).tag(config=True)

    spare_members = Int(
        None,
        allow_none=True,
        help="""Member names a dynamic cluster keeps registered with its Grid Engine ahead of
        any scale-up (spares: configured execution hosts that never reported, so nothing runs
        there), so a scale-up's first round starts containers without waiting for ``qconf``;
        0 turns it off, None (the default) keeps two start windows (twice as many as
        members boot at once: 10 on a 2-core host), at most a cluster's max_members; e.g. 5.""",
    ).tag(config=True)

    watch_new_jobs = Bool(
        True,
        help="""Wake the service as soon as a job is submitted to a dynamic cluster that can
        grow (a pending-job watch in its manager, pending_watch.py) instead of finding it at
        the next pass; False: only the passes (the benchmark's baseline).""",
    ).tag(config=True)

    aliases = {
        "config": "ServiceApp.config_file",
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
        "spare-members": "ClustersApp.spare_members",
        "watch-new-jobs": "ClustersApp.watch_new_jobs",
        "manager-cpus": "ClusterController.manager_cpus",
        "manager-memory-gb": "ClusterController.manager_memory_gb",
        "mtu": "ClusterController.network_mtu",
        "log-level": "Application.log_level",
    }

    async def serve(self) -> None:
        controller = ClusterController(parent=self, log=self.log)
        await controller.setup()
        prefix = service_prefix("clusters")
        metrics = ClusterMetrics(controller)  # /services/clusters/metrics
        controller.scaler.on_decision = metrics.decided
        spare = self.spare_members
        window = controller.scaler.start_window
        controller.scaler.spare_members = spares.default_spares(window) if spare is None else spare
        controller.scaler.arrivals.enabled = self.watch_new_jobs
        # the user's limits, from the hub; their max_storage_gb becomes their scratch quota
        quotas = ClusterQuotaGate(controller.hub, self.log, controller.admission)
        controller.scaler.quota_fit = quotas.members_that_fit
        secret = secrets.token_bytes(32)
        app = make_app(
            controller, prefix, secret, self.default_resource_model, metrics.registry, quotas
        )
        self.log.info("clusters service, prefix %s", prefix)
        await serve_until_stopped(app, "http://127.0.0.1:10104", controller.loop(), self.log)
        controller.close()


main = ClustersApp.main
