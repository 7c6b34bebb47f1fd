"""What every BenchHub hub service process does the same way.

:class:`ServiceApp` is the process of a service: a traitlets ``Application`` whose settings
come from the command line (``--interval=5``) or a config file (``--config=x_config.py``,
which the command line overrides), that dies with the hub that started it, serves its HTTP
app on the URL the hub gave (:func:`serve_until_stopped`) beside its reconcile loop, and ends
within a second of SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import sys
from urllib.parse import urlparse

from tornado import web
from traitlets import Unicode
from traitlets.config import Application

__all__ = ["ServiceApp", "die_with_parent", "serve_until_stopped", "service_prefix"]

log = logging.getLogger("benchhub.service")


def service_prefix(name: str) -> str:
    """The URL prefix the hub gave the service (``/services/<name>/`` by default)."""
    return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{name}/")


async def serve_until_stopped(app: web.Application, default_url: str, loop, log) -> None:
    """Listen on the service URL the hub gave (``default_url`` when run by hand), run the
    coroutine ``loop`` beside it, and return once SIGTERM or SIGINT arrives."""
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", default_url))
    server = app.listen(url.port, url.hostname)
    log.info("listening on %s:%s", url.hostname, url.port)
    stopped = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stopped.set)
    task = asyncio.ensure_future(loop)
    await stopped.wait()
    server.stop()
    task.cancel()


def die_with_parent() -> None:
    """Exit when the hub that started this service dies (even by SIGKILL): the next hub starts
    its own, and two services must not reconcile the same things. Linux prctl(PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        log.warning("cannot ask to be stopped with the hub", exc_info=True)
    if os.getppid() == 1:  # the hub died before the request took effect
        raise SystemExit("the hub that started this service is gone")


class ServiceApp(Application):
    """The process of one hub service (see the module docstring). Subclasses define
    ``serve()``; ``main()`` runs it."""

    config_file = Unicode("", help="Python config file to load, e.g. lifecycle_config.py").tag(
        config=True
    )

    def initialize(self, argv=None):
        self.parse_command_line(argv)
        if self.config_file:
            self.load_config_file(self.config_file)
            self.parse_command_line(argv)  # the command line wins over the file
        logging.basicConfig(  # the shared library's module loggers (benchhub.*)
            level=self.log_level,
            format=f"[%(levelname)1.1s %(asctime)s {self.name.removeprefix('benchhub-')}] "
            "%(message)s",
        )

    async def serve(self) -> None:
        raise NotImplementedError

    @classmethod
    def main(cls, argv=None) -> None:
        """Run the service until SIGTERM; then end at once. Work still in worker threads (a
        Docker call, a checkpoint being written) is not waited for: everything a service
        writes is crash-safe (atomic files, transactions, checkpoints published last), and
        the hub expects its services to stop within a second."""
        die_with_parent()
        app = cls()
        app.initialize(argv)

        async def run() -> None:
            await app.serve()
            app.log.info("stopped")
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)  # before asyncio.run would wait for the worker threads

        asyncio.run(run())
