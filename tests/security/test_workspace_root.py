"""Root inside a workspace is not root on the host (docs/security.md, "Root inside a workspace").

On an engine that remaps user ids the workspace user may ``sudo`` (for ``apt-get``); the
container then holds only the capabilities package installation needs. Here a user who is
root in a real workspace (through the hub, on the real engine) tries what root on a host could
do: each attempt is refused, and next to it the legitimate use still works. Root installs the
real tools first (``iptables``, ``iproute2``, ``kmod``: apt works for root in open mode), so
the refusals are the kernel's, not a missing binary's.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from support.docker_cli import docker, exec_in
from support.host_ids import container_root_host_uid
from support.hub_harness import TEST_PREFIX
from support.waiting import wait

OWNER, OTHER = "rosa", "sam"
TOOLS = "iptables iproute2 kmod"
SERVER = f"{TEST_PREFIX}-root-web"
ALLOWED = "allowed-root.test"
SERVE = (
    "import http.server as h; h.ThreadingHTTPServer(('0.0.0.0', 80), "
    "type('H', (h.BaseHTTPRequestHandler,), {'do_GET': lambda s: (s.send_response(200), "
    "s.end_headers(), s.wfile.write(b'hello')), 'log_message': lambda *a: None})).serve_forever()"
)


def as_user(container: str, script: str) -> subprocess.CompletedProcess:
    """``script`` run by the workspace user (uid 1000), as in a JupyterLab terminal."""
    return exec_in(container, script, user="1000")


def as_root(container: str, script: str) -> subprocess.CompletedProcess:
    """``script`` run by the workspace user through ``sudo``: root inside the workspace."""
    return as_user(container, f"sudo sh -c {_quote(script)} 2>&1")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def python_as_root(container: str, code: str) -> subprocess.CompletedProcess:
    return as_root(container, f"python3 -c {_quote(code)}")


@pytest.fixture(scope="module")
def workspaces(hub):
    """The owner's open workspace (root installed the real tools in it), another user's
    workspace with a file only that user may read, and the owner's restricted workspace
    whose whitelist names one outside server."""
    if container_root_host_uid() == 0:
        raise AssertionError("the engine does not remap user ids: see docs/security.md")
    hub.ensure_user(OWNER)
    hub.ensure_user(OTHER)
    outside = f"{hub.prefix}-egress-out"  # the egress proxy's way out (it resolves names there)
    if not docker("network", "ls", "-q", "--filter", f"name=^{outside}$").strip():
        docker("network", "create", "-o", "com.docker.network.driver.mtu=1400", outside)
    docker("rm", "-f", SERVER, check=False)
    docker(
        "run", "-d", "--name", SERVER, "--network", outside, "--network-alias", ALLOWED,
        "--entrypoint", "python3", "benchhub/jupyterlab:latest", "-c", SERVE,
    )  # fmt: skip
    server_ip = json.loads(docker("inspect", SERVER))[0]["NetworkSettings"]["Networks"][outside]
    hub.start_workspaces(
        [
            (OWNER, "lab", {"storage_gb": 1}),  # test-small: 0.5 GB of memory
            (OTHER, "secret", {"storage_gb": 1}),
            (OWNER, "closed", {"access_mode": "restricted", "whitelist": ALLOWED}),
        ]
    )
    lab, secret = hub.container_name(OWNER, "lab"), hub.container_name(OTHER, "secret")
    closed = hub.container_name(OWNER, "closed")
    assert as_user(secret, "echo only-sam-reads-this > /data/sams-secret.txt").returncode == 0
    installed = as_root(lab, f"DEBIAN_FRONTEND=noninteractive apt-get install -y {TOOLS}")
    assert installed.returncode == 0, installed.stdout
    yield {
        "lab": lab,
        "secret": secret,
        "closed": closed,
        "secret_host_dir": hub.storage_root / OTHER / "secret" / "mnt",
        "server_ip": server_ip["IPAddress"],
    }
    for user, name in ((OWNER, "lab"), (OTHER, "secret"), (OWNER, "closed")):
        hub.stop_workspace(user, name)
    docker("rm", "-f", SERVER, check=False)


def host_status(pid: int) -> dict[str, list[str]]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.split() for k, _, v in (line.partition(":") for line in lines)}


def test_root_in_a_workspace_is_an_unprivileged_uid_on_the_host(workspaces):
    lab = workspaces["lab"]
    assert as_root(lab, "id -u").stdout.strip() == "0"  # the user is root inside
    docker("exec", "-d", "-u", "1000", lab, "sudo", "sleep", "4242")
    top = wait(
        lambda: [
            line.split()[0]
            for line in docker("top", lab, "-eo", "pid,args").splitlines()
            if line.split()[1:] == ["sleep", "4242"]
        ],
        10,
        "the root process appears",
    )
    uids = host_status(int(top[0]))["Uid"]  # real, effective, saved, filesystem
    assert {int(u) for u in uids} == {container_root_host_uid()}
    assert container_root_host_uid() >= 100000
    as_root(lab, "pkill -f 'sleep 4242'; true")


def test_root_cannot_mount_anything_but_writes_its_own_filesystem(workspaces):
    lab = workspaces["lab"]
    refused = as_root(lab, "mount -t tmpfs none /mnt; echo rc=$?")
    assert "rc=0" not in refused.stdout and "permission denied" in refused.stdout.lower()
    nested = as_user(lab, "unshare -Urm mount -t tmpfs none /mnt 2>&1; echo rc=$?")
    assert "rc=0" not in nested.stdout  # not through a user namespace of its own either
    remount = as_root(lab, "mount -o remount,rw /sys/fs/cgroup; echo rc=$?")
    assert "rc=0" not in remount.stdout
    legit = as_root(
        lab, "echo probe > /usr/local/share/root-probe && cat /usr/local/share/root-probe"
    )
    assert legit.stdout.strip() == "probe"


def test_root_cannot_load_kernel_modules_but_installs_and_runs_the_module_tools(workspaces):
    lab = workspaces["lab"]
    modprobe = as_root(lab, "modprobe dummy; echo rc=$?")
    assert "rc=0" not in modprobe.stdout
    insmod = as_root(lab, "insmod /dev/null; echo rc=$?")
    assert "rc=0" not in insmod.stdout
    syscall = python_as_root(
        lab,
        "import ctypes, os; fd = os.open('/dev/null', os.O_RDONLY); "
        "libc = ctypes.CDLL(None, use_errno=True); "
        "print(libc.syscall(313, fd, b'', 0), os.strerror(ctypes.get_errno()))",  # finit_module
    )
    assert syscall.stdout.strip() == "-1 Operation not permitted"  # refused, not "no modules"
    assert as_root(lab, "modprobe --version >/dev/null; echo rc=$?").stdout.strip() == "rc=0"


def test_root_reaches_no_loop_device_but_uses_its_ordinary_devices(workspaces):
    lab = workspaces["lab"]
    assert as_root(lab, "ls /dev/loop* /dev/loop-control 2>/dev/null; true").stdout == ""
    assert "rc=0" not in as_root(lab, "losetup -f; echo rc=$?").stdout
    assert "rc=0" not in as_root(lab, "mknod /dev/loop99 b 7 99; echo rc=$?").stdout
    legit = as_root(lab, "head -c 4 /dev/zero | od -An -tx1 && echo x > /dev/null && echo ok")
    assert legit.stdout.split() == ["00", "00", "00", "00", "ok"]


def test_root_cannot_read_another_users_data_but_reads_its_own(workspaces):
    lab, secret_dir = workspaces["lab"], workspaces["secret_host_dir"]
    assert (secret_dir / "sams-secret.txt").exists()  # where it is on the host
    reach = as_root(lab, f"cat {secret_dir}/sams-secret.txt; ls {secret_dir.parent}; echo rc=$?")
    assert "only-sam-reads-this" not in reach.stdout and "No such file" in reach.stdout
    found = as_root(lab, "find / -name sams-secret.txt -not -path '/proc/*' 2>/dev/null; true")
    assert found.stdout.strip() == ""
    mounts = as_root(lab, "awk '{print $5}' /proc/self/mountinfo").stdout.split()
    assert "/data" in mounts and not [m for m in mounts if "secret" in m]
    assert as_user(lab, "echo mine > /data/own.txt && sudo cat /data/own.txt").stdout == "mine\n"


def test_root_is_held_to_the_memory_limit_and_cannot_raise_it(hub, workspaces):
    lab = workspaces["lab"]
    small = python_as_root(lab, "b = bytearray(100 * 2**20); print('fits')")
    assert small.stdout.strip() == "fits"
    limit = "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    raise_it = as_root(lab, f"echo 8589934592 > {limit}; echo rc=$?; cat {limit}")
    assert "rc=0" not in raise_it.stdout and str(2**29) in raise_it.stdout  # still 0.5 GB
    big = as_user(lab, "sudo python3 -c 'b = bytearray(900 * 2**20); print(\"escaped\")'")
    assert big.returncode == 137 and "escaped" not in big.stdout  # killed by the limit
    assert hub.workspaces(OWNER)["lab"]["status"] == "running"  # the workspace itself lives on


def test_root_has_no_raw_sockets_nor_network_administration_but_ordinary_networking(workspaces):
    lab = workspaces["lab"]
    for command in (
        "iptables -A OUTPUT -j ACCEPT",
        "iptables -t nat -L",
        "ip route add 10.99.0.0/16 dev eth0",
        "ip link set eth0 mtu 1300",
        "ip link add bench0 type dummy",
    ):
        assert "rc=0" not in as_root(lab, f"{command}; echo rc=$?").stdout, command
    raw = python_as_root(
        lab, "import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)"
    )
    assert "PermissionError" in raw.stdout
    assert "rc=0" not in as_root(lab, "echo 1 > /proc/sys/net/ipv4/ip_forward; echo rc=$?").stdout
    shown = as_root(lab, "ip route show")
    assert shown.returncode == 0 and "default via" in shown.stdout
    hub_api = as_user(lab, 'sudo curl -s -o /dev/null -w "%{http_code}" "$JUPYTERHUB_API_URL/"')
    assert hub_api.stdout == "200"


def http_code(container: str, url: str, env: str = "", options: str = "") -> str:
    """The HTTP status root's curl sees (000: no connection)."""
    out = as_root(container, f'{env} curl -s -m 5 -o /dev/null -w "%{{http_code}}" {options} {url}')
    return re.sub(r"\D", "", out.stdout)[-3:] or out.stdout


def test_root_cannot_change_a_restricted_workspaces_way_out(workspaces):
    closed, server = workspaces["closed"], workspaces["server_ip"]
    assert http_code(closed, f"http://{ALLOWED}/") == "200"  # the whitelist, as root too
    assert http_code(closed, "http://other.test/") == "403"
    unset = "env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY"
    assert http_code(closed, f"http://{server}/", unset) == "000"  # no proxy: no way out
    assert http_code(closed, f"http://{ALLOWED}/", unset, "--noproxy '*'") == "000"
    route = python_as_root(
        closed,
        "import fcntl, socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        "fcntl.ioctl(s, 0x890B, bytes(120))",  # SIOCADDRT: add a route (a way around)
    )
    assert "PermissionError" in route.stdout
    apt = as_root(closed, "apt-get install -y iproute2; echo rc=$?")
    assert "rc=0" not in apt.stdout  # the mirror is not on the whitelist: nothing to install
    assert http_code(closed, "http://other.test/") == "403"  # and the proxy still decides
