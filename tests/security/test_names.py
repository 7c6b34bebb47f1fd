"""Names that join a user and a workspace must never let two users' workspaces meet.

With "--" as the separator, keys such as user "bob--proj"'s workspace "2" and user "bob"'s
"proj--2" mapped to one egress record file; the key quoted ("/" as "%2F") keeps them apart
whatever the name rules are. (Container names were already unambiguous: dockerspawner 14
escapes "-" in user names, so an escaped user name never contains "--".)
"""

from __future__ import annotations

from benchhub.egress_state import EgressState


def test_egress_records_of_look_alike_names_are_separate(tmp_path):
    state = EgressState(tmp_path)
    state.register("bob--proj/2", "c1", "10.9.0.10", ["a.example.org"])
    state.register("bob/proj--2", "c2", "10.9.0.11", ["b.example.org"])
    registered = state.registered()
    assert registered["bob--proj/2"]["entries"] == ["a.example.org"]
    assert registered["bob/proj--2"]["entries"] == ["b.example.org"]
    assert state.forget("bob/proj--2", 0.0)
    assert set(state.registered()) == {"bob--proj/2"}  # the other user's record is untouched


def test_a_name_jupyterhub_would_refuse_is_a_400_that_creates_nothing(hub):
    """JupyterHub 6 keeps named servers only under "safe slug" names; BenchHub's own rule
    was wider (capitals, "_", 63 characters), so such a name passed it and then failed inside
    JupyterHub with a 500. The rules are one now."""
    hub.ensure_user("nora")
    for name in ("My_Workspace", "two--hyphens", "x" * 31):
        r = hub.api("POST", f"/users/nora/servers/{name}", {"user_options": {}})
        assert r.status_code == 400, (name, r.status_code, r.text)
        assert "lower-case letters" in r.json()["message"]
    assert hub.workspaces("nora") == {}
