"""The sharing rule (a share is the owner's consent, not a right) and who is in a workspace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bench_spawner.presence import present
from bench_spawner.share_rule import share_consent, share_decision
from benchhub.projects import (
    INSUFFICIENT,
    DataLevel,
    Membership,
    Person,
    Project,
    Role,
    WorkspacePermissions,
    personal_project,
)

FULL = Membership(Role.CONTRIBUTOR, DataLevel.CONTRIBUTOR, upload=True, download=True)
LAB = Project(
    name="lab",
    owner="olga",
    members={
        "ann": FULL,  # the workspace's owner, a contributor
        "carl": FULL,
        "vera": Membership(Role.VIEWER, DataLevel.VIEWER, upload=True, download=True),
        "dora": Membership(Role.CONTRIBUTOR, DataLevel.VIEWER, upload=True, download=False),
        "pam": Membership(Role.ADMINISTRATOR, DataLevel.VIEWER, upload=False, download=False),
    },
)
PRIVATE = WorkspacePermissions(others_may_use=False)


def test_a_share_is_consent_like_others_may_use_and_nothing_else():
    permissions = WorkspacePermissions(upload=False, project_data=DataLevel.CONTRIBUTOR)
    assert share_consent(permissions) == WorkspacePermissions(
        upload=False, project_data=DataLevel.CONTRIBUTOR, others_may_use=True
    )


def test_a_contributor_meeting_the_permissions_may_use_a_share_of_a_private_workspace():
    assert share_decision(Person("carl"), LAB, "ann", PRIVATE)


@pytest.mark.parametrize(
    "who, why",
    [
        ("zed", "zed is not a member of project lab"),
        ("vera", "you need the project role contributor or higher; you are viewer"),
        ("dora", f"{INSUFFICIENT}: missing download rights"),
    ],
)
def test_a_share_does_not_let_in_a_non_member_a_viewer_or_someone_below_the_permissions(who, why):
    decision = share_decision(Person(who), LAB, "ann", PRIVATE)
    assert not decision and why in decision.reason


def test_a_project_data_level_above_the_collaborators_is_refused_naming_it():
    permissions = WorkspacePermissions(project_data=DataLevel.CONTRIBUTOR)
    dora_up = Project(
        "lab", "olga", {"dora": Membership(Role.CONTRIBUTOR, DataLevel.VIEWER, True, True)}
    )
    decision = share_decision(Person("dora"), dora_up, "ann", permissions)
    assert not decision and "project data level contributor" in decision.reason
    assert "you have viewer" in decision.reason


@pytest.mark.parametrize("who, site_admin", [("pam", False), ("olga", False), ("root", True)])
def test_admins_may_use_a_share_and_their_entry_is_logged(who, site_admin):
    decision = share_decision(Person(who, site_admin=site_admin), LAB, "ann", PRIVATE)
    assert decision and decision.logged


def test_nobody_else_may_use_a_share_of_a_workspace_in_a_personal_project():
    decision = share_decision(Person("carl"), personal_project("ann"), "ann", PRIVATE)
    assert not decision and "not a member of personal project of ann" in decision.reason


NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)


def at(minutes_ago: float) -> datetime:
    return NOW - timedelta(minutes=minutes_ago)


def test_who_is_in_lists_each_person_once_with_their_latest_use_most_recent_first():
    seen = [("carl", at(10)), ("ann", at(1)), ("carl", at(2)), ("pam", at(5))]
    visits = present(seen, "ann", NOW, WINDOW, is_admin=lambda name: name == "pam")
    assert [(v.name, v.who, v.last_seen) for v in visits] == [
        ("ann", "owner", at(1)),
        ("carl", "collaborator", at(2)),
        ("pam", "admin", at(5)),
    ]


def test_who_is_in_leaves_out_those_not_seen_within_the_window_or_never():
    seen = [("carl", at(15.01)), ("dora", None), ("ann", at(15))]
    assert [v.name for v in present(seen, "ann", NOW, WINDOW, lambda _: False)] == ["ann"]


def test_who_is_in_as_json_gives_utc_times_with_z():
    (visit,) = present([("ann", at(0))], "ann", NOW, WINDOW, lambda _: False)
    assert visit.as_json() == {"name": "ann", "who": "owner", "last_seen": "2026-11-30T12:00:00Z"}
