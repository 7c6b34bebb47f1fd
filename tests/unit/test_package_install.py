"""The spawner's package settings and the start-time budget (the install steps themselves run on
real containers in tests/integration/test_packages.py)."""

from __future__ import annotations

import pytest
from traitlets import Dict, Float, TraitError
from traitlets.config import LoggingConfigurable

from bench_spawner.package_install import WorkspacePackages


class SpawnerBase(LoggingConfigurable):
    """What the mixin needs of JupyterHub's Spawner here: start_timeout, user_options and the
    pre-spawn hook it extends."""

    start_timeout = Float(120)
    user_options = Dict()

    def run_pre_spawn_hook(self):
        return "the configured hook ran"


class Spawner(WorkspacePackages, SpawnerBase):
    pass


PACKAGES = {"packages": {"pip": ["six"], "apt": [], "r": []}}
NONE = {"packages": {"pip": [], "apt": [], "r": []}}


def test_a_start_with_packages_gets_the_install_time_on_top_of_start_timeout():
    spawner = Spawner(package_install_timeout=300)
    spawner.user_options = PACKAGES
    assert spawner.run_pre_spawn_hook() == "the configured hook ran"
    assert spawner.start_timeout == 420


def test_a_start_without_packages_keeps_start_timeout_and_the_extra_never_accumulates():
    spawner = Spawner(package_install_timeout=300)
    for options, expected in [(NONE, 120), (PACKAGES, 420), (PACKAGES, 420), ({}, 120)]:
        spawner.user_options = options
        spawner.run_pre_spawn_hook()
        assert spawner.start_timeout == expected, options


@pytest.mark.parametrize("setting", ["package_install_timeout", "package_install_concurrency"])
def test_settings_that_cannot_work_are_refused_saying_how_to_fix_them(setting):
    with pytest.raises(TraitError, match=f"c.BenchSpawner.{setting} must be positive"):
        Spawner(**{setting: 0})


def test_the_install_engine_outlives_the_install_budget():
    # the budget's deadline must end a slow install (a reason naming the setting), not the
    # docker client's own socket timeout (an unexplained read error)
    engine = Spawner(package_install_timeout=30, package_install_concurrency=2).package_engine
    assert engine.timeout > 30
