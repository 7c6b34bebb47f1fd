"""Which requests to a workspace's Jupyter server are uploads or downloads (pure; no Jupyter).

ICA Bench workspaces have upload rights and download rights; BenchHub's spawner passes them to
the container as ``BENCHHUB_UPLOAD_ALLOWED`` and ``BENCHHUB_DOWNLOAD_ALLOWED`` ("true"/"false").
This module is the whole rule, so it can be read and unit-tested on its own; ``enforcement``
applies it to the server's handlers (docs/security.md, "Upload and download rights").

The rule:

- an **upload** is a ``PUT`` or ``POST`` to the contents API whose JSON body carries file
  contents encoded as a whole file: a ``format`` other than ``"text"`` or ``"json"`` (JupyterLab's
  upload sends ``"base64"``), or a ``chunk`` (JupyterLab's upload of files over 1 MB). Saving a
  notebook (``type: notebook``, ``format: json``) or a text file from the editor (``format:
  text``) is not an upload, also to a new path (the editor's "Save As"): that text was typed or
  pasted on screen, which no server can tell from an upload.
- a **download** is any request to the ``/files/`` handler (JupyterLab's "Download" and "Open in
  New Browser Tab"), to ``/view/``, to ``/nbconvert/`` (every export, with or without
  ``download=true``: an export exists to leave the workspace), and a contents API ``GET`` that
  asks for ``format=base64`` or whose answer carries base64 contents (a binary file). Opening a
  notebook or a text file in the editor (contents as JSON or text) is not a download: what is
  shown on screen is not prevented, as in ICA.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

UPLOAD = "upload"
DOWNLOAD = "download"

UPLOAD_ENV = "BENCHHUB_UPLOAD_ALLOWED"
DOWNLOAD_ENV = "BENCHHUB_DOWNLOAD_ALLOWED"

# contents formats the editor uses to save what is on screen
_ON_SCREEN_FORMATS = frozenset({None, "text", "json"})


class Route(enum.Enum):
    """The server handlers the rule knows; everything else is ``OTHER`` (never refused)."""

    CONTENTS = "contents"  # /api/contents/<path>
    FILES = "files"  # /files/<path>, the contents manager's files handler
    VIEW = "view"  # /view/<path>
    NBCONVERT = "nbconvert"  # /nbconvert/<format>[/<path>]
    OTHER = "other"


@dataclass(frozen=True)
class TransferRights:
    """A workspace's rights; both true unless the spawner said otherwise."""

    upload: bool = True
    download: bool = True

    @property
    def all_allowed(self) -> bool:
        return self.upload and self.download

    def allows(self, right: str) -> bool:
        return self.upload if right == UPLOAD else self.download


def parse_right(value: str | None) -> bool:
    """One right from its environment value: missing or empty means allowed (containers made
    before BenchHub had rights), "true"/"false" in any case; anything else means refused, so a
    mistyped value never opens what it was meant to close."""
    if value is None or not value.strip():
        return True
    return value.strip().lower() == "true"


def rights_from_environ(environ: Mapping[str, str]) -> TransferRights:
    """The rights the spawner put into the container's environment."""
    return TransferRights(
        upload=parse_right(environ.get(UPLOAD_ENV)), download=parse_right(environ.get(DOWNLOAD_ENV))
    )


def refusal_message(right: str) -> str:
    """The sentence a refused user reads: which right is missing and whom to ask."""
    if right == UPLOAD:
        return (
            "Uploads are not allowed in this workspace (its upload rights are off); "
            "ask a project administrator."
        )
    return (
        "Downloads are not allowed in this workspace (its download rights are off); "
        "ask a project administrator."
    )


def transfer_of_request(
    route: Route, method: str, query: Mapping[str, Sequence[str]], body: bytes | None
) -> str | None:
    """UPLOAD or DOWNLOAD if the request (as far as it can be told before it is served) moves a
    whole file into or out of the workspace, else None. ``query`` maps names to values (as
    decoded strings); ``body`` is the raw request body (None when not read)."""
    method = method.upper()
    if route in (Route.FILES, Route.VIEW, Route.NBCONVERT):
        return DOWNLOAD
    if route is not Route.CONTENTS:
        return None
    if method in ("GET", "HEAD"):
        return DOWNLOAD if "base64" in query.get("format", ()) else None
    if method in ("PUT", "POST") and _carries_file_contents(body):
        return UPLOAD
    return None


def transfer_of_contents_reply(reply: bytes | str) -> str | None:
    """DOWNLOAD if a contents API answer (the JSON model a ``GET`` returns) carries base64
    contents: a binary file's bytes, which the browser can save as they are."""
    if isinstance(reply, str):
        reply = reply.encode()
    if b"base64" not in reply:  # cheap: most answers are notebooks, text and listings
        return None
    try:
        model = json.loads(reply)
    except ValueError:
        return None
    if isinstance(model, dict) and model.get("format") == "base64" and model.get("content"):
        return DOWNLOAD
    return None


def _carries_file_contents(body: bytes | None) -> bool:
    if not body:
        return False
    try:
        model = json.loads(body)
    except ValueError:
        return False  # the handler answers 400 to a body that is not JSON
    if not isinstance(model, dict):
        return False
    return "chunk" in model or model.get("format") not in _ON_SCREEN_FORMATS
