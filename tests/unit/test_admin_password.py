"""The administrators' password of the embedded default: generated once, private, reused."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from benchhub.admin_password import (
    ENV_VAR,
    FILE_NAME,
    MIN_LENGTH,
    admin_names,
    admin_password,
)
from benchhub.atomic import write_once  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_the_first_run_generates_a_long_private_password_that_later_runs_reuse(tmp_path):
    state = tmp_path / "state"  # missing: the first run of a fresh checkout
    first = admin_password(state, environ={})
    assert first.file == state / FILE_NAME
    assert len(first.password) >= MIN_LENGTH
    assert stat.S_IMODE(first.file.stat().st_mode) == 0o600
    assert admin_password(state, environ={}) == first
    assert sorted(p.name for p in state.iterdir()) == [FILE_NAME]  # no temporary file left


def test_each_hub_gets_its_own_password(tmp_path):
    one = admin_password(tmp_path / "a", environ={}).password
    two = admin_password(tmp_path / "b", environ={}).password
    assert one != two


def test_the_environment_variable_overrides_and_no_file_is_written(tmp_path):
    chosen = "an-operator-chosen-password-of-40-characters"
    secret = admin_password(tmp_path, environ={ENV_VAR: chosen})
    assert secret.password == chosen and secret.file is None
    assert not (tmp_path / FILE_NAME).exists()
    assert admin_password(tmp_path, environ={ENV_VAR: ""}).file == tmp_path / FILE_NAME


def test_a_password_written_by_hand_is_used_without_its_final_newline(tmp_path):
    (tmp_path / FILE_NAME).write_text("x" * 40 + "\n")
    assert admin_password(tmp_path, environ={}).password == "x" * 40


def test_a_too_short_password_file_is_refused_saying_how_to_fix_it(tmp_path):
    (tmp_path / FILE_NAME).write_text("short\n")
    with pytest.raises(ValueError, match="5-character.*at least 32.*delete the file"):
        admin_password(tmp_path, environ={})


def test_two_first_runs_at_once_agree_on_one_password(tmp_path):
    path = tmp_path / FILE_NAME
    write_once(path, "a" * 40)
    write_once(path, "b" * 40)  # the second run lost the race: the first password stays
    assert admin_password(tmp_path, environ={}).password == "a" * 40
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE_NAME]


def test_admin_names_come_from_benchhub_admins():
    assert admin_names({}) == {"admin"}
    assert admin_names({"BENCHHUB_ADMINS": "ann,,bo"}) == {"ann", "bo"}


def test_make_run_prints_the_password_and_where_it_lives(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in (ENV_VAR, "BENCHHUB_ADMINS")}
    out = subprocess.run(
        [sys.executable, "-m", "benchhub.admin_password", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    password = (tmp_path / FILE_NAME).read_text().strip()
    assert f"log in with the password {password}" in out
    assert str(tmp_path / FILE_NAME) in out and "'admin'" in out
    env[ENV_VAR] = "an-operator-chosen-password-of-40-characters"
    out = subprocess.run(
        [sys.executable, "-m", "benchhub.admin_password", str(tmp_path / "other")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ENV_VAR in out and env[ENV_VAR] not in out
