"""When members run Spark workers (hub_services.clusters.spark_use): not until Spark wants
the cluster, then on every ready member that is not draining, once."""

from hub_services.clusters.scaling import Capacity, Request
from hub_services.clusters.spark import SparkView, parse_observation
from hub_services.clusters.spark_use import (
    spark_in_use,
    spark_waiting,
    why_in_use,
    worker_at_boot,
    workers_to_start,
)
from hub_services.clusters.state import MemberRecord

GIB = 1024**3


def member(name: str, **kwargs) -> MemberRecord:
    return MemberRecord(name, "10.0.0.2", "2026-01-31T18:00:00+00:00", **kwargs)


def test_a_cluster_nobody_runs_spark_on_is_not_in_spark_use():
    assert why_in_use(SparkView(True)) is None
    assert not spark_in_use(SparkView(True), already=False)
    assert not spark_in_use(SparkView(False), already=False)  # the master did not answer


def test_a_registered_application_or_wanted_executors_put_the_cluster_in_spark_use():
    registered = SparkView(True, registered_applications=2)
    assert why_in_use(registered) == "2 Spark applications registered with the master"
    assert spark_in_use(registered, already=False)
    wanting = SparkView(True, requests=[Request("spark app-1", 3, Capacity(1, GIB))])
    assert why_in_use(wanting) == "Spark applications want 3 executors"
    assert spark_in_use(wanting, already=False)


def test_a_cluster_stays_in_spark_use_after_its_applications_end():
    assert spark_in_use(SparkView(True), already=True)
    assert spark_in_use(SparkView(False), already=True)


def test_the_master_json_counts_waiting_applications_as_registered():
    text = (
        '{"master": {"workers": [], "activeapps": [{"id": "app-1", "state": "WAITING"}]},'
        ' "drivers": []}'
    )
    view = parse_observation(text, Capacity(1, GIB))
    assert view.registered_applications == 1 and spark_in_use(view, already=False)


def test_no_worker_starts_while_the_cluster_is_not_in_spark_use():
    assert workers_to_start(False, [member("m1")], ["m1"]) == []


def test_workers_start_on_ready_members_without_one_that_are_not_draining():
    members = [
        member("m3"),
        member("m1"),
        member("m2", spark_worker=True),
        member("m4", draining=True),
        member("m5"),
    ]
    # m5 has not reported to the manager yet: its turn comes in a later pass
    assert workers_to_start(True, members, ["m1", "m2", "m3", "m4"]) == ["m1", "m3"]


def test_spark_waits_for_workers_while_an_application_is_registered_or_wants_executors():
    assert not spark_waiting(SparkView(True))  # used earlier, nothing registered now
    assert not spark_waiting(SparkView(False, registered_applications=1))  # no answer
    assert spark_waiting(SparkView(True, registered_applications=1))
    assert spark_waiting(SparkView(True, requests=[Request("spark app-1", 1, Capacity(1, GIB))]))


def test_members_start_with_their_worker_only_while_spark_waits_for_workers():
    assert worker_at_boot(in_use=True, waiting=True)
    assert not worker_at_boot(in_use=True, waiting=False)
    assert not worker_at_boot(in_use=False, waiting=True)


def test_no_worker_starts_while_members_boot_unless_an_application_waits():
    members = [
        member("m1", joined=True),
        member("m2"),  # started, not reported yet: boots
        member("m3", waiting_to_start=True),  # waits for room to boot
    ]
    assert workers_to_start(True, members, ["m1"], waiting=False) == []
    assert workers_to_start(True, members, ["m1"], waiting=True) == ["m1"]
    members[2].waiting_to_start = False
    assert workers_to_start(True, members, ["m1", "m2"], waiting=False) == []  # m3 boots
    # all reported (m2 and m3 not yet recorded as joined): the boots are over
    assert workers_to_start(True, members, ["m1", "m2", "m3"], waiting=False) == [
        "m1",
        "m2",
        "m3",
    ]


def test_a_member_that_stopped_reporting_after_joining_does_not_hold_workers_back():
    members = [member("m1", joined=True), member("m2", joined=True)]  # m2 unreachable now
    assert workers_to_start(True, members, ["m1"], waiting=False) == ["m1"]
