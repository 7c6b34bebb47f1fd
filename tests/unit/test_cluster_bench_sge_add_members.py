"""``bench-sge add-members`` (images/cluster), the manager's side of a scale-up round's one
registration, run here against a stand-in ``qconf`` that records its calls and keeps Grid
Engine's host lists in files (the real qmaster runs in tests/integration/test_cluster_sge.py,
which registers its first two members this way). The script writes the manager's
/etc/hosts: it runs in a private mount namespace with a scratch file bound over it, so the
test needs ``unshare -m`` (root) and is skipped without."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hub_services.clusters import sge
from hub_services.clusters.scaling import Capacity

SCRIPT = Path(__file__).resolve().parents[2] / "images" / "cluster" / "bench-sge"
CAPACITY = Capacity(2, 7 * 1024**3)

# a stand-in qconf: the calls go to $FAKE/calls, host lists live in $FAKE/{sh,ss,sel,hgrp}
FAKE_QCONF = r"""#!/bin/bash
echo "qconf $*" >> "$FAKE/calls"
touch "$FAKE/sh" "$FAKE/ss" "$FAKE/sel" "$FAKE/hgrp"
case $1 in
  -sh) cat "$FAKE/sh" ;;
  -ss) cat "$FAKE/ss" ;;
  -sel) [ -s "$FAKE/sel" ] && cat "$FAKE/sel" || { echo "no exec host" >&2; exit 1; } ;;
  -ah) tr ',' '\n' <<<"$2" >> "$FAKE/sh" ;;
  -as) tr ',' '\n' <<<"$2" >> "$FAKE/ss" ;;
  -Ae|-Me) h=$(awk '$1 == "hostname" { print $2 }' "$2")
        if [ "$1" = -Ae ] && grep -qx "$h" "$FAKE/sel"; then echo "exists" >&2; exit 1; fi
        grep -qx "$h" "$FAKE/sel" || echo "$h" >> "$FAKE/sel"; cp "$2" "$FAKE/conf-$h" ;;
  -shgrp_resolved) tr '\n' ' ' < "$FAKE/hgrp"; echo ;;
  -aattr) tr ' ' '\n' <<<"$4" >> "$FAKE/hgrp" ;;
  *) echo "unexpected qconf $*" >&2; exit 2 ;;
esac
"""


@pytest.fixture
def manager(tmp_path):
    """Runs ``bench-sge ARGS`` with ``stdin``; returns (result, state directory)."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare -m to give the script its own /etc/hosts")
    (tmp_path / "bin").mkdir()
    qconf = tmp_path / "bin" / "qconf"
    qconf.write_text(FAKE_QCONF)
    qconf.chmod(0o755)
    state = tmp_path / "state"
    state.mkdir()
    (state / "hosts").write_text("127.0.0.1\tlocalhost\n")
    (state / "hgrp").write_text("manager\n")

    def run(*args: str, stdin: str) -> subprocess.CompletedProcess:
        inner = 'mount --bind "$FAKE/hosts" /etc/hosts && exec bash "$0" "$@"'
        return subprocess.run(
            ["unshare", "-m", "bash", "-c", inner, str(SCRIPT), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, "FAKE": str(state), "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"},
            timeout=30,
        )

    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -m is not allowed here: {probe.stderr.decode().strip()}")
    return run, state


def test_a_rounds_members_become_hosts_with_a_few_qconf_calls_for_all_of_them(manager):
    run, state = manager
    members = {f"c-m{i}": f"10.0.0.{i}" for i in range(1, 6)}
    (state / "sh").write_text("c-m2\n")  # already an admin host and exec host: kept, updated
    (state / "sel").write_text("c-m2\n")
    argv = [part for member in members.items() for part in member]
    result = run("add-members", *argv, stdin=sge.exec_host_configs(list(members), CAPACITY))
    assert result.returncode == 0, result.stderr
    calls = (state / "calls").read_text().splitlines()
    assert len(calls) == 7 + len(members)  # against 8 per member one by one
    assert "qconf -ah c-m1,c-m3,c-m4,c-m5" in calls  # one call per host list
    assert "qconf -as c-m1,c-m2,c-m3,c-m4,c-m5" in calls
    assert "qconf -aattr hostgroup hostlist c-m1 c-m2 c-m3 c-m4 c-m5 @allhosts" in calls
    for name, address in members.items():  # each its own configuration and address
        assert (state / f"conf-{name}").read_text() == sge.exec_host_config(name, CAPACITY)
        assert f"{address}\t{name}\n" in (state / "hosts").read_text()
    again = run("add-members", *argv[:2], stdin=sge.exec_host_configs(["c-m1"], CAPACITY))
    assert again.returncode == 0, again.stderr  # safe to repeat
    assert (state / "hosts").read_text().count("c-m1") == 1


def test_a_member_without_its_configuration_is_refused_before_grid_engine_is_asked(manager):
    run, state = manager
    configs = sge.exec_host_configs(["c-m1"], CAPACITY)
    result = run("add-members", "c-m1", "10.0.0.1", "c-m9", "10.0.0.9", stdin=configs)
    assert result.returncode == 1
    assert "no exec host config for c-m9" in result.stderr
    assert not (state / "calls").exists()
