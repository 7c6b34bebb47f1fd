"""Run code in a real kernel of a workspace, as a notebook cell runs it: through the hub's
proxy, the single-user server's REST API (start a kernel) and its websocket (the Jupyter
messaging protocol), with the test's admin token (``access:servers``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass

import requests
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from .hub_harness import TOKEN


@dataclass(frozen=True)
class CellResult:
    """What a notebook shows under a cell: its printed output, and the error if it raised."""

    status: str  # "ok" or "error"
    output: str
    error: str = ""


def run_cell(hub, user: str, workspace: str, code: str, timeout: float = 300) -> CellResult:
    """Start a kernel in ``user``'s ``workspace``, run ``code`` as one cell, shut it down."""
    base = f"{hub.url}/user/{user}/{workspace}/api/kernels"
    headers = {"Authorization": f"token {TOKEN}"}
    r = requests.post(base, json={"name": "python3"}, headers=headers, timeout=60)
    r.raise_for_status()
    kernel_id = r.json()["id"]
    try:
        url = base.replace("http://", "ws://") + f"/{kernel_id}/channels"
        return asyncio.run(asyncio.wait_for(_execute(url, headers, code), timeout))
    finally:
        requests.delete(f"{base}/{kernel_id}", headers=headers, timeout=60)


async def _execute(url: str, headers: dict, code: str) -> CellResult:
    connection = await websocket_connect(HTTPRequest(url, headers=headers))
    try:
        msg_id = uuid.uuid4().hex
        request = {
            "header": {
                "msg_id": msg_id,
                "msg_type": "execute_request",
                "username": "test",
                "session": uuid.uuid4().hex,
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": {"code": code, "silent": False, "store_history": False},
            "channel": "shell",
        }
        await connection.write_message(json.dumps(request))
        output, status, error, idle = [], None, "", False
        while status is None or not idle:
            raw = await connection.read_message()
            if raw is None:
                raise ConnectionError("the kernel's websocket closed before the cell finished")
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                output.append(content["text"])
            elif kind == "error":
                error = f"{content['ename']}: {content['evalue']}"
            elif kind == "execute_reply":
                status = content["status"]
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
        return CellResult(status, "".join(output), error)
    finally:
        connection.close()
