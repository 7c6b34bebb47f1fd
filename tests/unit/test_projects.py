"""The project rule as a table: who (site admin, project owner, administrator, contributor,
viewer, non-member) may do what (see, create, start, stop, enter, edit, delete) with whose
workspace (their own, another's that allows it, another's that does not), under which
permission floors; how ``/data/project`` is mounted; and how settings parse and round-trip
through a JupyterHub group's properties."""

from __future__ import annotations

import itertools

import pytest

from benchhub.projects import (
    INSUFFICIENT,
    NEWCOMER,
    PROPERTY,
    Act,
    DataLevel,
    Membership,
    Person,
    Project,
    Role,
    WorkspacePermissions,
    decide,
    may_manage,
    parse_membership,
    parse_permissions,
    personal_project,
    project_data_mode,
)

FULL = dict(upload=True, download=True)
PROJECT = Project(
    name="lab",
    owner="olga",
    storage_gb=5,
    members={
        "ada": Membership(Role.ADMINISTRATOR, DataLevel.VIEWER, upload=False, download=False),
        "carl": Membership(Role.CONTRIBUTOR, DataLevel.CONTRIBUTOR, **FULL),
        "carla": Membership(Role.CONTRIBUTOR, DataLevel.VIEWER, upload=False, download=True),
        "vera": Membership(Role.VIEWER, DataLevel.CONTRIBUTOR, **FULL),
        "dora": Membership(Role.CONTRIBUTOR, DataLevel.DATA_PROVIDER, **FULL),
        "nina": Membership(Role.CONTRIBUTOR, DataLevel.NO_ACCESS, **FULL),
    },
)
SITE_ADMIN = Person("sam", site_admin=True)
ACTS = list(Act)
FLOOR_ACTS = {Act.CREATE, Act.START, Act.ENTER}
CONSENT_ACTS = {Act.START, Act.STOP, Act.ENTER}
# whose workspace: (owner, permissions) for a person named "me"
HIGHEST = WorkspacePermissions(upload=True, download=True, project_data=DataLevel.CONTRIBUTOR)
LOWEST = WorkspacePermissions(upload=False, download=False, project_data=DataLevel.NO_ACCESS)


def whose(person: str, kind: str, floor: WorkspacePermissions):
    """(owner, permissions) of the workspace for ``kind``: own, others_allow, others_deny."""
    if kind == "own":
        return person, floor
    consent = kind == "others_allow"
    return "carl2", WorkspacePermissions(**{**vars(floor), "others_may_use": consent})


KINDS = ["own", "others_allow", "others_deny"]


@pytest.mark.parametrize(
    "person,act,kind,floor",
    list(
        itertools.product(
            [SITE_ADMIN, Person("olga"), Person("ada")], ACTS, KINDS, [HIGHEST, LOWEST]
        )
    ),
    ids=str,
)
def test_site_admins_owners_and_administrators_may_do_anything_and_are_logged_on_others(
    person, act, kind, floor
):
    owner, permissions = whose(person.name, kind, floor)
    verdict = decide(person, act, PROJECT, owner, permissions)
    assert verdict.allowed and verdict.reason == ""
    assert verdict.logged == (kind != "own")


@pytest.mark.parametrize("act,kind", list(itertools.product(ACTS, KINDS)), ids=str)
def test_a_non_member_may_do_nothing_and_is_told_they_are_not_a_member(act, kind):
    owner, permissions = whose("nick", kind, LOWEST)
    verdict = decide(Person("nick"), act, PROJECT, owner, permissions)
    assert not verdict and verdict.reason == "nick is not a member of project lab"
    assert not verdict.logged


@pytest.mark.parametrize("act,kind", list(itertools.product(ACTS, KINDS)), ids=str)
def test_a_viewer_only_sees_whatever_their_rights(act, kind):
    owner, permissions = whose("vera", kind, LOWEST)
    verdict = decide(Person("vera"), act, PROJECT, owner, permissions)
    if act == Act.SEE:
        assert verdict and not verdict.logged
    else:
        assert not verdict
        assert verdict.reason == (
            f"to {act.value} a workspace of project lab you need the project role "
            "contributor or higher; you are viewer"
        )


@pytest.mark.parametrize("act,kind", list(itertools.product(ACTS, KINDS)), ids=str)
def test_a_contributor_acts_on_their_own_and_uses_others_only_with_consent(act, kind):
    owner, permissions = whose("carl", kind, HIGHEST)
    verdict = decide(Person("carl"), act, PROJECT, owner, permissions)
    assert not verdict.logged
    if kind == "own" or act == Act.SEE:
        assert verdict, verdict.reason
    elif act in CONSENT_ACTS:
        assert bool(verdict) == (kind == "others_allow")
        if not verdict:
            assert "does not allow other project members" in verdict.reason
            assert "others_may_use" in verdict.reason
    else:  # edit, delete, create on someone else's
        assert not verdict
        assert verdict.reason == (
            f"to {act.value} carl2's workspace you need the project role administrator; "
            "you are contributor"
        )


@pytest.mark.parametrize("act,kind", list(itertools.product(ACTS, KINDS)), ids=str)
def test_a_contributor_below_the_workspaces_permissions_is_refused_with_icas_words(act, kind):
    # carla: no upload rights, project data level viewer
    owner, permissions = whose("carla", kind, HIGHEST)
    verdict = decide(Person("carla"), act, PROJECT, owner, permissions)
    consented = kind == "own" or (kind == "others_allow" and act in CONSENT_ACTS)
    if act in FLOOR_ACTS and consented:
        assert not verdict
        assert verdict.reason.startswith(INSUFFICIENT)
        assert "upload rights (permissions.upload)" in verdict.reason
        assert "permissions.project_data" in verdict.reason
        assert "download" not in verdict.reason  # she has download rights
    elif act == Act.SEE or consented:
        assert verdict  # stopping, editing, deleting one's own has no floor
    else:
        assert not verdict and INSUFFICIENT not in verdict.reason


@pytest.mark.parametrize(
    "permissions,allowed",
    [
        (WorkspacePermissions(upload=False, project_data=DataLevel.VIEWER), True),
        (WorkspacePermissions(upload=False, project_data=DataLevel.DATA_PROVIDER), True),
        (WorkspacePermissions(upload=False, project_data=DataLevel.CONTRIBUTOR), False),
        (WorkspacePermissions(upload=True, project_data=DataLevel.VIEWER), False),
    ],
    ids=str,
)
def test_meeting_the_floor_exactly_is_enough(permissions, allowed):
    for act in FLOOR_ACTS:
        assert bool(decide(Person("carla"), act, PROJECT, "carla", permissions)) == allowed


def test_create_defaults_to_the_person_as_owner_and_default_permissions():
    # default permissions: upload and download on, data level viewer
    assert decide(Person("carl"), Act.CREATE, PROJECT)
    verdict = decide(Person("carla"), Act.CREATE, PROJECT)
    assert not verdict and "permissions.upload" in verdict.reason


def test_in_a_personal_project_only_its_owner_and_site_admins_may_act():
    mine = personal_project("pia")
    assert mine.personal and mine.label == "personal project of pia"
    for act in ACTS:
        assert decide(Person("pia"), act, mine, "pia", HIGHEST)
        assert decide(SITE_ADMIN, act, mine, "pia", HIGHEST).logged
        refused = decide(Person("carl"), act, mine, "pia", HIGHEST)
        assert not refused and refused.reason == "carl is not a member of personal project of pia"


@pytest.mark.parametrize(
    "person,allowed,reason",
    [
        (SITE_ADMIN, True, ""),
        (Person("olga"), True, ""),
        (Person("ada"), True, ""),
        (
            Person("carl"),
            False,
            "to manage the members of project lab you need the project role administrator; "
            "you are contributor",
        ),
        (
            Person("vera"),
            False,
            "to manage the members of project lab you need the project role administrator; "
            "you are viewer",
        ),
        (Person("nick"), False, "nick is not a member of project lab"),
    ],
    ids=str,
)
def test_only_owners_administrators_and_site_admins_manage_members(person, allowed, reason):
    verdict = may_manage(person, PROJECT)
    assert bool(verdict) == allowed and verdict.reason == reason


# ---- /data/project ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "owner,level,mode",
    [
        ("olga", DataLevel.CONTRIBUTOR, "read-write"),  # the owner writes
        ("olga", DataLevel.VIEWER, "read-only"),  # ... unless the workspace says read
        ("olga", DataLevel.DATA_PROVIDER, "read-only"),
        ("olga", DataLevel.NO_ACCESS, "none"),
        ("ada", DataLevel.CONTRIBUTOR, "read-write"),  # administrators count as contributors
        ("carl", DataLevel.CONTRIBUTOR, "read-write"),
        ("carl", DataLevel.VIEWER, "read-only"),
        ("carla", DataLevel.CONTRIBUTOR, "read-only"),  # her own level is viewer
        ("dora", DataLevel.CONTRIBUTOR, "read-only"),  # data provider reads
        ("nina", DataLevel.CONTRIBUTOR, "none"),  # no access: no mount at all
        ("vera", DataLevel.CONTRIBUTOR, "read-write"),
        ("nick", DataLevel.CONTRIBUTOR, "none"),  # not a member
    ],
    ids=str,
)
def test_project_data_is_mounted_by_the_lower_of_owner_and_workspace_levels(owner, level, mode):
    permissions = WorkspacePermissions(project_data=level)
    assert project_data_mode(PROJECT, owner, permissions) == mode


def test_no_project_data_without_storage_or_in_a_personal_project():
    highest = WorkspacePermissions(project_data=DataLevel.CONTRIBUTOR)
    bare = Project(name="bare", owner="olga", members=PROJECT.members)
    assert project_data_mode(bare, "olga", highest) == "none"
    assert project_data_mode(personal_project("olga"), "olga", highest) == "none"


# ---- parsing ----------------------------------------------------------------------------------


def test_permissions_parse_with_defaults_and_round_trip():
    default, problems = parse_permissions(None)
    assert default == WorkspacePermissions() and problems == []
    assert (default.upload, default.download, default.project_data) == (
        True,
        True,
        DataLevel.VIEWER,
    )
    raw = {"upload": False, "project_data": "data_provider", "others_may_use": True}
    parsed, problems = parse_permissions(raw)
    assert problems == []
    assert parse_permissions(parsed.as_json()) == (parsed, [])
    assert parsed.as_json() == {
        "upload": False,
        "download": True,
        "project_data": "data_provider",
        "others_may_use": True,
    }


@pytest.mark.parametrize(
    "raw,field,words",
    [
        ("all", "permissions", "must be a JSON object"),
        ({"colour": 1}, "permissions", "unknown keys colour; allowed: upload, download"),
        ({"upload": "yes"}, "permissions.upload", "must be true or false, got 'yes'"),
        ({"download": 1}, "permissions.download", "must be true or false"),
        ({"others_may_use": None}, "permissions.others_may_use", "must be true or false"),
        (
            {"project_data": "owner"},
            "permissions.project_data",
            "must be one of no_access, data_provider, viewer, contributor; got 'owner'",
        ),
        ({"project_data": ["viewer"]}, "permissions.project_data", "must be one of"),
    ],
    ids=str,
)
def test_bad_permissions_name_the_field_and_what_is_allowed(raw, field, words):
    parsed, problems = parse_permissions(raw)
    assert [f for f, _ in problems] == [field]
    assert words in problems[0][1]
    assert isinstance(parsed, WorkspacePermissions)


@pytest.mark.parametrize(
    "raw,field,words",
    [
        (None, "member", "no settings"),
        ([], "member", "must be a JSON object"),
        ({"rank": 1}, "member", "unknown keys rank"),
        ({"role": "owner"}, "member.role", "viewer, contributor, administrator"),
        ({"data_level": 3}, "member.data_level", "must be one of"),
        ({"upload": "no"}, "member.upload", "must be true or false"),
        ({"download": 0}, "member.download", "must be true or false"),
    ],
    ids=str,
)
def test_bad_membership_names_the_field_and_what_is_allowed(raw, field, words):
    standing, problems = parse_membership(raw)
    assert [f for f, _ in problems] == [field] and words in problems[0][1]
    assert standing == NEWCOMER or field != "member"


def test_a_membership_parses_with_newcomer_defaults_and_round_trips():
    standing, problems = parse_membership({"role": "contributor"})
    assert problems == []
    assert standing == Membership(Role.CONTRIBUTOR, DataLevel.VIEWER, False, False)
    assert parse_membership(standing.as_json()) == (standing, [])


# ---- the group's properties ---------------------------------------------------------------


def test_a_project_round_trips_through_its_groups_properties_keeping_other_keys():
    properties = PROJECT.to_properties({"colour": "blue"})
    assert properties["colour"] == "blue"
    again = Project.from_group("lab", properties, list(PROJECT.members))
    assert again == PROJECT


def test_group_users_without_settings_are_newcomers_and_newcomers_are_not_stored():
    project = Project.from_group("lab", PROJECT.to_properties(), [*PROJECT.members, "neil"])
    assert project.standing("neil") == NEWCOMER
    assert "neil" not in project.to_properties()[PROPERTY]["members"]


def test_settings_of_users_no_longer_in_the_group_grant_nothing():
    project = Project.from_group("lab", PROJECT.to_properties(), ["carl"])
    assert project.standing("ada") is None and project.standing("carl") is not None
    assert project.standing("olga").role == Role.ADMINISTRATOR  # the owner, always


@pytest.mark.parametrize(
    "settings",
    [
        None,
        "lab",
        {"owner": 7, "storage_gb": "5", "members": []},
        {"owner": "olga", "storage_gb": True, "members": {"carl": {"role": "god"}}},
        {"owner": "olga", "storage_gb": -3, "members": {"carl": "administrator"}},
    ],
    ids=str,
)
def test_hand_edited_settings_never_grant_more_than_a_newcomer(settings):
    project = Project.from_group("lab", {PROPERTY: settings}, ["carl"])
    assert project.standing("carl") == NEWCOMER
    assert project.storage_gb == 0  # JSON true is no size
    assert project.owner in ("", "olga")


def test_a_workspaces_default_permissions_can_be_capped_by_a_standing():
    carla = PROJECT.members["carla"]
    capped = HIGHEST.capped_by(carla)
    assert capped.missing(carla) == []
    assert (capped.upload, capped.download, capped.project_data) == (
        False,
        True,
        DataLevel.VIEWER,
    )
