"""A booting member's report to the manager as an event, not something a pass finds later.

Members of a scale-up boot at most a start window at a time (:mod:`.pacing`): the next ones
start when earlier ones report. Seen only by a pass, every round of a burst waited up to the
pass interval plus the pass itself for that (issue 17: 10 members took 1.24 times their
floor). So while members boot, the scaler keeps one ``docker exec`` open in the manager that
polls ``qhost`` there every :data:`POLL_S` (a local client call, no ``docker exec`` per poll)
and returns as soon as one of them has reported its load; the service then runs a pass at
once. A watch ends after :data:`WATCH_SECONDS` at the latest (it holds one of the service's
Docker worker threads); the next pass starts another while members still boot.

Pure: the argv to run and the parsing of what it prints; :mod:`.nodes` runs it.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["POLL_S", "WATCH_SECONDS", "parse_joined", "watch_argv"]

POLL_S = 0.1
WATCH_SECONDS = 10

# sh -c SCRIPT - LOOKS POLL HOST...: print the HOSTs whose execution daemon reports (qhost
# -xml has its load average, not "-"), one a line, as soon as there is one; print nothing
# after LOOKS looks POLL seconds apart without. Host names are the service's own
# (ClusterNames), never a user's.
_SCRIPT = r"""
looks=$1; poll=$2; shift 2
hosts=$(IFS=,; echo "$*")
while [ "$looks" -gt 0 ]; do
  joined=$(qhost -xml -h "$hosts" 2>/dev/null | awk -F"'" '
    /<host name=/ { host = $2 }
    /<hostvalue name=.load_avg.>/ && !/>-</ && host != "global" { print host }')
  if [ -n "$joined" ]; then printf '%s\n' "$joined"; exit 0; fi
  looks=$((looks - 1))
  sleep "$poll"
done
"""


def watch_argv(
    hosts: Sequence[str], seconds: float = WATCH_SECONDS, poll: float = POLL_S
) -> list[str]:
    """The command (run in the manager) that waits until one of ``hosts`` reports, about
    ``seconds`` at most, looking every ``poll`` seconds; what it prints goes to
    :func:`parse_joined`. ``hosts`` must not be empty."""
    if not hosts or poll <= 0:
        raise ValueError(f"watch_argv needs at least one host and poll > 0, got {hosts}, {poll}")
    looks = max(1, round(seconds / poll))
    return ["sh", "-c", _SCRIPT, "-", str(looks), f"{poll:g}", *hosts]


def parse_joined(output: str) -> list[str]:
    """The hosts the watch saw reporting (none when it timed out), sorted."""
    return sorted({line.strip() for line in output.splitlines() if line.strip()})
