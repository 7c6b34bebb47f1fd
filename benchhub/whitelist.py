"""The URL whitelist of a restricted workspace: parse and check entries, ICA Bench rules.

An entry is::

    [http:// | https://] [.] label(.label)* . tld [/path]

* the host (with its optional leading dot) is 1 to 263 characters including dots;
  a leading dot means "this domain and all its subdomains";
* a label is 1 to 63 letters, digits, ``-`` or ``_``, and does not begin or end with
  ``-`` or ``_``; a dot only follows a label (no ``..``, no trailing dot);
* the last label (top-level domain) is 2 to 6 letters, so a single-label host is refused;
* the optional path starts with ``/`` and uses only ``-a-zA-Z0-9@:%_+.~#?&/=``; it is kept
  exactly as written, trailing slash included (``ftp.example.net/folder/`` does not allow
  ``ftp.example.net/folder``);
* ports and user names are refused; the host is case-insensitive and stored lower-case.

Entries are separated by new lines; any whitespace also separates entries (a URL has
none). Each problem carries the 1-based line it came from. :func:`normalise` then drops
duplicates and entries another entry covers (squid refuses a list with both ``x.org`` and
``.x.org``): the workspace options store the normalised list, and the egress proxy's
configuration is rendered from it.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass

MAX_ENTRIES = 500
MAX_HOST_CHARS = 263
MAX_LABEL_CHARS = 63
SCHEMES = ("http", "https")

_LABEL_CHARS = frozenset(string.ascii_letters + string.digits + "-_")
_PATH_CHARS = frozenset(string.ascii_letters + string.digits + "-@:%_+.~#?&/=")
_PATH_CHARS_TEXT = "letters, digits and - @ : % _ + . ~ # ? & / ="
_TLD_PATTERN = re.compile(r"[A-Za-z]{2,6}")
# A scheme is whatever precedes "://" before the first "/" of the entry.
_SCHEME_PATTERN = re.compile(r"([^/]*)://")


@dataclass(frozen=True)
class WhitelistEntry:
    """One accepted entry. ``host`` is lower-case and without the leading dot, which is
    recorded as ``include_subdomains``; ``path`` starts with ``/`` or is None."""

    scheme: str | None
    host: str
    include_subdomains: bool
    path: str | None

    def __str__(self) -> str:
        """The normalised entry text, e.g. ``"https://.example.com/folder/"``."""
        scheme = f"{self.scheme}://" if self.scheme else ""
        dot = "." if self.include_subdomains else ""
        return f"{scheme}{dot}{self.host}{self.path or ''}"


@dataclass(frozen=True)
class WhitelistProblem:
    """One refused entry: its 1-based ``line``, the ``entry`` as written, and ``rule``,
    a sentence naming the rule it breaks and how to fix it."""

    line: int
    entry: str
    rule: str


class _Refused(Exception):
    """Internal: carries the rule an entry breaks."""


def _label_rule(label: str) -> str | None:
    """The rule a single non-empty host label breaks, or None."""
    bad = [ch for ch in label if ch not in _LABEL_CHARS]
    if bad:
        return (
            f"label '{label}' contains '{bad[0]}'; labels may contain only "
            "letters A-Z, digits 0-9, '-' and '_'"
        )
    if len(label) > MAX_LABEL_CHARS:
        return (
            f"label '{label}' is {len(label)} characters; "
            f"a label must be 1 to {MAX_LABEL_CHARS} characters"
        )
    if label[0] in "-_":
        return f"label '{label}' must not begin with '-' or '_'"
    if label[-1] in "-_":
        return f"label '{label}' must not end with '-' or '_'"
    return None


def _check_host(host: str) -> None:
    """Raise :class:`_Refused` unless ``host`` (leading dot already removed) is valid."""
    if not host:
        raise _Refused("the host is missing; write a domain such as example.com")
    if host.endswith("."):
        raise _Refused("the host must not end with '.'; a dot must be followed by a label")
    labels = host.split(".")
    if "" in labels:
        raise _Refused(
            "the host has an empty label ('..'); a dot must follow a domain or sub-domain"
        )
    for label in labels:
        rule = _label_rule(label)
        if rule:
            raise _Refused(rule)
    if len(labels) == 1:
        raise _Refused(f"host '{host}' has a single label; write a full domain such as example.com")
    if not _TLD_PATTERN.fullmatch(labels[-1]):
        raise _Refused(
            f"top-level domain '{labels[-1]}' must be 2 to 6 letters (e.g. com, org, museum)"
        )


def _split_scheme(text: str) -> tuple[str | None, str]:
    """Split ``scheme://rest``; raise :class:`_Refused` for a scheme other than http(s)."""
    match = _SCHEME_PATTERN.match(text)
    if not match:
        return None, text
    scheme = match.group(1).lower()
    if scheme not in SCHEMES:
        raise _Refused(
            f"scheme '{match.group(1)}://' is not allowed; use http://, https:// or no scheme"
        )
    return scheme, text[match.end() :]


def _parse_entry(text: str) -> WhitelistEntry:
    """Parse one entry (no whitespace in it); raise :class:`_Refused` with the broken rule."""
    if "," in text:
        raise _Refused("entries are separated by new lines, not commas; put one URL per line")
    scheme, rest = _split_scheme(text)
    host_part, slash, path = rest.partition("/")
    if "@" in host_part:
        raise _Refused("user names ('user@') are not allowed; write just the host")
    if ":" in host_part:
        raise _Refused("ports are not allowed; remove ':' and the port number after the host")
    if len(host_part) > MAX_HOST_CHARS:
        raise _Refused(
            f"the host is {len(host_part)} characters; "
            f"at most {MAX_HOST_CHARS} are allowed, including dots"
        )
    include_subdomains = host_part.startswith(".")
    host = host_part[1:] if include_subdomains else host_part
    _check_host(host)
    path = slash + path if slash else None
    if path:
        bad = [ch for ch in path if ch not in _PATH_CHARS]
        if bad:
            raise _Refused(
                f"the path contains '{bad[0]}'; allowed path characters are {_PATH_CHARS_TEXT}"
            )
    return WhitelistEntry(scheme, host.lower(), include_subdomains, path)


def _numbered_entries(value: str | list[str]) -> list[tuple[int, str]]:
    """``(line, entry)`` pairs: a string is split into lines, a list is taken as lines;
    each line is split on whitespace; blank lines are skipped but counted."""
    if isinstance(value, str):
        lines = value.splitlines()
    elif isinstance(value, list | tuple):
        lines = list(value)
    else:
        raise TypeError(f"a whitelist is a string or a list of strings, got {value!r}")
    numbered = []
    for number, line in enumerate(lines, start=1):
        if not isinstance(line, str):
            raise TypeError(f"whitelist line {number} is not a string: {line!r}")
        numbered.extend((number, entry) for entry in line.split())
    return numbered


def parse_whitelist(
    value: str | list[str],
) -> tuple[list[WhitelistEntry], list[WhitelistProblem]]:
    """Parse a whitelist into accepted entries and problems, in input order.

    ``value`` is text (one URL per line) or a list whose items are lines. Each entry is
    checked on its own; a refused entry yields one :class:`WhitelistProblem` naming the
    first rule it breaks. Beyond :data:`MAX_ENTRIES` entries the rest are not parsed and
    one problem is reported on the first excess entry. Raises :class:`TypeError` when
    ``value`` or a list item is not a string.
    """
    numbered = _numbered_entries(value)
    entries: list[WhitelistEntry] = []
    problems: list[WhitelistProblem] = []
    for line, text in numbered[:MAX_ENTRIES]:
        try:
            entries.append(_parse_entry(text))
        except _Refused as refused:
            problems.append(WhitelistProblem(line, text, str(refused)))
    if len(numbered) > MAX_ENTRIES:
        line, text = numbered[MAX_ENTRIES]
        problems.append(
            WhitelistProblem(
                line,
                text,
                f"too many entries: {len(numbered)} given, at most {MAX_ENTRIES} are allowed; "
                "use a leading dot (.example.com) to cover a domain and its subdomains",
            )
        )
    return entries, problems


# ---- normalisation: one entry covering another ----------------------------------------


def covers(broad: WhitelistEntry, narrow: WhitelistEntry) -> bool:
    """Whether every request ``narrow`` allows is allowed by ``broad`` because of its form.

    True when the scheme of ``broad`` is absent or equal; its host equals the host of
    ``narrow`` (``.x.org`` also covers ``a.x.org`` and ``.a.x.org``; a plain ``x.org`` covers
    only plain ``x.org``); and its path is absent or a prefix of the path of ``narrow``.
    Reflexive and transitive; two entries that cover each other are equal.
    """
    if broad.scheme is not None and broad.scheme != narrow.scheme:
        return False
    if broad.include_subdomains:
        if narrow.host != broad.host and not narrow.host.endswith("." + broad.host):
            return False
    elif narrow.include_subdomains or narrow.host != broad.host:
        return False
    if broad.path is None:
        return True
    return narrow.path is not None and narrow.path.startswith(broad.path)


@functools.lru_cache(maxsize=8192)
def covering_hosts(host: str, include_subdomains: bool) -> tuple[tuple[str, bool], ...]:
    """The ``(host, include_subdomains)`` pairs whose entries may cover this host, itself
    included. Cached: the same hosts recur across workspaces."""
    pairs = [(host, True)]
    if not include_subdomains:
        pairs.append((host, False))
    dot = host.find(".")
    while dot != -1:
        pairs.append((host[dot + 1 :], True))
        dot = host.find(".", dot + 1)
    return tuple(pairs)


def _sort_key(entry: WhitelistEntry) -> tuple[str, bool, str, str]:
    return entry.host, entry.include_subdomains, entry.scheme or "", entry.path or ""


def normalise(entries: Iterable[WhitelistEntry]) -> list[WhitelistEntry]:
    """The entries that no other entry covers (:func:`covers`), duplicates removed.

    Every input entry is covered by some output entry, no output entry covers another, and
    ``normalise(normalise(x)) == normalise(x)``. Sorted by host, subdomains, scheme, path.
    Pure; about linear in the number of entries.
    """
    unique = set(entries)
    by_host: dict[tuple[str, bool], list[WhitelistEntry]] = {}
    for entry in unique:
        by_host.setdefault((entry.host, entry.include_subdomains), []).append(entry)
    kept = [entry for entry in unique if not _covered_by_another(entry, by_host)]
    kept.sort(key=_sort_key)
    return kept


def _covered_by_another(
    entry: WhitelistEntry, by_host: dict[tuple[str, bool], list[WhitelistEntry]]
) -> bool:
    """Whether an entry of ``by_host`` other than ``entry`` covers it (inlined :func:`covers`:
    the host part holds by construction of the candidates)."""
    for pair in covering_hosts(entry.host, entry.include_subdomains):
        for other in by_host.get(pair, ()):
            if other is entry:
                continue
            if (other.scheme is None or other.scheme == entry.scheme) and (
                other.path is None or (entry.path is not None and entry.path.startswith(other.path))
            ):
                return True
    return False


def normalised_entries(value: str | list[str] | list[WhitelistEntry]) -> list[str]:
    """The entries of a whitelist (text, lines or parsed entries; refused lines left out)
    that no other entry covers, as text, in the order given: what a workspace's options hold
    and what the egress proxy's records hold."""
    if isinstance(value, list) and all(isinstance(e, WhitelistEntry) for e in value):
        entries = value
    else:
        entries, _ = parse_whitelist(value)
    kept = {str(entry) for entry in normalise(entries)}
    return list(dict.fromkeys(str(entry) for entry in entries if str(entry) in kept))
