"""Atomic writes: a crash at any moment leaves the old content or the new, never half."""

from __future__ import annotations

import os
import stat

import pytest

from benchhub import atomic
from benchhub.atomic import atomic_write, write_once


def test_a_write_replaces_the_file_whole_with_its_mode(tmp_path):
    path = tmp_path / "sub" / "record.json"
    atomic_write(path, "old")
    atomic_write(path, b"new", 0o600)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["record.json"]  # no temporary file left


def test_a_write_that_fails_midway_leaves_the_old_content_and_no_temporary_file(
    tmp_path, monkeypatch
):
    path = tmp_path / "record.json"
    atomic_write(path, "old")

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["record.json"]


def test_write_once_keeps_what_the_first_writer_wrote(tmp_path):
    path = tmp_path / "secret"
    assert write_once(path, "first") is True
    assert write_once(path, "second") is False
    assert path.read_text() == "first"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["secret"]
