"""Egress proxy overhead, one run: throughput, latency and a 500-workspace reload of squid.

A real hub (tests/hub_harness.HubProcess, prefix "benchegress", restricted subnet widened to a
/22 so 500 workspaces get addresses) starts two workspaces of one resource model: "closed"
(restricted, whitelist ``files.test``) and "opened" (open network). A web server container
(python3 ThreadingHTTPServer answering with sendfile) serves a 200 MB file of random bytes and
a 3-byte file from a bind-mounted temp dir, on the proxy's outside network and on the open
network as ``files.test`` and ``new.test``. Every timing is taken inside a workspace:

1. throughput: curl fetches the 200 MB file 3 times per side (after an unmeasured warm-up),
   sides alternating; median MB/s (10^6 B/s) and the ratio proxy/direct;
2. latency: one python3 process per side makes 1,000 sequential GETs of the small file with
   urllib (a new connection each; "closed" goes through the HTTP_PROXY the spawner set);
   p50/p99 and the added latency (proxy minus direct);
3. reload: 500 fake workspaces x 20 entries (host, .domain, https://, path) are written as
   EgressState records naming the running "closed" container (so nothing drops them), with
   "closed" itself also allowed ``new.test``; the render is timed. The egress service is
   paused (SIGSTOP) meanwhile so its reconcile neither rewrites nor restarts anything.
   (a) product path: render (atomic replace) + SIGHUP as EgressProxy.reload sends it; a
   poller in "closed" asks for new.test every 5 ms: does the rule apply within 10 s?
   (b) squid itself: the config without new.test is loaded by a proxy restart, then the one
   with it is written over the file squid has mounted (same inode) and squid gets SIGHUP;
   reload time = signal to the poller's first 200. A 20 MB/s download of the 200 MB file
   (~10 s) runs across that reload: curl exit 0 and every byte = no dropped connection.
   Afterwards the workspace's own record is restored and the proxy restarted with it.
Prints a Markdown table; raw numbers go to .cache/bench/egress.json.
Run: ``python3 -m benchmarks.egress`` (configurable-http-proxy on PATH, images built).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker as docker_sdk

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from conftest import _cleanup  # noqa: E402
from hub_harness import HubProcess  # noqa: E402

from hub_services.egress.proxy import EgressState  # noqa: E402

PREFIX = "benchegress"
SERVER, PROXY = f"{PREFIX}-files", f"{PREFIX}-egress"
OUTSIDE, OPEN = f"{PREFIX}-egress-out", f"{PREFIX}-open"
SIZE, MB = 200 * 10**6, 10**6
RUNS, REQUESTS, FAKES, ENTRIES = 3, 1000, 500, 20
OPTIONS = {"resource_model": "standard-small", "storage_gb": 1}
SERVE = r"""
import functools, http.server
class H(http.server.SimpleHTTPRequestHandler):
    def copyfile(self, src, dst):
        dst.flush(); self.connection.sendfile(src)
    def log_message(self, *a): pass
h = functools.partial(H, directory="/srv")
http.server.ThreadingHTTPServer(("0.0.0.0", 80), h).serve_forever()
"""
LATENCY = r"""
import json, sys, time, urllib.request
opener = urllib.request.build_opener()  # ProxyHandler from the environment
def get():
    t = time.perf_counter()
    with opener.open(sys.argv[1], timeout=10) as r: r.read()
    return time.perf_counter() - t
[get() for _ in range(20)]
print(json.dumps([get() for _ in range(int(sys.argv[2]))]))
"""
POLL = r"""
import sys, time, urllib.error, urllib.request
opener = urllib.request.build_opener()
def status():
    try:
        with opener.open(sys.argv[1], timeout=2) as r: return r.status
    except urllib.error.HTTPError as e: return e.code
    except OSError: return 0
print("first", status(), flush=True)
sys.stdin.readline()
deadline = time.time() + float(sys.argv[2])
while time.time() < deadline:
    if status() == 200: print(time.time(), flush=True); break
    time.sleep(0.005)
else: print("none", flush=True)
"""


class Hub(HubProcess):
    @property
    def env(self) -> dict:
        env = super().env
        env["BENCHHUB_RESTRICTED_SUBNET"] = env["BENCHHUB_RESTRICTED_SUBNET"].replace("/24", "/22")
        return env


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def run_in(ws: str, *argv: str) -> str:
    return docker("exec", ws, *argv)


def curl(ws: str, url: str, *extra: str) -> tuple[float, int]:
    out = run_in(ws, "curl", "-s", "-o", "/dev/null", "-w", "%{time_total} %{size_download}",
                 *extra, url)  # fmt: skip
    seconds, size = out.split()
    return float(seconds), int(float(size))


class Poller:
    """A poller inside a workspace: first status now, then the time of the first 200."""

    def __init__(self, ws: str, url: str, timeout: float):
        argv = ["docker", "exec", "-i", ws, "python3", "-c", POLL, url, str(timeout)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)  # fmt: skip
        self.first = int(self.proc.stdout.readline().split()[1])

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def first_200(self) -> float | None:
        line = self.proc.stdout.readline().strip()
        self.proc.wait()
        return None if line in ("none", "") else float(line)


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def egress_service_pid(hub: HubProcess) -> int:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmd = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == hub.proc.pid and b"hub_services.egress" in cmd:
            return int(stat.parent.name)
    raise RuntimeError("egress service process not found")


def restart_proxy(closed: str) -> None:
    docker("restart", "-t", "1", PROXY)
    poller = Poller(closed, "http://files.test/small.txt", 30)
    poller.go()
    if poller.first_200() is None:
        raise RuntimeError("the proxy did not come back after a restart")


def throughput(closed: str, opened: str) -> dict:
    url = "http://files.test/big.bin"
    curl(closed, url), curl(opened, url)  # warm-up
    rates: dict[str, list[float]] = {"direct": [], "proxy": []}
    for _ in range(RUNS):
        for side, ws in (("direct", opened), ("proxy", closed)):
            seconds, size = curl(ws, url)
            assert size == SIZE, f"{side}: {size} bytes"
            rates[side].append(size / seconds / MB)
    return rates


def latency(ws: str) -> list[float]:
    out = run_in(ws, "python3", "-c", LATENCY, "http://files.test/small.txt", str(REQUESTS))
    return [s * 1000 for s in json.loads(out)]


def fake_records(subnet: str, taken: str, container: str) -> list[dict]:
    hosts = (a for a in ipaddress.ip_network(subnet).hosts() if (int(a) & 0x3FF) >= 32)
    addresses = [str(a) for a in hosts if str(a) != taken][:FAKES]
    kinds = ("host{j}.site{i}.test", ".cdn{j}.site{i}.test", "https://api{j}.site{i}.test",
             "data{j}.site{i}.test/v{j}/files/")  # fmt: skip
    return [
        {"key": f"fake{i}/ws", "container": container, "address": addresses[i],
         "entries": [kinds[j % 4].format(i=i, j=j) for j in range(ENTRIES)]}
        for i in range(FAKES)
    ]  # fmt: skip


def reload(hub: Hub, closed: str) -> dict:
    state = EgressState(hub.egress_dir, [])
    conf, own_path = state.dir / "squid.conf", state.workspaces_dir / "bench--closed.json"
    own = json.loads(own_path.read_text())
    subnet = hub.env["BENCHHUB_RESTRICTED_SUBNET"]
    service = egress_service_pid(hub)
    os.kill(service, signal.SIGSTOP)
    try:
        with state.locked():
            for rec in fake_records(subnet, own["address"], closed):
                name = rec["key"].replace("/", "--")
                (state.workspaces_dir / f"{name}.json").write_text(json.dumps(rec))
            own_path.write_text(json.dumps({**own, "entries": [*own["entries"], "new.test"]}))
        t = time.perf_counter()
        state.render()
        r = {"render_s": time.perf_counter() - t, "conf_bytes": conf.stat().st_size}
        with_new = conf.read_text()
        r["conf_lines"] = with_new.count("\n")
        api = docker_sdk.APIClient(version="auto")
        # (a) the product's path: atomic replace, then SIGHUP
        poller = Poller(closed, "http://new.test/small.txt", 10)
        assert poller.first == 403, poller.first
        t0 = time.time()
        api.kill(PROXY, signal="HUP")
        poller.go()
        applied = poller.first_200()
        r["product_hup_applied"] = applied is not None
        r["product_hup_to_200_s"] = applied - t0 if applied else None
        # (b) squid: load the config without new.test, then write new.test in place + SIGHUP
        own_path.write_text(json.dumps(own))
        state.render()
        restart_proxy(closed)
        download = subprocess.Popen(
            ["docker", "exec", closed, "curl", "-s", "-o", "/dev/null", "--limit-rate", "20M",
             "-w", "%{size_download}", "http://files.test/big.bin"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(2)
        poller = Poller(closed, "http://new.test/small.txt", 30)
        assert poller.first == 403, poller.first
        with open(conf, "r+") as f:  # the inode squid has mounted
            f.write(with_new)
            f.truncate()
        inside = run_in(PROXY, "stat", "-c", "%i", "/etc/bench-egress/squid.conf").strip()
        r["same_inode"] = int(inside) == conf.stat().st_ino
        t0 = time.time()
        api.kill(PROXY, signal="HUP")
        r["hup_call_s"] = time.time() - t0
        poller.go()
        applied = poller.first_200()
        r["reload_s"] = applied - t0 if applied else None
        size = download.communicate()[0].strip()
        r["download"] = {"rc": download.returncode, "bytes": int(float(size or 0))}
        r["no_dropped_connections"] = download.returncode == 0 and r["download"]["bytes"] == SIZE
    finally:
        with state.locked():
            for p in state.workspaces_dir.glob("fake*--ws.json"):
                p.unlink()
            own_path.write_text(json.dumps(own))
        state.render()
        restart_proxy(closed)
        os.kill(service, signal.SIGCONT)
    return r


def main() -> None:
    os.environ["PATH"] = f"/tmp/chp/node_modules/.bin:{os.environ['PATH']}"
    out = REPO / ".cache" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-egress-") as tmp:
        files = Path(tmp) / "files"
        files.mkdir()
        with open(files / "big.bin", "wb") as f:
            for _ in range(SIZE // MB):
                f.write(os.urandom(MB))
        (files / "small.txt").write_text("ok\n")
        hub = Hub(Path(tmp), prefix=PREFIX)
        hub.log_path = out / "egress-hub.log"
        hub.log_path.unlink(missing_ok=True)
        _cleanup(PREFIX, hub.storage_root)
        hub.start()
        try:
            hub.ensure_user("bench")
            restricted = {**OPTIONS, "access_mode": "restricted", "whitelist": "files.test"}
            hub.start_workspace("bench", "closed", restricted)
            hub.start_workspace("bench", "opened", OPTIONS)
            closed, opened = hub.container_name("bench", "closed"), hub.container_name(
                "bench", "opened")
            aliases = ["files.test", "new.test"]
            docker("run", "-d", "--name", SERVER, "-u", "0", "--network", OUTSIDE,
                   *[x for a in aliases for x in ("--network-alias", a)],
                   "-v", f"{files}:/srv:ro", "--entrypoint", "python3",
                   "benchhub/jupyterlab:latest", "-c", SERVE)  # fmt: skip
            docker("network", "connect", *[x for a in aliases for x in ("--alias", a)], OPEN,
                   SERVER)  # fmt: skip
            time.sleep(1)
            rates = throughput(closed, opened)
            lat = {"direct": latency(opened), "proxy": latency(closed)}
            rel = reload(hub, closed)
        finally:
            hub.stop()
            _cleanup(PREFIX, hub.storage_root)
    d, p = statistics.median(rates["direct"]), statistics.median(rates["proxy"])
    rows = [f"| throughput, 200 MB (median of {RUNS}) | {d:.0f} MB/s | {p:.0f} MB/s "
            f"| {p / d:.2f} | ≥ 0.8 |"]  # fmt: skip
    for q, target in ((50, "< 2 ms"), (99, "")):
        a, b = pct(lat["direct"], q), pct(lat["proxy"], q)
        rows.append(f"| latency p{q}, {REQUESTS} GETs | {a:.2f} ms | {b:.2f} ms "
                    f"| +{b - a:.2f} ms | {target} |")  # fmt: skip
    print(f"\nEgress proxy ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"{subprocess.getoutput('nproc')} cores)\n")
    print("| metric | direct | via proxy | ratio/added | target |\n|---|---|---|---|---|")
    print("\n".join(rows))
    reload_ms = f"{rel['reload_s'] * 1000:.0f} ms" if rel["reload_s"] else "never"
    print(f"\nReload, {FAKES} workspaces x {ENTRIES} entries ({rel['conf_lines']} lines, "
          f"{rel['conf_bytes'] / 1000:.0f} kB): render+write {rel['render_s'] * 1000:.0f} ms; "
          f"SIGHUP after EgressState render applied the new rule: {rel['product_hup_applied']}; "
          f"squid SIGHUP -> new rule in effect: {reload_ms}")
    print(f"Download across the reload: curl rc {rel['download']['rc']}, "
          f"{rel['download']['bytes']} of {SIZE} bytes -> no dropped connections: "
          f"{rel['no_dropped_connections']}")
    (out / "egress.json").write_text(json.dumps(
        {"when": time.time(), "throughput_MBps": rates, "latency_ms": lat, "reload": rel},
        indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
