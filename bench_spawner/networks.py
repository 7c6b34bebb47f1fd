"""Docker networks for workspaces: one per access mode, built by pure functions.

``open`` is an ordinary bridge (NAT to the outside). ``restricted`` is ``--internal`` (Docker
drops its forwarded traffic and adds no NAT) with a subnet BenchHub owns, so that restricted
workspaces get fixed addresses the egress proxy can key its lists on; the gateway is the first
address and the proxy the second.
"""

from __future__ import annotations

import ipaddress

import docker

NETWORK_LABEL = "org.benchhub.network"


def network_create_kwargs(name: str, access_mode: str, subnet: str | None, mtu: int) -> dict:
    """Keyword arguments for ``docker.APIClient.create_network``."""
    ipam = None
    if subnet:
        net = ipaddress.ip_network(subnet)
        pool = docker.types.IPAMPool(subnet=str(net), gateway=str(net.network_address + 1))
        ipam = docker.types.IPAMConfig(pool_configs=[pool])
    return dict(
        name=name,
        driver="bridge",
        check_duplicate=True,
        internal=access_mode == "restricted",
        ipam=ipam,
        options={"com.docker.network.driver.mtu": str(mtu)},
        labels={NETWORK_LABEL: access_mode},
    )


def host_mtu() -> int:
    """MTU of the interface holding the default route (1500 when unknown)."""
    try:
        with open("/proc/net/route") as f:
            for line in f.readlines()[1:]:
                iface, dest = line.split()[:2]
                if dest == "00000000":
                    with open(f"/sys/class/net/{iface}/mtu") as m:
                        return int(m.read())
    except OSError:
        pass
    return 1500
