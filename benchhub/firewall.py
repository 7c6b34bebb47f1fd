"""The host's firewall for BenchHub's Docker bridges: what their containers may reach.

Docker's own rules keep bridges apart (its isolation chains) and give a bridge a route out
(NAT) or none (``--internal``). Two paths stay open that BenchHub must close:

* **The host itself.** A packet from a container to any address of the host (its bridge's
  gateway, the host's outside address, another bridge's gateway) goes through INPUT and reaches
  every host service bound to ``0.0.0.0``. Each bridge gets a chain ``BENCH-IN-<id>``, jumped to
  first from INPUT for that bridge's interface: replies to connections the host opened (the hub
  and its proxy talking to servers), the listed TCP ports (workspace bridges: the hub API),
  and a reject for everything else ("no route to host" at once, not a timeout).
* **Neighbours on one bridge.** Workspace bridges carry every user's workspaces. They are
  created with Docker's inter-container traffic off (``enable_icc=false``: Docker drops it);
  ``BENCH-FWD-<id>``, jumped to from ``DOCKER-USER`` (which Docker evaluates before its own
  rules), says the same explicitly, so a bridge made before that change is isolated as well,
  and lets through the listed openings (the egress proxy's port on the restricted bridge) and
  their replies. Cluster bridges are one workspace's own and keep their traffic.

The builders are pure: :func:`chain_rules`, :func:`jump_rules` and :func:`restore_text` give
the rules in the exact form ``iptables -S`` prints them, so :func:`in_place` compares text.
:func:`ensure` costs one ``iptables -S`` when everything is in place (the spawn path) and
replaces a guard's chains in one atomic ``iptables-restore`` otherwise (after a reboot or a
firewall reload); :func:`remove` takes a bridge's rules away, :func:`sweep` those of bridges
that no longer exist. All of it needs root (CAP_NET_ADMIN).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "BridgeGuard",
    "Opening",
    "bridge_name",
    "ensure",
    "in_place",
    "jump_rules",
    "listing",
    "remove",
    "remove_text",
    "restore_text",
    "stale_ids",
    "sweep",
]

# Chains of BenchHub bridges; BENCH-RESTRICT- is the restricted bridge's chain before issue 11.
_CHAIN = re.compile(r"^-N (BENCH-(?:IN|FWD|RESTRICT)-([0-9a-f]{12}))$")
_JUMP_TO = re.compile(r"^-A (\S+) (.*-j (BENCH-(?:IN|FWD|RESTRICT)-([0-9a-f]{12})))$")
_REPLIES = "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"


def bridge_name(network_id: str) -> str:
    """Docker's name for a user-defined bridge network's interface."""
    return f"br-{network_id[:12]}"


@dataclass(frozen=True)
class Opening:
    """A service on the bridge its neighbours may open: ``address`` ``port``/``protocol``."""

    address: str
    port: int
    protocol: str = "tcp"


@dataclass(frozen=True)
class BridgeGuard:
    """What the containers on one bridge may reach.

    ``host_ports``: TCP ports of the host they may connect to (any host address); nothing else
    on the host but replies. ``isolated``: they may not reach each other, except ``openings``.
    ``name`` (the network's name) is written into the jump rules for whoever reads them.
    """

    network_id: str
    name: str
    host_ports: tuple[int, ...] = ()
    isolated: bool = False
    openings: tuple[Opening, ...] = ()

    def __post_init__(self):
        if not re.fullmatch(r"[0-9a-f]{12,64}", self.network_id):
            raise ValueError(f"network_id must be a Docker network id, got {self.network_id!r}")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name):
            raise ValueError(f"name must be a Docker network name, got {self.name!r}")
        if self.openings and not self.isolated:
            raise ValueError("openings are exceptions to isolation: set isolated=True")

    @property
    def bridge(self) -> str:
        return bridge_name(self.network_id)

    @property
    def input_chain(self) -> str:
        return f"BENCH-IN-{self.network_id[:12]}"

    @property
    def forward_chain(self) -> str:
        return f"BENCH-FWD-{self.network_id[:12]}"


def chain_rules(guard: BridgeGuard) -> dict[str, list[str]]:
    """``{chain: [rule, ...]}`` in ``iptables -S`` form (``-A CHAIN ...``)."""
    chain = guard.input_chain
    rules = {chain: [f"-A {chain} {_REPLIES}"]}
    rules[chain] += [
        f"-A {chain} -p tcp -m tcp --dport {port} -j ACCEPT" for port in guard.host_ports
    ]
    rules[chain].append(f"-A {chain} -j REJECT --reject-with icmp-admin-prohibited")
    if guard.isolated:
        chain = guard.forward_chain
        rules[chain] = [
            f"-A {chain} -d {o.address}/32 -p {o.protocol} -m {o.protocol} --dport {o.port} "
            "-j ACCEPT"
            for o in guard.openings
        ]
        servers = dict.fromkeys(o.address for o in guard.openings)  # in order, once each
        rules[chain] += [f"-A {chain} -s {address}/32 {_REPLIES}" for address in servers]
        rules[chain].append(f"-A {chain} -j DROP")
    return rules


def jump_rules(guard: BridgeGuard, forward_parent: str = "DOCKER-USER") -> list[str]:
    """The jumps into the guard's chains, in ``iptables -S`` form. ``forward_parent`` is
    ``DOCKER-USER`` (evaluated first in FORWARD) or ``FORWARD`` where Docker made no such chain."""
    comment = f'-m comment --comment "benchhub {guard.name}"'
    jumps = [f"-A INPUT -i {guard.bridge} {comment} -j {guard.input_chain}"]
    if guard.isolated:
        jumps.append(
            f"-A {forward_parent} -i {guard.bridge} -o {guard.bridge} {comment} "
            f"-j {guard.forward_chain}"
        )
    return jumps


def _forward_parent(listing: Iterable[str]) -> str:
    return "DOCKER-USER" if "-N DOCKER-USER" in listing else "FORWARD"


def in_place(guard: BridgeGuard, listing: Sequence[str]) -> bool:
    """Whether ``listing`` (the lines of ``iptables -S``, in order) holds exactly the guard's
    chains, rule by rule in order, and its jumps."""
    for chain, rules in chain_rules(guard).items():
        if [line for line in listing if line.startswith(f"-A {chain} ")] != rules:
            return False
    return all(jump in listing for jump in jump_rules(guard, _forward_parent(listing)))


def restore_text(guards: Sequence[BridgeGuard], listing: Sequence[str]) -> str:
    """``iptables-restore --noflush`` input that (re)writes each guard's chains (declaring a
    chain empties it) and inserts the missing jumps first in their parent chains: one
    transaction, so no packet ever sees half a guard."""
    lines = ["*filter"]
    parent = _forward_parent(listing)
    for guard in guards:
        rules = chain_rules(guard)
        lines += [f":{chain} - [0:0]" for chain in rules]
        lines += [rule for chain_lines in rules.values() for rule in chain_lines]
        for jump in jump_rules(guard, parent):
            if jump not in listing:
                chain, spec = jump[3:].split(" ", 1)
                lines.append(f"-I {chain} 1 {spec}")
    return "\n".join([*lines, "COMMIT", ""])


def remove_text(listing: Iterable[str], short_ids: set[str]) -> str | None:
    """``iptables-restore --noflush`` input deleting every jump into, and every chain of, the
    bridges with these 12-character network ids (also the pre-issue-11 ``BENCH-RESTRICT-``
    chains); None when there is nothing to delete."""
    deletes, chains = [], []
    for line in listing:
        if (jump := _JUMP_TO.match(line)) and jump.group(4) in short_ids:
            deletes.append(f"-D {jump.group(1)} {jump.group(2)}")
        elif (chain := _CHAIN.match(line)) and chain.group(2) in short_ids:
            chains.append(chain.group(1))
    if not deletes and not chains:
        return None
    body = deletes + [f"-F {c}" for c in chains] + [f"-X {c}" for c in chains]
    return "\n".join(["*filter", *body, "COMMIT", ""])


def stale_ids(listing: Iterable[str], network_ids: Iterable[str]) -> set[str]:
    """Short ids of BenchHub chains in ``listing`` whose network is not in ``network_ids``."""
    existing = {network_id[:12] for network_id in network_ids}
    found = {m.group(2) for line in listing if (m := _CHAIN.match(line))}
    return found - existing


async def _run(argv: list[str], stdin: str | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if proc.returncode:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({proc.returncode}): {err.decode().strip()}; BenchHub "
            "needs root (CAP_NET_ADMIN) and iptables to keep workspaces apart"
        )
    return out.decode()


async def listing() -> list[str]:
    """The filter table's rules as ``iptables -S`` prints them."""
    return (await _run(["iptables", "-w", "5", "-S"])).splitlines()


async def _restore(text: str) -> None:
    await _run(["iptables-restore", "-w", "5", "--noflush"], text)


async def ensure(guards: Sequence[BridgeGuard]) -> list[BridgeGuard]:
    """Put in place every guard not fully in place; the ones that were (re)written."""
    rules = await listing()
    missing = [guard for guard in guards if not in_place(guard, rules)]
    if missing:
        await _restore(restore_text(missing, rules))
    return missing


async def remove(network_id: str) -> None:
    """Take away a bridge's jumps and chains (for a network being deleted). Idempotent."""
    await _remove({network_id[:12]})


async def _remove(short_ids: set[str]) -> None:
    """Delete what ``listing()`` shows of these bridges; once more from a fresh listing when a
    rule went away meanwhile (another process removing the same bridge's rules)."""
    for attempt in (1, 2):
        text = remove_text(await listing(), short_ids)
        if not text:
            return
        try:
            return await _restore(text)
        except RuntimeError:
            if attempt == 2:
                raise


async def sweep(network_ids: Callable[[], Awaitable[Iterable[str]]]) -> set[str]:
    """Remove the rules of bridges whose network is gone (e.g. removed by hand); their short
    ids. ``network_ids()`` lists the networks that exist; it is called after the rules are
    read, so a chain made meanwhile for a new network is not mistaken for a stale one."""
    stale = stale_ids(await listing(), await network_ids())
    if stale:
        await _remove(stale)
    return stale
