"""The lifecycle decision core: stop, restart or remind a running workspace now?

:func:`decide` is a pure function of a workspace's :class:`Policy`, its :class:`Activity`
figures and the time, so every rule is tested without Docker. The service loop reads the
clock through :func:`utcnow` (the module's one time seam), observes the activity, calls
:func:`decide`, acts, and records the decision's ``event_id`` in ``actions_done`` (or
``reminders_sent``) so nothing is done twice. A workspace whose options raise
:class:`PolicyUnreadable` is never stopped: the service logs the reason and leaves it be.

Events, all computed from the activity (never from ``now``, so a due event stays due):

* shutdown, ``after_start``: at ``started + shutdown_after - carried_over``;
* shutdown, ``idle``: at ``max(started, last_request, last_terminal_input, last_busy) +
  shutdown_after``, only while no kernel is busy and the measured CPU share is known and below
  the threshold (``last_busy``: the last time the workspace was seen busy, so an idle period
  counts from the end of a computation, not from its start);
* shutdown, not accessed: at ``last_access + not_accessed_limit``;
* restart: at ``started + restart_every`` (the 30-day security restart).

``keep_until`` postpones every shutdown to at least that time, never the restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from numbers import Real

from benchhub.workspace_spec import SHUTDOWN_MODES, OptionsError, parse_run_time_policy

__all__ = [
    "POLICY_MODES",
    "Activity",
    "Decision",
    "Policy",
    "PolicyUnreadable",
    "carry_over",
    "decide",
    "next_trigger",
    "utcnow",
]

# The decision core's modes: the schema's shutdown modes, and "none" for a workspace whose
# auto_shutdown_hours is 0 (not an option value: the hub refuses shutdown_mode "none").
POLICY_MODES = ("none", *SHUTDOWN_MODES)
_ZERO = timedelta(0)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC. The only place this module reads the clock;
    tests replace it (or pass ``now`` to :func:`decide`) to move time."""
    return datetime.now(UTC)


class PolicyUnreadable(ValueError):
    """A workspace's lifecycle options could not be read; ``reason`` says which field and why.

    The service must not stop or restart a workspace whose policy raised this."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Policy:
    """How long a workspace may run.

    ``shutdown_after`` is the run time from start (``after_start``) or the idle duration
    (``idle``); it is required and positive for those modes and ignored for ``none``.
    ``reminders`` are lead times before a shutdown or restart. ``keep_until`` (aware) is a
    user extension: no shutdown before it, but the restart is not postponed.
    ``idle_cpu_share`` is the fraction of the container's CPU limit (0 < share <= 1) under
    which the container counts as idle. Construction raises :class:`ValueError` naming the
    bad field.
    """

    shutdown_mode: str
    shutdown_after: timedelta | None
    restart_every: timedelta = timedelta(days=30)
    not_accessed_limit: timedelta = timedelta(days=7)
    reminders: tuple[timedelta, ...] = (timedelta(hours=24), timedelta(hours=1))
    keep_until: datetime | None = None
    idle_cpu_share: float = 0.05

    def __post_init__(self) -> None:
        problems = _policy_problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_options(
        cls, user_options: dict | None, settings: Policy, hour: timedelta = timedelta(hours=1)
    ) -> Policy:
        """The policy of a workspace from its ``user_options``, read by the workspace schema's
        own parser (:func:`benchhub.workspace_spec.parse_run_time_policy`): an option means
        here what it meant to the hub, and one left out takes the schema's default, as it did
        when the workspace started. ``auto_shutdown_hours`` 0 gives ``shutdown_mode`` "none".
        ``settings`` gives the service's own settings (``restart_every``,
        ``not_accessed_limit``, ``idle_cpu_share``); ``hour`` is how long an option's hour
        lasts (tests and demos shorten it).
        Raises :class:`PolicyUnreadable` with the schema's sentence (field and what is
        allowed) when the options are malformed.
        """
        try:
            options = parse_run_time_policy(user_options)
        except OptionsError as err:
            raise PolicyUnreadable(str(err)) from None
        hours = options.auto_shutdown_hours
        try:
            return replace(
                settings,
                shutdown_mode=options.shutdown_mode if hours else "none",
                shutdown_after=hours * hour if hours else None,
                keep_until=options.keep_until_time,
                reminders=tuple(lead * hour for lead in options.reminder_hours),
            )
        except ValueError as err:
            raise PolicyUnreadable(str(err)) from err


def _positive(value: object) -> bool:
    return isinstance(value, timedelta) and value > _ZERO


def _policy_problems(policy: Policy) -> list[str]:
    """Every problem with ``policy``'s fields, each naming the field and the allowed values."""
    problems = []
    if policy.shutdown_mode not in POLICY_MODES:
        problems.append(
            f"shutdown_mode must be one of {', '.join(POLICY_MODES)}, got {policy.shutdown_mode!r}"
        )
    elif policy.shutdown_mode != "none" and not _positive(policy.shutdown_after):
        problems.append(
            f"shutdown_after must be a positive duration for shutdown_mode "
            f"{policy.shutdown_mode!r}, got {policy.shutdown_after!r}"
        )
    for name in ("restart_every", "not_accessed_limit"):
        if not _positive(getattr(policy, name)):
            problems.append(f"{name} must be a positive duration, got {getattr(policy, name)!r}")
    if not isinstance(policy.reminders, tuple) or not all(map(_positive, policy.reminders)):
        problems.append(
            f"reminders must be a tuple of positive durations, got {policy.reminders!r}"
        )
    if policy.keep_until is not None and (
        not isinstance(policy.keep_until, datetime) or policy.keep_until.utcoffset() is None
    ):
        problems.append(f"keep_until must be a timezone-aware datetime, got {policy.keep_until!r}")
    share = policy.idle_cpu_share
    if isinstance(share, bool) or not isinstance(share, Real) or not 0 < share <= 1:
        problems.append(f"idle_cpu_share must be a fraction in (0, 1], got {share!r}")
    return problems


@dataclass(frozen=True)
class Activity:
    """What the service observed about a running workspace (all datetimes aware).

    ``started`` is the start of the current 30-day cycle; ``carried_over`` the run time from
    earlier cycles that counts toward an ``after_start`` shutdown (see :func:`carry_over`).
    ``cpu_share`` is the container's CPU use over the idle window as a fraction of its
    limit; None (unknown) counts as not idle. ``last_access`` is the last time a person
    used the workspace (browser or API). ``reminders_sent`` and ``actions_done`` hold the
    ``event_id`` of every reminder sent and action taken, so neither is repeated.
    """

    started: datetime
    carried_over: timedelta = _ZERO
    last_request: datetime | None = None
    last_terminal_input: datetime | None = None
    last_busy: datetime | None = None
    kernels_busy: bool = False
    cpu_share: float | None = None
    last_access: datetime | None = None
    reminders_sent: frozenset[str] = field(default_factory=frozenset)
    actions_done: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Decision:
    """What to do now, and the event to show the user.

    ``action`` is "none", "stop", "restart" or "remind"; ``reason`` is a sentence for the log
    and the user; ``event_id`` is the stable id to record once the action (or reminder) is
    done ("" when there is nothing to record). ``next_event`` ("shutdown" or "restart"),
    ``next_event_at`` and ``remaining`` (never negative) describe the event this decision is
    about: the due event acted on, the event reminded of, or else the earliest upcoming one.
    """

    action: str
    reason: str
    event_id: str
    next_event: str | None
    next_event_at: datetime | None
    remaining: timedelta | None


@dataclass(frozen=True)
class _Event:
    kind: str  # "shutdown" or "restart"
    at: datetime
    reason: str
    event_id: str


def _stamp(moment: datetime) -> str:
    """``moment`` in UTC ISO form: the same instant gives the same id in any timezone."""
    return moment.astimezone(UTC).isoformat()


def _span(duration: timedelta) -> str:
    """A duration for people: "7 days", "2 days 3 h", "24 h", "1 h 30 min", "5 min", "12 s"."""
    seconds = max(0, round(duration.total_seconds()))
    days, rest = divmod(seconds, 86400)
    if days >= 2:
        return f"{days} days" + (f" {rest // 3600} h" if rest >= 3600 else "")
    if seconds >= 3600:
        hours, minutes = seconds // 3600, (seconds % 3600) // 60
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    if seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _is_idle(policy: Policy, activity: Activity) -> bool:
    """True when no kernel is busy and the CPU share is known and under the threshold."""
    share = activity.cpu_share
    return not activity.kernels_busy and share is not None and share < policy.idle_cpu_share


def _shutdown_event(policy: Policy, activity: Activity) -> _Event | None:
    """The automatic shutdown configured by the mode, postponed to ``keep_until``; or None."""
    after = policy.shutdown_after
    if policy.shutdown_mode == "after_start":
        at = activity.started + after - activity.carried_over
        reason = f"automatic shutdown: ran {_span(after)} since start"
        rule = "shutdown"
    elif policy.shutdown_mode == "idle" and _is_idle(policy, activity):
        signals = (
            activity.started,
            activity.last_request,
            activity.last_terminal_input,
            activity.last_busy,
        )
        at = max(moment for moment in signals if moment is not None) + after
        reason = f"idle for {_span(after)}"
        rule = "idle"
    else:
        return None
    return _kept(policy, rule, at, reason)


def _not_accessed_event(policy: Policy, activity: Activity) -> _Event | None:
    """The stop of a workspace no one used for ``not_accessed_limit``; None if never seen."""
    if activity.last_access is None:
        return None
    at = activity.last_access + policy.not_accessed_limit
    return _kept(policy, "not-accessed", at, f"not accessed for {_span(policy.not_accessed_limit)}")


def _kept(policy: Policy, rule: str, at: datetime, reason: str) -> _Event:
    """A shutdown event at ``at``, or at ``keep_until`` if the user asked to keep it longer."""
    if policy.keep_until is not None and policy.keep_until > at:
        at = policy.keep_until
        reason += f" (kept running until {_stamp(at)} as asked)"
    return _Event("shutdown", at, reason, f"stop:{rule}:{_stamp(at)}")


def _events(policy: Policy, activity: Activity) -> list[_Event]:
    """Every scheduled event, earliest first (a shutdown before a restart at the same time)."""
    restart = _Event(
        "restart",
        activity.started + policy.restart_every,
        f"security restart: {_span(policy.restart_every)} since start",
        f"restart:{_stamp(activity.started)}",
    )
    events = [restart, _shutdown_event(policy, activity), _not_accessed_event(policy, activity)]
    return sorted((e for e in events if e), key=lambda e: (e.at, e.kind != "shutdown"))


def _about(action: str, reason: str, event_id: str, event: _Event, now: datetime) -> Decision:
    return Decision(action, reason, event_id, event.kind, event.at, max(event.at - now, _ZERO))


def _reminder(policy: Policy, activity: Activity, event: _Event, now: datetime) -> Decision | None:
    """A reminder of the upcoming ``event`` if ``now`` is within a lead of it and the tightest
    such lead was not yet reminded of (earlier, longer leads are then stale and skipped)."""
    leads = [lead for lead in policy.reminders if event.at - lead <= now]
    if not leads:
        return None
    lead = min(leads)
    reminder_id = _reminder_id(event, lead)
    if reminder_id in activity.reminders_sent:
        return None
    reason = f"{event.kind} in {_span(event.at - now)} ({event.reason})"
    return _about("remind", reason, reminder_id, event, now)


def _reminder_id(event: _Event, lead: timedelta) -> str:
    return f"remind:{event.kind}:{_stamp(event.at)}:{int(lead.total_seconds())}s"


def next_trigger(policy: Policy, activity: Activity) -> datetime | None:
    """The earliest time at which :func:`decide` would stop, restart or remind if
    ``activity`` stayed as it is (None: never). Before it, ``decide`` says "none".

    Lets the service skip work that cannot change the decision (asking a server about its
    kernels) until shortly before it could. A reminder lead counts only if neither it nor a
    shorter lead was sent for the event (``decide`` skips such stale leads)."""
    moments = []
    for event in _events(policy, activity):
        if event.event_id in activity.actions_done:
            continue
        moments.append(event.at)
        sent = [
            lead
            for lead in policy.reminders
            if _reminder_id(event, lead) in activity.reminders_sent
        ]
        moments += [event.at - lead for lead in policy.reminders if not sent or lead < min(sent)]
    return min(moments, default=None)


def decide(policy: Policy, activity: Activity, now: datetime) -> Decision:
    """What to do with a running workspace at ``now`` (aware); pure and deterministic.

    Due events (at <= now) come first: any due shutdown means "stop" (the earliest due
    one; a due stop beats a due restart), else a due restart means "restart"; if the chosen
    event's id is in ``actions_done`` the action is "none" (never twice). With nothing due,
    the first upcoming event inside a reminder lead whose reminder id was not sent gives
    "remind"; otherwise "none" about the earliest upcoming event.
    """
    events = _events(policy, activity)
    due = [event for event in events if event.at <= now]
    if due:
        stops = [event for event in due if event.kind == "shutdown"]
        chosen = stops[0] if stops else due[0]
        if chosen.event_id in activity.actions_done:
            return _about("none", f"already done: {chosen.reason}", "", chosen, now)
        return _about("stop" if stops else "restart", chosen.reason, chosen.event_id, chosen, now)
    for event in events:
        reminder = _reminder(policy, activity, event, now)
        if reminder is not None:
            return reminder
    upcoming = events[0]
    reason = f"nothing due; {upcoming.kind} in {_span(upcoming.at - now)}"
    return _about("none", reason, "", upcoming, now)


def carry_over(policy: Policy, activity: Activity, restarted_at: datetime) -> timedelta:
    """The ``carried_over`` for the cycle that begins with the security restart at
    ``restarted_at``: the previous ``carried_over`` plus the time run in this cycle.

    It is the total run time for every mode (``policy`` is taken for the contract's sake),
    so a running workspace switched to ``after_start`` still counts from its first start.
    A manual stop ends the count: the next start begins with ``carried_over`` 0.
    """
    return activity.carried_over + max(restarted_at - activity.started, _ZERO)
