"""The transfer rule of the workspace server's rights extension: which requests are uploads or
downloads, and how the spawner's environment values read. The module lives in the JupyterLab
image (images/jupyterlab/app/benchhub_rights/policy.py, no Jupyter imports) and is loaded here
by path, without writing bytecode into the image's build context."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

POLICY = Path(__file__).parents[2] / "images/jupyterlab/app/benchhub_rights/policy.py"


def _load_policy() -> types.ModuleType:
    module = types.ModuleType("benchhub_rights_policy")
    module.__file__ = str(POLICY)
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(POLICY.read_text(), str(POLICY), "exec"), module.__dict__)
    return module


policy = _load_policy()
Route, UPLOAD, DOWNLOAD = policy.Route, policy.UPLOAD, policy.DOWNLOAD


def body(**model) -> bytes:
    return json.dumps(model).encode()


@pytest.mark.parametrize(
    "model",
    [
        {"type": "file", "format": "base64", "content": "AAE="},  # JupyterLab's Upload
        {"type": "file", "format": "base64", "content": "AAE=", "chunk": 1},  # over 1 MB
        {"type": "file", "format": "base64", "content": "AAE=", "chunk": -1},  # its last chunk
        {"type": "file", "format": "text", "content": "x", "chunk": 2},  # a chunk is a chunk
        {"type": "notebook", "format": "base64", "content": "AAE="},
        {"type": "file", "format": "hex", "content": "00"},  # unknown formats fail closed
    ],
)
@pytest.mark.parametrize("method", ["PUT", "POST", "put"])
def test_file_contents_sent_as_a_whole_file_are_an_upload(model, method):
    assert policy.transfer_of_request(Route.CONTENTS, method, {}, body(**model)) == UPLOAD


@pytest.mark.parametrize(
    "model",
    [
        {"type": "notebook", "format": "json", "content": {"cells": []}},  # saving a notebook
        {"type": "file", "format": "text", "content": "print(1)\n"},  # saving a text file
        {"type": "file", "content": None},  # a new empty file
        {"type": "notebook"},  # "New Notebook" (POST)
        {"copy_from": "a.ipynb"},  # Duplicate
        {"path": "renamed.txt"},  # PATCH: rename
    ],
)
@pytest.mark.parametrize("method", ["PUT", "POST", "PATCH"])
def test_saves_of_what_the_editor_shows_copies_and_renames_are_not_uploads(model, method):
    assert policy.transfer_of_request(Route.CONTENTS, method, {}, body(**model)) is None


@pytest.mark.parametrize("raw", [None, b"", b"not json", b"[1, 2]", b'"base64"'])
def test_a_body_that_is_no_contents_model_is_left_to_the_server_to_refuse(raw):
    assert policy.transfer_of_request(Route.CONTENTS, "PUT", {}, raw) is None


@given(
    route=st.sampled_from([Route.FILES, Route.VIEW, Route.NBCONVERT]),
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT"]),
    query=st.dictionaries(st.text(max_size=8), st.lists(st.text(max_size=8), max_size=2)),
)
def test_every_request_to_files_view_and_nbconvert_is_a_download(route, method, query):
    assert policy.transfer_of_request(route, method, query, None) == DOWNLOAD


@pytest.mark.parametrize(
    "query, expected",
    [
        ({"format": ["base64"]}, DOWNLOAD),
        ({"format": ["text"], "content": ["1"]}, None),  # a text file opened in the editor
        ({"type": ["notebook"], "content": ["1"]}, None),  # a notebook opened
        ({}, None),  # decided on the answer: transfer_of_contents_reply
    ],
)
def test_contents_get_asking_for_base64_is_a_download(query, expected):
    assert policy.transfer_of_request(Route.CONTENTS, "GET", query, None) == expected


@given(method=st.text(max_size=7), raw=st.binary(max_size=64))
def test_requests_to_other_routes_are_never_transfers(method, raw):
    assert policy.transfer_of_request(Route.OTHER, method, {"format": ["base64"]}, raw) is None


@pytest.mark.parametrize(
    "reply, expected",
    [
        (body(name="b.bin", format="base64", content="//4A"), DOWNLOAD),  # a binary file
        (body(name="t.txt", format="text", content="base64 is an encoding"), None),
        (body(name="base64", format="json", content=[{"name": "base64"}]), None),  # a listing
        (body(name="empty.bin", format="base64", content=""), None),  # nothing to take
        (body(name="b.bin", format=None, content=None), None),  # content=0
        (b"not json but base64", None),
    ],
)
def test_a_contents_answer_carrying_base64_contents_is_a_download(reply, expected):
    assert policy.transfer_of_contents_reply(reply) == expected
    assert policy.transfer_of_contents_reply(reply.decode()) == expected


@pytest.mark.parametrize(
    "value, allowed",
    [
        (None, True),  # a container made before BenchHub had rights
        ("", True),
        ("true", True),
        (" TRUE ", True),
        ("false", False),
        ("False", False),
        ("no", False),  # a value that is neither fails closed
        ("0", False),
    ],
)
def test_environment_values_read_as_rights(value, allowed):
    environ = {} if value is None else {policy.UPLOAD_ENV: value, policy.DOWNLOAD_ENV: value}
    rights = policy.rights_from_environ(environ)
    assert rights == policy.TransferRights(upload=allowed, download=allowed)
    assert rights.allows(UPLOAD) is allowed and rights.allows(DOWNLOAD) is allowed


def test_each_refusal_names_the_missing_right_and_whom_to_ask():
    up, down = policy.refusal_message(UPLOAD), policy.refusal_message(DOWNLOAD)
    assert up.startswith("Uploads are not allowed in this workspace (its upload rights are off)")
    assert down.startswith("Downloads are not allowed in this workspace (its download rights")
    assert up.endswith("ask a project administrator.") and down.endswith(up[-29:])
