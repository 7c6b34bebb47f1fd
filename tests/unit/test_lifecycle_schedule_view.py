"""Which running workspaces' schedules a caller sees (hub_services.lifecycle.web)."""

import pytest
from tornado import web

from hub_services.lifecycle.web import visible_schedule

ENTRIES = [
    {"user": "alice", "workspace": "lab", "project": "genomics"},
    {"user": "alice", "workspace": "own", "project": ""},
    {"user": "carol", "workspace": "qc", "project": "genomics"},
    {"user": "dave", "workspace": "x", "project": "imaging"},
]


def person(name, *groups, admin=False):
    return {"kind": "user", "name": name, "admin": admin, "scopes": [], "groups": list(groups)}


def keys(entries):
    return [f"{e['user']}/{e['workspace']}" for e in entries]


def test_a_project_member_sees_the_projects_workspaces_and_their_own_only():
    bob = person("bob", "genomics")
    assert keys(visible_schedule(ENTRIES, bob, None)) == ["alice/lab", "carol/qc"]
    assert keys(visible_schedule(ENTRIES, bob, None, "genomics")) == ["alice/lab", "carol/qc"]
    assert visible_schedule(ENTRIES, bob, None, "imaging") == []


def test_the_project_filter_narrows_an_owners_and_an_admins_view():
    assert keys(visible_schedule(ENTRIES, person("alice"), None, "")) == ["alice/own"]
    root = person("root", admin=True)
    assert keys(visible_schedule(ENTRIES, root, None, "genomics")) == ["alice/lab", "carol/qc"]
    assert len(visible_schedule(ENTRIES, root, None)) == 4


def test_naming_a_user_whose_workspaces_you_may_not_see_is_refused_even_for_a_member():
    with pytest.raises(web.HTTPError) as refused:
        visible_schedule(ENTRIES, person("bob", "genomics"), "alice")
    assert refused.value.status_code == 403
