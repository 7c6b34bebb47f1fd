"""The administrators' password of the embedded default (the shared-password authenticator).

JupyterHub's shared-password authenticator lets the users in ``admin_users`` log in only with
``admin_password`` (at least 32 characters, not the users' password); without one, nobody can
reach the admin panel. So the first run generates one and keeps it in the hub's state
directory, in ``admin-password`` (mode 0600), where later runs find it again;
``BENCHHUB_ADMIN_PASSWORD`` overrides it (and then no file is written).

``python -m benchhub.admin_password STATE_DIR`` (``make run`` does) makes sure the
password exists and prints it and where it lives, before the hub starts logging.
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from .atomic import write_once

__all__ = [
    "ENV_VAR",
    "FILE_NAME",
    "MIN_LENGTH",
    "AdminPassword",
    "admin_names",
    "admin_password",
    "describe",
]

ENV_VAR = "BENCHHUB_ADMIN_PASSWORD"
FILE_NAME = "admin-password"
MIN_LENGTH = 32  # JupyterHub's SharedPasswordAuthenticator refuses a shorter admin_password


@dataclass(frozen=True)
class AdminPassword:
    """The password, and the file it is kept in (None when it comes from ``ENV_VAR``)."""

    password: str
    file: Path | None


def admin_names(environ=os.environ) -> set[str]:
    """The admin user names: ``BENCHHUB_ADMINS``, comma-separated (default ``admin``)."""
    return {name for name in environ.get("BENCHHUB_ADMINS", "admin").split(",") if name}


def admin_password(state_dir: str | os.PathLike, environ=os.environ) -> AdminPassword:
    """The admin password: ``environ[ENV_VAR]`` when set and not empty, else the one in
    ``<state_dir>/admin-password``, generated there on the first call (``secrets``, 43
    URL-safe characters; the directory is created if missing).

    The file is created once, atomically and with mode 0600 from the start: the password is
    written to a private temporary file that is then linked to its name, so two first runs
    at once agree on one password and a crash never leaves a half-written one. A file that
    holds fewer than ``MIN_LENGTH`` characters is a ``ValueError`` that says how to fix it.
    """
    if environ.get(ENV_VAR):
        return AdminPassword(environ[ENV_VAR], None)
    path = Path(state_dir) / FILE_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_once(path, secrets.token_urlsafe(32) + "\n", 0o600)  # two first runs: one wins
    password = path.read_text().rstrip("\r\n")  # an editor's final newline is not part of it
    if len(password) < MIN_LENGTH:
        raise ValueError(
            f"{path} holds a {len(password)}-character admin password; JupyterHub needs at "
            f"least {MIN_LENGTH}: write a longer one there, or delete the file to have one "
            f"generated, or set {ENV_VAR}"
        )
    return AdminPassword(password, path)


def describe(secret: AdminPassword, admins: set[str]) -> str:
    """What ``make run`` prints: who the admins are and how they log in."""
    names = ", ".join(repr(a) for a in sorted(admins)) or "none: set BENCHHUB_ADMINS"
    if secret.file is None:
        return f"    admins ({names}) log in with the password in {ENV_VAR}"
    return (
        f"    admins ({names}) log in with the password {secret.password}\n"
        f"    (kept in {secret.file}, mode 0600; set {ENV_VAR} to use your own)"
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m benchhub.admin_password STATE_DIR")
    try:
        print(describe(admin_password(args[0]), admin_names()))
    except ValueError as e:
        raise SystemExit(str(e)) from None


if __name__ == "__main__":
    main()
