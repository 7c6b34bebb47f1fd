"""Grid Engine builders and parsers without Docker: the configuration a manager applies and
the XML it prints (real samples in test_cluster_sge_samples.py), read as the scaler needs it."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_cluster_sge_samples import (
    PENDING,
    PENDING_ERROR,
    QHOST_BUSY,
    QHOST_JOINING,
    QSTAT_BUSY,
    QSTAT_JOINING,
)

from benchhub.resource_models import DEFAULT_RESOURCE_MODELS, ResourceModel, load_catalog
from hub_services.clusters import sge
from hub_services.clusters.scaling import Capacity, ScalingPolicy, decide

KIB, MIB, GIB = 1024, 1024**2, 1024**3
MODELS = load_catalog(DEFAULT_RESOURCE_MODELS)
IMAGE = Path(__file__).resolve().parents[2] / "images" / "cluster"


def rows(text: str) -> dict[str, str]:
    """A qconf file as {key: value}."""
    return dict(line.split(None, 1) for line in text.splitlines() if line.strip())


# --- memory values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, nbytes",
    [
        ("2G", 2 * GIB),
        ("512M", 512 * MIB),
        ("1.5G", 3 * GIB // 2),
        ("1.000G", GIB),
        ("2.500G", 5 * GIB // 2),
        ("1g", 10**9),
        ("0.5k", 500),
        ("100", 100),
        ("4K", 4 * KIB),
        ("1T", 1024 * GIB),
        (" 3G ", 3 * GIB),
        ("1e3", 1000),
    ],
)
def test_memory_values_use_grid_engine_units(text, nbytes):
    assert sge.parse_memory(text) == nbytes


@pytest.mark.parametrize("text", ["", "G", "abc", "-1G", "1X", "1 G B", "1GG"])
def test_a_malformed_memory_value_is_refused_with_the_value(text):
    with pytest.raises(sge.SgeParseError, match="is not a memory value"):
        sge.parse_memory(text)


@pytest.mark.parametrize(
    "nbytes, text",
    [
        (2 * GIB, "2G"),
        (14745 * MIB, "14745M"),
        (1536, "1536"),
        (0, "0"),
        (3 * KIB, "3K"),
        (2048 * GIB, "2T"),
    ],
)
def test_memory_is_written_in_the_largest_exact_unit(nbytes, text):
    assert sge.format_memory(nbytes) == text


@given(st.integers(0, 2**50))
def test_property_written_memory_reads_back_exactly(nbytes):
    assert sge.parse_memory(sge.format_memory(nbytes)) == nbytes


@pytest.mark.parametrize(
    "tasks, count",
    [
        (None, 1),
        ("", 1),
        ("1-4:1", 4),
        ("1-10:3", 4),
        ("4-10:3", 3),
        ("7,10", 2),
        ("5", 1),
        ("1-3:1,7-9:2", 5),
    ],
)
def test_array_task_ranges_are_counted(tasks, count):
    assert sge.parse_task_count(tasks) == count


@pytest.mark.parametrize("tasks", ["1-", "a", "5-1", "1-4:0"])
def test_a_malformed_task_range_is_refused(tasks):
    with pytest.raises(sge.SgeParseError, match="task range"):
        sge.parse_task_count(tasks)


# --- what a member offers --------------------------------------------------------------------


def test_without_a_dedicated_manager_one_core_per_member_is_reserved():
    # ICA Bench: 2 standard-medium members (4 cores) without a dedicated manager give 2 x 3
    shared = sge.member_capacity(MODELS["standard-medium"], dedicated_manager=False)
    dedicated = sge.member_capacity(MODELS["standard-medium"], dedicated_manager=True)
    assert (shared.cores, dedicated.cores) == (3, 4)
    assert 2 * shared.cores == 6


@pytest.mark.parametrize(
    "model, memory",
    [
        ("standard-small", 7372 * MIB),
        ("standard-medium", 14745 * MIB),
        ("himem-large", 353894 * MIB),
    ],
)
def test_member_memory_keeps_ten_percent_headroom_rounded_down_to_a_mib(model, memory):
    assert sge.member_capacity(MODELS[model], dedicated_manager=True).memory == memory


def test_small_models_keep_at_least_512_mib_headroom():
    tiny = ResourceModel("tiny", cpus=2, memory_gb=1)
    assert sge.member_capacity(tiny, dedicated_manager=False) == Capacity(1, 512 * MIB)


def test_a_model_without_room_for_jobs_is_refused_with_a_way_out():
    one = ResourceModel("one-core", cpus=1, memory_gb=4)
    with pytest.raises(ValueError) as err:
        sge.member_capacity(one, dedicated_manager=False)
    assert str(err.value) == (
        "resource model 'one-core' (1 CPU, 4 GB) leaves no core or memory for jobs after one "
        "core is reserved for scheduling; choose a larger model or a dedicated manager"
    )
    assert sge.member_capacity(one, dedicated_manager=True).cores == 1


def test_exec_host_config_carries_the_member_capacity_as_complex_values():
    text = sge.exec_host_config("bench-m7", Capacity(3, 14745 * MIB))
    config = rows(text)
    assert config["hostname"] == "bench-m7"
    assert config["complex_values"] == "static_cores=3,static_mem=14745M"
    assert set(config) == {
        "hostname",
        "load_scaling",
        "complex_values",
        "user_lists",
        "xuser_lists",
        "projects",
        "xprojects",
        "usage_scaling",
        "report_variables",
    }


# --- the cluster-wide configuration ----------------------------------------------------------


def test_bundle_holds_every_file_the_manager_applies():
    assert sorted(sge.config_bundle()) == [
        "complexes",
        "configuration",
        "hostgroup/allhosts",
        "pe/smp",
        "queue/all.q",
        "scheduler",
    ]


def test_no_job_may_run_as_root_or_a_system_account():
    entries = dict(line.split() for line in sge.global_configuration().splitlines())
    assert entries == {"min_uid": "1000", "min_gid": "100"}  # jovyan is 1000:100


def test_consumables_default_to_one_core_and_two_gib():
    table = [line.split() for line in sge.complexes().splitlines() if not line.startswith("#")]
    assert table == [
        ["static_cores", "scores", "INT", "<=", "YES", "YES", "1", "0"],
        ["static_mem", "smem", "MEMORY", "<=", "YES", "YES", "2G", "0"],
    ]


def test_scheduler_runs_every_second_and_packs_members():
    config = rows(sge.scheduler())
    assert config["schedule_interval"] == "0:0:1"
    assert config["job_load_adjustments"] == "NONE"
    assert (config["queue_sort_method"], config["load_formula"]) == ("load", "static_cores")


def test_queue_runs_on_all_members_with_smp_and_no_load_thresholds():
    config = rows(sge.queue())
    assert config["hostlist"] == sge.HOSTGROUP == "@allhosts"
    assert config["pe_list"] == "smp"
    assert config["load_thresholds"] == "NONE"
    assert config["tmpdir"] == "/scratch"
    assert rows(sge.smp_pe())["allocation_rule"] == "$pe_slots"


def test_image_scripts_use_the_same_names_as_the_builders():
    script = (IMAGE / "bench-sge").read_text()
    assert f"HOSTGROUP={sge.HOSTGROUP}" in script
    assert "hub_services.clusters.sge.config_bundle()" in script


def test_drain_disables_only_the_members_queue_instance():
    assert sge.drain_argv("bench-m1") == ("qmod", "-d", "all.q@bench-m1")
    assert sge.undrain_argv("bench-m1") == ("qmod", "-e", "all.q@bench-m1")


# --- reading qstat and qhost -----------------------------------------------------------------


def test_pending_jobs_carry_their_requests_with_defaults_applied():
    jobs = {job.job_id: job for job in sge.parse_pending(PENDING)}
    assert list(jobs) == ["1", "2", "3", "4"]
    assert (jobs["1"].static_cores, jobs["1"].static_mem) == (8, 2 * GIB)  # mem defaulted
    assert (jobs["2"].slots, jobs["2"].static_cores, jobs["2"].static_mem) == (2, 1, GIB)
    assert (jobs["4"].tasks, jobs["4"].static_cores, jobs["4"].static_mem) == (4, 2, 512 * MIB)
    assert (jobs["4"].owner, jobs["4"].name, jobs["4"].state) == ("jovyan", "sleep", "qw")


def test_a_parallel_job_needs_all_its_slots_on_one_member():
    job = next(j for j in sge.parse_pending(PENDING) if j.job_id == "2")
    assert job.request().need == Capacity(2, 2 * GIB)
    assert job.request().tasks == 1


def test_held_and_failed_jobs_are_not_waiting_for_resources():
    states = {job.job_id: (job.state, job.waiting) for job in sge.parse_pending(PENDING_ERROR)}
    assert states == {"1": ("qw", True), "6": ("Eqw", False), "3": ("hqw", False)}


def test_the_scaler_ignores_a_job_larger_than_a_member_of_the_captured_cluster():
    captured = ScalingPolicy(0, 5, Capacity(3, 3 * GIB))  # static_cores=3, static_mem=3G
    requests = [job.request() for job in sge.parse_pending(PENDING) if job.waiting]
    decision = decide(captured, requests, [], datetime(2025, 3, 1, tzinfo=UTC))
    assert [u.job_id for u in decision.unsatisfiable] == ["1"]
    # job 2 (2 cores) fills one member; job 4 has four 2-core tasks: one per 3-core member
    assert (decision.action, decision.count) == ("scale_up", 5)


def test_busy_members_show_running_jobs_free_capacity_and_drain_state():
    hosts = sge.parse_members(QHOST_BUSY, QSTAT_BUSY)
    assert hosts == {
        "clusterdev-m1": sge.HostState(
            "clusterdev-m1",
            reporting=True,
            disabled=False,
            states="",
            running_jobs=1,
            free=Capacity(1, GIB),
        ),
        "clusterdev-m2": sge.HostState(
            "clusterdev-m2",
            reporting=True,
            disabled=True,
            states="d",
            running_jobs=1,
            free=Capacity(1, 5 * GIB // 2),
        ),
    }


def test_joining_and_lost_members_are_not_reporting():
    hosts = sge.parse_members(QHOST_JOINING, QSTAT_JOINING)
    assert "global" not in hosts
    assert {name: (h.reporting, h.states) for name, h in hosts.items()} == {
        "clusterdev-m1": (False, "u"),  # lost: its container stopped
        "clusterdev-m2": (True, "d"),
        "clusterdev-m3": (False, "u"),  # added, not started yet
    }


def test_a_host_without_a_queue_instance_reports_by_its_load():
    hosts = sge.parse_members(QHOST_JOINING, "<job_info><queue_info/></job_info>")
    assert [name for name, h in hosts.items() if h.reporting] == ["clusterdev-m2"]
    assert hosts["clusterdev-m2"].running_jobs == 0


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: sge.parse_pending("qstat: command not found"), "qstat output is not XML"),
        (lambda: sge.parse_members("<qhost", QSTAT_BUSY), "qhost output is not XML"),
        (lambda: sge.parse_pending('<x><job_list state="pending"/></x>'), "has no <JB_job_number>"),
        (lambda: sge.parse_pending(PENDING.replace("1-10:3", "1-x")), "task range '1-x'"),
    ],
)
def test_unexpected_output_raises_a_parse_error_saying_what(call, message):
    with pytest.raises(sge.SgeParseError, match=message):
        call()


def test_a_rounds_members_are_registered_by_one_command_with_each_ones_configuration():
    members = [("bench-cluster-x-m1", "10.231.0.70"), ("bench-cluster-x-m2", "10.231.0.71")]
    argv = sge.add_members_argv(members)
    assert argv[:2] == ["sh", "-c"] and "bench-sge add-members" in argv[2]
    assert argv[3:] == [
        "-",
        "bench-cluster-x-m1",
        "10.231.0.70",
        "bench-cluster-x-m2",
        "10.231.0.71",
    ]
    capacity = Capacity(2, 7 * 1024**3)
    configs = sge.exec_host_configs([name for name, _ in members], capacity)
    # bench-sge splits stdin where a "hostname" line starts the next host's configuration
    parts, current = {}, None
    for line in configs.splitlines(keepends=True):
        if line.split()[0] == "hostname":
            current = line.split()[1]
        parts[current] = parts.get(current, "") + line
    assert parts == {name: sge.exec_host_config(name, capacity) for name, _ in members}


@pytest.mark.parametrize("members", [[], [("m1", "10.0.0.1"), ("m1", "10.0.0.2")]])
def test_registering_no_member_or_one_twice_is_refused(members):
    with pytest.raises(ValueError, match="distinct members"):
        sge.add_members_argv(members)
