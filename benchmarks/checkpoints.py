"""Checkpoints vs the plain alternatives, one run: 1 GiB of new files, then 10 MiB changed.

A workspace container (benchhub/jupyterlab, running ``sleep``) gains 1 GiB of new files in
``/home/jovyan/bench``: 256 files of 4 MiB, half random bytes, half compressible text (log
lines). Then, in the same run, on the same machine and disk:

1. **checkpoint #1** of the running container the way the checkpoints service takes a periodic
   one (``WorkspaceCheckpoints.take``: no pause), into a local store; against ``docker commit``
   (which pauses the container while it copies) + ``docker save`` of the committed image, and
   ``docker cp`` of the same tree out of the container;
2. **10 MiB changed**: two random files rewritten (8 MiB) and a 2 MiB log file added;
   **checkpoint #2** (parent #1); against commit + save and ``docker cp`` again (they have no
   notion of "changed");
3. **restore** of checkpoint #2 into a fresh container (``docker create`` + restore into its
   upper directory); against ``docker load`` of the saved image + ``docker create``, and
   ``docker cp`` of the tree into a fresh container. The restored tree is checked against the
   original (sha256 of every file).

The files are written, then the benchmark waits out the store's racy window (2 s), as a periodic
checkpoint 5 minutes later would find them. How long the workspace stalls during each method is
measured, not assumed: a process in the container ticks every 2 ms and notes every gap longer
than 20 ms (in ``/dev/shm``, outside what is checkpointed; the container's monotonic clock is the
host's); the longest gap within a method's run is its "paused" figure (CPU contention on a small
host shows up there too, as it would for a user's program). The page cache is warm for every
method alike. Prints a Markdown table; raw figures go to ``.cache/bench/checkpoints.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import zstandard

from benchhub.checkpoints.backends import LocalDirectoryBackend
from benchhub.checkpoints.containers import excluded_paths_of, upper_dir_of
from benchhub.checkpoints.store import CheckpointStore
from benchhub.checkpoints.workspace import WorkspaceCheckpoints
from tests.support.docker_cli import docker, exec_in

REPO = Path(__file__).resolve().parent.parent
IMAGE = "benchhub/jupyterlab:latest"
PREFIX = "benchckptbench"
TREE = "/home/jovyan/bench"
MIB = 1024 * 1024
FILES, FILE_MIB = 256, 4

WRITE_1GIB = f"""
import os, random
os.makedirs("{TREE}", exist_ok=True)
rng = random.Random(7)
words = "sample read align count gene exon quality pass filter lane batch".split()
for i in range({FILES}):
    with open(f"{TREE}/file{{i:03d}}.{{'bin' if i % 2 else 'log'}}", "wb") as f:
        if i % 2:
            f.write(os.urandom({FILE_MIB} * {MIB}))
        else:
            out, size = [], 0
            while size < {FILE_MIB} * {MIB}:
                line = (f"{{i}}-{{size}} {{rng.choice(words)}} {{rng.choice(words)}} "
                        f"score={{rng.random():.3f}}\\n").encode()
                out.append(line); size += len(line)
            f.write(b"".join(out)[:{FILE_MIB} * {MIB}])
"""
CHANGE_10MIB = f"""
import os
for i in (1, 3):
    with open(f"{TREE}/file{{i:03d}}.bin", "wb") as f:
        f.write(os.urandom({FILE_MIB} * {MIB}))
with open(f"{TREE}/new.log", "wb") as f:
    f.write(b"".join(b"changed line %d of a new log\\n" % n for n in range(200000))[:2 * {MIB}])
"""
# the stall meter (see the module docstring); < 0.02 s means no gap longer than 20 ms was seen
TICKER = """
import time
last = time.monotonic()
while True:
    time.sleep(0.002)
    now = time.monotonic()
    if now - last > 0.02:
        with open("/dev/shm/stalls", "a") as f:
            f.write(f"{now:.6f} {now - last:.6f}\\n")
    last = now
"""
DIGEST = f"cd {TREE} && find . -type f | sort | xargs sha256sum | sha256sum | cut -c1-64"


def timed(fn, *args):
    t0 = time.monotonic()
    result = fn(*args)
    return time.monotonic() - t0, result


def start_stall_meter(container: str) -> None:
    docker("exec", "-d", container, "python3", "-c", TICKER)


def stalled(container: str, fn, *args) -> tuple[float, float, object]:
    """Run ``fn(*args)``: (seconds it took, the longest stall of the container's ticking
    process meanwhile (0.0: none over 20 ms), its result)."""
    t0 = time.monotonic()
    result = fn(*args)
    t1 = time.monotonic()
    gaps = []
    for line in docker("exec", container, "cat", "/dev/shm/stalls", check=False).splitlines():
        ended, gap = (float(x) for x in line.split())
        if t0 <= ended <= t1 + 0.5:  # a stall is noted when it ends, so just after fn returns
            gaps.append(gap)
    return t1 - t0, max(gaps, default=0.0), result


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file())


def inspect(name: str) -> dict:
    return json.loads(docker("inspect", name))[0]


def run_in(container: str, script: str) -> None:
    done = exec_in(container, f"python3 - <<'EOF'\n{script}\nEOF")
    if done.returncode:
        raise RuntimeError(done.stderr)


def changed_compressed_bytes(container: str) -> int:
    """zstd-3 size of the bytes that changed (what an ideal incremental store keeps)."""
    out = subprocess.run(
        [
            "docker",
            "exec",
            container,
            "sh",
            "-c",
            f"cat {TREE}/file001.bin {TREE}/file003.bin {TREE}/new.log",
        ],
        check=True,
        capture_output=True,
    ).stdout
    return len(zstandard.ZstdCompressor(level=3).compress(out))


def commit_and_save(container: str, tag: str, work: Path) -> dict:
    tar = work / f"{tag}.tar"
    commit_s, pause_s, _ = stalled(container, docker, "commit", container, f"{PREFIX}:{tag}")
    save_s, _ = timed(docker, "save", "-o", str(tar), f"{PREFIX}:{tag}")
    return {
        "commit_s": commit_s,
        "save_s": save_s,
        "seconds": commit_s + save_s,
        "bytes": tar.stat().st_size,
        "pause_s": pause_s,
    }


def copy_out(container: str, work: Path, tag: str) -> dict:
    target = work / f"cp-{tag}"
    seconds, pause_s, _ = stalled(container, docker, "cp", f"{container}:{TREE}", str(target))
    return {"seconds": seconds, "bytes": size_of(target), "path": str(target), "pause_s": pause_s}


def measure(work: Path) -> dict:
    store = CheckpointStore(backend=LocalDirectoryBackend(work / "store"))
    host_dir = work / "workspace"
    host_dir.mkdir()
    ops = WorkspaceCheckpoints(store, host_dir, keep_automatic=10)
    ops.ensure("bench", "checkpoints")
    src, fresh, plain, copied = (f"{PREFIX}-{n}" for n in ("src", "fresh", "plain", "copied"))
    docker("run", "-d", "--name", src, IMAGE, "sleep", "infinity")
    start_stall_meter(src)
    results: dict = {}
    t0 = time.monotonic()
    run_in(src, WRITE_1GIB)
    results["write_1gib_s"] = time.monotonic() - t0
    time.sleep(store.racy_window + 0.5)
    obj = inspect(src)
    upper, excluded = upper_dir_of(obj), excluded_paths_of(obj)

    seconds, pause_s, first = stalled(src, ops.take, upper, excluded, "periodic")
    results["checkpoint1"] = {
        "seconds": seconds,
        "bytes": first.totals["new_stored_bytes"],
        "logical": first.totals["logical_bytes"],
        "pause_s": pause_s,
    }
    results["commit1"] = commit_and_save(src, "one", work)
    results["cp1"] = copy_out(src, work, "one")

    run_in(src, CHANGE_10MIB)
    results["changed_compressed_bytes"] = changed_compressed_bytes(src)
    time.sleep(store.racy_window + 0.5)
    seconds, pause_s, second = stalled(src, ops.take, upper, excluded, "periodic")
    results["checkpoint2"] = {
        "seconds": seconds,
        "bytes": second.totals["new_stored_bytes"],
        "pause_s": pause_s,
    }
    results["commit2"] = commit_and_save(src, "two", work)
    results["cp2"] = copy_out(src, work, "two")
    results["original_digest"] = exec_in(src, DIGEST).stdout.strip()
    docker("rm", "-f", src)

    # restore: a fresh container from the checkpoint / the saved image / the copied tree
    docker("rmi", f"{PREFIX}:one", f"{PREFIX}:two")
    docker("create", "--name", fresh, IMAGE, "sleep", "infinity")

    def restore():
        ops.restore(second, upper_dir_of(inspect(fresh)))

    results["restore"] = {"seconds": timed(restore)[0]}

    def load_and_create():
        docker("load", "-i", str(work / "two.tar"))
        docker("create", "--name", plain, f"{PREFIX}:two", "sleep", "infinity")

    results["load"] = {"seconds": timed(load_and_create)[0]}

    def create_and_copy():
        docker("create", "--name", copied, IMAGE, "sleep", "infinity")
        docker("cp", results["cp2"]["path"] + "/.", f"{copied}:{TREE}")

    results["cp_in"] = {"seconds": timed(create_and_copy)[0]}
    for name in (fresh, plain, copied):
        docker("start", name)
        results[f"digest_{name}"] = exec_in(name, DIGEST).stdout.strip()
    results["stored_total_bytes"] = size_of(work / "store")
    return results


def table(r: dict) -> str:
    def t(x):
        return f"{x:.2f} s"

    def b(x):
        return f"{x / MIB:.1f} MiB"

    def stall(x):
        return t(x["pause_s"]) if x["pause_s"] else "< 0.02 s"

    c1, c2, k1, k2, p1, p2 = (
        r[k] for k in ("checkpoint1", "checkpoint2", "commit1", "commit2", "cp1", "cp2")
    )
    rows = [
        "| step | BenchHub checkpoint | docker commit + save | docker cp | checkpoint / commit+save"
        " | checkpoint / cp |",
        "|---|---|---|---|---|---|",
        f"| #1: 1 GiB new, time | {t(c1['seconds'])} | {t(k1['seconds'])} (commit "
        f"{t(k1['commit_s'])}, save {t(k1['save_s'])}) | {t(p1['seconds'])} | "
        f"{c1['seconds'] / k1['seconds']:.2f} | {c1['seconds'] / p1['seconds']:.2f} |",
        f"| #1: bytes stored | {b(c1['bytes'])} | {b(k1['bytes'])} (image tar, base layers "
        f"included) | {b(p1['bytes'])} | {c1['bytes'] / k1['bytes']:.2f} | "
        f"{c1['bytes'] / p1['bytes']:.2f} |",
        f"| #2: 10 MiB changed, time | {t(c2['seconds'])} ({c2['seconds'] / c1['seconds']:.1%} "
        f"of #1) | {t(k2['seconds'])} | {t(p2['seconds'])} | "
        f"{c2['seconds'] / k2['seconds']:.2f} | {c2['seconds'] / p2['seconds']:.2f} |",
        f"| #2: bytes stored | {b(c2['bytes'])} ({c2['bytes'] / r['changed_compressed_bytes']:.2f}"
        f" x the {b(r['changed_compressed_bytes'])} zstd of what changed) | {b(k2['bytes'])} | "
        f"{b(p2['bytes'])} | {c2['bytes'] / k2['bytes']:.3f} | {c2['bytes'] / p2['bytes']:.3f} |",
        f"| restore #2 into a fresh container | {t(r['restore']['seconds'])} | "
        f"{t(r['load']['seconds'])} (load + create) | {t(r['cp_in']['seconds'])} (create + cp) | "
        f"{r['restore']['seconds'] / r['load']['seconds']:.2f} | "
        f"{r['restore']['seconds'] / r['cp_in']['seconds']:.2f} |",
        f"| longest stall of a process in the workspace, #1 / #2 | {stall(c1)} / {stall(c2)} | "
        f"{stall(k1)} / {stall(k2)} (commit) | {stall(p1)} / {stall(p2)} | | |",
    ]
    return "\n".join(rows)


def main() -> None:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory(prefix="ckptbench-") as tmp:
        try:
            results = measure(Path(tmp))
        finally:
            ids = docker("ps", "-aq", "--filter", f"name=^{PREFIX}-", check=False).split()
            if ids:
                docker("rm", "-f", "-v", *ids, check=False)
            for tag in ("one", "two"):
                docker("rmi", f"{PREFIX}:{tag}", check=False)
    same = {results[k] for k in results if k.startswith("digest_")} == {results["original_digest"]}
    results["restored_trees_identical"] = same
    out = REPO / ".cache" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints.json").write_text(json.dumps({"when": when, **results}, indent=1))
    print(
        f"\nCheckpoints ({when}; {os.cpu_count()} cores; 1 GiB written in "
        f"{results['write_1gib_s']:.1f} s; every restored tree identical: {same})\n"
    )
    print(table(results))
    print(f"\nStore after both checkpoints: {results['stored_total_bytes'] / MIB:.1f} MiB.")


if __name__ == "__main__":
    main()
