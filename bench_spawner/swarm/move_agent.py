"""The program that moves a stopped workspace's ``/data`` between swarm nodes.

The hub cannot reach a worker's engine, only the manager's, so the copy is made by one-shot
Swarm services (:mod:`.data_move`) that run this file's source (``python3 -c SOURCE ROLE``,
standard library only) in the workspace's own image, which every node that ran the workspace
has:

- ``receive`` on the target node: empties the new ``/data`` volume (what a failed earlier
  move left), accepts one TCP stream on the move network whose first line is the move's
  token (anything else is dropped), extracts it as tar, then prints the tree's digest;
- ``send`` on the source node: digests ``/data`` (mounted read-only), streams it as tar to
  the receiver (``BENCHHUB_MOVE_PEER``), prints the digest;
- ``release`` on the source node, only after the hub compared the two digests: empties the
  old ``/data``;
- ``delete`` on a deleted workspace's node (:mod:`.data_release`): removes the volume
  ``BENCHHUB_MOVE_VOLUME`` through the node's own engine (its socket bind-mounted at
  :data:`ENGINE_SOCKET`; the volume itself is not mounted, or it could not be removed).

Environment: ``BENCHHUB_MOVE_TOKEN`` (the stream's first line), ``BENCHHUB_MOVE_PORT`` (the
port to listen on, or for the sender the receiver's published port; default 7070),
``BENCHHUB_MOVE_PEER`` (the receiver's node address, sender only), ``BENCHHUB_MOVE_TIMEOUT``
(seconds, default 300), ``BENCHHUB_MOVE_VOLUME`` (the volume to remove, ``delete`` only).

Each prints one line ``BENCHHUB-MOVE <role> <digest> <entries> <bytes>``; the hub reads it
from the service's logs. The digest covers every entry's path, type, permission bits, owner
and content (a symlink's target), so a copy that lost, changed or gained anything differs.
Sockets are neither sent nor digested (tar cannot carry them).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import socket
import stat
import sys
import tarfile
import time
import urllib.parse

DATA = "/data"
ENGINE_SOCKET = "/var/run/docker.sock"  # where the ``delete`` role finds its node's engine
PORT = 7070
REPORT = "BENCHHUB-MOVE"
TIMES = "BENCHHUB-MOVE-TIMES"


def tree_digest(root: str) -> tuple[str, int, int]:
    """``(sha256 hex, entries, bytes of file content)`` of the tree under ``root`` (not
    following symlinks; sockets and other unsupported types skipped)."""
    digest, entries, size = hashlib.sha256(), 0, 0
    for top, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(top, name)
            info = os.lstat(path)
            mode = info.st_mode
            if stat.S_ISREG(mode):
                kind, extra = "f", _file_sha256(path)
                size += info.st_size
            elif stat.S_ISDIR(mode):
                kind, extra = "d", ""
            elif stat.S_ISLNK(mode):
                kind, extra = "l", os.readlink(path)
            elif stat.S_ISFIFO(mode):
                kind, extra = "p", ""
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                kind, extra = "c" if stat.S_ISCHR(mode) else "b", str(info.st_rdev)
            else:
                continue
            rel = os.path.relpath(path, root)
            perm = "" if kind == "l" else oct(stat.S_IMODE(mode))
            record = f"{kind}\0{rel}\0{perm}\0{info.st_uid}\0{info.st_gid}\0{extra}\n"
            digest.update(record.encode("utf-8", "surrogateescape"))
            entries += 1
    return digest.hexdigest(), entries, size


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def safe_member(member: tarfile.TarInfo) -> bool:
    """Whether a tar member stays inside the destination: a relative name without ``..``,
    and a hard link's target the same (symlinks may point anywhere: they are the user's)."""

    def inside(name: str) -> bool:
        return bool(name) and not os.path.isabs(name) and ".." not in name.split("/")

    if not inside(member.name):
        return False
    return not member.islnk() or inside(member.linkname)


def empty(root: str) -> None:
    """Remove everything under ``root``, best effort: what cannot be removed stays, and
    shows in the verification's digest."""
    for name in os.listdir(root):
        path = os.path.join(root, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        except OSError as e:
            print(f"cannot remove {path}: {e}", file=sys.stderr)


def report(role: str, root: str) -> float:
    """Print the role's report line; the seconds the digest took."""
    began = time.monotonic()
    digest, entries, size = tree_digest(root)
    print(f"{REPORT} {role} {digest} {entries} {size}", flush=True)
    return time.monotonic() - began


def report_times(role: str, **seconds: float) -> None:
    """One line of the role's step times (read by the hub's log of a move's phases)."""
    steps = " ".join(f"{step}={value:.2f}" for step, value in seconds.items())
    print(f"{TIMES} {role} {steps}", flush=True)


def receive(token: str, port: int, timeout: float, root: str = DATA) -> None:
    """Empty ``root``, accept the one stream that starts with ``token``, extract it into
    ``root``, report the digest. Ends with an error on a timeout or an unsafe member."""
    empty(root)
    deadline = time.monotonic() + timeout
    began = time.monotonic()
    with socket.create_server(("0.0.0.0", port)) as server:
        while True:
            server.settimeout(max(1.0, deadline - time.monotonic()))
            conn, peer = server.accept()  # socket.timeout ends the program with an error
            with conn:
                conn.settimeout(60)
                stream = conn.makefile("rb")
                if stream.readline(200).rstrip(b"\n") != token.encode():
                    print(f"dropped a connection from {peer[0]}: wrong token", file=sys.stderr)
                    continue
                connected = time.monotonic()
                extras = {"filter": "fully_trusted"} if hasattr(tarfile, "data_filter") else {}
                with tarfile.open(fileobj=stream, mode="r|") as tar:
                    for member in tar:
                        if not safe_member(member):
                            raise SystemExit(f"refused tar member {member.name!r}")
                        tar.extract(member, root, numeric_owner=True, **extras)
                break
    extracted = time.monotonic()
    digest_s = report("receive", root)
    report_times("receive", wait=connected - began, extract=extracted - connected, digest=digest_s)


def send(token: str, peer: str, port: int, timeout: float, root: str = DATA) -> None:
    """Report the digest of ``root``, then stream it as tar to ``peer`` after ``token``."""
    digest_s = report("send", root)
    began = time.monotonic()
    deadline = time.monotonic() + timeout
    while True:  # the receiver's name resolves and it listens once its task runs
        try:
            conn = socket.create_connection((peer, port), timeout=10)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    with conn, conn.makefile("wb") as stream:
        stream.write(token.encode() + b"\n")
        with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(os.listdir(root)):
                tar.add(os.path.join(root, name), arcname=name)
    report_times("send", digest=digest_s, stream=time.monotonic() - began)


class EngineConnection(http.client.HTTPConnection):
    """HTTP to a Docker engine over its unix socket (standard library only)."""

    def __init__(self, socket_path: str, timeout: float = 30):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def remove_volume(name: str, timeout: float, engine: str = ENGINE_SOCKET) -> str:
    """Remove volume ``name`` through the engine at socket ``engine``: "removed", or
    "absent" when the engine has no such volume (a removal that already happened). While a
    container still holds it (a removed service's container goes a moment later) the engine
    answers 409: retried every second until ``timeout`` seconds. Never forced: a volume a
    running container uses is not removed. Any other answer ends the program with it."""
    deadline = time.monotonic() + timeout
    path = "/volumes/" + urllib.parse.quote(name, safe="")
    while True:
        conn = EngineConnection(engine)
        try:
            conn.request("DELETE", path)
            response = conn.getresponse()
            body = response.read().decode(errors="replace").strip()
        finally:
            conn.close()
        if response.status in (204, 404):
            return "removed" if response.status == 204 else "absent"
        if response.status != 409 or time.monotonic() > deadline:
            raise SystemExit(f"the engine did not remove volume {name}: {response.status} {body}")
        time.sleep(1)


def main(role: str) -> None:
    token = os.environ.get("BENCHHUB_MOVE_TOKEN", "")
    port = int(os.environ.get("BENCHHUB_MOVE_PORT", PORT))
    timeout = float(os.environ.get("BENCHHUB_MOVE_TIMEOUT", "300"))
    if role == "receive":
        receive(token, port, timeout)
    elif role == "send":
        send(token, os.environ["BENCHHUB_MOVE_PEER"], port, timeout)
    elif role == "release":
        empty(DATA)
        print(f"{REPORT} release - 0 0", flush=True)
    elif role == "delete":
        done = remove_volume(os.environ["BENCHHUB_MOVE_VOLUME"], timeout)
        print(f"{REPORT} delete {done} 0 0", flush=True)
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv[1])
