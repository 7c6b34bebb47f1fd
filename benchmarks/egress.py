"""Egress proxy overhead, one run: throughput, latency, and squid reloads at 500 workspaces.

A real hub (tests.support.hub_harness, prefix "benchegress", restricted subnet a /22 for 500
addresses) starts "closed" (restricted, whitelist files.test) and "opened" (open). A web
server (python3, sendfile) placed like an Internet host serves a 200 MB random file and a tiny
one: it runs in a network namespace the host routes to (tests.support.outside_host), at
files.test = 203.0.113.2 and new.test = 203.0.113.3 (since the isolation work, workspaces
cannot reach a server container next to them on their bridge). There is no DNS for these
names: they are pinned in /etc/hosts of "opened" and of the squid container (squid reads it at
start and at each reload; a whitelist entry must be a name, and squid never matches a request
for an address against one). Timing happens inside the workspaces:
1. curl fetches the big file 3 times per side after a warm-up (median, MB = 10^6 B); 2. one
python3 per side makes 1,000 sequential urllib GETs of the tiny file (a new connection each;
"closed" via its HTTP_PROXY); 3. 500 fake workspaces x 20 entries (host, .domain, https://,
path) are written as EgressState records naming the "closed" container, "closed" also allowed
new.test; the render is timed. The egress service is paused (SIGSTOP) meanwhile so it neither
rewrites the file nor restarts the proxy. The product's path: render (atomic replace, as the
service's render_conf does) + SIGHUP as EgressProxy.reload sends it: does a poller in "closed"
(every 5 ms) see new.test go 403 -> 200 within 10 s, and when? (squid's own reconfigure time
is not separated from the render here.) A 20 MB/s download (~10 s) spans it: curl exit 0 and
all bytes = no dropped connection. The own record is restored
afterwards (proxy restarted). Raw numbers: .cache/bench/egress.json."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from subprocess import PIPE, Popen, check_output, run

import docker as docker_sdk

from benchhub.egress_state import EgressState
from hub_services.egress.proxy import render_conf
from tests.support.certificates import self_signed
from tests.support.docker_cli import cleanup
from tests.support.hub_harness import HubProcess
from tests.support.outside_host import outside_host
from tests.support.waiting import wait

REPO = Path(__file__).resolve().parent.parent

PREFIX = "benchegress"
PROXY, NAMESPACE, VETH = f"{PREFIX}-egress", f"{PREFIX}-outside", "be-out"
NAMES = {"files.test": "203.0.113.2", "new.test": "203.0.113.3"}  # TEST-NET-3, one outside host
BIG, SMALL, NEW = "http://files.test/big.bin", "http://files.test/small.txt", "http://new.test/"
BIG_TLS = "https://files.test/big.bin"
CURL = ("curl", "-s", "-o", "/dev/null", "-w")
SIZE, MB, RUNS, REQUESTS, FAKES, ENTRIES = 200 * 10**6, 10**6, 3, "1000", 500, 20
KINDS = (
    "host{j}.site{i}.test",
    ".cdn{j}.site{i}.test",
    "https://api{j}.site{i}.test",
    "data{j}.site{i}.test/v{j}/files/",
)
OPTIONS = {"resource_model": "standard-small", "storage_gb": 1}
SERVE = r"""
import functools, http.server, os, ssl, sys, threading
FILES = sys.argv[1]
class H(http.server.SimpleHTTPRequestHandler):
    def copyfile(self, src, dst):
        dst.flush()
        if isinstance(self.connection, ssl.SSLSocket): return super().copyfile(src, dst)
        self.connection.sendfile(src)
    def log_message(self, *a): pass
def server(port):
    return http.server.ThreadingHTTPServer(("", port), functools.partial(H, directory=FILES))
tls = server(443)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(os.path.join(FILES, "c.pem"), os.path.join(FILES, "k.pem"))
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
threading.Thread(target=tls.serve_forever, daemon=True).start()
server(80).serve_forever()
"""
LATENCY = r"""
import json, sys, time, urllib.request
def get():  # urlopen: proxies from the environment, a new connection each time
    t = time.perf_counter(); urllib.request.urlopen(sys.argv[1], timeout=10).read()
    return (time.perf_counter() - t) * 1000
print(json.dumps([get() for _ in range(20 + int(sys.argv[2]))][20:]))  # 20 to warm up
"""
POLL = r"""
import sys, time, urllib.error, urllib.request
def status():
    try: return urllib.request.urlopen(sys.argv[1], timeout=2).status
    except urllib.error.HTTPError as e: return e.code
    except OSError: return 0
print(status(), flush=True); sys.stdin.readline(); end = time.time() + float(sys.argv[2])
while time.time() < end and status() != 200: time.sleep(0.005)
print(time.time() if time.time() < end else "none", flush=True)
"""


class Hub(HubProcess):
    @property
    def env(self) -> dict:
        env = super().env
        env["BENCHHUB_RESTRICTED_SUBNET"] = env["BENCHHUB_RESTRICTED_SUBNET"].replace("/24", "/22")
        return env


def docker(*args: str) -> str:
    return run(["docker", *args], capture_output=True, text=True, check=True).stdout


def curl(ws: str, url: str = BIG) -> float:
    seconds, size = docker("exec", ws, *CURL, "%{time_total} %{size_download}", "-k", url).split()
    assert int(float(size)) == SIZE, f"{ws}: {size} bytes"
    return SIZE / float(seconds) / MB


def poller(ws: str, url: str, timeout: float) -> tuple[Popen, int]:  # POLL, its first status
    argv = ["docker", "exec", "-i", ws, "python3", "-c", POLL, url, str(timeout)]
    proc = Popen(argv, stdin=PIPE, stdout=PIPE, text=True)
    return proc, int(proc.stdout.readline())


def first_200(proc: Popen) -> float | None:  # epoch (one clock for host and containers)
    line = proc.communicate("go\n")[0].strip()
    return None if line in ("none", "") else float(line)


def status(ws: str, url: str) -> str:  # as curl in ``ws`` sees it, "000": no answer
    argv = ["docker", "exec", ws, *CURL, "%{http_code}", "-m", "3", url]
    return run(argv, capture_output=True, text=True).stdout.strip()


def pin_names(container: str) -> None:
    """NAMES resolve to the outside host in ``container``, for every program (its /etc/hosts,
    which Docker may rewrite when the container restarts: added again if missing)."""
    lines = "".join(f"{address} {name}\n" for name, address in NAMES.items())
    script = f"grep -q ' files.test$' /etc/hosts || printf '{lines}' >> /etc/hosts"
    docker("exec", "-u", "0", container, "sh", "-c", script)


def point_proxy_outside(closed: str) -> None:
    """Once squid answers (a refusal of new.test needs no name lookup), pin NAMES in its
    /etc/hosts and reload it (SIGHUP: squid re-reads the hosts file, whose entries replace any
    cached lookup); "closed" then gets files.test through it."""
    wait(lambda: status(closed, NEW), 30, "the proxy refuses new.test", until="403".__eq__)
    pin_names(PROXY)
    docker("kill", "-s", "HUP", PROXY)
    assert first_200(poller(closed, SMALL, 30)[0]), "files.test not reached through the proxy"


def restart_proxy(closed: str) -> None:
    docker("restart", "-t", "1", PROXY)
    point_proxy_outside(closed)  # also proves the proxy came back


def fake_records(subnet: str, own: dict) -> list[dict]:
    hosts = (str(a) for a in ipaddress.ip_network(subnet).hosts() if (int(a) & 0x3FF) >= 32)
    addresses = [a for a in hosts if a != own["address"]][:FAKES]
    return [
        {
            "key": f"fake{i}/ws",
            "container": own["container"],
            "address": addresses[i],
            "entries": [KINDS[j % 4].format(i=i, j=j) for j in range(ENTRIES)],
        }
        for i in range(FAKES)
    ]


def reload(hub: Hub, closed: str) -> dict:
    """500 workspaces' lists rendered, written atomically and loaded with SIGHUP (the product's
    path), timed to the first request the new rule allows, with a download running across it."""
    state = EgressState(hub.egress_dir)
    conf, own_path = state.conf_path, state._record_path("bench/closed")
    forbidden = json.loads(hub.env["BENCHHUB_EGRESS_FORBIDDEN"])
    own = json.loads(own_path.read_text())
    api = docker_sdk.APIClient(version="auto")
    pgrep = ["pgrep", "-P", str(hub.proc.pid), "-f", "hub_services.egress"]
    service = int(check_output(pgrep).split()[0])  # the hub's child, started here
    os.kill(service, signal.SIGSTOP)  # no reconcile pass in the middle of the measurement
    r: dict = {}
    try:
        argv = ["docker", "exec", closed, *CURL, "%{size_download}", "--limit-rate", "20M", BIG]
        download = Popen(argv, stdout=PIPE, text=True)
        r["download_start"] = time.time()
        time.sleep(2)
        poll, first = poller(closed, NEW, 30)
        assert first == 403, first
        with state.locked():
            for rec in fake_records(hub.env["BENCHHUB_RESTRICTED_SUBNET"], own):
                state._record_path(rec["key"]).write_text(json.dumps(rec))
            own_path.write_text(json.dumps({**own, "entries": [*own["entries"], "new.test"]}))
        r["hup_at"] = t0 = time.time()
        render_conf(state, state.registered(), forbidden)
        r.update(render_s=time.time() - t0, conf_bytes=conf.stat().st_size)
        r["conf_lines"] = conf.read_text().count("\n")
        api.kill(PROXY, signal="HUP")
        applied = first_200(poll)
        r["reload_s"] = applied - t0 if applied else None  # render + write + reload
        size = int(float(download.communicate()[0].strip() or 0))
        r["download"] = {"rc": download.returncode, "bytes": size, "end": time.time()}
        r["no_dropped_connections"] = download.returncode == 0 and size == SIZE
    finally:
        with state.locked():
            for p in state.workspaces_dir.glob("fake*.json"):
                p.unlink()
            own_path.write_text(json.dumps(own))
        render_conf(state, state.registered(), forbidden)
        restart_proxy(closed)
        os.kill(service, signal.SIGCONT)
    return r


def measure(files: Path, out: Path) -> tuple[dict, dict, dict]:
    serve = [sys.executable, "-c", SERVE, str(files)]
    ready = f"http://{NAMES['files.test']}/small.txt"
    with outside_host(NAMESPACE, VETH, list(NAMES.values()), serve, ready):
        return measure_with_hub(files, out)


def measure_with_hub(files: Path, out: Path) -> tuple[dict, dict, dict]:
    hub = Hub(files.parent, prefix=PREFIX)
    hub.log_path = out / "egress-hub.log"
    hub.log_path.unlink(missing_ok=True)
    cleanup(PREFIX, hub.storage_root)
    hub.start()
    try:
        hub.ensure_user("bench")
        restricted = {**OPTIONS, "access_mode": "restricted", "whitelist": "files.test"}
        hub.start_workspace("bench", "closed", restricted)
        hub.start_workspace("bench", "opened", OPTIONS)
        closed, opened = (hub.container_name("bench", n) for n in ("closed", "opened"))
        pin_names(opened)
        point_proxy_outside(closed)
        curl(closed), curl(opened)  # warm-up
        rates: dict[str, list[float]] = {"direct": [], "proxy": []}
        tls: dict[str, list[float]] = {"direct": [], "proxy": []}
        for _ in range(RUNS):  # alternating sides
            rates["direct"].append(curl(opened))
            rates["proxy"].append(curl(closed))
            tls["direct"].append(curl(opened, BIG_TLS))
            tls["proxy"].append(curl(closed, BIG_TLS))
        rates = {"http": rates, "https": tls}
        lat = {}
        for side, ws in (("direct", opened), ("proxy", closed)):
            lat[side] = json.loads(docker("exec", ws, "python3", "-c", LATENCY, SMALL, REQUESTS))
        return rates, lat, reload(hub, closed)
    finally:
        hub.stop()
        cleanup(PREFIX, hub.storage_root)


def main() -> None:
    (out := REPO / ".cache" / "bench").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-egress-") as tmp:
        (files := Path(tmp) / "files").mkdir()
        (files / "big.bin").write_bytes(os.urandom(SIZE))
        (files / "small.txt").write_text("ok\n")
        self_signed(files, "files.test")
        rates, lat, rel = measure(files, out)
    ms = lambda s: f"{s * 1000:.0f} ms" if s is not None else "never (10 s)"  # noqa: E731

    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"\nEgress proxy ({when}; {os.cpu_count()} cores)\n")
    print("| metric | direct | via proxy | ratio/added | target |\n|---|---|---|---|---|")
    for scheme, r in rates.items():
        d, p = statistics.median(r["direct"]), statistics.median(r["proxy"])
        print(
            f"| throughput {scheme}, 200 MB (median of {RUNS}) | {d:.0f} MB/s | {p:.0f} MB/s "
            f"| {p / d:.2f} | ≥ 0.8 |"
        )
    for q, target in ((50, "< 2 ms"), (99, "")):
        a, b = (statistics.quantiles(lat[s], n=100, method="inclusive")[q - 1] for s in lat)
        print(
            f"| latency p{q} ({REQUESTS} GETs) | {a:.2f} ms | {b:.2f} ms | +{b - a:.2f} ms "
            f"| {target} |"
        )
    dl = rel["download"]
    spans = rel["download_start"] < rel["hup_at"] < dl["end"]
    print(
        f"\nReload, {FAKES} workspaces x {ENTRIES} entries ({rel['conf_lines']} lines, "
        f"{rel['conf_bytes'] / 1000:.0f} kB)\n\n| reload | value |\n|---|---|\n"
        f"| render + atomic write of squid.conf | {ms(rel['render_s'])} |\n"
        f"| render + write + SIGHUP → new rule in effect | {ms(rel['reload_s'])} |\n"
        f"| download across the reload (20 MB/s; spans it: {spans}) "
        f"| curl rc {dl['rc']}, {dl['bytes']} of {SIZE} B |\n"
        f"| no dropped connections | {rel['no_dropped_connections']} |"
    )
    raw = {"when": when, "throughput_MBps": rates, "latency_ms": lat, "reload": rel}
    (out / "egress.json").write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
