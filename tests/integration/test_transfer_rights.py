"""Upload and download rights, through the real hub to real workspaces: a workspace whose
``permissions`` turn them off refuses JupyterLab's uploads and every download route with 403
and a sentence naming the missing right, and still opens and saves notebooks and text files;
a workspace with the rights on (the default) allows all of it. The server extension doing it
is images/jupyterlab/app/benchhub_rights (docs/security.md, "Upload and download rights").
"""

from __future__ import annotations

import base64
import json
import subprocess

import pytest
import requests
from support.docker_cli import exec_in
from support.waiting import wait

USER = "tess"
SEALED, OPEN = "sealed", "open"
NO_UPLOADS = "Uploads are not allowed in this workspace (its upload rights are off)"
NO_DOWNLOADS = "Downloads are not allowed in this workspace (its download rights are off)"
BLOB = b"\xff\xfe\x00binary"  # not UTF-8: the contents API can only send it as base64
NOTEBOOK = {
    "cells": [{"cell_type": "markdown", "id": "a1", "metadata": {}, "source": "# kept"}],
    "metadata": {},
    "nbformat": 4,
    "nbformat_minor": 5,
}


class Workspace:
    """A workspace's Jupyter server at its URL through the hub, as its owner with a token."""

    def __init__(self, hub, name: str, token: str):
        self.hub, self.name = hub, name
        self.base = f"{hub.url}/user/{USER}/{name}"
        self.headers = {"Authorization": f"token {token}"}
        self.container = hub.container_name(USER, name)
        self.volume = hub.storage_root / USER / name / "mnt"  # /data, seen from the host

    def request(self, method: str, path: str, body=None) -> requests.Response:
        return requests.request(
            method, f"{self.base}{path}", json=body, headers=self.headers, timeout=60
        )

    def upload(self, name: str, data: bytes, chunk: int | None = None) -> requests.Response:
        """What JupyterLab's Upload button and drag-and-drop send (chunks above 1 MB)."""
        model = {"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}
        if chunk is not None:
            model["chunk"] = chunk
        return self.request("PUT", f"/api/contents/{name}", {"name": name, **model})


@pytest.fixture(scope="module")
def workspaces(hub):
    hub.ensure_user(USER)
    token = hub.api("POST", f"/users/{USER}/tokens", {"expires_in": 1800}).json()["token"]
    closed = {"upload": False, "download": False}
    hub.start_workspaces(
        [
            (USER, SEALED, {"storage_gb": 1, "permissions": closed}),
            (USER, OPEN, {"storage_gb": 1}),
        ]
    )
    made = {}
    for name in (SEALED, OPEN):
        ws = made[name] = Workspace(hub, name, token)
        script = (
            f"set -e; cd /data; printf 'line one\\n' > notes.txt; "
            f"printf '\\377\\376\\000binary' > blob.bin; "
            f"cat > analysis.ipynb <<'NB'\n{json.dumps(NOTEBOOK)}\nNB"
        )
        done = exec_in(ws.container, script, user="1000")
        assert done.returncode == 0, done.stderr
    yield made[SEALED], made[OPEN]
    for name in (SEALED, OPEN):
        hub.stop_workspace(USER, name)


def refused(r: requests.Response, sentence: str) -> bool:
    return r.status_code == 403 and sentence in r.text


def test_without_upload_rights_jupyterlab_uploads_are_refused_naming_the_right(workspaces):
    sealed, _ = workspaces
    r = sealed.upload("upload.bin", BLOB)
    assert refused(r, NO_UPLOADS), (r.status_code, r.text)
    assert json.loads(r.text)["message"].endswith("ask a project administrator.")
    first_chunk = sealed.upload("big.bin", BLOB, chunk=1)
    assert refused(first_chunk, NO_UPLOADS), (first_chunk.status_code, first_chunk.text)
    # an upload over an existing file is refused too, and leaves it as it was
    over = sealed.upload("notes.txt", BLOB)
    assert refused(over, NO_UPLOADS), (over.status_code, over.text)
    assert not (sealed.volume / "upload.bin").exists()
    assert not (sealed.volume / "big.bin").exists()
    assert (sealed.volume / "notes.txt").read_text() == "line one\n"


def test_without_upload_rights_notebooks_and_text_files_are_still_saved(workspaces):
    sealed, _ = workspaces
    edited = dict(NOTEBOOK, cells=[dict(NOTEBOOK["cells"][0], source="# edited")])
    r = sealed.request(
        "PUT",
        "/api/contents/analysis.ipynb",
        {"type": "notebook", "format": "json", "content": edited},
    )
    assert r.status_code == 200, r.text
    assert "# edited" in (sealed.volume / "analysis.ipynb").read_text()
    text = {"type": "file", "format": "text", "content": "line two\n"}
    r = sealed.request("PUT", "/api/contents/notes.txt", text)
    assert r.status_code == 200, r.text
    assert (sealed.volume / "notes.txt").read_text() == "line two\n"
    # "Save As" and "New File": the editor's own saves, also to a new path
    r = sealed.request("PUT", "/api/contents/copy-of-notes.txt", text)
    assert r.status_code == 201, r.text
    r = sealed.request("POST", "/api/contents", {"type": "notebook"})
    assert r.status_code == 201, r.text
    assert (sealed.volume / r.json()["path"]).exists()


@pytest.mark.parametrize(
    "what, path",
    [
        ("Download in JupyterLab", "/files/notes.txt?download=1"),
        ("Open in New Browser Tab", "/files/notes.txt"),
        ("a binary file's bytes as base64", "/api/contents/blob.bin"),
        ("a text file asked for as base64", "/api/contents/notes.txt?format=base64"),
        ("Export Notebook As HTML", "/nbconvert/html/analysis.ipynb?download=true"),
        ("a notebook converted in the browser", "/nbconvert/html/analysis.ipynb"),
        ("the view page", "/view/notes.txt"),
    ],
)
def test_without_download_rights_each_download_route_is_refused_naming_the_right(
    workspaces, what, path
):
    sealed, _ = workspaces
    r = sealed.request("GET", path)
    assert refused(r, NO_DOWNLOADS), (what, r.status_code, r.text[:300])
    assert b"line" not in r.content and b"binary" not in r.content


def test_without_download_rights_notebooks_and_text_files_still_open_in_the_editor(workspaces):
    sealed, _ = workspaces
    r = sealed.request("GET", "/api/contents/analysis.ipynb?type=notebook&content=1")
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "notebook" and r.json()["content"]["cells"]
    r = sealed.request("GET", "/api/contents/notes.txt?type=file&format=text&content=1")
    assert r.status_code == 200, r.text
    assert r.json()["format"] == "text" and r.json()["content"].startswith("line")
    listing = sealed.request("GET", "/api/contents")
    assert listing.status_code == 200 and "blob.bin" in listing.text


def test_with_both_rights_uploads_and_downloads_work(workspaces):
    _, opened = workspaces
    assert opened.upload("upload.bin", BLOB).status_code == 201
    assert (opened.volume / "upload.bin").read_bytes() == BLOB
    assert opened.upload("big.bin", BLOB, chunk=1).status_code == 201
    assert opened.upload("big.bin", BLOB, chunk=-1).status_code == 200
    assert (opened.volume / "big.bin").read_bytes() == BLOB * 2
    r = opened.request("GET", "/files/blob.bin?download=1")
    assert r.status_code == 200 and r.content == BLOB
    r = opened.request("GET", "/api/contents/blob.bin")
    assert r.status_code == 200 and base64.b64decode(r.json()["content"]) == BLOB
    r = opened.request("GET", "/nbconvert/html/analysis.ipynb?download=true")
    assert r.status_code == 200 and "kept" in r.text
    assert opened.request("GET", "/view/notes.txt").status_code == 200


def server_log(container: str) -> str:
    """The workspace server's log (it writes to stderr)."""
    done = subprocess.run(["docker", "logs", container], capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


def test_each_refusal_is_written_to_the_workspace_servers_log(workspaces):
    sealed, _ = workspaces
    assert sealed.upload("logged.bin", BLOB).status_code == 403
    assert sealed.request("GET", "/files/notes.txt?download=1").status_code == 403
    base = f"/user/{USER}/{SEALED}"
    upload = f"refused upload (upload rights are off): PUT {base}/api/contents/logged.bin by {USER}"
    download = f"refused download (download rights are off): GET {base}/files/notes.txt by {USER}"
    wait(
        lambda: server_log(sealed.container),
        30,
        "both refusals in the server's log",
        until=lambda log: upload in log and download in log,
    )
