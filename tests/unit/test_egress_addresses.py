"""Workspace addresses on the egress network: stable, never shared, never reused too soon."""

import ipaddress
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchhub.addresses import AddressBook, AddressesExhausted

QUARANTINE = 900


def test_the_same_workspace_gets_the_same_address_in_any_book():
    first, second = AddressBook("172.30.0.0/22"), AddressBook("172.30.0.0/22")
    keys = [f"user{i}/ws" for i in range(50)]
    assigned = {key: first.assign(key, now=0) for key in keys}
    assert {key: second.assign(key, now=5) for key in keys} == assigned
    assert len(set(assigned.values())) == len(keys)
    assert first.assign("user7/ws", now=10) == assigned["user7/ws"]


def test_a_workspace_gets_its_address_back_once_the_quarantine_is_over():
    book = AddressBook("172.30.0.0/24")
    address = book.assign("alice/ws1", now=0)
    assert book.release("alice/ws1", now=100) == address
    assert book.address_of("alice/ws1") is None
    assert book.assign("alice/ws1", now=100 + QUARANTINE) == address


def test_a_released_address_is_not_reused_within_the_quarantine_even_by_its_holder():
    book = AddressBook("10.9.0.0/29", reserved=0)  # 6 assignable addresses
    address = book.assign("alice/ws1", now=0)
    book.release("alice/ws1", now=10)
    again = book.assign("alice/ws1", now=11)
    assert again != address
    others = [book.assign(f"k{i}", now=12) for i in range(4)]
    assert address not in others
    with pytest.raises(AddressesExhausted):
        book.assign("late", now=10 + QUARANTINE - 0.001)
    assert book.assign("late", now=10 + QUARANTINE) == address


def test_the_network_broadcast_and_reserved_addresses_are_never_assigned():
    book = AddressBook("10.9.0.0/28", reserved=3)
    assert book.capacity == 16 - 2 - 3
    assigned = {book.assign(f"k{i}", now=0) for i in range(book.capacity)}
    expected = {f"10.9.0.{i}" for i in range(4, 15)}
    assert assigned == expected
    with pytest.raises(AddressesExhausted, match="no free address in 10.9.0.0/28.*larger subnet"):
        book.assign("one-too-many", now=0)


def test_exhaustion_says_how_many_are_held_and_in_quarantine():
    book = AddressBook("10.9.0.0/30", reserved=0)
    book.assign("a", now=0)
    book.assign("b", now=0)
    book.release("a", now=50)
    with pytest.raises(AddressesExhausted) as caught:
        book.assign("c", now=60)
    message = str(caught.value)
    assert "1 are held and 1 were released less than 900 s ago" in message
    assert "next frees at 950" in message


def test_releasing_a_workspace_without_an_address_is_fine():
    book = AddressBook("172.30.0.0/24")
    assert book.release("nobody", now=0) is None


def test_state_survives_a_json_round_trip_including_the_quarantine():
    book = AddressBook("172.30.0.0/24", reserved=16, quarantine_s=600)
    for i in range(10):
        book.assign(f"k{i}", now=i)
    quarantined = book.release("k3", now=20)
    data = json.loads(json.dumps(book.to_dict()))
    copy = AddressBook.from_dict(data)
    assert copy.to_dict() == book.to_dict()
    assert copy.holders() == book.holders()
    assert copy.assign("k3", now=30) == book.assign("k3", now=30) != quarantined
    assert data["released"] == {quarantined: 20.0}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"version": 2}, "version 1"),
        ({"held": {"a": "172.30.0.40", "b": "172.30.0.40"}}, "held by both 'a' and 'b'"),
        ({"held": {"a": "172.31.0.40"}}, "not assignable in 172.30.0.0/24"),
        ({"held": {"a": "172.30.0.5"}}, "the first 16 hosts are reserved"),
        ({"held": {"a": "172.30.0.40"}, "released": {"172.30.0.40": 1.0}}, "held and in quar"),
        ({"released": {"172.30.0.41": "yesterday"}}, "finite number of seconds"),
        ({"subnet": None}, "not an IPv4 network"),
    ],
)
def test_inconsistent_state_is_refused(change, message):
    data = AddressBook("172.30.0.0/24").to_dict() | change
    with pytest.raises(ValueError, match=message):
        AddressBook.from_dict(data)


@pytest.mark.parametrize(
    "args, message",
    [
        (("172.30.0.1/24",), "host bits set"),
        (("172.30.0.0/31",), "too small"),
        (("172.30.0.0/28", 14), "leaves none"),
        (("172.30.0.0/24", -1), "reserved must be"),
        (("172.30.0.0/24", 16, -5), "quarantine_s must be"),
        (("fd00::/64",), "not an IPv4 network"),
    ],
)
def test_an_unusable_subnet_is_refused_with_a_fix(args, message):
    with pytest.raises(ValueError, match=message):
        AddressBook(*args)


def test_adopting_a_running_workspace_records_its_address():
    book = AddressBook("172.30.0.0/24")
    book.adopt("alice/ws1", "172.30.0.77", now=0)
    assert book.assign("alice/ws1", now=1) == "172.30.0.77"
    with pytest.raises(ValueError, match="held by workspace 'alice/ws1'"):
        book.adopt("bob/ws1", "172.30.0.77", now=2)
    with pytest.raises(ValueError, match="reserved"):
        book.adopt("bob/ws1", "172.30.0.3", now=2)
    book.adopt("alice/ws1", "172.30.0.78", now=3)
    assert book.to_dict()["released"] == {"172.30.0.77": 3.0}


def test_bad_keys_and_times_are_refused():
    book = AddressBook("172.30.0.0/24")
    with pytest.raises(ValueError, match="non-empty text"):
        book.assign("", now=0)
    with pytest.raises(ValueError, match="finite number"):
        book.assign("k", now=float("nan"))


# --- property: random assign/release sequences with a moving clock ---------------------------

operations = st.lists(
    st.tuples(
        st.sampled_from(["assign", "release"]),
        st.integers(min_value=0, max_value=9),  # workspace number
        st.floats(min_value=0, max_value=400, allow_nan=False),  # seconds since the last step
    ),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(operations, st.integers(min_value=0, max_value=3))
def test_no_address_is_shared_or_reassigned_within_the_quarantine(steps, reserved):
    book = AddressBook("10.9.0.0/29", reserved=reserved, quarantine_s=QUARANTINE)
    network = ipaddress.IPv4Network("10.9.0.0/29")
    assignable = {str(a) for a in list(network.hosts())[reserved:]}
    holder: dict[str, str] = {}  # address -> key, the model
    released_at: dict[str, float] = {}  # address -> last release
    now = 1_700_000_000.0
    for action, number, elapsed in steps:
        now += elapsed
        key = f"user{number}/ws"
        if action == "release":
            address = book.release(key, now)
            if address is not None:
                assert holder.pop(address) == key
                released_at[address] = now
            continue
        current = next((a for a, k in holder.items() if k == key), None)
        quarantined = {a for a, t in released_at.items() if now - t < QUARANTINE}
        try:
            address = book.assign(key, now)
        except AddressesExhausted:
            assert current is None
            assert assignable <= set(holder) | quarantined
            continue
        assert address in assignable
        if current is not None:
            assert address == current
            continue
        assert address not in holder, "an address is held by two workspaces"
        assert address not in quarantined, "an address was reassigned within its quarantine"
        holder[address] = key
        assert AddressBook.from_dict(book.to_dict()).holders() == book.holders()
    assert book.holders() == {k: a for a, k in sorted(holder.items(), key=lambda item: item[1])}
