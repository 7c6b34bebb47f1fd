"""``python -m hub_services.lifecycle``: the lifecycle hub service process.

Started by the hub (``c.JupyterHub.services``), it listens on the service URL the hub gives it,
authenticates people with HubOAuth and calls the hub with its own token (role
``lifecycle-service``: list/read users and servers, stop/start servers; it asks a workspace's
server about kernels with that server's own token, not its own). Settings are the traits of
:class:`LifecycleService` and :class:`SMTPReminder`, from the command line (``--interval=60``)
or a config file (``--config=lifecycle_config.py``, ``c.LifecycleService.reminder_hook = ...``).
"""

from __future__ import annotations

import asyncio
import secrets

from traitlets import Bool, Unicode

from benchhub.docker_engine import DockerEngine
from benchhub.service_process import ServiceApp, serve_until_stopped, service_prefix

from .activity_log import ActivityLog
from .cycles import CycleStore
from .ledger import Ledger
from .recorder import UsageRecorder
from .reminders import SMTPReminder
from .service import LifecycleService
from .usage_api import UsageRates, menu_entry_redirect
from .web import make_app

__all__ = ["LifecycleApp", "main"]


class LifecycleApp(ServiceApp):
    name = "benchhub-lifecycle"
    description = __doc__.splitlines()[0]
    classes = [LifecycleService, SMTPReminder, UsageRecorder, UsageRates]

    db_url = Unicode(
        "sqlite:///lifecycle.sqlite",
        help="""The service's own database (activity log and per-workspace memory):
        SQLite by default, or a PostgreSQL URL, e.g. postgresql://bench@db/benchhub.""",
    ).tag(config=True)
    smtp_reminders = Bool(
        False, help="Mail reminders with SMTPReminder (configure SMTPReminder.host etc.)."
    ).tag(config=True)

    aliases = {
        "config": "ServiceApp.config_file",
        "db-url": "LifecycleApp.db_url",
        "journal": "LifecycleService.journal",
        "interval": "LifecycleService.interval",
        "usage-interval": "UsageRecorder.interval",
        "hour": "LifecycleService.hour",
        "restart-every": "LifecycleService.restart_every",
        "not-accessed-limit": "LifecycleService.not_accessed_limit",
        "idle-cpu-share": "LifecycleService.idle_cpu_share",
        "idle-window": "LifecycleService.idle_window",
        "hub-url": "LifecycleService.hub_url",
        "prefix": "LifecycleService.prefix",
        "smtp-host": "SMTPReminder.host",
        "smtp-port": "SMTPReminder.port",
        "smtp-sender": "SMTPReminder.sender",
        "smtp-to": "SMTPReminder.to_template",
        "log-level": "Application.log_level",
    }
    flags = {
        "smtp": ({"LifecycleApp": {"smtp_reminders": True}}, "Mail reminders over SMTP."),
    }

    async def serve(self) -> None:
        store_args = {"activity_log": ActivityLog(self.db_url), "cycles": CycleStore(self.db_url)}
        service = LifecycleService(parent=self, log=self.log, **store_args)
        if self.smtp_reminders and service.reminder_hook is None:
            service.reminder_hook = SMTPReminder(parent=self, log=self.log)
        ledger = Ledger(self.db_url)  # the usage ledger, beside the activity log
        recorder = UsageRecorder(
            parent=self,
            log=self.log,
            ledger=ledger,
            activity_log=service.activity_log,
            engine=DockerEngine(threads=2, timeout=30),
            hub=service.hub,
            metrics=service.metrics,  # the ledger's totals on /metrics
            prefix=service.prefix,
            journal=service.journal,
        )
        prefix = service_prefix("lifecycle")
        app = make_app(service, prefix, secrets.token_bytes(32), ledger, UsageRates(parent=self))
        app.add_handlers(".*", [menu_entry_redirect(prefix)])
        self.log.info("lifecycle service, prefix %s", prefix)
        loops = asyncio.gather(service.loop(), recorder.loop())
        await serve_until_stopped(app, "http://127.0.0.1:10102", loops, self.log)


main = LifecycleApp.main
