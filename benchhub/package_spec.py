"""The ``packages`` workspace option: what to install at creation, checked and canonical.

``{"pip": [...], "apt": [...], "r": [...]}`` (every list optional). Each entry must match its
installer's own name grammar, so that nothing but a package name ever reaches an installer's
command line:

* pip: a PEP 508 requirement (name, optional ``[extras]``, optional version specifiers), as
  :mod:`packaging` parses it; no URL (``name @ https://…``, ``git+…``), no path, no option
  (``-e``, ``--index-url``), no environment marker (``; python_version < "3"``).
* apt: a Debian package name (lower-case letters, digits, ``+ - .``; at least two characters,
  starting with a letter or digit) with an optional ``=version``.
* r: a CRAN package name (ASCII letters, digits and dots, at least two characters, starting
  with a letter and not ending in a dot); CRAN installs its current version.

A list may also be given as text (the spawn form's fields): entries separated by white space
or line breaks, so a requirement in text is written without spaces (``pandas>=2,<3``).
Counts and lengths are bounded and duplicates (the same project twice, e.g. ``six`` and
``Six==1.16``) are refused. :func:`parse_packages` returns the spec and every problem found,
each naming its field (``packages.pip``) and what is allowed.

What a start installs is the difference between the spec and the marker that the last
successful install left in the container's filesystem (kept by checkpoints):
:func:`missing_packages`, :func:`record_installed`, :func:`marker_text` and
:func:`parse_marker`. Everything here is pure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

__all__ = [
    "INSTALLERS",
    "MAX_ENTRY_CHARS",
    "MAX_PACKAGES",
    "NO_PACKAGES",
    "PackageProblem",
    "PackageSpec",
    "FORM_FIELDS",
    "marker_text",
    "missing_packages",
    "package_key",
    "packages_from_form",
    "parse_marker",
    "parse_packages",
    "record_installed",
]

# Installed in this order: pip and R builds may need the system libraries apt brings.
INSTALLERS = ("apt", "pip", "r")
MAX_PACKAGES = 100  # per installer
MAX_ENTRY_CHARS = 200
# The spawn form's text fields, one per installer (folded into ``packages`` by
# :func:`packages_from_form`).
FORM_FIELDS = {f"packages_{installer}": installer for installer in INSTALLERS}
MARKER_VERSION = 1

_APT_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_APT_VERSION = re.compile(r"(?:[0-9]+:)?[0-9][A-Za-z0-9.+~-]*")
_R_NAME = re.compile(r"[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]")

_ALLOWED = {
    "pip": (
        "a PEP 508 requirement: a project name, optional [extras] and version specifiers, "
        "e.g. 'tabulate' or 'pandas[excel]>=2,<3' (no URL, path, option or marker)"
    ),
    "apt": (
        "a Debian package name with an optional =version, e.g. 'graphviz' or "
        "'jq=1.6-2.1' (lower-case letters, digits and + - .)"
    ),
    "r": (
        "a CRAN package name, e.g. 'data.table' (letters, digits and dots, starting with a "
        "letter; no version: CRAN installs its current one)"
    ),
}


class PackageProblem(NamedTuple):
    """One problem with the ``packages`` option: ``field`` is ``packages`` or
    ``packages.<installer>``."""

    field: str
    message: str


@dataclass(frozen=True)
class PackageSpec:
    """Packages per installer, each entry in canonical form (pip requirements as
    :mod:`packaging` writes them, e.g. ``Tabulate >= 0.9`` -> ``Tabulate>=0.9``), in the
    order given. Empty lists mean nothing to install; the spec is false when all are."""

    apt: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    r: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.apt or self.pip or self.r)

    def of(self, installer: str) -> tuple[str, ...]:
        """The entries of one installer (one of :data:`INSTALLERS`)."""
        return getattr(self, installer)

    def as_options(self) -> dict[str, list[str]]:
        """The canonical JSON-able option value: ``{"pip": [...], "apt": [...], "r": [...]}``."""
        return {"pip": list(self.pip), "apt": list(self.apt), "r": list(self.r)}


NO_PACKAGES = PackageSpec()


def package_key(installer: str, entry: str) -> str:
    """What makes two entries the same package: pip's normalised project name (``Six`` and
    ``six==1.16`` are one), apt's name without the version, R's name (case matters in R)."""
    if installer == "pip":
        return canonicalize_name(Requirement(entry).name)
    if installer == "apt":
        return entry.split("=", 1)[0]
    return entry


def _pip_entry(text: str) -> tuple[str | None, str]:
    """(the canonical requirement, "") or (None, why it is refused)."""
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return None, "is not a valid requirement"
    if requirement.url:
        return None, "names a URL or path; only packages from the index can be installed"
    if requirement.marker:
        return None, "has an environment marker; the environment is known, leave it out"
    return str(requirement), ""


def _apt_entry(text: str) -> tuple[str | None, str]:
    name, has_version, version = text.partition("=")
    if not _APT_NAME.fullmatch(name):
        return None, "is not a Debian package name"
    if has_version and not _APT_VERSION.fullmatch(version):
        return None, "has a version that is not a Debian version"
    return text, ""


def _r_entry(text: str) -> tuple[str | None, str]:
    if not _R_NAME.fullmatch(text):
        return None, "is not a CRAN package name"
    return text, ""


_ENTRY_CHECKS: dict[str, Callable[[str], tuple[str | None, str]]] = {
    "pip": _pip_entry,
    "apt": _apt_entry,
    "r": _r_entry,
}


def _shown(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _entries(installer: str, value: object) -> tuple[list[str], list[PackageProblem]]:
    """The raw entries of one installer's list (text is split on white space)."""
    field = f"packages.{installer}"
    if value is None:
        return [], []
    if isinstance(value, str):
        if len(value) > MAX_PACKAGES * (MAX_ENTRY_CHARS + 1):
            return [], [PackageProblem(field, f"is too long: at most {MAX_PACKAGES} packages")]
        value = value.split()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        message = (
            "must be a list of package names, or text with one name per line or separated "
            f"by spaces; got {_shown(value)}"
        )
        return [], [PackageProblem(field, message)]
    if len(value) > MAX_PACKAGES:
        message = f"lists {len(value)} packages; at most {MAX_PACKAGES} are allowed"
        return [], [PackageProblem(field, message)]
    return [item.strip() for item in value if item.strip()], []


def _check_installer(installer: str, value: object) -> tuple[tuple[str, ...], list]:
    field = f"packages.{installer}"
    entries, problems = _entries(installer, value)
    checked: list[str] = []
    seen: dict[str, str] = {}
    for entry in entries:
        if len(entry) > MAX_ENTRY_CHARS:
            why = f"is longer than {MAX_ENTRY_CHARS} characters"
            canonical = None
        else:
            canonical, why = _ENTRY_CHECKS[installer](entry)
        if canonical is None:
            message = f"{_shown(entry)} {why}; allowed: {_ALLOWED[installer]}"
            problems.append(PackageProblem(field, message))
            continue
        key = package_key(installer, canonical)
        if key in seen:
            message = f"{_shown(entry)} repeats {_shown(seen[key])}; list each package once"
            problems.append(PackageProblem(field, message))
            continue
        seen[key] = entry
        checked.append(canonical)
    return tuple(checked), problems


def parse_packages(value: object) -> tuple[PackageSpec, list[PackageProblem]]:
    """Check the ``packages`` option (None or ``{}`` for none): the canonical spec and every
    problem found (empty when it is good). See the module docstring for what is allowed."""
    if value is None:
        return NO_PACKAGES, []
    if not isinstance(value, dict):
        message = (
            'must be an object of installer: packages, e.g. {"pip": ["tabulate"], '
            f'"apt": ["graphviz"], "r": ["data.table"]}}; got {_shown(value)}'
        )
        return NO_PACKAGES, [PackageProblem("packages", message)]
    problems = [
        PackageProblem(
            "packages",
            f"{_shown(key)} is not an installer; allowed: pip, apt, r (conda is not offered: "
            "no conda channel is reachable, see docs/packages.md)",
        )
        for key in value
        if key not in INSTALLERS
    ]
    checked = {}
    for installer in INSTALLERS:
        checked[installer], found = _check_installer(installer, value.get(installer))
        problems.extend(found)
    return PackageSpec(**checked), problems


def packages_from_form(raw: dict) -> dict:
    """Fold the spawn form's text fields (:data:`FORM_FIELDS`) into one ``packages`` value of
    ``raw`` (a copy is returned); an empty field means none. Other keys are left as they are."""
    raw = dict(raw)
    texts = {FORM_FIELDS[key]: raw.pop(key) for key in list(raw) if key in FORM_FIELDS}
    if texts:
        raw["packages"] = texts
    return raw


# ---- what a start installs ---------------------------------------------------------------------


def missing_packages(wanted: PackageSpec, installed: PackageSpec) -> PackageSpec:
    """The entries of ``wanted`` that ``installed`` (the marker) does not list as they are
    written: a new package, or a changed version requirement, which its installer decides."""
    return PackageSpec(
        **{
            installer: tuple(e for e in wanted.of(installer) if e not in installed.of(installer))
            for installer in INSTALLERS
        }
    )


def record_installed(installed: PackageSpec, added: PackageSpec) -> PackageSpec:
    """The marker after ``added`` was installed on top of ``installed``: an added entry
    replaces the entry of the same package (:func:`package_key`); the others stay (nothing is
    uninstalled when a package leaves the option)."""
    merged = {}
    for installer in INSTALLERS:
        entries = {package_key(installer, e): e for e in installed.of(installer)}
        entries.update({package_key(installer, e): e for e in added.of(installer)})
        merged[installer] = tuple(entries.values())
    return PackageSpec(**merged)


def marker_text(installed: PackageSpec) -> str:
    """The marker file's content for ``installed``."""
    return json.dumps({"version": MARKER_VERSION, **installed.as_options()}, sort_keys=True)


def parse_marker(text: str | None) -> PackageSpec:
    """What a marker says is installed. The marker lives in the user's container, which they
    control: anything that is not a marker this module wrote (too many entries, names outside
    the grammars, not JSON) counts as nothing installed, so the next start installs the whole
    spec again rather than trusting it."""
    try:
        data = json.loads(text or "")
    except ValueError:
        return NO_PACKAGES
    if not isinstance(data, dict) or data.get("version") != MARKER_VERSION:
        return NO_PACKAGES
    spec, problems = parse_packages({key: data.get(key) for key in INSTALLERS})
    return NO_PACKAGES if problems else spec
