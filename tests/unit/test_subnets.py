"""The core's subnet pool names what holds a subnet: a cluster's pool says "cluster", the
swarm's restricted overlays' pool "network" (hub_services/clusters tests the walk itself)."""

import pytest

from benchhub.subnets import SubnetPool, SubnetsExhausted
from hub_services.clusters.addresses import SubnetPool as ClusterSubnetPool


def test_an_exhausted_pool_names_what_it_hands_out_and_the_fix():
    pool = SubnetPool("10.214.0.0/27", 28, quarantine_s=60)
    assert [pool.allocate(k, 0) for k in "ab"] == ["10.214.0.0/28", "10.214.0.16/28"]
    with pytest.raises(SubnetsExhausted, match="for a network: 2 are in use.*larger subnet pool"):
        pool.allocate("c", 0)
    clusters = ClusterSubnetPool("10.231.0.0/26", 26)
    clusters.allocate("x", 0)
    with pytest.raises(SubnetsExhausted, match="for a cluster"):
        clusters.allocate("y", 0)


def test_a_cluster_pool_restored_from_its_state_is_still_a_cluster_pool():
    pool = ClusterSubnetPool("10.231.0.0/24", 26)
    pool.allocate("a", 0)
    again = ClusterSubnetPool.from_dict(pool.to_dict(), "10.231.0.0/24", 26, 900)
    with pytest.raises(ValueError, match="held by cluster 'a'"):
        again.adopt("b", "10.231.0.0/26")
