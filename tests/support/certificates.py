"""A throwaway TLS certificate for the test web servers (the workspaces do not check it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["self_signed"]


def self_signed(directory: Path, common_name: str) -> None:
    """Write ``directory/c.pem`` (a self-signed certificate for ``common_name``, valid one
    day) and ``directory/k.pem`` (its key, readable by the server's user in a container)."""
    key, cert = directory / "k.pem", directory / "c.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={common_name}",
            "-keyout",
            key,
            "-out",
            cert,
        ],
        check=True,
        capture_output=True,
    )
    key.chmod(0o644)
    # and the directory too (pytest makes it 0700): a container's root is another host uid
    # than its owner on an engine that remaps user ids
    directory.chmod(0o755)
