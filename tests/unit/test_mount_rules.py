"""Whose token may change a workspace's mounts, and when a read-write mount is allowed."""

from benchhub.projects import PROPERTY
from hub_services.mounts.rules import may_use, mode_refusal, project_refusal

SERVER_TOKEN = {  # the scopes of alice/lab's own server token (role "server", expanded)
    "kind": "user",
    "name": "alice",
    "admin": False,
    "scopes": [
        "users:activity!user=alice",
        "access:servers!server=alice/lab",
        "access:services!service=mounts",
    ],
}
OWNER_TOKEN = {
    "kind": "user",
    "name": "alice",
    "admin": False,
    "scopes": ["access:servers!user=alice", "servers!user=alice", "read:users!user=alice"],
}
BOB_TOKEN = {
    "kind": "user",
    "name": "bob",
    "admin": False,
    "scopes": ["access:servers!user=bob", "servers!user=bob"],
}
ADMIN_TOKEN = {"kind": "user", "name": "root", "admin": True, "scopes": ["access:servers"]}


def test_a_workspaces_own_token_reaches_that_workspace_and_no_other_of_its_owner():
    assert may_use(SERVER_TOKEN, "alice", "lab")
    assert not may_use(SERVER_TOKEN, "alice", "other")
    assert not may_use(SERVER_TOKEN, "bob", "lab")


def test_the_owner_and_an_admin_reach_it_another_user_does_not():
    assert may_use(OWNER_TOKEN, "alice", "lab")
    assert may_use(ADMIN_TOKEN, "alice", "lab")
    assert not may_use(BOB_TOKEN, "alice", "lab")
    assert not may_use({"kind": "user", "name": "alice", "scopes": []}, "alice", "lab")


def _group(alice: dict | None, storage_gb: int = 5) -> dict:
    members = {"alice": alice} if alice else {}
    return {
        "name": "genomics",
        "users": ["alice", "carol"],
        "properties": {PROPERTY: {"owner": "carol", "storage_gb": storage_gb, "members": members}},
    }


CONTRIBUTOR = {"role": "contributor", "data_level": "contributor", "upload": True, "download": True}
OPTIONS = {
    "project": "genomics",
    "permissions": {"upload": True, "download": True, "project_data": "contributor"},
}


def test_a_contributor_in_good_standing_may_mount_read_write_in_their_workspace():
    assert project_refusal(SERVER_TOKEN, "alice", OPTIONS, _group(CONTRIBUTOR)) is None
    assert mode_refusal("alice", OPTIONS, _group(CONTRIBUTOR), project_read_only=False) is None


def test_a_member_demoted_to_viewer_since_the_start_may_no_longer_mount():
    viewer = {**CONTRIBUTOR, "role": "viewer"}
    refusal = project_refusal(SERVER_TOKEN, "alice", OPTIONS, _group(viewer))
    assert refusal.status == 403
    assert "contributor" in refusal.message and "viewer" in refusal.message


def test_a_member_whose_data_level_dropped_gets_no_new_read_write_mount():
    reader = {**CONTRIBUTOR, "data_level": "viewer"}
    refusal = mode_refusal("alice", OPTIONS, _group(reader), project_read_only=False)
    assert refusal.status == 403 and "read-only" in refusal.message


def test_read_write_is_refused_while_data_project_is_mounted_read_only():
    refusal = mode_refusal("alice", OPTIONS, _group(CONTRIBUTOR), project_read_only=True)
    assert refusal.status == 403
    assert "/data/project" in refusal.message and "read-only" in refusal.message


def test_a_removed_project_refuses_with_409_and_someone_outside_it_with_403():
    assert project_refusal(SERVER_TOKEN, "alice", OPTIONS, None).status == 409
    outsider = {**BOB_TOKEN, "scopes": ["access:servers!server=alice/lab"]}
    refusal = project_refusal(outsider, "alice", OPTIONS, _group(CONTRIBUTOR))
    assert refusal.status == 403 and "not a member" in refusal.message


def test_a_personal_workspace_passes_the_standing_check_and_has_no_read_write_project():
    assert project_refusal(OWNER_TOKEN, "alice", {"project": ""}, None) is None
    assert mode_refusal("alice", {"project": ""}, None, project_read_only=False).status == 403
