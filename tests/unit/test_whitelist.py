"""URL whitelist rules from the ICA Bench documentation (seeds 000 and 001)."""

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from benchhub.whitelist import (
    MAX_ENTRIES,
    WhitelistEntry,
    WhitelistProblem,
    parse_whitelist,
)

# "Example URLs accepted" in the ICA docs, plus the leading-dot and trailing-slash examples.
SEED_ACCEPTED = [
    ("example.com", WhitelistEntry(None, "example.com", False, None)),
    ("www.example.com", WhitelistEntry(None, "www.example.com", False, None)),
    ("https://www.example.com", WhitelistEntry("https", "www.example.com", False, None)),
    ("subdomain.example.com", WhitelistEntry(None, "subdomain.example.com", False, None)),
    (
        "subdomain.example.com/folder",
        WhitelistEntry(None, "subdomain.example.com", False, "/folder"),
    ),
    (
        "subdomain.example.com/folder/subfolder",
        WhitelistEntry(None, "subdomain.example.com", False, "/folder/subfolder"),
    ),
    ("sub-domain.example.com", WhitelistEntry(None, "sub-domain.example.com", False, None)),
    ("sub_domain.example.com", WhitelistEntry(None, "sub_domain.example.com", False, None)),
    ("example.co.uk", WhitelistEntry(None, "example.co.uk", False, None)),
    ("subdomain.example.co.uk", WhitelistEntry(None, "subdomain.example.co.uk", False, None)),
    ("sub-domain.example.co.uk", WhitelistEntry(None, "sub-domain.example.co.uk", False, None)),
    (".example.com", WhitelistEntry(None, "example.com", True, None)),
    ("ftp.example.net/folder/", WhitelistEntry(None, "ftp.example.net", False, "/folder/")),
]


@pytest.mark.parametrize("text, entry", SEED_ACCEPTED, ids=[t for t, _ in SEED_ACCEPTED])
def test_seed_examples_are_accepted(text, entry):
    entries, problems = parse_whitelist(text)
    assert problems == []
    assert entries == [entry]
    assert str(entries[0]) == text


def test_seed_data_science_whitelist_is_accepted():
    text = (
        "index.example.org\nfiles.example.org\nrepo.example.com\nconda.example.org\n"
        "github.com\ncran.r-project.org\nbioconductor.org\nwww.npmjs.com\nmvnrepository.com\n"
    )
    entries, problems = parse_whitelist(text)
    assert problems == []
    assert [str(e) for e in entries] == text.split()


def test_trailing_slash_is_kept_exactly():
    entries, _ = parse_whitelist(["ftp.example.net/folder/", "ftp.example.net/folder"])
    assert [e.path for e in entries] == ["/folder/", "/folder"]
    assert entries[0] != entries[1]


def test_host_and_scheme_are_lower_cased_but_the_path_is_kept():
    entries, problems = parse_whitelist("HTTPS://WWW.Example.COM/Some/Path?Q=A")
    assert problems == []
    assert str(entries[0]) == "https://www.example.com/Some/Path?Q=A"


def test_path_may_use_every_seed_regex_character():
    path = "/a-Z_0@1:2%3+4.5~6#7?8&9/=x"
    entries, problems = parse_whitelist(f"http://example.org{path}")
    assert problems == []
    assert entries[0].path == path


REJECTED = [
    ("exa--.com", "label 'exa--' must not end with '-' or '_'"),
    ("-example.com", "label '-example' must not begin with '-' or '_'"),
    ("example_.com", "label 'example_' must not end with '-' or '_'"),
    ("www._example.com", "label '_example' must not begin with '-' or '_'"),
    ("example..com", "empty label ('..')"),
    ("..example.com", "empty label ('..')"),
    ("example.com.", "must not end with '.'"),
    ("localhost", "host 'localhost' has a single label"),
    (".com", "host 'com' has a single label"),
    ("example.c", "top-level domain 'c' must be 2 to 6 letters"),
    ("example.company", "top-level domain 'company' must be 2 to 6 letters"),
    ("10.0.0.1", "top-level domain '1' must be 2 to 6 letters"),
    ("exa!mple.com", "label 'exa!mple' contains '!'"),
    ("bücher.de", "label 'bücher' contains 'ü'"),
    ("a" * 64 + ".com", "is 64 characters; a label must be 1 to 63 characters"),
    ("ftp://example.com", "scheme 'ftp://' is not allowed; use http://, https:// or no scheme"),
    ("://example.com", "scheme '://' is not allowed"),
    ("example.com:8080", "ports are not allowed"),
    ("https://example.com:443/x", "ports are not allowed"),
    ("user@example.com", "user names ('user@') are not allowed"),
    ("https://", "the host is missing"),
    ("/folder", "the host is missing"),
    ("example.com/a|b", "the path contains '|'; allowed path characters are"),
    ("example.com,github.com", "not commas; put one URL per line"),
    (".".join(["a" * 63] * 5) + ".com", "the host is 323 characters; at most 263 are allowed"),
]


@pytest.mark.parametrize("text, rule", REJECTED, ids=[t[:40] for t, _ in REJECTED])
def test_rejected_examples_name_the_rule(text, rule):
    entries, problems = parse_whitelist(text)
    assert entries == []
    assert problems == [WhitelistProblem(1, text, problems[0].rule)]
    assert rule in problems[0].rule


def test_host_of_263_characters_is_accepted_and_264_refused():
    labels = ["a" * 63] * 4  # 4 * 63 + 3 dots = 255
    host_263 = ".".join(labels) + ".abcd" + ".ab"  # 255 + 5 + 3 = 263
    assert len(host_263) == 263
    assert parse_whitelist(host_263)[1] == []
    _, problems = parse_whitelist("." + host_263)
    assert "the host is 264 characters; at most 263 are allowed" in problems[0].rule


def test_line_numbers_count_blank_lines_and_whitespace_separates_entries():
    text = "example.com\n\n  exa--.com   github.com\r\nlocalhost\n"
    entries, problems = parse_whitelist(text)
    assert [str(e) for e in entries] == ["example.com", "github.com"]
    assert [(p.line, p.entry) for p in problems] == [(3, "exa--.com"), (4, "localhost")]


def test_a_list_is_taken_as_lines():
    entries, problems = parse_whitelist(["example.com", "", "bad..com"])
    assert [str(e) for e in entries] == ["example.com"]
    assert [(p.line, p.entry) for p in problems] == [(3, "bad..com")]


def test_empty_whitelist_is_fine():
    assert parse_whitelist("") == ([], [])
    assert parse_whitelist([]) == ([], [])


def test_duplicates_are_kept():
    entries, _ = parse_whitelist("Example.com\nexample.com")
    assert len(entries) == 2


def test_too_many_entries_is_one_problem_on_the_first_excess_entry():
    lines = [f"host{i}.example.com" for i in range(MAX_ENTRIES + 7)]
    entries, problems = parse_whitelist("\n".join(lines))
    assert len(entries) == MAX_ENTRIES
    assert len(problems) == 1
    assert problems[0].line == MAX_ENTRIES + 1
    assert problems[0].entry == lines[MAX_ENTRIES]
    assert f"{MAX_ENTRIES + 7} given, at most {MAX_ENTRIES}" in problems[0].rule


@pytest.mark.parametrize("value", [5, None, ["ok.com", 3]])
def test_non_text_is_a_type_error(value):
    with pytest.raises(TypeError):
        parse_whitelist(value)


# --- properties: entries built from the grammar ------------------------------------------

ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
LETTERS = ALNUM[:52]
PATH_CHARS = ALNUM + "-@:%_+.~#?&/="


@st.composite
def labels(draw, min_size=1, max_size=63):
    size = draw(st.integers(min_size, max_size))
    if size == 1:
        return draw(st.sampled_from(ALNUM))
    inner = draw(st.text(ALNUM + "-_", min_size=size - 2, max_size=size - 2))
    return draw(st.sampled_from(ALNUM)) + inner + draw(st.sampled_from(ALNUM))


@st.composite
def valid_entries(draw):
    scheme = draw(st.sampled_from(["", "http://", "https://", "HTTPS://"]))
    dot = draw(st.sampled_from(["", "."]))
    host_labels = draw(st.lists(labels(), min_size=1, max_size=4))
    tld = draw(st.text(LETTERS, min_size=2, max_size=6))
    host = ".".join([*host_labels, tld])
    assume(len(dot + host) <= 263)
    path = draw(st.one_of(st.just(""), st.text(PATH_CHARS, max_size=40).map(lambda p: "/" + p)))
    return scheme + dot + host + path


@given(valid_entries())
def test_entries_built_from_the_grammar_are_accepted(text):
    entries, problems = parse_whitelist(text)
    assert problems == []
    scheme, sep, rest = text.rpartition("://") if "://" in text else ("", "", text)
    host, slash, path = rest.partition("/")
    assert str(entries[0]) == scheme.lower() + sep + host.lower() + slash + path


def _refused(text):
    entries, problems = parse_whitelist(text)
    assert entries == [] and len(problems) == 1, text
    return problems[0].rule


@given(labels(min_size=1, max_size=20), st.sampled_from("-_"), st.booleans())
def test_label_starting_or_ending_with_dash_or_underscore_is_refused(label, char, at_start):
    bad = char + label if at_start else label + char
    rule = _refused(f"www.{bad}.com")
    assert "must not begin" in rule if at_start else "must not end" in rule


@given(st.lists(labels(max_size=10), min_size=2, max_size=4), st.integers(0, 3))
def test_empty_label_is_refused(parts, where):
    parts = [*parts, "com"]
    parts.insert(where % len(parts) or 1, "")
    assert "empty label" in _refused(".".join(parts))


@given(labels(min_size=64, max_size=100))
def test_label_over_63_characters_is_refused(label):
    assert "a label must be 1 to 63 characters" in _refused(f"{label}.com")


@given(st.lists(labels(min_size=40), min_size=6, max_size=8))
def test_host_over_263_characters_is_refused(parts):
    host = ".".join([*parts, "com"])
    assume(len(host) > 263)
    assert f"the host is {len(host)} characters" in _refused(host)
