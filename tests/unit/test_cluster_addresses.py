"""Cluster subnets come back as late as possible: Grid Engine's qmaster remembers address ->
name answers for about ten minutes, so a reused address locks a new member out."""

import pytest

from hub_services.clusters.addresses import (
    SubnetPool,
    SubnetsExhausted,
    manager_address,
    member_addresses,
)

HOUR = 3600.0


def test_clusters_get_subnets_round_robin_so_a_released_one_comes_back_last():
    pool = SubnetPool("10.231.0.0/24", 26, quarantine_s=0)
    assert [pool.allocate(key, 0) for key in "abc"] == [
        "10.231.0.0/26",
        "10.231.0.64/26",
        "10.231.0.128/26",
    ]
    assert pool.release("a", 1) == "10.231.0.0/26"
    assert pool.allocate("d", 2) == "10.231.0.192/26"  # not a's, although it is free
    assert pool.allocate("e", 3) == "10.231.0.0/26"  # only after every other one
    assert pool.allocate("e", 4) == "10.231.0.0/26"  # a key keeps its subnet


def test_a_released_subnet_waits_out_its_quarantine():
    pool = SubnetPool("10.231.0.0/25", 26, quarantine_s=900)
    pool.allocate("a", 0)
    pool.allocate("b", 0)
    pool.release("a", 100)
    with pytest.raises(SubnetsExhausted, match="released less than 900 s ago"):
        pool.allocate("c", 999)
    assert pool.allocate("c", 1000) == "10.231.0.0/26"


def test_subnets_of_other_docker_networks_are_skipped():
    pool = SubnetPool("10.231.0.0/16", 26)
    avoid = ["10.231.0.0/25", "172.17.0.0/16"]
    assert pool.allocate("a", 0, avoid) == "10.231.0.128/26"


def test_the_state_survives_a_restart_and_a_changed_pool_keeps_running_clusters():
    pool = SubnetPool("10.231.0.0/24", 26, quarantine_s=900)
    pool.allocate("a", 0)
    pool.allocate("b", 0)
    pool.release("a", 10)
    again = SubnetPool.from_dict(pool.to_dict(), "10.231.0.0/24", 26, 900)
    assert again.to_dict() == pool.to_dict()
    assert again.allocate("c", 20) == "10.231.0.128/26"
    moved = SubnetPool.from_dict(pool.to_dict(), "10.240.0.0/24", 26, 900)
    assert moved.subnet_of("b") is None and moved.allocate("c", 20) == "10.240.0.0/26"


def test_adopting_finds_the_holder():
    pool = SubnetPool("10.231.0.0/24", 26)
    pool.adopt("a", "10.231.0.64/26")
    assert pool.subnet_of("a") == "10.231.0.64/26"
    with pytest.raises(ValueError, match="held by cluster 'a'"):
        pool.adopt("b", "10.231.0.64/26")
    with pytest.raises(ValueError, match="not a /26 of the pool"):
        pool.adopt("b", "10.9.0.0/26")


@pytest.mark.parametrize(
    ("pool", "length", "quarantine", "message"),
    [
        ("10.231.0.0/33", 26, 0, "not an IPv4 network"),
        ("10.231.0.0/24", 20, 0, "from 24"),
        ("10.231.0.0/24", 26, -1, "0 or more seconds"),
    ],
)
def test_a_bad_pool_is_refused_with_the_fix(pool, length, quarantine, message):
    with pytest.raises(ValueError, match=message):
        SubnetPool(pool, length, quarantine)


def test_members_never_get_the_gateway_or_the_manager_and_freed_addresses_wait():
    assert manager_address("10.231.0.64/26") == "10.231.0.66"
    book = member_addresses("10.231.0.64/26", quarantine_s=HOUR)
    taken = {book.assign(f"m{n}", 0) for n in range(1, 60)}
    assert len(taken) == 59 and not taken & {"10.231.0.65", "10.231.0.66", "10.231.0.127"}
    freed = book.release("m1", 10)
    book.release("m2", 10)
    assert book.assign("m60", 20) != freed and book.assign("m61", HOUR + 10) in taken
    restored = member_addresses("10.231.0.64/26", HOUR, book.to_dict())
    assert restored.holders() == book.holders()
