"""Why a workspace run ended, as a small fixed set of classes for metrics.

The hub counts every run that ended (``benchhub_workspace_stops_total{reason}``) and the
lifecycle service counts the stops it asked for (``benchhub_lifecycle_stops_requested_total``);
both classify with these functions, so the two agree on what "idle" means. A class is a label
value: a fixed, small set (never a user's words, never a name), so a series cannot multiply.

Where the reason is known:

- a stop someone asked for: the request's actor (:func:`bench_spawner.actors.actor_name`: the
  owner or another person, ``admin:<name>``, ``service:<name>``, ``hub``) and, for a hub
  service, the reason text it gave (the lifecycle policy's sentences, e.g. ``"policy: idle for
  2 h"``, ``"security restart: 30 days since start"``): :func:`requested_stop_reason`;
- a run that ended by itself: the sentence the hub recorded for it
  (:func:`bench_spawner.workspace_status.exit_reason`, the writable layer's "disk limit: ...",
  a vanished container): :func:`exit_stop_reason`.
"""

from __future__ import annotations

__all__ = ["STOP_REASONS", "exit_stop_reason", "requested_stop_reason"]

STOP_REASONS = (
    "idle",  # the lifecycle policy: idle for the workspace's shutdown time
    "shutdown_timer",  # the lifecycle policy: the shutdown timer after start ran out
    "not_accessed",  # the lifecycle policy: nobody opened it for the not-accessed limit
    "scheduled_restart",  # the lifecycle policy's security restart (every 30 days by default)
    "out_of_memory",  # the kernel killed the server at the resource model's memory limit
    "disk_limit",  # the container's own files passed the resource model's disk_gb
    "engine_restart",  # the Docker engine restarted under it (without live-restore)
    "exited",  # the server exited or was killed by a signal, for another reason
    "admin",  # an admin stopped someone else's workspace
    "user",  # a person stopped it (the owner, or someone it is shared with)
    "other",  # anything else: another service, the hub, a container removed behind its back
)

# the lifecycle policy's reason sentences (hub_services/lifecycle/policy.py), after the
# "policy: " its stops put first; tested against the policy's own output
_LIFECYCLE = (
    ("idle for ", "idle"),
    ("automatic shutdown", "shutdown_timer"),
    ("not accessed for ", "not_accessed"),
    ("security restart", "scheduled_restart"),
)


def requested_stop_reason(actor: str, reason: str = "") -> str:
    """The class of a stop asked for by ``actor`` (as the activity journal names actors)
    with the ``reason`` text a service gave; one of :data:`STOP_REASONS`.

    >>> requested_stop_reason("service:lifecycle", "policy: idle for 2 h")
    'idle'
    >>> requested_stop_reason("admin:root"), requested_stop_reason("alice")
    ('admin', 'user')
    """
    if actor.startswith("service:"):
        text = reason.strip().removeprefix("policy: ")
        for start, kind in _LIFECYCLE:
            if text.startswith(start):
                return kind
        return "engine_restart" if "engine restart" in text else "other"
    if actor.startswith("admin:"):
        return "admin"
    if actor and actor != "hub":
        return "user"
    return "engine_restart" if "engine restart" in reason else "other"


def exit_stop_reason(description: str) -> str:
    """The class of a run that ended by itself, from the sentence the hub recorded; one of
    :data:`STOP_REASONS`.

    >>> exit_stop_reason("out of memory: limit 8 GB")
    'out_of_memory'
    """
    text = description.strip()
    if text.startswith("out of memory"):
        return "out_of_memory"
    if text.startswith("disk limit"):
        return "disk_limit"
    if "engine restart" in text:
        return "engine_restart"
    if text.startswith(("the server exited", "killed", "container error")):
        return "exited"
    return "other"
