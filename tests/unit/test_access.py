"""The one access rule (benchhub.access): who may see and change a user's workspaces.

Every service asks it (lifecycle schedules and activity, checkpoints, clusters, egress refusals).
Callers are written as HubOAuth gives them. Two answers differ from the copies the rule replaced:
a token with only ``admin:users`` no longer sees workspaces (it governs users, not their servers,
in JupyterHub too; the lifecycle and checkpoints services counted it), and a token with
``read:servers`` now sees a user's checkpoints (the checkpoints service wanted admin scopes
even to read). A service named like a user is no longer that user (egress compared names only).
"""

import pytest

from benchhub.access import CHANGE, SEE, may, may_for_everyone, permissions


def person(name, admin=False, *scopes):
    return {"kind": "user", "name": name, "admin": admin, "scopes": list(scopes)}


def service(name, *scopes, admin=False):
    return {"kind": "service", "name": name, "admin": admin, "scopes": list(scopes)}


# fmt: off
TABLE = [
    # caller                                                  workspace  see    change
    (person("alice"),                                         None,      True,  True),
    (person("alice", False, "servers!user=bob"),              None,      True,  True),
    (person("root", True),                                    None,      True,  True),
    (person("bob"),                                           None,      False, False),
    (person("bob", False, "servers!user=bob", "access:services"), None,  False, False),
    (person("bob", False, "servers!user=alice"),              None,      True,  True),
    (person("bob", False, "admin:servers!user=alice"),        None,      True,  True),
    (person("bob", False, "read:servers!user=alice"),         None,      True,  False),
    (person("bob", False, "servers!user=alice2"),             None,      False, False),
    (person("bob", False, "servers!server=alice/lab"),        "lab",     True,  True),
    (person("bob", False, "servers!server=alice/lab"),        "other",   False, False),
    (person("bob", False, "servers!server=alice/lab"),        None,      False, False),
    (person("bob", False, "read:servers!group=team"),         None,      False, False),
    (person("bob", False, "start:servers", "delete:servers"), None,      False, False),
    (service("monitor", "read:servers"),                      None,      True,  False),
    (service("ops", "admin:servers"),                         None,      True,  True),
    (service("lifecycle", "servers", "read:users"),           "lab",     True,  True),
    (service("users-admin", "admin:users", "read:users"),     None,      False, False),
    (service("alice"),                                        None,      False, False),
    (service("legacy", admin=True),                           None,      False, False),
    ({"name": "alice", "scopes": []},                         None,      False, False),
]
# fmt: on


# JupyterHub's scope check says so about a group filter, which it cannot resolve without the hub
@pytest.mark.filterwarnings("ignore:.*combinations of filters present:UserWarning")
@pytest.mark.parametrize(("caller", "workspace", "see", "change"), TABLE)
def test_the_owner_admins_and_tokens_whose_scopes_cover_the_user_may_others_may_not(
    caller, workspace, see, change
):
    assert may(caller, SEE, "alice", workspace) is see
    assert may(caller, CHANGE, "alice", workspace) is change
    assert permissions(caller, "alice", workspace) == {
        a for a, ok in ((SEE, see), (CHANGE, change)) if ok
    }


# fmt: off
EVERYONE = [
    # caller                                         see    change
    (person("root", True),                           True,  True),
    (service("monitor", "read:servers"),             True,  False),
    (service("ops", "admin:servers"),                True,  True),
    (person("alice"),                                False, False),
    (person("bob", False, "servers!user=alice"),     False, False),
    (service("legacy", admin=True),                  False, False),
]
# fmt: on


@pytest.mark.parametrize(("caller", "see", "change"), EVERYONE)
def test_only_admins_and_unfiltered_scopes_cover_every_user_at_once(caller, see, change):
    assert may_for_everyone(caller, SEE) is see
    assert may_for_everyone(caller, CHANGE) is change


@pytest.mark.filterwarnings("ignore:.*combinations of filters present:UserWarning")
def test_changing_implies_seeing_for_every_caller_in_the_table():
    for caller, workspace, _, _ in TABLE:
        if may(caller, CHANGE, "alice", workspace):
            assert may(caller, SEE, "alice", workspace), caller


def member(name, *groups):
    return {"kind": "user", "name": name, "admin": False, "scopes": [], "groups": list(groups)}


# fmt: off
PROJECT_TABLE = [
    # caller                               workspace  its project   see
    (member("bob", "genomics"),            "lab",     "genomics",   True),
    (member("bob", "genomics"),            "lab",     "other",      False),
    (member("bob", "genomics"),            "lab",     "",           False),   # personal
    (member("bob", "genomics"),            "lab",     None,         False),   # not known
    (member("bob", "genomics"),            None,      "genomics",   False),   # all of alice's
    (member("bob"),                        "lab",     "genomics",   False),
    ({**member("bob", "genomics"), "kind": "service"}, "lab", "genomics", False),
]
# fmt: on


@pytest.mark.parametrize(("caller", "workspace", "project", "see"), PROJECT_TABLE)
def test_a_project_member_sees_the_projects_workspaces_and_changes_none_of_them(
    caller, workspace, project, see
):
    assert may(caller, SEE, "alice", workspace, project) is see
    assert may(caller, CHANGE, "alice", workspace, project) is False
    assert may_for_everyone(caller, SEE) is False
