"""A booting member's report seen as it happens (hub_services.clusters.join_watch): the
command the service runs in the manager, run here against a stand-in ``qhost`` that prints
the real ``qhost -xml`` format (samples from Grid Engine 8.1.9). The live check is in
tests/integration/test_cluster_service.py (members of a scale-up join)."""

import pytest
from support.scripted_command import run_with_scripted_command

from hub_services.clusters.join_watch import parse_joined, watch_argv


def host(name: str, load: str) -> str:
    return (
        f" <host name='{name}'>\n"
        "   <hostvalue name='arch_string'>lx-amd64</hostvalue>\n"
        f"   <hostvalue name='load_avg'>{load}</hostvalue>\n"
        "   <hostvalue name='mem_total'>23.5G</hostvalue>\n"
        " </host>\n"
    )


def qhost_xml(**loads: str) -> str:
    hosts = "".join(host(name, load) for name, load in loads.items())
    return f"<?xml version='1.0'?>\n<qhost>\n{host('global', '-')}{hosts}</qhost>\n"


def run_watch(tmp_path, outputs: list[str], hosts, seconds=2):
    """Run the watch with a ``qhost`` that prints ``outputs`` one call after another (the
    last again and again) and records the hosts it was asked about."""
    argv = watch_argv(hosts, seconds=seconds, poll=0.05)
    return run_with_scripted_command(tmp_path, "qhost", outputs, argv)


def test_the_watch_returns_the_member_that_reported_as_soon_as_it_does(tmp_path):
    booting = qhost_xml(**{"c-m1": "-", "c-m2": "-"})
    reported = qhost_xml(**{"c-m1": "-", "c-m2": "0.52"})
    done, took, asked = run_watch(tmp_path, [booting, booting, reported], ["c-m1", "c-m2"])
    assert done.returncode == 0, done.stderr
    assert parse_joined(done.stdout) == ["c-m2"]
    assert took < 1.5  # three looks 0.05 s apart, not the whole watch
    assert asked.splitlines()[0] == "-xml -h c-m1,c-m2"


def test_a_watch_without_any_report_ends_quietly_after_its_time(tmp_path):
    booting = qhost_xml(**{"c-m1": "-"})
    done, took, _ = run_watch(tmp_path, [booting], ["c-m1"], seconds=1)
    assert done.returncode == 0 and parse_joined(done.stdout) == []
    assert 0.5 < took < 5


def test_the_global_host_and_a_failing_qhost_never_count_as_a_report(tmp_path):
    done, _, _ = run_watch(tmp_path, ["", qhost_xml()], ["c-m1"], seconds=1)
    assert parse_joined(done.stdout) == []


def test_a_watch_needs_a_member_to_watch():
    with pytest.raises(ValueError, match="at least one host"):
        watch_argv([])
