"""The storage admission decision: what fits, what a refusal says, and that growth is all that
is checked (benchhub.storage_admission, pure)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchhub.storage_admission import (
    GIB,
    AdmissionPolicy,
    Allocations,
    FilesystemFacts,
    Quota,
    StorageRequest,
    decide,
    derived_capacity,
    format_gb,
    parse_quota,
)

# a 100 GB filesystem with 60 GB available, BenchHub's images occupying 10 GB of it
FS = FilesystemFacts(size_bytes=100 * GIB, available_bytes=60 * GIB, ours_used_bytes=10 * GIB)
NO_RESERVE = AdmissionPolicy(reserve_fraction=0)  # capacity 70 GB


def data(gb, current_gb=0, owner="alice") -> StorageRequest:
    return StorageRequest("storage_gb", owner, int(gb * GIB), current_bytes=int(current_gb * GIB))


def allocated(total_gb, owner_gb=0) -> Allocations:
    return Allocations(int(total_gb * GIB), int(owner_gb * GIB))


def test_derived_capacity_is_what_is_available_plus_our_images_less_the_reserve():
    assert derived_capacity(FS, 0) == 70 * GIB
    assert derived_capacity(FS, 0.05) == 65 * GIB
    full = FilesystemFacts(100 * GIB, 1 * GIB, 0)
    assert derived_capacity(full, 0.05) == 0  # never below nothing


def test_a_volume_that_fits_is_admitted_and_exactly_the_free_space_fits():
    verdict = decide(NO_RESERVE, FS, allocated(40), data(30))
    assert verdict.admitted and verdict.message == ""
    assert verdict.free_bytes == 30 * GIB and verdict.capacity_bytes == 70 * GIB


def test_more_than_is_free_is_refused_saying_what_is_free_and_the_most_to_choose():
    verdict = decide(NO_RESERVE, FS, allocated(40), data(1000))
    assert not verdict.admitted
    assert verdict.message == (
        "1000 GB of /data does not fit: only 30 GB is free for workspace and cluster storage "
        "on this host (40 GB of 70 GB allocated); choose at most 30 GB"
    )


def test_one_byte_more_than_is_free_is_refused():
    request = StorageRequest("storage_gb", "alice", 30 * GIB + 1)
    assert not decide(NO_RESERVE, FS, allocated(40), request).admitted


def test_the_quota_refuses_what_the_host_could_hold_and_says_what_is_left():
    policy = AdmissionPolicy(reserve_fraction=0, quota=Quota(size_bytes=20 * GIB))
    verdict = decide(policy, FS, allocated(40, owner_gb=15), data(10))
    assert not verdict.admitted
    assert verdict.message == (
        "10 GB of /data does not fit: alice's storage quota is 20 GB, of which 15 GB "
        "is allocated, so 5 GB is left; choose at most 5 GB"
    )
    assert verdict.quota_left_bytes == 5 * GIB and verdict.room_bytes == 5 * GIB


def test_when_both_limits_refuse_both_are_named_and_the_offer_is_the_smaller():
    policy = AdmissionPolicy(reserve_fraction=0, quota=Quota(share=0.5))  # 35 GB each
    verdict = decide(policy, FS, allocated(60, owner_gb=28), data(20))
    assert "only 10 GB is free" in verdict.message
    assert "alice's storage quota is 50% of the storage (35 GB)" in verdict.message
    assert "so 7 GB is left" in verdict.message
    assert verdict.message.endswith("choose at most 7 GB")


def test_growing_needs_room_only_for_the_difference_and_says_so():
    verdict = decide(NO_RESERVE, FS, allocated(65), data(10, current_gb=5))
    assert verdict.admitted  # 5 GB more, 5 GB free
    refused = decide(NO_RESERVE, FS, allocated(65), data(20, current_gb=5))
    assert refused.message.startswith("growing /data from 5 GB to 20 GB (15 GB more) does not fit")
    assert refused.message.endswith("choose at most 10 GB")  # the current 5 and the free 5


def test_keeping_the_size_is_admitted_even_when_the_host_is_over_its_limits():
    policy = AdmissionPolicy(reserve_fraction=0, quota=Quota(size_bytes=1 * GIB))
    assert decide(policy, FS, allocated(500, owner_gb=400), data(100, current_gb=100)).admitted


def test_growth_with_nothing_left_says_to_keep_the_size():
    verdict = decide(NO_RESERVE, FS, allocated(70), data(20, current_gb=10))
    assert verdict.message.endswith(
        "keep 10 GB or free space first (delete a workspace you no longer need)"
    )


def test_a_new_volume_with_nothing_left_says_nothing_more_can_be_allocated():
    verdict = decide(NO_RESERVE, FS, allocated(70), data(1))
    assert "only 0 GB is free" in verdict.message
    assert "nothing more can be allocated now" in verdict.message


def test_a_stated_capacity_replaces_what_the_filesystem_says():
    policy = AdmissionPolicy(capacity_bytes=500 * GIB)
    assert decide(policy, FS, allocated(300), data(200)).admitted
    assert not decide(policy, FS, allocated(300), data(201)).admitted


def test_overcommit_multiplies_the_capacity_and_the_message_shows_the_admitted_total():
    policy = AdmissionPolicy(reserve_fraction=0, overcommit=2)  # 140 GB may be allocated
    assert decide(policy, FS, allocated(100), data(40)).admitted
    verdict = decide(policy, FS, allocated(100), data(41))
    assert "only 40 GB is free" in verdict.message
    assert "(100 GB of 140 GB allocated)" in verdict.message


def test_a_share_quota_is_a_share_of_the_admitted_total():
    policy = AdmissionPolicy(reserve_fraction=0, overcommit=2, quota=Quota(share=0.25))
    assert decide(policy, FS, allocated(0), data(35)).admitted  # 25% of 140 GB
    assert not decide(policy, FS, allocated(0), data(36)).admitted


def test_scratch_for_many_members_counts_all_of_them_and_offers_a_size_per_member():
    request = StorageRequest("scratch_gb", "alice", 20 * GIB, units=4, what="/scratch")
    verdict = decide(NO_RESERVE, FS, allocated(40), request)
    assert verdict.message == (
        "4 x 20 GB of /scratch (80 GB in all) does not fit: only 30 GB is free for workspace "
        "and cluster storage on this host (40 GB of 70 GB allocated); choose at most 7 GB per "
        "member, or fewer members (1 fit at 20 GB)"
    )
    fits = StorageRequest("scratch_gb", "alice", 7 * GIB, units=4, what="/scratch")
    assert decide(NO_RESERVE, FS, allocated(40), fits).admitted


def test_free_space_is_never_overstated_in_a_message():
    fs = FilesystemFacts(100 * GIB, int(10.99 * GIB), 0)
    verdict = decide(NO_RESERVE, fs, allocated(0), data(11))
    assert "only 10.9 GB is free" in verdict.message and verdict.message.endswith("at most 10 GB")


@pytest.mark.parametrize(
    ("size", "down", "text"),
    [
        (GIB, False, "1 GB"),
        (int(1.5 * GIB), False, "1.5 GB"),
        (int(10.99 * GIB), True, "10.9 GB"),
        (int(10.99 * GIB), False, "11 GB"),
        (0, True, "0 GB"),
    ],
)
def test_sizes_are_shown_in_gb_with_one_decimal_at_most(size, down, text):
    assert format_gb(size, down) == text


@pytest.mark.parametrize(
    ("text", "quota"),
    [
        ("", None),
        ("  ", None),
        ("200", Quota(size_bytes=200 * GIB)),
        ("0.5", Quota(size_bytes=GIB // 2)),
        ("50%", Quota(share=0.5)),
        ("100%", Quota(share=1.0)),
    ],
)
def test_a_quota_is_gb_a_share_or_nothing(text, quota):
    assert parse_quota(text) == quota


@pytest.mark.parametrize("text", ["lots", "0", "-5", "150%", "0%", "nan", "5 GB"])
def test_a_bad_quota_says_how_to_write_one(text):
    with pytest.raises(ValueError, match="write a size in GB such as '200'"):
        parse_quota(text)


sizes = st.integers(min_value=0, max_value=200 * GIB)


@given(
    available=sizes,
    used=sizes,
    total=sizes,
    owner=sizes,
    current=sizes,
    wanted=sizes,
    quota=st.one_of(st.none(), sizes),
    overcommit=st.sampled_from([0.5, 1.0, 1.5, 3.0]),
)
def test_admitted_exactly_when_the_growth_fits_both_the_free_space_and_the_quota(
    available, used, total, owner, current, wanted, quota, overcommit
):
    fs = FilesystemFacts(400 * GIB, available, used)
    policy = AdmissionPolicy(
        reserve_fraction=0.05,
        overcommit=overcommit,
        quota=None if quota is None else Quota(size_bytes=quota),
    )
    request = StorageRequest("storage_gb", "alice", wanted, current_bytes=current)
    verdict = decide(policy, fs, Allocations(total, owner), request)
    admitted_total = int(derived_capacity(fs, 0.05) * overcommit)
    room = max(0, admitted_total - total)
    if quota is not None:
        room = min(room, max(0, quota - owner))
    growth = max(0, wanted - current)
    assert verdict.admitted == (growth <= room)
    assert verdict.admitted == (verdict.message == "")
    if not verdict.admitted:
        assert verdict.message.count("does not fit") == 1
