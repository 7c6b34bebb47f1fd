"""What a project's members see of its workspaces through the services, on a real hub.

Bob (a viewer of project ``seeall``) reads what Ada's workspace of the project did (the
activity log), its schedule (lifecycle), its checkpoints and whether it has a cluster; Cyd, who
is in another group, is refused each of them; and Bob changes nothing of Ada's.
"""

from __future__ import annotations

import pytest
import requests
from support.waiting import wait

PROJECT = "seeall"
OWNER, MEMBER, OUTSIDER = "ada", "bob", "cyd"
WORKSPACE = "shared"


@pytest.fixture(scope="module")
def project(hub):
    for user in (OWNER, MEMBER, OUTSIDER):
        hub.ensure_user(user)
    for group, users in ((PROJECT, [OWNER, MEMBER]), ("elsewhere", [OUTSIDER])):
        r = hub.api("POST", f"/groups/{group}", {"users": users})
        assert r.status_code in (201, 409), r.text
    settings = {
        "owner": "root",
        "storage_gb": 0,
        "members": {
            OWNER: {
                "role": "contributor",
                "data_level": "contributor",
                "upload": True,
                "download": True,
            },
            MEMBER: {"role": "viewer", "data_level": "viewer", "upload": False, "download": False},
        },
    }
    r = hub.api("PUT", f"/groups/{PROJECT}/properties", {"benchhub_project": settings})
    assert r.ok, r.text
    hub.start_workspace(OWNER, WORKSPACE, {"storage_gb": 1, "project": PROJECT})
    yield {user: hub.user_token(user) for user in (MEMBER, OUTSIDER)}
    hub.stop_workspace(OWNER, WORKSPACE)


def test_a_member_reads_what_the_projects_workspaces_did_and_an_outsider_cannot(hub, project):
    def entries():
        r = hub.service_api("lifecycle", "api/activity", token=project[MEMBER], project=PROJECT)
        assert r.status_code == 200, r.text
        return r.json()["entries"]

    seen = wait(
        entries,
        60,
        "Ada's start in the project's activity",
        until=lambda e: any(x["user"] == OWNER and x["action"] == "started" for x in e),
    )
    assert {(e["user"], e["workspace"], e["project"]) for e in seen} == {
        (OWNER, WORKSPACE, PROJECT)
    }
    r = hub.service_api("lifecycle", "api/activity", token=project[OUTSIDER], project=PROJECT)
    assert r.status_code == 403
    assert "only the activity of a project you are a member of" in r.json()["message"]


def test_a_member_sees_the_projects_running_workspace_on_the_lifecycle_page(hub, project):
    def listed():
        r = hub.service_api("lifecycle", "api/workspaces", token=project[MEMBER])
        assert r.status_code == 200, r.text
        return [(w["user"], w["workspace"]) for w in r.json()["workspaces"]]

    assert (OWNER, WORKSPACE) in wait(
        listed,
        120,
        "the lifecycle pass saw Ada's workspace",
        until=lambda ws: (OWNER, WORKSPACE) in ws,
    )
    page = hub.service_api("lifecycle", "", token=project[MEMBER], project=PROJECT)
    assert page.status_code == 200
    assert (
        f"<td>{OWNER}</td>\n        <td>{WORKSPACE}</td>\n        <td>{PROJECT}</td>" in page.text
    )
    r = hub.service_api("lifecycle", "api/workspaces", token=project[OUTSIDER])
    assert r.ok and (OWNER, WORKSPACE) not in [
        (w["user"], w["workspace"]) for w in r.json()["workspaces"]
    ]


def test_a_member_sees_the_checkpoints_and_cluster_of_a_project_workspace_not_an_outsider(
    hub, project
):
    path = f"api/workspaces/{OWNER}/{WORKSPACE}/checkpoints"
    r = hub.service_api("checkpoints", path, token=project[MEMBER])
    assert r.status_code == 200, r.text
    assert r.json()["workspace"] == WORKSPACE
    assert hub.service_api("checkpoints", path, token=project[OUTSIDER]).status_code == 403
    listed = hub.service_api(
        "checkpoints", "api/workspaces", token=project[MEMBER], project=PROJECT
    )
    assert listed.status_code == 200, listed.text
    assert (
        hub.service_api(
            "checkpoints", "api/workspaces", token=project[OUTSIDER], project=PROJECT
        ).status_code
        == 403
    )

    cluster = hub.service_api(
        "clusters", f"api/clusters/{OWNER}/{WORKSPACE}", token=project[MEMBER]
    )
    assert cluster.status_code == 404 and "has no cluster" in cluster.json()["message"]
    assert (
        hub.service_api(
            "clusters", f"api/clusters/{OWNER}/{WORKSPACE}", token=project[OUTSIDER]
        ).status_code
        == 403
    )
    assert (
        hub.service_api(
            "clusters", "api/clusters", token=project[OUTSIDER], project=PROJECT
        ).status_code
        == 403
    )


def test_seeing_a_project_workspace_does_not_let_a_member_change_it(hub, project):
    url = f"{hub.url}/services/checkpoints/api/workspaces/{OWNER}/{WORKSPACE}/checkpoints"
    r = requests.post(
        url, json={}, headers={"Authorization": f"token {project[MEMBER]}"}, timeout=30
    )
    assert r.status_code == 403, r.text
    r = requests.post(
        f"{hub.url}/services/clusters/api/clusters/{OWNER}/{WORKSPACE}",
        json={"type": "static", "members": 1},
        headers={"Authorization": f"token {project[MEMBER]}"},
        timeout=30,
    )
    assert r.status_code == 403, r.text


def test_the_checkpoints_and_clusters_pages_show_a_project_to_its_members_only(hub, project):
    page = hub.service_api("checkpoints", "", token=project[MEMBER], project=PROJECT)
    assert page.status_code == 200, page.text[:300]
    assert f"Checkpoints of project {PROJECT}" in page.text
    assert "data-action=" not in page.text  # to look at: no owner's actions
    page = hub.service_api("clusters", "", token=project[MEMBER], project=PROJECT)
    assert page.status_code == 200, page.text[:300]
    assert f"project {PROJECT}" in page.text and '<form class="bench-start' not in page.text
    for service in ("checkpoints", "clusters"):
        refused = hub.service_api(service, "", token=project[OUTSIDER], project=PROJECT)
        assert refused.status_code == 403, (service, refused.status_code)
