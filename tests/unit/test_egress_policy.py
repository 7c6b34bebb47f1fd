"""Egress policy: whitelist normalisation, the squid.conf it becomes, and squid's refusals."""

import random
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchhub.whitelist import WhitelistEntry, covers, normalise, parse_whitelist
from hub_services.egress.policy import (
    MAX_LINE_CHARS,
    Refusal,
    WorkspaceEgress,
    parse_access_log,
    render_squid_conf,
    summarise,
)


def entries(text):
    parsed, problems = parse_whitelist(text)
    assert problems == []
    return parsed


def normalised(text):
    return [str(entry) for entry in normalise(entries(text))]


# --- normalise ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        # squid aborts on a dstdomain list holding both x.org and .x.org: keep only .x.org
        ("x.org\n.x.org", [".x.org"]),
        (".x.org\nx.org", [".x.org"]),
        ("example.com\nExample.COM\nexample.com", ["example.com"]),
        (
            ".x.org\na.x.org\n.a.x.org\nx.org/p\nb.a.x.org/q/\nhttps://a.x.org\nhttp://.x.org/z",
            [".x.org"],
        ),
        ("x.org\na.x.org", ["a.x.org", "x.org"]),
        ("x.org\n.x.org/docs", ["x.org", ".x.org/docs"]),
        ("sub.example.com/folder\nsub.example.com", ["sub.example.com"]),
        ("https://example.com\nhttp://example.com/x\nexample.com", ["example.com"]),
        ("https://example.com\nexample.com/x", ["example.com/x", "https://example.com"]),
        ("http://example.com\nhttps://example.com", ["http://example.com", "https://example.com"]),
        ("x.org/folder/\nx.org/folder", ["x.org/folder"]),
        ("x.org/folder/", ["x.org/folder/"]),
        ("x.org/a\nx.org/a/b\nx.org/ab\nx.org/b", ["x.org/a", "x.org/b"]),
        ("https://x.org/a\nx.org/a/b", ["x.org/a/b", "https://x.org/a"]),
        ("", []),
    ],
)
def test_normalise_keeps_only_entries_nothing_else_covers(text, expected):
    assert normalised(text) == expected


def test_normalise_is_sorted_whatever_the_input_order_and_leaves_the_input_alone():
    given_entries = entries("index.example.org\n.x.org\nb.org/p\nhttps://a.org\nx.org\na.org/q")
    before = list(given_entries)
    result = normalise(given_entries)
    assert given_entries == before
    for seed in range(5):
        shuffled = list(given_entries)
        random.Random(seed).shuffle(shuffled)
        assert normalise(shuffled) == result
    assert [str(e) for e in result] == [
        "a.org/q",
        "https://a.org",
        "b.org/p",
        "index.example.org",
        ".x.org",
    ]


def test_the_seed_data_science_whitelist_needs_no_change():
    text = "index.example.org\nfiles.example.org\nrepo.example.com\nconda.example.org\ngithub.com"
    assert sorted(normalised(text)) == sorted(text.split())


def test_covers_follows_host_scheme_and_path_rules():
    (dot, plain, sub, https_sub, path, deeper) = entries(
        ".x.org\nx.org\na.x.org\nhttps://a.x.org\na.x.org/docs\na.x.org/docs/v1"
    )
    assert covers(dot, plain) and covers(dot, sub) and covers(dot, https_sub)
    assert not covers(plain, sub) and not covers(plain, dot)
    assert covers(sub, https_sub) and not covers(https_sub, sub)
    assert covers(sub, path) and covers(path, deeper) and not covers(deeper, path)
    assert not covers(https_sub, path)


HOSTS = ["x.org", "a.x.org", "b.a.x.org", "y.org", "ax.org"]
PATHS = [None, "/", "/a", "/a/", "/a/b", "/ab", "/b"]
entry_strategy = st.builds(
    WhitelistEntry,
    st.sampled_from([None, "http", "https"]),
    st.sampled_from(HOSTS),
    st.booleans(),
    st.sampled_from(PATHS),
)


@given(st.lists(entry_strategy, max_size=25))
def test_normalise_properties(given_entries):
    result = normalise(given_entries)
    assert normalise(result) == result
    assert set(result) <= set(given_entries)
    for one in result:
        assert not any(covers(other, one) for other in result if other != one)
    for entry in given_entries:
        assert any(covers(kept, entry) for kept in result)
    # the fast algorithm agrees with the definition: the maximal entries under covers()
    unique = set(given_entries)
    maximal = {e for e in unique if not any(covers(o, e) for o in unique if o != e)}
    assert set(result) == maximal


# --- render_squid_conf ----------------------------------------------------------------------


def workspace(key, address, text=""):
    return WorkspaceEgress(key, address, tuple(entries(text)))


def lines_of(conf):
    return conf.splitlines()


def acl_values(conf, name):
    """All values of ACL ``name`` (over repeated lines), after the type and flags."""
    values = []
    for line in lines_of(conf):
        words = line.split()
        if words[:2] == ["acl", name]:
            values += [w for w in words[3:] if w not in ("-n", "-i")]
    return values


def test_a_workspace_gets_its_own_source_domain_and_path_acls():
    conf = render_squid_conf(
        [
            workspace(
                "alice/ws1",
                "172.30.0.17",
                "index.example.org\n.x.org\nx.org\nsub.example.com/folder",
            )
        ]
    )
    lines = lines_of(conf)
    assert "acl ws0 src 172.30.0.17/32" in lines
    assert "acl ws0_https dstdomain -n index.example.org sub.example.com .x.org" in lines
    assert "acl ws0_http dstdomain -n index.example.org .x.org" in lines
    assert r"acl ws0_paths url_regex -i ^http://sub\.example\.com(:80)?/folder" in lines
    assert "http_access allow ws0 CONNECT ws0_https !forbidden_dst" in lines
    assert "http_access allow ws0 !CONNECT ws0_http !forbidden_dst" in lines
    assert "http_access allow ws0 !CONNECT ws0_paths !forbidden_dst" in lines
    assert lines[-1] == "http_access deny all"
    for rule in ("http_access deny CONNECT !SSL_ports", "http_access deny !CONNECT !HTTP_port"):
        assert lines.index(rule) < lines.index("acl ws0 src 172.30.0.17/32")


def test_the_proxy_caches_nothing_hides_clients_and_logs_in_the_bench_format():
    conf = render_squid_conf([], http_port=4128, access_log="/logs/access.log")
    lines = lines_of(conf)
    for line in (
        "http_port 4128",
        "cache deny all",
        "via off",
        "forwarded_for delete",
        "logformat bench %ts.%03tu %>a %Ss/%>Hs %rm %ru",
        "access_log stdio:/logs/access.log bench",
        "acl SSL_ports port 443",
        "coredump_dir /var/spool/squid",
        "shutdown_lifetime 1 seconds",
        "logfile_rotate 1",
    ):
        assert line in lines
    assert "pid_filename none" in lines  # a stale PID file would stop a restarted proxy
    assert lines[-1] == "http_access deny all"


def test_empty_acl_lists_are_omitted_because_squid_refuses_them():
    conf = render_squid_conf(
        [
            workspace("a", "172.30.0.20", "https://only-tls.org"),
            workspace("b", "172.30.0.21", "http://plain.org"),
            workspace("c", "172.30.0.22", ""),
        ]
    )
    assert acl_values(conf, "ws0_https") == ["only-tls.org"]
    assert "ws0_http " not in conf and "ws0_paths" not in conf
    assert acl_values(conf, "ws1_http") == ["plain.org"]
    assert "ws1_https" not in conf and "ws1_paths" not in conf
    assert "acl ws2 src 172.30.0.22/32" in conf
    assert not [line for line in lines_of(conf) if line.startswith("http_access allow ws2")]


def test_each_rendered_domain_list_is_free_of_squid_conflicts_across_schemes():
    # normalise keeps both (a scheme entry never covers a scheme-less one), but the HTTPS
    # list would hold a.y.org and .y.org: squid aborts when a.y.org comes first
    conf = render_squid_conf([workspace("k", "172.30.0.20", "a.y.org\nhttps://.y.org")])
    assert acl_values(conf, "ws0_https") == [".y.org"]
    assert acl_values(conf, "ws0_http") == ["a.y.org"]


def test_path_entries_allow_their_host_over_https_and_only_the_prefix_over_http():
    conf = render_squid_conf(
        [
            workspace(
                "k",
                "172.30.0.20",
                "docs.org/guide/\nhttp://plain.org/only\nhttps://tls.org/ignored\n.cdn.org/pkg",
            )
        ]
    )
    assert acl_values(conf, "ws0_https") == [".cdn.org", "docs.org", "tls.org"]
    assert "ws0_http " not in conf
    patterns = [re.compile(p, re.IGNORECASE) for p in acl_values(conf, "ws0_paths")]
    assert len(patterns) == 3

    def allowed(url):
        return any(p.search(url) for p in patterns)

    assert allowed("http://docs.org/guide/intro.html")
    assert allowed("http://docs.org:80/guide/")
    assert not allowed("http://docs.org/guide")  # the trailing slash matters
    assert not allowed("http://docs.org:8080/guide/")
    assert not allowed("http://docs.org.evil.net/guide/")
    assert not allowed("http://evil.net/?u=http://docs.org/guide/")
    assert allowed("http://plain.org/only/this")
    assert not allowed("http://tls.org/ignored")
    assert allowed("http://cdn.org/pkg/a") and allowed("http://eu.west.cdn.org/pkg")
    assert not allowed("http://badcdn.org/pkg")


def test_path_regexes_escape_special_characters_and_stop_at_a_fragment():
    conf = render_squid_conf([workspace("k", "172.30.0.20", "http://x.org/a+b.c?d=1#part")])
    (pattern,) = acl_values(conf, "ws0_paths")
    assert pattern == r"^http://x\.org(:80)?/a\+b\.c\?d=1"
    assert re.search(pattern, "http://x.org/a+b.c?d=1&e=2")
    assert not re.search(pattern, "http://x.org/aab.c?d=1")


def test_path_entries_are_dropped_when_their_host_is_allowed_whole_over_http():
    conf = render_squid_conf([workspace("k", "172.30.0.20", "http://x.org\nx.org/folder")])
    assert "ws0_paths" not in conf
    assert acl_values(conf, "ws0_http") == ["x.org"]


def test_acl_names_follow_key_order_and_the_output_is_deterministic():
    spaces = [workspace(f"user{i}/ws", f"172.30.0.{20 + i}", f"host{i}.org") for i in range(5)]
    conf = render_squid_conf(spaces)
    assert render_squid_conf(list(reversed(spaces))) == conf
    assert "acl ws3 src 172.30.0.23/32" in lines_of(conf)


@pytest.mark.parametrize(
    "key", ["a\nhttp_access allow all", "a\rhttp_access allow all", "a\u2028x\x85y\\", "#\n\t"]
)
def test_keys_with_odd_characters_cannot_inject_configuration(key):
    conf = render_squid_conf([workspace(key, "172.30.0.20", "index.example.org")])
    reference = render_squid_conf([workspace("plain", "172.30.0.20", "index.example.org")])
    assert len(conf.splitlines()) == len(reference.splitlines())
    assert "http_access allow all" not in lines_of(conf)
    assert "\r" not in conf and "\u2028" not in conf and "\x85" not in conf
    assert not any(line.rstrip().endswith("\\") for line in lines_of(conf))


def test_a_very_long_key_stays_within_one_squid_line():
    conf = render_squid_conf([workspace("k" * 5000 + "\nhttp_access allow all", "172.30.0.2")])
    assert max(len(line) for line in lines_of(conf)) <= MAX_LINE_CHARS
    assert "http_access allow all" not in conf


@pytest.mark.parametrize(
    "address", ["172.30.0.17/32", "172.30.0.17\nhttp_access allow all", "::1", "172.30.0.256", ""]
)
def test_a_workspace_address_must_be_one_ipv4_address(address):
    with pytest.raises(ValueError, match="IPv4"):
        WorkspaceEgress("k", address, ())


@pytest.mark.parametrize(
    "entry",
    [
        WhitelistEntry(None, "x.org\nhttp_access allow all", False, None),
        WhitelistEntry(None, "x.org other.org", False, None),
        WhitelistEntry(None, "X.org", False, None),
        WhitelistEntry(None, "x.org", False, "/a b"),
        WhitelistEntry(None, "x.org", False, "/a\\"),
        WhitelistEntry("ftp", "x.org", False, None),
    ],
)
def test_entries_that_could_break_the_configuration_are_refused(entry):
    with pytest.raises(ValueError, match="whitelist entry"):
        WorkspaceEgress("k", "172.30.0.20", (entry,))


def test_two_workspaces_may_share_neither_key_nor_address():
    with pytest.raises(ValueError, match="share the address 172.30.0.20"):
        render_squid_conf([workspace("a", "172.30.0.20"), workspace("b", "172.30.0.20")])
    with pytest.raises(ValueError, match="share the key 'a'"):
        render_squid_conf([workspace("a", "172.30.0.20"), workspace("a", "172.30.0.21")])


@pytest.mark.parametrize(
    "settings",
    [
        {"http_port": 0},
        {"http_port": "3128"},
        {"access_log": "relative.log"},
        {"access_log": "/var/log/a log"},
        {"pid_filename": "/run/squid.pid\nhttp_access allow all"},
        {"forbidden_destinations": ["not-a-network"]},
    ],
)
def test_bad_settings_are_refused(settings):
    with pytest.raises(ValueError):
        render_squid_conf([], **settings)


def test_internal_destinations_are_refused_unless_configured_otherwise():
    conf = render_squid_conf([workspace("k", "172.30.0.20", "index.example.org")])
    forbidden = acl_values(conf, "forbidden_dst")
    assert {"127.0.0.0/8", "169.254.0.0/16", "10.0.0.0/8", "fe80::/10"} <= set(forbidden)
    open_conf = render_squid_conf(
        [workspace("k", "172.30.0.20", "index.example.org")], forbidden_destinations=()
    )
    assert "forbidden_dst" not in open_conf
    assert "http_access allow ws0 CONNECT ws0_https" in lines_of(open_conf)


def test_long_lists_are_split_over_lines_squid_can_read():
    text = "\n".join(f"host-number-{i}.example.org" for i in range(400))
    conf = render_squid_conf([workspace("k", "172.30.0.20", text)])
    assert len(acl_values(conf, "ws0_https")) == 400
    assert len([line for line in lines_of(conf) if line.startswith("acl ws0_https ")]) > 1
    assert max(len(line) for line in lines_of(conf)) <= MAX_LINE_CHARS


def test_a_path_too_long_for_a_squid_line_is_refused_naming_the_workspace():
    long_path = "/" + "a" * MAX_LINE_CHARS
    with pytest.raises(ValueError, match="workspace 'alice/ws1'.*shorten its path"):
        render_squid_conf([workspace("alice/ws1", "172.30.0.20", f"http://x.org{long_path}")])


# --- access log -----------------------------------------------------------------------------

ACCESS_LOG = """\
1718000000.123 172.30.0.17 TCP_DENIED/403 CONNECT evil.example.org:443
1718000001.456 172.30.0.17 TCP_DENIED/403 GET http://Evil.Example.org/path?x=1
1718000002.000 172.30.0.18 TCP_TUNNEL/200 CONNECT index.example.org:443
1718000003.000 172.30.0.17 TCP_MISS/200 GET http://index.example.org/simple/
1718000004.500 172.30.0.17 TCP_DENIED/403 CONNECT [2001:db8::1]:443
1718000005.000 172.30.0.18 TCP_DENIED/403 POST http://user@tracker.net:8080/collect
1718000006.000 172.30.0.17 NONE_NONE/400 NONE error:invalid-request

garbage
not-a-time 172.30.0.17 TCP_DENIED/403 GET http://x.org/
nan 172.30.0.17 TCP_DENIED/403 GET http://x.org/
1718000007.000 not-an-ip TCP_DENIED/403 GET http://x.org/
1718000008.000 172.30.0.17 TCP_DENIED/403 CONNECT x.org
1718000009.000 172.30.0.17 TCP_DENIED/403 GET -
1718000010.000 172.30.0.17 TCP_DENIED/403 GET http://x.org/ extra
1718000011.000 172.30.0.17 TCP_DENIED/403 CONNECT evil.example.org:443
"""


def test_only_denied_requests_are_kept_with_the_host_of_their_url():
    refusals = parse_access_log(ACCESS_LOG.splitlines(keepends=True))
    assert refusals == [
        Refusal("172.30.0.17", "evil.example.org", 1718000000.123),
        Refusal("172.30.0.17", "evil.example.org", 1718000001.456),
        Refusal("172.30.0.17", "2001:db8::1", 1718000004.5),
        Refusal("172.30.0.18", "tracker.net", 1718000005.0),
        Refusal("172.30.0.17", "evil.example.org", 1718000011.0),
    ]


def test_summary_counts_one_address_by_host_most_refused_first():
    refusals = parse_access_log(ACCESS_LOG.splitlines())
    assert summarise(refusals, "172.30.0.17") == [
        {"host": "evil.example.org", "count": 3, "first": 1718000000.123, "last": 1718000011.0},
        {"host": "2001:db8::1", "count": 1, "first": 1718000004.5, "last": 1718000004.5},
    ]
    assert summarise(refusals, "172.30.0.99") == []
    with pytest.raises(ValueError):
        summarise(refusals, "nobody")
