"""Egress policy of restricted workspaces as a squid 5.7 configuration, and what squid refused.

Restricted workspaces sit on a Docker ``--internal`` network whose only way out is a squid
proxy. Each workspace has a fixed IPv4 address on that network, and squid grants each source
address only its own whitelist. A whitelist entry (:class:`WhitelistEntry`) means:

* ``example.com`` allows exactly that host; ``.example.com`` the domain and every subdomain.
* No scheme allows plain HTTP and HTTPS; ``http://`` only plain HTTP; ``https://`` only
  HTTPS, which through a proxy is ``CONNECT host:443``.
* A path (``sub.example.com/folder``) restricts plain-HTTP requests to URLs whose path starts
  with that prefix; the trailing slash matters (``/folder/`` does not allow ``/folder``).
  Squid matches with ``url_regex -i``, so the prefix is compared ignoring letter case, and it
  ends at a ``#`` (a fragment is never sent to a server). Over HTTPS the proxy only sees the
  host, so a path entry allows its whole host over HTTPS.
* Only default ports are reachable: CONNECT to 443 and plain HTTP to 80. Other URL schemes
  (``ftp://``, an ``https://`` URL sent without CONNECT) are refused.
* Whatever the whitelist says, squid refuses destinations whose address is loopback,
  link-local (cloud metadata), private or shared (:data:`FORBIDDEN_DESTINATIONS`), so a
  whitelisted name that resolves (or is rebound) to an internal address reaches nothing.
* Requests naming an IP address never match a whitelist entry: the domain ACLs use ``-n``, so
  squid does not reverse-resolve the address (a PTR record is chosen by the address owner).
* IPv6: squid 5 has no directive to disable IPv6 egress (``dns_v4_first`` is obsolete since
  squid 5, which races both families, "Happy Eyeballs"). Disable IPv6 on the proxy container
  instead (``--sysctl net.ipv6.conf.all.disable_ipv6=1``, no IPv6-enabled network).

squid aborts when one domain list holds both ``x.org`` and ``.x.org`` (or ``a.x.org`` before
``.x.org``), so entries are normalised (``benchhub.whitelist.normalise``, the same
normalisation the workspace options store) and every rendered domain list keeps only entries
no other entry of the same list covers.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from benchhub.whitelist import WhitelistEntry, covering_hosts, normalise

LOG_FORMAT_NAME = "bench"
# time, client address, squid result/HTTP status, method, URL (host:port for CONNECT)
LOG_FORMAT = "%ts.%03tu %>a %Ss/%>Hs %rm %ru"
DENIED = "TCP_DENIED/403"
VISIBLE_HOSTNAME = "benchhub-egress"
FORBIDDEN_DESTINATIONS = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::1",
    "fc00::/7",
    "fe80::/10",
)
# squid reads configuration lines of at most 2048 characters (CONFIG_LINE_LIMIT).
MAX_LINE_CHARS = 2000
_CHUNK_CHARS = 1000
_MAX_KEY_CHARS_SHOWN = 100

_HOST_TEXT = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)+")
_PATH_TEXT = re.compile(r"/[-A-Za-z0-9@:%_+.~#?&/=]*")
_FILE_TEXT = re.compile(r"/[A-Za-z0-9._/-]+")
_ERE_ESCAPES = str.maketrans({char: "\\" + char for char in "\\.[]{}()*+?^$|"})
_SUBDOMAINS_ERE = r"([-a-z0-9_]+\.)*"


def _check_entry(entry: object) -> None:
    """Raise unless ``entry`` is a :class:`WhitelistEntry` that is safe to write into squid.conf."""
    if not isinstance(entry, WhitelistEntry):
        raise TypeError(f"a whitelist entry must be a WhitelistEntry, got {entry!r}")
    if entry.scheme not in (None, "http", "https"):
        raise ValueError(f"whitelist entry {entry!r}: the scheme must be None, 'http' or 'https'")
    if not isinstance(entry.host, str) or not _HOST_TEXT.fullmatch(entry.host):
        raise ValueError(
            f"whitelist entry {entry!r}: the host must be lower-case labels of a-z, 0-9, '-' "
            "and '_' joined by dots; parse entries with benchhub.whitelist.parse_whitelist"
        )
    if entry.path is not None and (
        not isinstance(entry.path, str) or not _PATH_TEXT.fullmatch(entry.path)
    ):
        raise ValueError(
            f"whitelist entry {entry!r}: the path must start with '/' and use only letters, "
            "digits and - @ : % _ + . ~ # ? & / ="
        )


@dataclass(frozen=True)
class WorkspaceEgress:
    """What one restricted workspace may reach: ``key`` names it (e.g. ``"alice/ws1"``, any
    text), ``address`` is its IPv4 address on the internal network (dotted quad), ``entries``
    its whitelist. Construction checks the address and entries (ValueError, TypeError) and
    turns ``entries`` into a tuple."""

    key: str
    address: str
    entries: tuple[WhitelistEntry, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise ValueError(f"a workspace key must be non-empty text, got {self.key!r}")
        if not isinstance(self.address, str):
            raise ValueError(
                f"workspace {self.key!r}: the address must be text, e.g. '172.30.0.17'"
            )
        try:
            canonical = str(ipaddress.IPv4Address(self.address))
        except ValueError:
            canonical = None
        if canonical != self.address:
            raise ValueError(
                f"workspace {self.key!r}: address {self.address!r} is not an IPv4 address "
                "written as a dotted quad, e.g. '172.30.0.17'"
            )
        object.__setattr__(self, "entries", tuple(self.entries))
        for entry in self.entries:
            _check_entry(entry)


def _check_settings(http_port: int, files: dict[str, str]) -> None:
    if isinstance(http_port, bool) or not isinstance(http_port, int) or not 0 < http_port < 65536:
        raise ValueError(
            f"http_port must be a TCP port number 1-65535, e.g. 3128; got {http_port!r}"
        )
    for name, path in files.items():
        if not isinstance(path, str) or not _FILE_TEXT.fullmatch(path):
            raise ValueError(
                f"{name} must be an absolute path of letters, digits and . _ / -, "
                f"e.g. /var/log/squid/access.log; got {path!r}"
            )


def _forbidden_networks(destinations: Sequence[str]) -> list[str]:
    networks = []
    for text in destinations:
        try:
            networks.append(str(ipaddress.ip_network(text)))
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"forbidden destination {text!r} is not a network such as 10.0.0.0/8 ({error})"
            ) from None
    return networks


def ordered_unique(items: Iterable, kind: type, field: str) -> list:
    """``items`` (each a ``kind``, else TypeError) sorted by their ``field``; ValueError naming
    both when two share that field or an ``address``: each workspace has its own of both."""
    ordered = list(items)
    for item in ordered:
        if not isinstance(item, kind):
            raise TypeError(f"expected {kind.__name__}, got {item!r}")
    ordered.sort(key=lambda item: getattr(item, field))
    holders: dict[str, str] = {}
    for previous, item in zip([None, *ordered], ordered, strict=False):
        name = getattr(item, field)
        if previous is not None and getattr(previous, field) == name:
            raise ValueError(f"two workspaces share the {field} {name!r}; each needs its own")
        holder = holders.setdefault(item.address, name)
        if holder != name:
            raise ValueError(
                f"workspaces {holder!r} and {name!r} share the address {item.address}; "
                "each workspace needs its own address"
            )
    return ordered


def render_squid_conf(
    workspaces: Iterable[WorkspaceEgress],
    *,
    http_port: int = 3128,
    access_log: str = "/var/log/squid/access.log",
    pid_filename: str = "none",
    forbidden_destinations: Sequence[str] = FORBIDDEN_DESTINATIONS,
    gateway: Sequence[str] = (),
) -> str:
    """A complete squid.conf that lets each workspace address reach only its whitelist.

    Per workspace, in key order with index N: ``acl wsN src ADDR/32``; ``wsN_https`` (domains
    allowed over CONNECT), ``wsN_http`` (domains allowed over plain HTTP) and ``wsN_paths``
    (``url_regex -i`` of plain-HTTP path prefixes), each written, with its ``http_access
    allow`` line, only when non-empty. The key appears only JSON-escaped in a comment. The last
    rule is ``http_access deny all``; requests to ``forbidden_destinations`` (networks, empty
    to allow all) are refused before any whitelist applies. Access is logged to
    ``access_log`` in :data:`LOG_FORMAT` (see :func:`parse_access_log`); nothing is cached.
    ``gateway`` (the lines of :func:`.gateway.gateway_lines`, on a swarm) goes before every
    access rule but the refusal of squid's cache manager. Raises ValueError for duplicate
    keys or addresses, bad settings, or an entry too long for a squid line
    (:data:`MAX_LINE_CHARS`). Pure and deterministic.
    """
    files = {"access_log": access_log}
    if pid_filename != "none":
        files["pid_filename"] = pid_filename
    _check_settings(http_port, files)
    forbidden = _forbidden_networks(forbidden_destinations)
    guard = " !forbidden_dst" if forbidden else ""
    lines = _preamble(http_port, access_log, pid_filename)
    if forbidden:
        lines.append("acl forbidden_dst dst " + " ".join(forbidden))
    lines += [
        "http_access deny manager",
        *gateway,
        "http_access deny CONNECT !SSL_ports",
        "http_access deny !CONNECT !HTTP_port",
        "http_access deny !CONNECT !HTTP_proto",
    ]
    for index, workspace in enumerate(ordered_unique(workspaces, WorkspaceEgress, "key")):
        lines.extend(_workspace_lines(f"ws{index}", workspace, guard))
    lines.append("http_access deny all")
    return "\n".join(lines) + "\n"


def _preamble(http_port: int, access_log: str, pid_filename: str) -> list[str]:
    return [
        "# squid.conf for BenchHub restricted workspaces, written by hub_services.egress.policy.",
        "# Do not edit: the egress service rewrites it from the workspaces' whitelists.",
        f"http_port {http_port}",
        f"visible_hostname {VISIBLE_HOSTNAME}",
        f"pid_filename {pid_filename}",
        "coredump_dir /var/spool/squid",
        "pinger_enable off",  # no ICMP: the proxy container holds no NET_RAW
        "shutdown_lifetime 1 seconds",
        "cache deny all",
        "via off",
        "forwarded_for delete",
        "httpd_suppress_version_string on",
        f"logformat {LOG_FORMAT_NAME} {LOG_FORMAT}",
        f"access_log stdio:{access_log} {LOG_FORMAT_NAME}",
        # every workspace's requests make the log grow: the egress service has squid rotate
        # it (SIGUSR1) past a size, keeping one older file
        "logfile_rotate 1",
        "acl CONNECT method CONNECT",
        "acl SSL_ports port 443",
        "acl HTTP_port port 80",
        "acl HTTP_proto proto HTTP",
    ]


def _workspace_lines(name: str, workspace: WorkspaceEgress, guard: str) -> list[str]:
    """The ACL and http_access lines of one workspace, ACLs named ``name``, ``name_*``."""
    key = workspace.key
    shown = key if len(key) <= _MAX_KEY_CHARS_SHOWN else key[:_MAX_KEY_CHARS_SHOWN] + "..."
    lines = [
        f"# {name}: workspace {json.dumps(shown)} at {workspace.address}",
        f"acl {name} src {workspace.address}/32",
    ]
    entries = normalise(workspace.entries)
    https_hosts = {(e.host, e.include_subdomains) for e in entries if e.scheme != "http"}
    http_hosts = {
        (e.host, e.include_subdomains) for e in entries if e.scheme != "https" and e.path is None
    }
    lists = (
        ("https", "dstdomain -n", _domain_tokens(https_hosts), "CONNECT"),
        ("http", "dstdomain -n", _domain_tokens(http_hosts), "!CONNECT"),
        ("paths", "url_regex -i", _path_patterns(entries, http_hosts), "!CONNECT"),
    )
    rules = []
    for suffix, acl_type, tokens, method in lists:
        if tokens:
            acl = f"{name}_{suffix}"
            lines.extend(_acl_lines(f"acl {acl} {acl_type}", tokens, key))
            rules.append(f"http_access allow {name} {method} {acl}{guard}")
    return lines + (rules or [f"# {name}: empty whitelist, everything is refused"])


def _host_covered(host: str, include_subdomains: bool, hosts: set[tuple[str, bool]]) -> bool:
    """Whether a different ``(host, include_subdomains)`` pair in ``hosts`` covers this one."""
    for candidate in covering_hosts(host, include_subdomains):
        if candidate != (host, include_subdomains) and candidate in hosts:
            return True
    return False


def _domain_tokens(hosts: set[tuple[str, bool]]) -> list[str]:
    """dstdomain values for ``hosts``, without any value another one covers (squid refuses
    ``a.x.org`` listed before ``.x.org``)."""
    kept = sorted(pair for pair in hosts if not _host_covered(*pair, hosts))
    return [("." if include_subdomains else "") + host for host, include_subdomains in kept]


def _path_patterns(entries: list[WhitelistEntry], http_hosts: set[tuple[str, bool]]) -> list[str]:
    """url_regex values for plain-HTTP path entries whose host is not allowed whole anyway."""
    patterns: dict[str, None] = {}
    for entry in entries:
        if entry.path is None or entry.scheme == "https":
            continue
        pair = (entry.host, entry.include_subdomains)
        if pair in http_hosts or _host_covered(*pair, http_hosts):
            continue
        subdomains = _SUBDOMAINS_ERE if entry.include_subdomains else ""
        host = entry.host.translate(_ERE_ESCAPES)
        path = entry.path.partition("#")[0].translate(_ERE_ESCAPES)
        patterns[f"^http://{subdomains}{host}(:80)?{path}"] = None
    return list(patterns)


def _acl_lines(head: str, tokens: list[str], key: str) -> list[str]:
    """``head`` followed by ``tokens``, split over lines of about ``_CHUNK_CHARS`` (squid
    appends the values of repeated acl lines of one name)."""
    lines: list[str] = []
    chunk: list[str] = []
    size = len(head)
    for token in tokens:
        if len(head) + 1 + len(token) > MAX_LINE_CHARS:
            raise ValueError(
                f"workspace {key!r}: a whitelist entry becomes a squid value of {len(token)} "
                f"characters ({token[:60]}...), too long for a squid line of "
                f"{MAX_LINE_CHARS}; shorten its path"
            )
        if chunk and size + 1 + len(token) > _CHUNK_CHARS:
            lines.append(" ".join([head, *chunk]))
            chunk, size = [], len(head)
        chunk.append(token)
        size += 1 + len(token)
    if chunk:
        lines.append(" ".join([head, *chunk]))
    return lines


@dataclass(frozen=True)
class Refusal:
    """One request squid denied: client ``address``, destination ``host`` (lower-case, no
    port or brackets) and the time ``at`` (seconds since the epoch)."""

    address: str
    host: str
    at: float


def _canonical_address(text: str) -> str:
    """The canonical text of an IP address (an IPv4-mapped IPv6 address as IPv4);
    ValueError when ``text`` is not an address."""
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def _host_of(method: str, url: str) -> str | None:
    """The host a logged request was for: ``host:port`` for CONNECT, else a URL's host."""
    if method == "CONNECT":
        host, colon, port = url.rpartition(":")
        if not colon or not port.isdigit():
            return None
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return host.lower() or None
    try:
        return urlsplit(url).hostname or None
    except ValueError:
        return None


def _parse_refusal(line: str) -> Refusal | None:
    fields = line.split()
    if len(fields) != 5 or fields[2] != DENIED:
        return None
    stamp, address, _, method, url = fields
    try:
        at = float(stamp)
        address = _canonical_address(address)
    except ValueError:
        return None
    host = _host_of(method, url)
    if host is None or not math.isfinite(at):
        return None
    return Refusal(address, host, at)


def parse_access_log(lines: Iterable[str]) -> list[Refusal]:
    """The denied requests (``TCP_DENIED/403``) in access-log ``lines`` written in
    :data:`LOG_FORMAT`, in order. Lines of other results and malformed lines are skipped."""
    refusals = []
    for line in lines:
        refusal = _parse_refusal(line)
        if refusal is not None:
            refusals.append(refusal)
    return refusals


def summarise(refusals: Iterable[Refusal], address: str) -> list[dict]:
    """Refusals of one client ``address`` per host: ``{"host", "count", "first", "last"}``
    (times in seconds since the epoch), most refused first, then by host. ValueError when
    ``address`` is not an IP address."""
    wanted = _canonical_address(address)
    stats: dict[str, list] = {}
    for refusal in refusals:
        if refusal.address != wanted:
            continue
        row = stats.get(refusal.host)
        if row is None:
            stats[refusal.host] = [1, refusal.at, refusal.at]
        else:
            row[0] += 1
            row[1] = min(row[1], refusal.at)
            row[2] = max(row[2], refusal.at)
    rows = [
        {"host": host, "count": count, "first": first, "last": last}
        for host, (count, first, last) in stats.items()
    ]
    rows.sort(key=lambda row: (-row["count"], row["host"]))
    return rows
