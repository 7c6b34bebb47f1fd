"""Limits per user and per group on a real hub: a start over a limit is refused with a 403
naming the limit and the use, before anything is created; two starts at once cannot both pass
"one running workspace"; a cluster start over the CPU limit is refused; admins set limits by
REST and they survive a hub restart.

The hub is this module's own (prefix ``benchquota``) with limits in its configuration:
group ``free-tier`` may run one workspace, user ``carol`` 1 CPU and ``erin`` 3 CPUs.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from support.cluster_harness import cluster_env, remove_cluster_leftovers
from support.docker_cli import cleanup, container_names
from support.hub_harness import PASSWORD, HubProcess
from support.waiting import wait

PREFIX = "benchquota"
LIMITS = """
c.BenchQuotas.group_limits = {"free-tier": {"max_running_workspaces": 1}}
c.BenchQuotas.user_limits = {"carol": {"max_cpus": 1}, "erin": {"max_cpus": 3}}
"""
SMALL = {"resource_model": "test-small", "storage_gb": 1}  # 0.5 CPU, 0.5 GB
MEDIUM = {"resource_model": "test-medium", "storage_gb": 1}  # 1 CPU, 1 GB


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    workdir = tmp_path_factory.mktemp(PREFIX)
    scratch = workdir / "scratch"
    h = HubProcess(
        workdir,
        prefix=PREFIX,
        extra_config=LIMITS,
        env_overrides={
            "BENCHHUB_STORAGE_CAPACITY_GB": "1000",
            **cluster_env(scratch, "10.240.0.0/20", 2, 5),
        },
    )
    cleanup(PREFIX, h.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)
    h.start()
    for user in ("fran", "gus", "carol", "dora", "erin", "bob"):
        h.ensure_user(user)
    r = h.api("POST", "/groups/free-tier", {"users": ["fran", "gus"]})
    assert r.status_code in (201, 409), r.text
    yield h
    h.stop()
    cleanup(PREFIX, h.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)


def quota(hub: HubProcess, user: str, token: str | None = None) -> requests.Response:
    kwargs = {"token": token} if token is not None else {}
    return hub.api("GET", f"/bench/quotas/users/{user}", **kwargs)


def test_the_free_tier_refuses_a_second_running_workspace_naming_the_limit_and_creates_nothing(
    hub,
):
    hub.start_workspace("fran", "one", SMALL)
    r = hub.api("POST", "/users/fran/servers/two", {"user_options": SMALL})
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        "max_running_workspaces: fran may run at most 1 workspace at a time (limit of group "
        "free-tier); 1 is running (fran/one)"
    )
    assert container_names(hub.container_name("fran", "two")) == []
    two = hub.storage_root / "fran" / "two"
    assert not (two / "allocation.json").exists() and not (two / "data.ext4").exists()
    # the spawn form: the same refusal, shown on the form page
    browser, answer = hub.log_in("fran", PASSWORD)
    assert answer.status_code == 302
    form = {"resource_model": "test-small", "storage_gb": "1", "_xsrf": browser.cookies["_xsrf"]}
    page = browser.post(f"{hub.url}/hub/spawn/fran/three", data=form, timeout=60)
    assert page.status_code == 403, page.text[-2000:]
    assert "max_running_workspaces: fran may run at most 1 workspace" in page.text
    assert container_names(hub.container_name("fran", "three")) == []
    # the legitimate use: with the first stopped, the second starts
    hub.stop_workspace("fran", "one")
    hub.start_workspace("fran", "two", SMALL)
    hub.stop_workspace("fran", "two")


def test_two_starts_at_once_let_exactly_one_through_the_one_running_limit(hub):
    def start(name: str) -> requests.Response:
        return hub.api("POST", f"/users/gus/servers/{name}", {"user_options": SMALL})

    with ThreadPoolExecutor(2) as pool:
        answers = dict(zip("ab", pool.map(start, "ab"), strict=True))
    codes = sorted(r.status_code for r in answers.values())
    assert codes in ([201, 403], [202, 403]), {
        k: (r.status_code, r.text) for k, r in answers.items()
    }
    [passed] = [name for name, r in answers.items() if r.status_code != 403]
    [refused] = [name for name, r in answers.items() if r.status_code == 403]
    assert answers[refused].json()["message"].startswith("max_running_workspaces: gus may run")
    hub.wait_for("gus", passed, "running")
    assert container_names(hub.container_name("gus", "")) == [hub.container_name("gus", passed)]
    hub.stop_workspace("gus", passed)


def test_a_start_over_the_cpu_limit_is_refused_and_a_smaller_one_starts(hub):
    hub.start_workspace("carol", "a", SMALL)
    r = hub.api("POST", "/users/carol/servers/b", {"user_options": MEDIUM})
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        "max_cpus: carol may use at most 1 CPU at a time (limit of user carol); 0.5 CPUs in use "
        "(carol/a) and carol/b needs 1 CPU"
    )
    assert container_names(hub.container_name("carol", "b")) == []
    use = quota(hub, "carol").json()
    assert use["limits"]["max_cpus"] == 1 and use["sources"]["max_cpus"] == "user carol"
    assert use["use"]["cpus"] == 0.5 and use["use"]["running"] == ["carol/a"]
    hub.start_workspace("carol", "b", SMALL)  # 0.5 + 0.5 fits exactly
    hub.stop_workspace("carol", "a")
    hub.stop_workspace("carol", "b")


def test_a_cluster_over_the_cpu_limit_is_refused_and_its_members_count_against_it(hub):
    hub.start_workspace("erin", "lab", SMALL)
    clusters = f"{hub.url}/services/clusters/api/clusters/erin/lab"
    headers = {"Authorization": f"token {hub.user_token('erin')}"}
    # members need more than one core (one is kept for scheduling): standard-small, 2 CPUs
    too_big = {"type": "static", "members": 2, "resource_model": "standard-small"}
    r = requests.post(clusters, json=too_big, headers=headers, timeout=60)
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        "max_cpus: erin may use at most 3 CPUs at a time (limit of user erin); 0.5 CPUs in use "
        "(erin/lab) and 2 members of the cluster of erin/lab need 4 CPUs"
    )
    assert container_names(f"{PREFIX}-cluster-") == []
    # the legitimate use: one member fits, and then counts against the limit
    fits = {"type": "static", "members": 1, "resource_model": "standard-small"}
    r = requests.post(clusters, json=fits, headers=headers, timeout=60)
    assert r.status_code == 202, r.text
    use = wait(
        lambda: quota(hub, "erin").json()["use"],
        120,
        "erin's cluster member counts",
        step=0.5,
        until=lambda u: u["cluster_members"] == 1,
    )
    assert use["cpus"] == 2.5
    r = hub.api("POST", "/users/erin/servers/more", {"user_options": MEDIUM})
    assert r.status_code == 403, r.text
    assert r.json()["message"] == (
        "max_cpus: erin may use at most 3 CPUs at a time (limit of user erin); 2.5 CPUs in use "
        "(erin/lab and 1 cluster member) and erin/more needs 1 CPU"
    )
    assert requests.delete(clusters, headers=headers, timeout=60).status_code in (202, 204)
    wait(lambda: container_names(f"{PREFIX}-cluster-") == [], 60, "the cluster is gone", step=0.5)
    hub.stop_workspace("erin", "lab")


def test_admins_set_limits_by_rest_users_read_only_their_own_and_bad_input_changes_nothing(hub):
    dora, bob = hub.user_token("dora"), hub.user_token("bob")
    r = hub.api("PUT", "/bench/quotas/users/dora", {"max_running_workspaces": 2, "max_gpus": 0})
    assert r.status_code == 200, r.text
    assert r.json()["limits"]["max_running_workspaces"] == 2
    mine = quota(hub, "dora", token=dora)
    assert mine.status_code == 200 and mine.json()["sources"]["max_gpus"] == "user dora"
    assert mine.json()["use"]["running_workspaces"] == 0
    # a user may not raise their own limits, nor read someone else's; no token: nothing
    raise_own = hub.api("PUT", "/bench/quotas/users/dora", {"max_gpus": 8}, token=dora)
    assert raise_own.status_code == 403
    assert quota(hub, "dora", token=bob).status_code in (403, 404)
    anonymous = requests.get(f"{hub.url}/hub/api/bench/quotas/users/dora", timeout=30)
    assert anonymous.status_code == 403
    group = hub.api("PUT", "/bench/quotas/groups/free-tier", {"max_cpus": 4}, token=dora)
    assert group.status_code in (403, 404)
    # bad input: a 400 naming the field, and the limits stay as they were
    for body, field in (({"max_cpus": -1}, "max_cpus"), ({"max_cpu": 1}, "max_cpu")):
        bad = hub.api("PUT", "/bench/quotas/users/dora", body)
        assert bad.status_code == 400 and bad.json()["message"].startswith(f"{field}: "), bad.text
    assert quota(hub, "dora").json()["own"] == {"max_running_workspaces": 2, "max_gpus": 0}
    # groups: configuration and REST together, REST key by key over it
    r = hub.api("PUT", "/bench/quotas/groups/free-tier", {"max_cpus": 4})
    assert r.status_code == 200, r.text
    assert r.json()["limits"] == {"max_running_workspaces": 1, "max_cpus": 4.0}
    assert quota(hub, "fran").json()["sources"]["max_cpus"] == "group free-tier"


def test_limits_and_running_use_survive_a_hub_restart_and_the_home_page_shows_them(hub):
    assert hub.api("PUT", "/bench/quotas/users/dora", {"max_running_workspaces": 3}).ok
    assert hub.api("PUT", "/bench/quotas/groups/free-tier", {"max_memory_gb": 2}).ok
    hub.start_workspace("fran", "one", SMALL)
    hub.stop()
    hub.start()
    hub.wait_for("fran", "one", "running")  # kept running across the restart
    r = hub.api("POST", "/users/fran/servers/two", {"user_options": SMALL})
    assert r.status_code == 403 and "1 is running (fran/one)" in r.json()["message"], r.text
    assert quota(hub, "dora").json()["own"] == {"max_running_workspaces": 3}
    group = hub.api("GET", "/bench/quotas/groups/free-tier").json()
    assert group["stored"] == {"max_memory_gb": 2.0}
    fran = quota(hub, "fran").json()
    assert fran["limits"]["max_memory_gb"] == 2 and fran["limits"]["max_running_workspaces"] == 1
    # the home page carries the panel that shows a user their use against these limits
    session, answer = hub.log_in("fran", PASSWORD)
    assert answer.status_code == 302
    home = session.get(f"{hub.url}/hub/home", timeout=30).text
    assert 'id="bench-quotas"' in home and "api/bench/quotas/users/" in home
    hub.stop_workspace("fran", "one")
