"""Host firewall for the restricted network: the hub's port and nothing else on the host.

Docker drops forwarded traffic of an ``--internal`` network, but packets addressed to the host
itself (its address on that bridge, or any other of its addresses) go through INPUT and reach
every host service. A restricted workspace may talk only to the hub API on the host; the egress
proxy is a container on the same bridge, so that traffic never reaches the host.

:func:`input_rules` is pure; :func:`apply` installs them idempotently (needs root).
"""

from __future__ import annotations

import asyncio


def chain_name(network_id: str) -> str:
    return f"BENCH-RESTRICT-{network_id[:12]}"


def bridge_name(network_id: str) -> str:
    """Docker's name for a user-defined bridge network's interface."""
    return f"br-{network_id[:12]}"


def input_rules(network_id: str, hub_port: int) -> list[list[str]]:
    """iptables argument lists: a chain for the bridge, then the INPUT jump into it."""
    chain, bridge = chain_name(network_id), bridge_name(network_id)
    return [
        ["-A", chain, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
        ["-A", chain, "-p", "tcp", "--dport", str(hub_port), "-j", "ACCEPT"],
        ["-A", chain, "-j", "DROP"],
        ["-I", "INPUT", "1", "-i", bridge, "-j", chain],
    ]


async def _iptables(*args: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        "iptables", "-w", "5", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate()
    if proc.returncode and args[0] not in ("-C", "-N", "-L"):
        raise RuntimeError(f"iptables {' '.join(args)} failed: {err.decode().strip()}")
    return proc.returncode


async def apply(network_id: str, hub_port: int) -> None:
    """Install the rules unless the INPUT jump is already there."""
    chain, bridge = chain_name(network_id), bridge_name(network_id)
    if await _iptables("-C", "INPUT", "-i", bridge, "-j", chain) == 0:
        return
    await _iptables("-N", chain)
    await _iptables("-F", chain)
    for rule in input_rules(network_id, hub_port):
        await _iptables(*rule)


async def remove(network_id: str) -> None:
    """Remove the jump and the chain (for a network being deleted). Idempotent."""
    chain, bridge = chain_name(network_id), bridge_name(network_id)
    while await _iptables("-C", "INPUT", "-i", bridge, "-j", chain) == 0:
        await _iptables("-D", "INPUT", "-i", bridge, "-j", chain)
    if await _iptables("-L", chain) == 0:
        await _iptables("-F", chain)
        await _iptables("-X", chain)
