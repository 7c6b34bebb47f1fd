"""The administrator can log in on the embedded default (hole 7).

JupyterHub's shared-password authenticator lets ``admin_users`` in only with ``admin_password``,
which the embedded default left unset: "the user admin is an administrator" was false and
``/hub/admin`` unreachable. Now the first run generates one in the hub's state directory. This
hub is started the way ``make run`` starts it: without ``BENCHHUB_ADMIN_PASSWORD``.
"""

from __future__ import annotations

import stat

import pytest
from support.docker_cli import cleanup
from support.hub_harness import PASSWORD, HubProcess

PREFIX = "benchadm"


@pytest.fixture(scope="module")
def fresh_hub(tmp_path_factory):
    workdir = tmp_path_factory.mktemp(PREFIX)
    hub = HubProcess(workdir, prefix=PREFIX, env_overrides={"BENCHHUB_ADMIN_PASSWORD": ""})
    cleanup(PREFIX, hub.storage_root)
    hub.start()
    yield hub
    hub.stop()
    cleanup(PREFIX, hub.storage_root)


def test_admin_logs_in_with_the_generated_password_and_reaches_the_admin_panel(fresh_hub):
    kept = fresh_hub.workdir / "state" / "admin-password"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    password = kept.read_text().strip()
    assert len(password) >= 32

    session, r = fresh_hub.log_in("admin", password)
    assert r.status_code == 302, r.text[:300]
    panel = session.get(f"{fresh_hub.url}/hub/admin", allow_redirects=False, timeout=30)
    assert panel.status_code == 200, (panel.status_code, panel.headers.get("Location"))


def test_the_users_password_does_not_make_anyone_an_admin(fresh_hub):
    _, r = fresh_hub.log_in("admin", PASSWORD)
    assert r.status_code == 403  # the login form again, refused

    session, r = fresh_hub.log_in("ursula", PASSWORD)
    assert r.status_code == 302  # a user logs in with the users' password ...
    panel = session.get(f"{fresh_hub.url}/hub/admin", allow_redirects=False, timeout=30)
    assert panel.status_code == 403  # ... and is no admin
