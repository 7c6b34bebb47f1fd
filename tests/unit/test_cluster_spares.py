"""Spare member names (:mod:`hub_services.clusters.spares`): how many a cluster keeps, when
they may be registered, and how a scale-up takes them."""

from hub_services.clusters import spares
from hub_services.clusters.state import ClusterRecord, MemberRecord


def record(**members: dict) -> ClusterRecord:
    rec = ClusterRecord(
        user="alice",
        workspace="lab",
        cluster_id="k3x9q2",
        settings={"type": "dynamic"},
        subnet="10.231.0.64/26",
        workspace_container="ws",
        workspace_address="10.231.0.80",
        internal=False,
        model={},
        data_dir="/nowhere",
        created_at="2026-12-01T00:00:00+00:00",
        status="running",
    )
    rec.members = {n: MemberRecord(n, "10.231.0.70", "t", **kw) for n, kw in members.items()}
    return rec


def test_a_cluster_that_can_scale_up_keeps_the_spares_asked_for_at_most_its_maximum():
    assert spares.spares_wanted(0, 10, 5) == 5
    assert spares.spares_wanted(1, 3, 5) == 3


def test_by_default_a_cluster_keeps_two_start_windows_of_spares_at_most_its_maximum():
    assert spares.default_spares(5) == 10  # a burst's first two rounds, on a 2-core host
    assert spares.default_spares(1) == 2
    assert spares.default_spares(0) == 2  # a window is at least one member
    assert spares.spares_wanted(0, 20, spares.default_spares(5)) == 10
    assert spares.spares_wanted(0, 3, spares.default_spares(5)) == 3


def test_a_static_cluster_or_a_setting_of_zero_keeps_no_spares():
    assert spares.spares_wanted(4, 4, 5) == 0
    assert spares.spares_wanted(0, 10, 0) == 0


def test_spares_are_registered_only_while_no_member_waits_starts_or_boots():
    assert spares.quiet(record())
    assert spares.quiet(record(m1={"joined": True}))
    assert not spares.quiet(record(m1={"joined": True}), starting={"m2"})
    assert not spares.quiet(record(m1={"waiting_to_start": True}))
    assert not spares.quiet(record(m1={"joined": True}, m2={}))  # m2 boots


def test_spares_take_the_next_member_names_and_hold_an_address_each():
    rec = record()
    rec.next_member = 4
    book = {}
    added = spares.reserve(rec, 2, lambda i: f"m{i}", lambda n: book.setdefault(n, f"10.0.0.{n}"))
    assert added == ["m4", "m5"] and rec.next_member == 6
    assert rec.spares == {"m4": "10.0.0.m4", "m5": "10.0.0.m5"}
    assert spares.reserve(rec, 2, lambda i: f"m{i}", book.__getitem__) == []  # full already


def test_spares_reserved_until_addresses_run_out_are_kept():
    rec = record()

    def assign(name):
        if name == "m2":
            raise RuntimeError("no free address")
        return "10.0.0.1"

    try:
        spares.reserve(rec, 3, lambda i: f"m{i}", assign)
    except RuntimeError:
        pass
    assert rec.spares == {"m1": "10.0.0.1"} and rec.next_member == 2


def test_a_scale_up_takes_the_oldest_spares_first_and_no_more_than_it_needs():
    rec = record()
    rec.spares = {"m1": "a1", "m2": "a2", "m3": "a3"}
    assert spares.take(rec, 2) == [("m1", "a1"), ("m2", "a2")]
    assert rec.spares == {"m3": "a3"}
    assert spares.take(rec, 5) == [("m3", "a3")] and rec.spares == {}
    assert spares.take(rec, 1) == []
