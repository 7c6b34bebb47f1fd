"""``c.BenchQuotas``: limits from configuration are checked when loaded, REST-set user limits
are kept in a file that a restart reads back, and the levels combine as documented."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from traitlets import TraitError
from traitlets.config import Config

from bench_spawner.quota_admission import GROUP_PROPERTY, BenchQuotas


def quotas(tmp_path, **settings) -> BenchQuotas:
    config = Config()
    config.BenchQuotas.users_file = str(tmp_path / "quotas-users.json")
    for name, value in settings.items():
        setattr(config.BenchQuotas, name, value)
    return BenchQuotas(config=config)


def test_a_limit_in_the_configuration_that_is_not_one_stops_the_hub_naming_it(tmp_path):
    with pytest.raises(TraitError, match=r"group_limits\['free'\]: max_cpu: is not a limit"):
        quotas(tmp_path, group_limits={"free": {"max_cpu": 1}})
    with pytest.raises(TraitError, match=r"user_limits\['\*'\]: max_gpus: 0.5 is not a whole"):
        quotas(tmp_path, user_limits={"*": {"max_gpus": 0.5}})


async def test_limits_set_by_rest_are_kept_in_a_file_a_new_process_reads_back(tmp_path):
    first = quotas(tmp_path)
    await first.store_user("alice", {"max_cpus": 4.0})
    await first.store_user("bob", {"max_gpus": 0})
    await first.store_user("bob", {})  # removed: configuration applies again
    again = quotas(tmp_path)  # e.g. after a hub restart
    assert again.stored_users() == {"alice": {"max_cpus": 4.0}}
    assert json.loads((tmp_path / "quotas-users.json").read_text()) == {"alice": {"max_cpus": 4.0}}
    assert (tmp_path / "quotas-users.json").stat().st_mode & 0o777 == 0o600


def test_a_user_gets_their_own_value_then_the_most_generous_group_then_the_default(tmp_path):
    settings = quotas(
        tmp_path,
        user_limits={"*": {"max_running_workspaces": 3, "max_cpus": 8}, "alice": {"max_gpus": 1}},
        group_limits={"free-tier": {"max_running_workspaces": 1}, "lab": {"max_cpus": 2}},
    )
    # REST-set in the group's properties: over the configuration, key by key
    lab = SimpleNamespace(name="lab", properties={GROUP_PROPERTY: {"max_cpus": 16}})
    free = SimpleNamespace(name="free-tier", properties={})
    alice = SimpleNamespace(name="alice", groups=[free, lab])
    found = settings.limits_for(alice)
    assert (found["max_running_workspaces"].value, found["max_running_workspaces"].source) == (
        1,
        "group free-tier",
    )
    assert (found["max_cpus"].value, found["max_cpus"].source) == (16, "group lab")
    assert (found["max_gpus"].value, found["max_gpus"].source) == (1, "user alice")
    assert found["max_memory_gb"].value is None


def test_a_bad_document_stored_outside_benchhub_counts_as_none(tmp_path):
    settings = quotas(tmp_path, user_limits={"*": {"max_cpus": 8}})
    broken = SimpleNamespace(name="lab", properties={GROUP_PROPERTY: {"max_cpus": "lots"}})
    alice = SimpleNamespace(name="alice", groups=[broken])
    assert settings.limits_for(alice)["max_cpus"].source == "site default"
