"""The gateway's squid lines (hub_services/egress/gateway.py): what they allow, what they refuse.

tests/integration/test_egress_gateway.py runs them in the real proxy."""

from __future__ import annotations

import pytest

from hub_services.egress.gateway import Gateway, WorkspaceRoute, gateway_lines
from hub_services.egress.policy import render_squid_conf

GATEWAY = Gateway(workspaces_port=8000, hub_port=8081, hub_host="10.0.0.5", hub_api_port=8081)


def test_each_route_is_its_own_peer_reached_only_by_its_decoded_prefix_on_the_workspaces_port():
    lines = gateway_lines(
        GATEWAY,
        [
            WorkspaceRoute("/user/bob/ws%2B1/", "10.251.0.9"),
            WorkspaceRoute("/user/a.b/x/", "10.251.0.4"),
        ],
    )
    # sorted by prefix: /user/a.b/x/ is gw0; the pattern is of the decoded, escaped prefix
    assert "acl gw0_path urlpath_regex ^/user/a\\.b/x/" in lines
    assert "acl gw1_path urlpath_regex ^/user/bob/ws\\+1/" in lines
    peer = "cache_peer 10.251.0.9 parent 8888 0 no-query originserver login=PASSTHRU name=gw1"
    assert peer in lines  # tokens in Authorization headers pass
    assert lines.index("cache_peer_access gw1 allow gateway_workspaces gw1_path") < lines.index(
        "cache_peer_access gw1 deny all"
    )
    assert "http_access allow gateway_hub gw0_src" in lines  # the relay: from a workspace only


def test_a_workspace_cannot_use_the_workspaces_port_to_reach_another_workspace():
    # squid listens on its overlay addresses too: a restricted workspace asking the
    # workspaces port for another's prefix is refused before any route's allow
    lines = gateway_lines(
        GATEWAY,
        [WorkspaceRoute("/user/a/b/", "10.251.0.4"), WorkspaceRoute("/user/c/d/", "10.251.0.20")],
    )
    assert "acl gateway_from_workspaces src 10.251.0.4/32 10.251.0.20/32" in lines
    refusal = lines.index("http_access deny gateway_workspaces gateway_from_workspaces")
    allows = [i for i, line in enumerate(lines) if line.startswith("http_access allow")]
    assert refusal < min(allows)
    assert not [line for line in gateway_lines(GATEWAY, []) if "gateway_from_workspaces" in line]


def test_anything_else_on_the_gateways_ports_is_refused_and_never_goes_direct():
    lines = gateway_lines(GATEWAY, [WorkspaceRoute("/user/a/b/", "10.251.0.4")])
    allows = [i for i, line in enumerate(lines) if line.startswith("http_access allow")]
    for port in ("gateway_workspaces", "gateway_hub"):
        assert max(allows) < lines.index(f"http_access deny {port}")
        assert f"never_direct allow {port}" in lines
        assert f"http_upgrade_request_protocols websocket allow {port}" in lines


def test_the_gateway_goes_before_the_forward_proxys_rules_and_after_the_cache_managers_refusal():
    lines = gateway_lines(GATEWAY, [])
    conf = render_squid_conf([], gateway=lines).splitlines()
    first_gateway_rule = conf.index("http_access deny gateway_workspaces")
    assert conf.index("http_access deny manager") < first_gateway_rule
    assert first_gateway_rule < conf.index("http_access deny CONNECT !SSL_ports")
    assert render_squid_conf([]) == render_squid_conf([], gateway=())  # single host: unchanged


@pytest.mark.parametrize(
    ("prefix", "says"),
    [
        ("/user/alice/bench", "ending in '/'"),
        ("user/alice/bench/", "ending in '/'"),
        ("/user/alice bench/", "ending in '/'"),
        ("/user/bob/my%20ws/", "cannot name exactly"),  # squid sees a space
        ("/user/bob/a%23b/", "cannot name exactly"),
        ("/user/a/b/ http_access allow all\n", "ending in '/'"),
    ],
)
def test_a_prefix_squid_could_not_match_exactly_is_refused(prefix, says):
    with pytest.raises(ValueError, match=says):
        WorkspaceRoute(prefix, "10.251.0.4")


@pytest.mark.parametrize(
    ("field", "route"),
    [
        ("address", lambda: WorkspaceRoute("/user/a/b/", "10.251.0")),
        ("address", lambda: WorkspaceRoute("/user/a/b/", "10.251.0.4 all")),
        ("port", lambda: WorkspaceRoute("/user/a/b/", "10.251.0.4", 0)),
        ("port", lambda: WorkspaceRoute("/user/a/b/", "10.251.0.4", True)),
        ("hub_host", lambda: Gateway(8000, 8081, "hub; rm", 8081)),
        ("hub_port", lambda: Gateway(8000, 8000, "hub", 8081)),
        ("hub_api_port", lambda: Gateway(8000, 8081, "hub", 70000)),
    ],
)
def test_bad_settings_are_refused_naming_the_field(field, route):
    with pytest.raises(ValueError, match=field):
        route()


def test_two_routes_with_one_prefix_or_one_address_are_refused():
    with pytest.raises(ValueError, match="share the prefix"):
        gateway_lines(
            GATEWAY,
            [WorkspaceRoute("/user/a/b/", "10.0.0.1"), WorkspaceRoute("/user/a/b/", "10.0.0.2")],
        )
    with pytest.raises(ValueError, match="share the address"):
        gateway_lines(
            GATEWAY,
            [WorkspaceRoute("/user/a/b/", "10.0.0.1"), WorkspaceRoute("/user/a/c/", "10.0.0.1")],
        )
