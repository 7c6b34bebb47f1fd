"""Monthly budgets and cluster scratch in max_storage_gb, on a real hub with its real services.

Spend is real: the lifecycle service's ledger records the workspaces this module runs, priced
by a rate of this module's configuration (``c.UsageRates``: a test-small workspace costs 3600
credits an hour, one a second), so a few seconds of a running workspace pass a budget of a
few credits. Group ``metered`` has a budget of 4 credits a month; admins change users' by
REST.

The hub is this module's own (prefix ``benchbudget``).
"""

from __future__ import annotations

import os
import signal

import pytest
import requests
from support.cluster_harness import cluster_env, remove_cluster_leftovers
from support.docker_cli import cleanup, container_names
from support.hub_harness import PASSWORD, HubProcess
from support.waiting import wait

PREFIX = "benchbudget"
SMALL = {"resource_model": "test-small", "storage_gb": 1}
LIMITS = """
c.BenchQuotas.group_limits = {"metered": {"monthly_budget": 4}}
c.BenchQuotas.spend_timeout = 2
"""
RATES = """
c.UsageRates.unit = "credits"
c.UsageRates.model_hour = {"test-small": 3600}
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    workdir = tmp_path_factory.mktemp(PREFIX)
    scratch = workdir / "scratch"
    rates = workdir / "lifecycle_rates.py"
    rates.write_text(RATES)
    h = HubProcess(
        workdir,
        prefix=PREFIX,
        extra_config=LIMITS,
        env_overrides={
            "BENCHHUB_STORAGE_CAPACITY_GB": "1000",
            "BENCHHUB_LIFECYCLE_CONFIG": str(rates),
            **cluster_env(scratch, "10.243.0.0/20", 2, 5),
        },
    )
    cleanup(PREFIX, h.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)
    h.start()
    for user in ("ana", "ben", "cleo"):
        h.ensure_user(user)
    r = h.api("POST", "/groups/metered", {"users": ["ana"]})
    assert r.status_code in (201, 409), r.text
    # budgets are checked against the lifecycle service: wait until it answers
    wait(lambda: h.service_api("lifecycle", "api/health").ok, 60, "the lifecycle service answers")
    yield h
    h.stop()
    cleanup(PREFIX, h.storage_root)
    remove_cluster_leftovers(PREFIX, scratch)


def report(hub: HubProcess, user: str, **kwargs) -> requests.Response:
    return hub.api("GET", f"/bench/quotas/users/{user}", **kwargs)


def set_limits(hub: HubProcess, user: str, doc: dict) -> dict:
    r = hub.api("PUT", f"/bench/quotas/users/{user}", doc)
    assert r.status_code == 200, r.text
    return r.json()


def spend_past(hub: HubProcess, user: str, credits: float) -> dict:
    """The user's spend report once the ledger has charged them more than ``credits``."""
    return wait(
        lambda: report(hub, user).json()["spend"],
        90,
        f"{user} has spent more than {credits} credits",
        step=0.5,
        until=lambda s: s and s["amount"] is not None and s["amount"] > credits,
    )


def nothing_created(hub: HubProcess, user: str, workspace: str) -> None:
    assert container_names(hub.container_name(user, workspace)) == []
    volume = hub.storage_root / user / workspace
    assert not (volume / "allocation.json").exists() and not (volume / "data.ext4").exists()


def clusters_api(hub: HubProcess, method: str, path: str, body=None) -> requests.Response:
    return requests.request(
        method,
        f"{hub.url}/services/clusters/api/clusters/{path}",
        json=body,
        headers={"Authorization": f"token {hub.user_token(path.split('/')[0])}"},
        timeout=60,
    )


def test_a_user_under_budget_starts_and_over_it_is_refused_a_403_naming_it_and_nothing_is_made(
    hub,
):
    before = report(hub, "ana").json()
    assert before["limits"]["monthly_budget"] == 4
    assert before["sources"]["monthly_budget"] == "group metered"
    assert before["spend"] == {"amount": 0, "unit": "credits", "error": None}
    hub.start_workspace("ana", "one", SMALL)  # under the budget: it starts
    spent = spend_past(hub, "ana", 4)
    hub.stop_workspace("ana", "one")
    r = hub.api("POST", "/users/ana/servers/two", {"user_options": SMALL})
    assert r.status_code == 403, r.text
    message = r.json()["message"]
    assert message.startswith("monthly_budget: ana used "), message
    assert " of 4 credits this month (limit of group metered); nothing more starts until an " in (
        message
    )
    assert float(message.split()[3]) >= spent["amount"]  # the spend as the ledger has it now
    nothing_created(hub, "ana", "two")
    # a workspace that ran before is refused too: the budget is the user's, not a workspace's
    assert hub.api("POST", "/users/ana/servers/one").status_code == 403
    # an admin raises ana's own budget by REST (the user's level wins over the group's)
    raised = set_limits(hub, "ana", {"monthly_budget": 100000})
    assert raised["sources"]["monthly_budget"] == "user ana"
    hub.start_workspace("ana", "two", SMALL)
    hub.stop_workspace("ana", "two")
    set_limits(hub, "ana", {})


def test_a_cluster_start_over_the_budget_is_refused_naming_it_and_creates_nothing(hub):
    set_limits(hub, "ana", {"monthly_budget": 100000})
    hub.start_workspace("ana", "lab", SMALL)
    spend_past(hub, "ana", 1)
    set_limits(hub, "ana", {"monthly_budget": 1})  # spent more than that already
    body = {"type": "dynamic", "min_members": 0, "max_members": 2}
    r = clusters_api(hub, "POST", "ana/lab", {**body, "resource_model": "standard-small"})
    assert r.status_code == 403, r.text
    assert r.json()["message"].startswith("monthly_budget: ana used "), r.text
    assert "of 1 credits this month (limit of user ana)" in r.json()["message"]
    assert clusters_api(hub, "GET", "ana/lab").status_code == 404
    assert container_names(f"{PREFIX}-cluster-") == []
    hub.stop_workspace("ana", "lab")
    set_limits(hub, "ana", {})


def test_another_users_token_can_neither_see_nor_set_a_budget_and_the_owner_cannot_raise_it(hub):
    ana, ben = hub.user_token("ana"), hub.user_token("ben")
    own = report(hub, "ana", token=ana)
    assert own.status_code == 200 and own.json()["limits"]["monthly_budget"] == 4
    assert own.json()["spend"]["unit"] == "credits"  # what the home page shows her
    session, answer = hub.log_in("ana", PASSWORD)
    assert answer.status_code == 302
    home = session.get(f"{hub.url}/hub/home", timeout=30).text
    assert "bench-quota-monthly_budget" in home and "Spend this month (UTC)" in home
    assert report(hub, "ana", token=ben).status_code in (403, 404)
    for token in (ben, ana):
        r = hub.api("PUT", "/bench/quotas/users/ana", {"monthly_budget": 10**6}, token=token)
        assert r.status_code == 403, r.text
        group = hub.api(
            "PUT", "/bench/quotas/groups/metered", {"monthly_budget": None}, token=token
        )
        assert group.status_code in (403, 404), group.text
    assert report(hub, "ana").json()["own"] == {}
    assert hub.api("GET", "/bench/quotas/groups/metered").json()["limits"] == {
        "monthly_budget": 4.0
    }
    # bad input: a 400 naming the field, and nothing changes
    bad = hub.api("PUT", "/bench/quotas/users/ana", {"monthly_budget": -1})
    assert bad.status_code == 400 and bad.json()["message"].startswith("monthly_budget: ")
    assert report(hub, "ana").json()["own"] == {}


def test_when_the_ledger_cannot_answer_a_user_with_a_budget_is_refused_503_and_others_start(hub):
    pid = hub.service_pid("lifecycle")
    assert pid is not None
    set_limits(hub, "ana", {"monthly_budget": 100000})  # far under it: only the ledger is down
    os.kill(pid, signal.SIGSTOP)  # the service takes connections and never answers
    try:
        r = hub.api("POST", "/users/ana/servers/three", {"user_options": SMALL})
        assert r.status_code == 503, r.text
        assert r.json()["message"].startswith(
            "monthly_budget: the budget cannot be checked: lifecycle service unavailable"
        ), r.text
        nothing_created(hub, "ana", "three")
        spend = report(hub, "ana").json()["spend"]
        assert spend["amount"] is None and "lifecycle service unavailable" in spend["error"]
        # a user without a budget does not wait for the ledger at all
        hub.start_workspace("ben", "lab", SMALL)
    finally:
        os.kill(pid, signal.SIGCONT)
    hub.start_workspace("ana", "three", SMALL)
    hub.stop_workspace("ana", "three")
    hub.stop_workspace("ben", "lab")
    set_limits(hub, "ana", {})


def test_cluster_scratch_counts_in_max_storage_gb_and_a_cluster_within_it_starts(hub):
    set_limits(hub, "cleo", {"max_storage_gb": 3})
    hub.start_workspace("cleo", "lab", SMALL)  # 1 GB of /data
    body = {"type": "static", "members": 2, "resource_model": "standard-small", "scratch_gb": 2}
    r = clusters_api(hub, "POST", "cleo/lab", body)
    assert r.status_code == 400, r.text
    assert r.json()["message"] == (
        "scratch_gb: 2 x 2 GB of /scratch (4 GB in all) does not fit: cleo's storage quota is "
        "3 GB (max_storage_gb, limit of user cleo), of which 1 GB is allocated, so 2 GB is left; "
        "choose at most 1 GB per member, or fewer members (1 fit at 2 GB)"
    )
    assert clusters_api(hub, "GET", "cleo/lab").status_code == 404
    assert container_names(f"{PREFIX}-cluster-") == []
    # within the limit: one member with 2 GB of scratch (1 + 2 = 3 GB)
    r = clusters_api(hub, "POST", "cleo/lab", {**body, "members": 1})
    assert r.status_code == 202, r.text

    def member_up():
        members = clusters_api(hub, "GET", "cleo/lab").json().get("members") or []
        return members if members and members[0]["state"] == "idle" else None

    wait(member_up, 120, "cleo's member is up", step=1)
    assert report(hub, "cleo").json()["use"]["storage_gb"] == 3
    assert clusters_api(hub, "DELETE", "cleo/lab").status_code in (202, 204)
    wait(lambda: container_names(f"{PREFIX}-cluster-") == [], 60, "the cluster is gone", step=0.5)
    hub.stop_workspace("cleo", "lab")
    set_limits(hub, "cleo", {})
