"""Cheap stand-in workspaces for the lifecycle benchmark: 1,000 running servers on one host.

1,000 real workspace containers do not fit this 2-core machine (nor one Docker bridge, which
takes at most 1,023 ports), so each benchmark workspace is a :class:`StandInSpawner` server
whose URL points at one shared :func:`serve` process: a tiny Jupyter-like HTTP server that
answers the hub's readiness check and the ``api/kernels`` / ``api/terminals`` questions the
lifecycle service asks, for every ``/user/<name>/<workspace>/`` prefix. The hub, its REST API,
the database and the proxy routes are real; only the single-user servers are stand-ins.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from jupyterhub.spawner import Spawner
from tornado import web

__all__ = ["StandInSpawner", "serve"]


class StandInSpawner(Spawner):
    """A server that is 'running' as soon as it starts: its URL is the shared stand-in
    (``STANDIN_URL``), it is alive until stopped, and stopping it frees nothing."""

    def get_state(self):
        state = super().get_state()
        if getattr(self, "_running", False):
            state["standin"] = True
        return state

    def load_state(self, state):
        super().load_state(state)
        self._running = bool(state.get("standin"))

    async def start(self):
        self._running = True
        return os.environ["STANDIN_URL"]

    async def poll(self):
        return None if getattr(self, "_running", False) else 0

    async def stop(self, now=False):
        self._running = False


class _Answer(web.RequestHandler):
    def get(self, path: str):
        self.set_header("Content-Type", "application/json")
        if path.endswith("api/kernels"):
            self.write(
                json.dumps(
                    [
                        {
                            "id": "k1",
                            "execution_state": "idle",
                            "connections": 0,
                            "last_activity": "2026-01-01T00:00:00Z",
                        }
                    ]
                )
            )
        elif path.endswith("api/terminals"):
            self.write("[]")
        else:
            self.write({"version": "stand-in"})


def serve(port: int) -> None:
    """Run the shared stand-in server on 127.0.0.1:``port`` until killed."""

    async def main():
        web.Application([(r"/(.*)", _Answer)]).listen(port, "127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(main())


if __name__ == "__main__":
    serve(int(sys.argv[1]))
