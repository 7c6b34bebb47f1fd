"""Son of Grid Engine, pure: the configuration a cluster's manager applies, and its XML read back.

Builders return the text that ``qconf`` reads from a file, or an argv for ``docker exec`` into
the manager; parsers take the XML of ``qstat``/``qhost`` and return plain values. Nothing here
runs a process. The image side (``images/cluster``) applies what is built here:

* :func:`config_bundle` is written to a directory bind-mounted at ``/etc/bench-sge`` in the
  manager, which applies it at start (``bench-sge apply``): the ``static_cores`` /
  ``static_mem`` consumables, the ``@allhosts`` host group, the ``smp`` parallel environment,
  the ``all.q`` queue, the scheduler configuration (``schedule_interval 0:0:1``) and the
  global configuration's ``min_uid``/``min_gid`` (no job of root or a system account);
* :func:`exec_host_configs` goes to ``bench-sge add-members NAME IP ...`` on stdin
  (:func:`add_members_argv`: a scale-up round's members in one ``docker exec``) before the
  members start; their complex values are :func:`member_capacity`, the member's resource model minus
  headroom, and minus one core reserved for scheduling without a dedicated manager;
* :data:`PENDING_ARGV`, :data:`HOSTS_ARGV` and :data:`QUEUES_ARGV` produce the XML that
  :func:`parse_pending` and :func:`parse_members` read for the auto scaler.

Memory is in bytes. Grid Engine's units: ``K M G T`` are powers of 1024, ``k m g t`` of 1000.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

from benchhub.resource_models import ResourceModel

from .scaling import Capacity, Request

__all__ = [
    "COMPLEX_DEFAULTS",
    "HOSTGROUP",
    "HOST_CONFIGS_ENV",
    "HOSTS_ARGV",
    "PARALLEL_ENVIRONMENT",
    "PENDING_ARGV",
    "QUEUE",
    "QUEUES_ARGV",
    "HostState",
    "PendingJob",
    "SgeParseError",
    "add_members_argv",
    "complexes",
    "config_bundle",
    "drain_argv",
    "exec_host_config",
    "exec_host_configs",
    "format_memory",
    "global_configuration",
    "hostgroup",
    "member_capacity",
    "parse_members",
    "parse_memory",
    "parse_pending",
    "parse_task_count",
    "queue",
    "reschedule_argv",
    "scheduler",
    "smp_pe",
    "undrain_argv",
]

QUEUE = "all.q"
HOSTGROUP = "@allhosts"
PARALLEL_ENVIRONMENT = "smp"
# Jobs run as the workspace user (jovyan: uid 1000, group users 100) and never as root or a
# system account: the qmaster refuses a lower uid or gid at submission. (Members' sge_execd
# runs as jovyan too, so it could not start a job as anyone else; this says so at the door.)
MIN_UID = 1000
MIN_GID = 100
# What a job gets when it does not ask (ICA Bench documents the same defaults).
COMPLEX_DEFAULTS = {"static_cores": 1, "static_mem": 2 * 1024**3}
# Headroom kept from a member's memory for the OS and the execution daemon.
MEMORY_HEADROOM_FRACTION = 0.10
MEMORY_HEADROOM_MIN = 512 * 1024**2

PENDING_ARGV = ("qstat", "-xml", "-u", "*", "-s", "p", "-r")
HOSTS_ARGV = ("qhost", "-xml", "-F", "static_cores,static_mem")
QUEUES_ARGV = ("qstat", "-f", "-xml", "-u", "*", "-q", QUEUE)

_UNITS = {
    "": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "K": 1024,
    "M": 1024**2,
    "G": 1024**3,
    "T": 1024**4,
}
_MEMORY = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*([kmgtKMGT]?)\s*")


class SgeParseError(ValueError):
    """Grid Engine output that does not have the expected shape; the message says what."""


def parse_memory(text: str) -> int:
    """Bytes of a Grid Engine MEMORY value: ``"2G"`` 2 GiB, ``"1.5g"`` 1.5e9, ``"512"`` bytes.

    Fractions are rounded up to a whole byte. Raises :class:`SgeParseError` otherwise.
    """
    match = _MEMORY.fullmatch(text or "")
    if not match:
        raise SgeParseError(f"{text!r} is not a memory value (a number with K, M, G or T)")
    number = float(text.strip().rstrip("kmgtKMGT"))
    return math.ceil(number * _UNITS[match.group(2)])


def format_memory(nbytes: int) -> str:
    """``nbytes`` in the largest binary unit that divides it exactly: ``"2G"``, ``"14745M"``."""
    for unit in ("T", "G", "M", "K"):
        if nbytes and nbytes % _UNITS[unit] == 0:
            return f"{nbytes // _UNITS[unit]}{unit}"
    return str(nbytes)


def _table(rows: list[tuple[str, object]]) -> str:
    """``qconf`` file text: one ``key value`` line each, values aligned."""
    width = max(len(key) for key, _ in rows) + 1
    return "".join(f"{key:<{width}}{value}\n" for key, value in rows)


def complexes() -> str:
    """The ``static_cores`` and ``static_mem`` consumables as ``qconf -sc`` rows, merged into the
    complex list by ``bench-sge apply`` (per slot: a 4-slot ``smp`` job takes 4 times)."""
    mem_default = format_memory(COMPLEX_DEFAULTS["static_mem"])
    return (
        "#name        shortcut type   relop requestable consumable default urgency\n"
        f"static_cores scores   INT    <=    YES         YES        "
        f"{COMPLEX_DEFAULTS['static_cores']}       0\n"
        f"static_mem   smem     MEMORY <=    YES         YES        {mem_default}      0\n"
    )


def hostgroup() -> str:
    """The empty ``@allhosts`` host group; members are added one by one as they join."""
    return _table([("group_name", HOSTGROUP), ("hostlist", "NONE")])


def smp_pe() -> str:
    """The ``smp`` parallel environment: all of a job's slots on one member (``$pe_slots``)."""
    return _table(
        [
            ("pe_name", PARALLEL_ENVIRONMENT),
            ("slots", 99999),
            ("user_lists", "NONE"),
            ("xuser_lists", "NONE"),
            ("start_proc_args", "NONE"),
            ("stop_proc_args", "NONE"),
            ("allocation_rule", "$pe_slots"),
            ("control_slaves", "FALSE"),
            ("job_is_first_task", "TRUE"),
            ("urgency_slots", "min"),
            ("accounting_summary", "FALSE"),
            ("qsort_args", "NONE"),
        ]
    )


_QUEUE_LIMITS = [
    (f"{kind}_{limit}", "INFINITY")
    for limit in ("rt", "cpu", "fsize", "data", "stack", "core", "rss", "vmem")
    for kind in ("s", "h")
]


def queue() -> str:
    """The one batch queue ``all.q`` on ``@allhosts``.

    Members are limited by their consumables alone: no load thresholds (containers see the
    whole machine's load average) and no slot limit below what the consumables allow. Scripts
    run with their ``#!`` interpreter (``unix_behavior``), else bash; a job's ``$TMPDIR`` is
    under the member's ``/scratch``. Jobs are rerunnable (``rerun TRUE``): when a member is
    lost (its container died, a preemptible member was reclaimed) the controller reschedules
    its jobs (:func:`reschedule_argv`) and they run again on another member.
    """
    return _table(
        [
            ("qname", QUEUE),
            ("hostlist", HOSTGROUP),
            ("seq_no", 0),
            ("load_thresholds", "NONE"),
            ("suspend_thresholds", "NONE"),
            ("nsuspend", 1),
            ("suspend_interval", "00:05:00"),
            ("priority", 0),
            ("min_cpu_interval", "00:05:00"),
            ("processors", "UNDEFINED"),
            ("qtype", "BATCH INTERACTIVE"),
            ("ckpt_list", "NONE"),
            ("pe_list", PARALLEL_ENVIRONMENT),
            ("rerun", "TRUE"),
            ("slots", 9999),
            ("tmpdir", "/scratch"),
            ("shell", "/bin/bash"),
            ("prolog", "NONE"),
            ("epilog", "NONE"),
            ("shell_start_mode", "unix_behavior"),
            ("starter_method", "NONE"),
            ("suspend_method", "NONE"),
            ("resume_method", "NONE"),
            ("terminate_method", "NONE"),
            ("notify", "00:00:60"),
            ("owner_list", "NONE"),
            ("user_lists", "NONE"),
            ("xuser_lists", "NONE"),
            ("subordinate_list", "NONE"),
            ("complex_values", "NONE"),
            ("projects", "NONE"),
            ("xprojects", "NONE"),
            ("calendar", "NONE"),
            ("initial_state", "default"),
            *_QUEUE_LIMITS,
        ]
    )


def scheduler() -> str:
    """The scheduler configuration (``qconf -Msconf``).

    A scheduling run every second (the default 15 s makes every job wait), and one a second
    after a job ends or is submitted (``flush_*_sec 1``: without it a freed slot waited about
    2 s for its next job; 1 s is Grid Engine's smallest step), no load adjustments, and
    members sorted by free ``static_cores`` so jobs pack onto the fullest member and idle
    members can be drained. ``schedd_job_info`` lets ``qstat -j`` say why a
    job waits.
    """
    return _table(
        [
            ("algorithm", "default"),
            ("schedule_interval", "0:0:1"),
            ("maxujobs", 0),
            ("queue_sort_method", "load"),
            ("job_load_adjustments", "NONE"),
            ("load_adjustment_decay_time", "0:0:0"),
            ("load_formula", "static_cores"),
            ("schedd_job_info", "true"),
            ("flush_submit_sec", 1),
            ("flush_finish_sec", 1),
            ("params", "none"),
            ("reprioritize_interval", "0:0:0"),
            ("halftime", 168),
            ("usage_weight_list", "cpu=1.000000,mem=0.000000,io=0.000000"),
            ("compensation_factor", "5.000000"),
            ("weight_user", "0.250000"),
            ("weight_project", "0.250000"),
            ("weight_department", "0.250000"),
            ("weight_job", "0.250000"),
            ("weight_tickets_functional", 0),
            ("weight_tickets_share", 0),
            ("share_override_tickets", "TRUE"),
            ("share_functional_shares", "TRUE"),
            ("max_functional_jobs_to_schedule", 200),
            ("report_pjob_tickets", "TRUE"),
            ("max_pending_tasks_per_job", 50),
            ("halflife_decay_list", "none"),
            ("policy_hierarchy", "OFS"),
            ("weight_ticket", "0.500000"),
            ("weight_waiting_time", "0.278000"),
            ("weight_deadline", "3600000.000000"),
            ("weight_urgency", "0.500000"),
            ("weight_priority", "0.000000"),
            ("max_reservation", 0),
            ("default_duration", "INFINITY"),
        ]
    )


def global_configuration() -> str:
    """Entries of the global configuration (``qconf -sconf global``) that ``bench-sge apply``
    sets, every other entry kept: jobs only from uid :data:`MIN_UID` and gid :data:`MIN_GID` up."""
    return _table([("min_uid", MIN_UID), ("min_gid", MIN_GID)])


def config_bundle() -> dict[str, str]:
    """Every cluster-wide file ``bench-sge apply DIR`` reads, as ``{path in DIR: text}``."""
    return {
        "configuration": global_configuration(),
        "complexes": complexes(),
        "hostgroup/allhosts": hostgroup(),
        f"pe/{PARALLEL_ENVIRONMENT}": smp_pe(),
        f"queue/{QUEUE}": queue(),
        "scheduler": scheduler(),
    }


def member_capacity(model: ResourceModel, dedicated_manager: bool) -> Capacity:
    """What one member of ``model`` offers to jobs (its ``static_cores`` / ``static_mem``).

    Whole cores of the model, less one reserved for scheduling when the manager is not
    dedicated (ICA Bench: 2 standard-medium members of 4 cores give 2 x 3 cores); memory less
    headroom of 10 % (at least 512 MiB), rounded down to a MiB. Raises :class:`ValueError`
    when no core or memory would be left.
    """
    cores = math.floor(model.cpus) - (0 if dedicated_manager else 1)
    total = int(model.memory_gb * 1024**3)
    headroom = max(MEMORY_HEADROOM_MIN, math.ceil(total * MEMORY_HEADROOM_FRACTION))
    memory = (total - headroom) // 1024**2 * 1024**2
    if cores < 1 or memory < 1:
        reserved = "" if dedicated_manager else " after one core is reserved for scheduling"
        raise ValueError(
            f"resource model {model.name!r} ({model.describe()}) leaves no core or memory for "
            f"jobs{reserved}; choose a larger model"
            + ("" if dedicated_manager else " or a dedicated manager")
        )
    return Capacity(cores, memory)


def exec_host_config(name: str, capacity: Capacity) -> str:
    """The execution host configuration of member ``name`` (``qconf -Ae``/``-Me``)."""
    values = f"static_cores={capacity.cores},static_mem={format_memory(capacity.memory)}"
    return _table(
        [
            ("hostname", name),
            ("load_scaling", "NONE"),
            ("complex_values", values),
            ("user_lists", "NONE"),
            ("xuser_lists", "NONE"),
            ("projects", "NONE"),
            ("xprojects", "NONE"),
            ("usage_scaling", "NONE"),
            ("report_variables", "NONE"),
        ]
    )


def exec_host_configs(names: Sequence[str], capacity: Capacity) -> str:
    """The execution host configurations of members ``names`` (all of one ``capacity``), one
    after the other: what ``bench-sge add-members`` reads on stdin (each starts with its
    ``hostname`` line, where the script splits them)."""
    return "".join(exec_host_config(name, capacity) for name in names)


# sh -c SCRIPT - NAME IP ...: the configurations come in the environment (docker exec has no
# stdin here) and go to bench-sge on its stdin
_ADD_MEMBERS = 'printf "%s" "$BENCHHUB_SGE_HOST_CONFIGS" | bench-sge add-members "$@"'
HOST_CONFIGS_ENV = "BENCHHUB_SGE_HOST_CONFIGS"


def add_members_argv(members: Sequence[tuple[str, str]]) -> list[str]:
    """The one command (run in the manager, with :func:`exec_host_configs` of the same names
    in ``$BENCHHUB_SGE_HOST_CONFIGS``) that makes every ``(name, address)`` of ``members`` a
    Grid Engine host. Raises :class:`ValueError` for no member or a name given twice."""
    names = [name for name, _ in members]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"add_members_argv needs distinct members, got {names}")
    return ["sh", "-c", _ADD_MEMBERS, "-", *(part for member in members for part in member)]


def drain_argv(host: str) -> tuple[str, ...]:
    """Stop sending jobs to ``host`` (running jobs continue): disable its queue instance."""
    return ("qmod", "-d", f"{QUEUE}@{host}")


def undrain_argv(host: str) -> tuple[str, ...]:
    """Send jobs to ``host`` again."""
    return ("qmod", "-e", f"{QUEUE}@{host}")


def reschedule_argv(host: str) -> tuple[str, ...]:
    """Put the jobs that ran on ``host`` back to pending (state ``Rq``). ``-f`` because the
    host is gone: its execution daemon cannot confirm. Jobs submitted with ``-r n`` are not
    rescheduled; Grid Engine reports them as failed instead."""
    return ("qmod", "-f", "-rq", f"{QUEUE}@{host}")


def parse_task_count(tasks: str | None) -> int:
    """How many array tasks a ``<tasks>`` range names: ``"1-10:3"`` is 4, ``"7,10"`` is 2,
    absent (a plain job) is 1. Raises :class:`SgeParseError` on anything else."""
    if tasks is None or not tasks.strip():
        return 1
    count = 0
    for part in tasks.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:-(\d+)(?::(\d+))?)?\s*", part)
        if not match:
            raise SgeParseError(f"task range {tasks!r} is not like 1-10:2 or 7,10")
        first = int(match.group(1))
        last = int(match.group(2) or first)
        step = int(match.group(3) or 1)
        if last < first or step < 1:
            raise SgeParseError(f"task range {tasks!r} is empty or has step {step}")
        count += (last - first) // step + 1
    return count


@dataclass(frozen=True)
class PendingJob:
    """One pending job from ``qstat -xml -s p -r`` with the complex defaults applied.

    ``static_cores`` and ``static_mem`` (bytes) are per slot, as Grid Engine consumes them;
    ``tasks`` counts the pending array tasks (1 for a plain job). ``state`` is Grid Engine's
    (``qw``, ``hqw`` held, ``Eqw`` error).
    """

    job_id: str
    name: str
    owner: str
    state: str
    tasks: int
    slots: int
    static_cores: int
    static_mem: int

    @property
    def waiting(self) -> bool:
        """True when only resources keep the job waiting: not held (h) and not in error (E)."""
        return "h" not in self.state and "E" not in self.state

    def request(self) -> Request:
        """The auto scaler's view: ``tasks`` tasks each needing all slots' cores and memory
        on one member."""
        need = Capacity(self.slots * self.static_cores, self.slots * self.static_mem)
        return Request(self.job_id, self.tasks, need)


def _xml(text: str, what: str) -> ET.Element:
    try:
        return ET.fromstring(text)
    except ET.ParseError as err:
        raise SgeParseError(f"{what} output is not XML: {err}") from err


def _text(element: ET.Element, tag: str, default: str | None = None) -> str:
    found = element.findtext(tag)
    if found is None:
        if default is None:
            raise SgeParseError(f"a <{element.tag}> has no <{tag}>")
        return default
    return found.strip()


def _whole(value: str, what: str) -> int:
    try:
        return math.ceil(float(value))
    except ValueError as err:
        raise SgeParseError(f"{what} {value!r} is not a number") from err


def _pending_job(job: ET.Element) -> PendingJob:
    hard = {req.get("name"): (req.text or "").strip() for req in job.iter("hard_request")}
    cores = hard.get("static_cores")
    memory = hard.get("static_mem")
    return PendingJob(
        job_id=_text(job, "JB_job_number"),
        name=_text(job, "JB_name", ""),
        owner=_text(job, "JB_owner", ""),
        state=_text(job, "state", ""),
        tasks=parse_task_count(job.findtext("tasks")),
        slots=_whole(_text(job, "slots", "1"), "slots"),
        static_cores=(_whole(cores, "static_cores") if cores else COMPLEX_DEFAULTS["static_cores"]),
        static_mem=parse_memory(memory) if memory else COMPLEX_DEFAULTS["static_mem"],
    )


def parse_pending(xml: str) -> list[PendingJob]:
    """The pending jobs in the output of :data:`PENDING_ARGV`, in qstat's order.

    A job that does not ask for ``static_cores``/``static_mem`` gets the complex default
    (1 core, 2 GiB per slot): qstat does not list defaults. Raises :class:`SgeParseError`.
    """
    root = _xml(xml, "qstat")
    return [_pending_job(job) for job in root.iter("job_list") if job.get("state") == "pending"]


@dataclass(frozen=True)
class HostState:
    """One execution host as the manager sees it.

    ``reporting`` is False until its execution daemon reported (a joining member) and again
    when it stopped reporting (a lost member). ``disabled`` means its queue instance takes no
    new jobs (drained). ``states`` are the queue instance's state letters (``u`` unknown,
    ``d`` disabled, ``E`` error, ...). ``running_jobs`` counts running or suspended jobs and
    array tasks; ``free`` is what its consumables still offer (None when not listed), memory
    rounded to the MiB (qhost prints three decimals).
    """

    name: str
    reporting: bool
    disabled: bool
    states: str
    running_jobs: int
    free: Capacity | None


def _free(host: ET.Element) -> Capacity | None:
    values = {v.get("name"): (v.text or "").strip() for v in host.iter("resourcevalue")}
    if "static_cores" not in values or "static_mem" not in values:
        return None
    cores = values["static_cores"]
    try:
        # qhost prints 3 decimals (14745M is "14.399G"): back to the whole MiB capacities use
        memory = round(parse_memory(values["static_mem"]) / 1024**2) * 1024**2
        return Capacity(math.floor(float(cores)), memory)
    except ValueError as err:
        raise SgeParseError(f"host {host.get('name')}: static_cores {cores!r}: {err}") from err


def _queue_instances(qstat_xml: str) -> dict[str, tuple[str, int]]:
    """``{host: (state letters, running jobs)}`` from ``qstat -f -xml`` (:data:`QUEUES_ARGV`)."""
    instances = {}
    for instance in _xml(qstat_xml, "qstat -f").iter("Queue-List"):
        _, _, host = _text(instance, "name").partition("@")
        running = sum(1 for job in instance.iter("job_list") if job.get("state") == "running")
        instances[host] = (_text(instance, "state", ""), running)
    return instances


def parse_members(qhost_xml: str, qstat_xml: str) -> dict[str, HostState]:
    """Every execution host in ``qhost -xml`` (:data:`HOSTS_ARGV`) joined with its queue
    instance in ``qstat -f -xml`` (:data:`QUEUES_ARGV`), by host name.

    A host counts as reporting when qhost has its load average and its queue instance is not
    in state ``u``. Raises :class:`SgeParseError` on malformed output.
    """
    instances = _queue_instances(qstat_xml)
    hosts = {}
    for host in _xml(qhost_xml, "qhost").iter("host"):
        name = host.get("name") or ""
        if name in ("", "global"):
            continue
        load = {v.get("name"): (v.text or "").strip() for v in host.iter("hostvalue")}
        states, running = instances.get(name, ("", 0))
        hosts[name] = HostState(
            name=name,
            reporting=load.get("load_avg", "-") != "-" and "u" not in states,
            disabled="d" in states,
            states=states,
            running_jobs=running,
            free=_free(host),
        )
    return hosts
