"""Projects on a real hub with real workspace containers: members' roles and data levels
decide who may create, start and stop workspaces, and how ``/data/project`` is mounted.

The project is a real JupyterHub group made through BenchHub's projects API with the test
admin token; each person calls the hub with a token of their own (made by the admin), so
every refusal is the hub's answer to that person.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from support.docker_cli import docker, exec_in
from support.waiting import wait

from benchhub.projects import INSUFFICIENT
from benchhub.volumes import LoopbackVolume

PROJECT = "proj-lab"
OWNER, ADMIN, WRITER, READER, VIEWER, OUTSIDER = (
    "prjowner",
    "prjadmin",
    "prjwriter",
    "prjreader",
    "prjviewer",
    "prjoutsider",
)
FULL = {"upload": True, "download": True}
STANDING = {
    ADMIN: {"role": "administrator", "data_level": "contributor", **FULL},
    WRITER: {"role": "contributor", "data_level": "contributor", **FULL},
    READER: {"role": "contributor", "data_level": "viewer", **FULL},
    VIEWER: {"role": "viewer", "data_level": "viewer", **FULL},
}
WRITES = {"project": PROJECT, "permissions": {"project_data": "contributor"}, "storage_gb": 1}
READS = {"project": PROJECT, "permissions": {"project_data": "viewer"}, "storage_gb": 1}


class Caller:
    """One person calling the hub's REST API with their own token."""

    def __init__(self, hub, name: str):
        self.hub, self.name = hub, name
        r = hub.api("POST", f"/users/{name}/tokens", {"expires_in": 3600, "note": "projects"})
        assert r.status_code == 201, r.text
        self.token = r.json()["token"]

    def api(self, method: str, path: str, body=None) -> requests.Response:
        return self.hub.api(method, path, body, token=self.token)

    def start(self, owner: str, name: str, options: dict | None = None) -> requests.Response:
        body = {"user_options": options} if options is not None else None
        return self.api("POST", f"/users/{owner}/servers/{name}", body)


@pytest.fixture(scope="module")
def people(hub):
    for name in (*people_names(), "prjleaver", "prjnoup"):
        hub.ensure_user(name)
    r = hub.api("POST", "/bench/projects", {"name": PROJECT, "owner": OWNER, "storage_gb": 1})
    assert r.status_code == 201, r.text
    callers = {name: Caller(hub, name) for name in (OWNER, ADMIN, WRITER, READER, VIEWER, OUTSIDER)}
    for name, standing in STANDING.items():
        r = callers[OWNER].api("PUT", f"/bench/projects/{PROJECT}/members/{name}", standing)
        assert r.ok, r.text
    yield callers
    for owner in (*people_names(), "prjleaver", "prjnoup"):
        for name, ws in hub.workspaces(owner).items():
            if ws["status"] not in ("stopped", "errored"):
                hub.stop_workspace(owner, name)
            hub.api("DELETE", f"/users/{owner}/servers/{name}", {"remove": True})
    # detached when the last workspace stops; again here in case a test failed half-way
    asyncio.run(project_volume(hub).detach())


def project_volume(hub) -> LoopbackVolume:
    return LoopbackVolume(hub.workdir / "state" / "projects", PROJECT, "data")


def people_names() -> tuple[str, ...]:
    return (OWNER, ADMIN, WRITER, READER, VIEWER, OUTSIDER)


def mount_of(hub, user: str, name: str) -> dict | None:
    mounts = json.loads(docker("inspect", "-f", "{{json .Mounts}}", hub.container_name(user, name)))
    return next((m for m in mounts if m["Destination"] == "/data/project"), None)


def as_user(hub, user: str, name: str, script: str):
    return exec_in(hub.container_name(user, name), script, user="1000")


def journaled(hub, user: str, workspace: str, action: str, actor: str) -> dict:
    """The activity-log entry of ``action`` on the workspace by ``actor`` (the lifecycle
    service copies the hub's journal on each pass: wait for it)."""

    def entries() -> list[dict]:
        r = hub.service_api(
            "lifecycle", "api/activity", user=user, workspace=workspace, action=action
        )
        return [e for e in r.json()["entries"] if e["actor"] == actor] if r.ok else []

    return wait(entries, 30, f"a {action!r} entry by {actor} for {user}/{workspace}")[0]


def started(caller: Caller, owner: str, name: str, options: dict | None = None) -> dict:
    r = caller.start(owner, name, options)
    assert r.status_code in (201, 202), r.text
    return caller.hub.wait_for(owner, name, "running")


def test_two_members_starting_at_once_both_get_project_data_read_write_and_read_only(hub, people):
    # both first starts at the same moment: one makes the project's volume, the other must
    # find it (a 500 for one of them before the hub's per-project lock)
    with ThreadPoolExecutor(2) as pool:
        starts = [
            pool.submit(started, people[WRITER], WRITER, "pw", WRITES),
            pool.submit(started, people[READER], READER, "pr", READS),
        ]
        for start in starts:
            start.result()

    wrote = as_user(hub, WRITER, "pw", "echo shared > /data/project/note.txt && id -u")
    assert wrote.returncode == 0, wrote.stderr
    assert mount_of(hub, WRITER, "pw")["RW"] is True
    state = hub.api("GET", f"/users/{WRITER}").json()["servers"]["pw"]["state"]
    assert state["project"] == {"name": PROJECT, "data_mode": "read-write"}  # for members

    refused = as_user(hub, READER, "pr", "touch /data/project/mine.txt")
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    assert as_user(hub, READER, "pr", "cat /data/project/note.txt").stdout == "shared\n"
    assert mount_of(hub, READER, "pr")["RW"] is False


def test_a_workspace_with_no_project_data_level_has_no_project_mount(hub, people):
    options = {**READS, "permissions": {"project_data": "no_access"}}
    started(people[READER], READER, "pnone", options)
    assert mount_of(hub, READER, "pnone") is None
    assert as_user(hub, READER, "pnone", "test -e /data/project/note.txt").returncode != 0
    hub.stop_workspace(READER, "pnone")


def test_a_personal_workspace_still_starts_without_a_project(hub, people):
    started(people[OUTSIDER], OUTSIDER, "solo", {"storage_gb": 1})
    assert mount_of(hub, OUTSIDER, "solo") is None
    hub.stop_workspace(OUTSIDER, "solo")


def test_a_demoted_member_keeps_the_running_workspace_and_is_refused_at_the_next_start(hub, people):
    started(people[WRITER], WRITER, "demo", WRITES)
    demote = {**STANDING[WRITER], "data_level": "viewer"}
    r = people[ADMIN].api("PUT", f"/bench/projects/{PROJECT}/members/{WRITER}", demote)
    assert r.ok, r.text
    try:
        # nothing running changes
        assert as_user(hub, WRITER, "demo", "touch /data/project/still").returncode == 0
        hub.stop_workspace(WRITER, "demo")
        r = people[WRITER].start(WRITER, "demo")
        assert r.status_code == 403, r.text
        message = r.json()["message"]
        assert INSUFFICIENT in message and "permissions.project_data" in message
        assert hub.workspaces(WRITER)["demo"]["status"] != "running"
        # with the workspace's level lowered to what they hold it starts, read-only
        r = people[WRITER].api(
            "PATCH",
            f"/users/{WRITER}/servers/demo",
            {"user_options": {"permissions": {"project_data": "viewer"}}},
        )
        assert r.ok, r.text
        started(people[WRITER], WRITER, "demo")
        assert mount_of(hub, WRITER, "demo")["RW"] is False
    finally:
        people[ADMIN].api("PUT", f"/bench/projects/{PROJECT}/members/{WRITER}", STANDING[WRITER])
    hub.stop_workspace(WRITER, "demo")


def test_a_member_removed_from_the_project_cannot_start_its_workspace_again(hub, people):
    hub.ensure_user("prjleaver")
    leaver = Caller(hub, "prjleaver")
    r = people[OWNER].api("PUT", f"/bench/projects/{PROJECT}/members/prjleaver", STANDING[WRITER])
    assert r.ok, r.text
    started(leaver, "prjleaver", "gone", WRITES)
    hub.stop_workspace("prjleaver", "gone")
    r = people[OWNER].api("DELETE", f"/bench/projects/{PROJECT}/members/prjleaver")
    assert r.status_code == 204, r.text
    group = hub.api("GET", f"/groups/{PROJECT}").json()
    assert "prjleaver" not in group["users"]

    r = leaver.start("prjleaver", "gone")
    assert r.status_code == 403 and "not a member of project proj-lab" in r.json()["message"]
    assert hub.workspaces("prjleaver")["gone"]["status"] != "running"
    hub.api("DELETE", "/users/prjleaver/servers/gone", {"remove": True})


def test_creating_with_permissions_above_ones_standing_is_refused_with_icas_words(hub, people):
    hub.ensure_user("prjnoup")
    noup = Caller(hub, "prjnoup")
    standing = {**STANDING[WRITER], "upload": False}
    r = people[OWNER].api("PUT", f"/bench/projects/{PROJECT}/members/prjnoup", standing)
    assert r.ok, r.text

    r = noup.start("prjnoup", "up", {**READS, "permissions": {"upload": True}})
    assert r.status_code == 403, r.text
    assert INSUFFICIENT in r.json()["message"] and "permissions.upload" in r.json()["message"]
    assert "up" not in hub.workspaces("prjnoup")  # nothing was created

    started(noup, "prjnoup", "up", {**READS, "permissions": {"upload": False}})
    hub.api("DELETE", "/users/prjnoup/servers/up")
    hub.wait_for_stopped("prjnoup", "up")


def test_a_project_viewer_sees_the_projects_workspaces_but_cannot_create_one(hub, people):
    r = people[VIEWER].api("GET", f"/bench/projects/{PROJECT}/workspaces")
    assert r.ok, r.text
    seen = {(w["owner"], w["name"]): w for w in r.json()["workspaces"]}
    assert seen[(WRITER, "pw")]["status"] == "running"

    r = people[VIEWER].start(VIEWER, "mine", READS)
    assert r.status_code == 403
    assert "you need the project role contributor" in r.json()["message"]


def test_a_project_admin_stops_and_starts_a_members_workspace_and_the_journal_says_so(hub, people):
    hub.wait_for(WRITER, "pw", "running")
    # JupyterHub's own route does not let a project admin (no hub scopes on WRITER's servers)
    assert people[ADMIN].api("DELETE", f"/users/{WRITER}/servers/pw").status_code in (403, 404)

    r = people[ADMIN].api("POST", f"/bench/workspaces/{WRITER}/pw/stop")
    assert r.status_code in (202, 204), r.text
    hub.wait_for_stopped(WRITER, "pw")
    assert journaled(hub, WRITER, "pw", "stopped", f"admin:{ADMIN}")

    r = people[ADMIN].api("POST", f"/bench/workspaces/{WRITER}/pw/start")
    assert r.status_code in (201, 202), r.text
    hub.wait_for(WRITER, "pw", "running")
    assert journaled(hub, WRITER, "pw", "started", f"admin:{ADMIN}")


def test_a_project_admin_edits_and_deletes_a_members_workspace_and_a_contributor_cannot(
    hub, people
):
    r = people[READER].api("PUT", f"/users/{READER}/servers/old", {"user_options": READS})
    assert r.status_code == 201, r.text
    edit = {"user_options": {"description": "tidied by the admin"}}

    for caller in (people[WRITER], people[VIEWER], people[OUTSIDER]):
        r = caller.api("PATCH", f"/bench/workspaces/{READER}/old", edit)
        assert r.status_code == 403, r.text
        assert caller.api("DELETE", f"/bench/workspaces/{READER}/old").status_code == 403
    assert hub.workspaces(READER)["old"]["user_options"]["description"] == ""

    r = people[ADMIN].api("PATCH", f"/bench/workspaces/{READER}/old", edit)
    assert r.ok, r.text
    assert hub.workspaces(READER)["old"]["user_options"]["description"] == "tidied by the admin"
    assert journaled(hub, READER, "old", "edited", f"admin:{ADMIN}")

    r = people[ADMIN].api("DELETE", f"/bench/workspaces/{READER}/old")
    assert r.status_code == 204, r.text
    assert "old" not in hub.workspaces(READER)
    assert journaled(hub, READER, "old", "deleted", f"admin:{ADMIN}")


def test_a_contributor_uses_anothers_workspace_only_when_it_allows_it(hub, people):
    r = people[READER].api("POST", f"/bench/workspaces/{WRITER}/pw/stop")
    assert r.status_code == 403 and "others_may_use" in r.json()["message"]
    assert hub.workspaces(WRITER)["pw"]["status"] == "running"

    shared = {**WRITES, "storage_gb": 1, "permissions": {"project_data": "viewer"}}
    shared["permissions"]["others_may_use"] = True
    started(people[WRITER], WRITER, "open", shared)
    r = people[READER].api("POST", f"/bench/workspaces/{WRITER}/open/stop")
    assert r.status_code in (202, 204), r.text
    hub.wait_for_stopped(WRITER, "open")
    assert journaled(hub, WRITER, "open", "stopped", READER)


def test_a_non_member_is_refused_everywhere_in_the_project(hub, people):
    outsider = people[OUTSIDER]
    assert outsider.api("GET", "/bench/projects").json() == {"projects": []}
    for method, path, body in [
        ("GET", f"/bench/projects/{PROJECT}", None),
        ("GET", f"/bench/projects/{PROJECT}/workspaces", None),
        ("PUT", f"/bench/projects/{PROJECT}/members/{OUTSIDER}", STANDING[ADMIN]),
        ("DELETE", f"/bench/projects/{PROJECT}/members/{READER}", None),
        ("PATCH", f"/bench/projects/{PROJECT}", {"storage_gb": 2}),
        ("POST", "/bench/projects", {"name": "mine", "owner": OUTSIDER}),
        ("POST", f"/bench/workspaces/{WRITER}/pw/stop", None),
        ("POST", f"/bench/workspaces/{READER}/pr/start", None),
    ]:
        r = outsider.api(method, path, body)
        assert r.status_code == 403, (method, path, r.text)
    r = outsider.start(OUTSIDER, "sneak", READS)
    assert r.status_code == 403 and "not a member" in r.json()["message"]
    assert "sneak" not in hub.workspaces(OUTSIDER)
    assert hub.workspaces(WRITER)["pw"]["status"] == "running"
    members = {
        m["user"] for m in people[OWNER].api("GET", f"/bench/projects/{PROJECT}").json()["members"]
    }
    assert OUTSIDER not in members and READER in members


def test_bad_project_input_is_400_naming_the_field_and_changes_nothing(hub, people):
    before = hub.api("GET", f"/bench/projects/{PROJECT}").json()
    for body, field in [
        ({"name": "Bad_Name", "owner": OWNER}, "name"),
        ({"name": "fine", "owner": "nobody-here"}, "owner"),
        ({"name": "fine", "owner": OWNER, "storage_gb": -1}, "storage_gb"),
        ({"name": "fine", "owner": OWNER, "colour": "red"}, "colour"),
        # more than the host's storage capacity (1000 GB on the test hub): admission refuses
        ({"name": "fine", "owner": OWNER, "storage_gb": 5000}, "storage_gb"),
    ]:
        r = hub.api("POST", "/bench/projects", body)
        assert r.status_code == 400 and field in r.json()["message"], r.text
    assert hub.api("GET", "/bench/projects/fine").status_code == 404
    r = hub.api("POST", "/bench/projects", {"name": PROJECT, "owner": OWNER})
    assert r.status_code == 409

    path = f"/bench/projects/{PROJECT}/members/{READER}"
    for body, field in [
        ({"role": "boss"}, "role"),
        ({"data_level": "all"}, "data_level"),
        ({"upload": "yes"}, "upload"),
    ]:
        r = people[OWNER].api("PUT", path, body)
        assert r.status_code == 400 and r.json()["message"].startswith(field), r.text
    r = hub.api("PATCH", f"/bench/projects/{PROJECT}", {"storage_gb": 1.5})
    assert r.status_code == 400 and "storage_gb" in r.json()["message"]
    assert hub.api("GET", f"/bench/projects/{PROJECT}").json() == before

    for options, field in [
        ({"project": "no-such-project"}, "project"),
        ({"project": PROJECT, "permissions": {"project_data": "all"}}, "permissions.project_data"),
    ]:
        r = people[WRITER].start(WRITER, "badopts", options)
        assert r.status_code == 400 and field in r.json()["message"], r.text
    assert "badopts" not in hub.workspaces(WRITER)


def test_writing_past_the_projects_storage_fails_with_no_space_left(hub, people):
    hub.wait_for(WRITER, "pw", "running")
    # 1 GB of project data: a bounded write of 1.1 GB cannot fit
    filled = as_user(
        hub, WRITER, "pw", "dd if=/dev/zero of=/data/project/fill bs=1M count=1100 2>&1"
    )
    assert filled.returncode != 0 and "No space left on device" in filled.stdout
    assert as_user(hub, WRITER, "pw", "rm /data/project/fill").returncode == 0


def test_the_projects_data_is_detached_when_its_last_workspace_stops_and_kept(hub, people):
    for owner in people_names():
        for name, ws in hub.workspaces(owner).items():
            if ws["status"] not in ("stopped", "errored"):
                hub.stop_workspace(owner, name)
    assert asyncio.run(project_volume(hub).leftovers()) == [str(project_volume(hub).dir)]

    started(people[READER], READER, "pr")
    assert as_user(hub, READER, "pr", "cat /data/project/note.txt").stdout == "shared\n"
    assert any("loop device" in x for x in asyncio.run(project_volume(hub).leftovers()))
    hub.stop_workspace(READER, "pr")
