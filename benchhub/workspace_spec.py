"""The one typed schema for workspace options.

Both the spawn form (through :func:`options_from_form`) and the REST API ``user_options``
go through :meth:`OptionsSchema.parse`, which fills defaults, rejects unknown keys and
collects every problem into one :class:`OptionsError`; each message names the field and
the allowed values or range. The result, :class:`WorkspaceSpec`, is stored in its
canonical form by :meth:`WorkspaceSpec.to_user_options`.

:func:`parse_run_time_policy` checks just the run-time policy options
(:data:`LIFECYCLE_OPTIONS`) with the same field parsers, defaults and messages: the lifecycle
service reads a running workspace's policy with it, so the hub and the service never disagree
about what an option means.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from numbers import Real

from jupyterhub.slugs import is_valid_safe_slug

from .package_spec import NO_PACKAGES, PackageSpec, packages_from_form, parse_packages
from .projects import PERSONAL, WorkspacePermissions, parse_permissions, parse_project_name
from .resource_models import (
    NAME_RULE,
    HostCapacity,
    ResourceModel,
    unavailable_reason,
)
from .whitelist import normalised_entries, parse_whitelist

__all__ = [
    "ACCESS_MODES",
    "LIFECYCLE_OPTIONS",
    "MAX_AUTO_SHUTDOWN_HOURS",
    "SHUTDOWN_MODES",
    "NAME_RULE",
    "WORKSPACE_NAME_RULE",
    "OPTION_NAMES",
    "RESTORE_LATEST",
    "RESTORE_NONE",
    "FieldError",
    "OptionsError",
    "OptionsSchema",
    "RunTimePolicy",
    "WorkspaceSpec",
    "options_from_form",
    "parse_run_time_policy",
    "shown",
    "validate_workspace_name",
    "whole_number",
]

ACCESS_MODES = ("open", "restricted")
SHUTDOWN_MODES = ("after_start", "idle")
OPTION_NAMES = (
    "access_mode",
    "auto_shutdown_hours",
    "description",
    "image",
    "keep_until",
    "packages",
    "permissions",
    "project",
    "reminder_hours",
    "resource_model",
    "restore_checkpoint",
    "shutdown_mode",
    "storage_gb",
    "whitelist",
)
# The run-time policy: the only options that may change while the workspace runs (as in ICA
# Bench); the lifecycle service reads them on its next pass. Everything else applies at start.
LIFECYCLE_OPTIONS = ("auto_shutdown_hours", "keep_until", "reminder_hours", "shutdown_mode")
MAX_AUTO_SHUTDOWN_HOURS = 8760  # a year
MAX_REMINDERS = 5
# restore_checkpoint: "" = the latest checkpoint, "none" = the image as built, else a checkpoint
# id or name of this workspace (whether it exists is checked at start, against the store)
RESTORE_LATEST, RESTORE_NONE = "", "none"
_CHECKPOINT_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}")
_KEEP_UNTIL_EXAMPLE = "2026-01-31T18:00:00+00:00"
# Sent by browsers with every JupyterHub form post; not a workspace option.
_FORM_ONLY_KEYS = ("_xsrf",)
_TEXTAREA_KEYS = ("description", "whitelist")


@dataclass(frozen=True)
class FieldError:
    """One problem with one option: ``field`` is the option name (or the unknown key)."""

    field: str
    message: str


class OptionsError(ValueError):
    """Workspace options were refused; ``errors`` lists every problem found.

    ``str(err)`` is ``"; ".join(f"{field}: {message}")`` so it reads as one sentence in a
    spawn error or an HTTP 400 body.
    """

    def __init__(self, errors: list[FieldError]):
        if not errors:
            raise ValueError("OptionsError needs at least one FieldError")
        self.errors = list(errors)
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in self.errors))

    def as_json(self) -> dict:
        """``{"errors": [{"field": ..., "message": ...}, ...]}`` for a JSON error body."""
        return {"errors": [asdict(e) for e in self.errors]}


# JupyterHub (6) creates a named server only under a "safe slug" name; BenchHub's rule is the
# same, so a name it accepts never fails later inside JupyterHub (which answered 500).
WORKSPACE_NAME_RULE = (
    "1 to 30 characters: lower-case letters a-z, digits 0-9 and single hyphens, starting with "
    "a letter and ending with a letter or digit"
)


def validate_workspace_name(name: str) -> None:
    """Return None if ``name`` satisfies :data:`WORKSPACE_NAME_RULE`, else raise
    :class:`OptionsError` with one ``FieldError("name", ...)`` stating the rule and the name."""
    if not isinstance(name, str) or not is_valid_safe_slug(name):
        raise OptionsError(
            [FieldError("name", f"a workspace name must be {WORKSPACE_NAME_RULE}; got {name!r}")]
        )


@dataclass(frozen=True)
class WorkspaceSpec:
    """A checked set of workspace options. ``whitelist`` holds normalised entries;
    ``auto_shutdown_hours`` 0 means no automatic shutdown, ``shutdown_mode`` says whether the
    hours count from start or from the last activity; ``keep_until`` ("" or UTC ISO 8601)
    postpones the automatic shutdown; ``reminder_hours`` are lead times, longest first.
    ``restore_checkpoint`` chooses what the next start restores: ``""`` the latest checkpoint,
    ``"none"`` the image as built, or a checkpoint id or name; a start that used it resets it
    to ``""``."""

    image: str
    resource_model: str
    storage_gb: int
    access_mode: str
    whitelist: tuple[str, ...]
    description: str
    auto_shutdown_hours: int
    shutdown_mode: str = "after_start"
    keep_until: str = ""
    reminder_hours: tuple[int, ...] = (24, 1)
    restore_checkpoint: str = RESTORE_LATEST
    packages: PackageSpec = NO_PACKAGES  # installed at start (benchhub.package_spec)
    # the project it belongs to ("" = the owner's personal project) and ICA's workspace
    # permissions (benchhub.projects); whether the owner may use them is the hub's check
    project: str = PERSONAL
    permissions: WorkspacePermissions = WorkspacePermissions()

    def to_user_options(self) -> dict:
        """The canonical JSON-able form (lists for tuples); ``parse`` of it gives back an
        equal spec."""
        options = asdict(self)
        options["whitelist"] = list(self.whitelist)
        options["reminder_hours"] = list(self.reminder_hours)
        options["packages"] = self.packages.as_options()
        options["permissions"] = self.permissions.as_json()
        return options

    @property
    def run_time_policy(self) -> RunTimePolicy:
        """The spec's run-time policy options, as :func:`parse_run_time_policy` gives them."""
        return RunTimePolicy(**{name: getattr(self, name) for name in LIFECYCLE_OPTIONS})


@dataclass(frozen=True)
class RunTimePolicy:
    """A workspace's run-time policy (the options :data:`LIFECYCLE_OPTIONS`), checked and
    canonical: ``auto_shutdown_hours`` whole hours, 0 = no automatic shutdown;
    ``shutdown_mode`` (one of :data:`SHUTDOWN_MODES`) whether they count from the start or
    from the last activity; ``keep_until`` "" or UTC ISO 8601 text to the second, before which
    no automatic shutdown happens; ``reminder_hours`` lead times in whole hours, longest first.
    The defaults are the schema's defaults."""

    auto_shutdown_hours: int = 0
    shutdown_mode: str = "after_start"
    keep_until: str = ""
    reminder_hours: tuple[int, ...] = (24, 1)

    @property
    def keep_until_time(self) -> datetime | None:
        """``keep_until`` as an aware UTC datetime, None for none."""
        return datetime.fromisoformat(self.keep_until) if self.keep_until else None

    def as_raw(self) -> dict:
        """These values as raw options (a list for the reminders), e.g. to fill gaps. (Its
        fields are immutable: a shallow copy, not ``asdict``'s deep one, which cost the
        lifecycle service 15 ms per pass over 1,000 workspaces.)"""
        raw = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**raw, "reminder_hours": list(self.reminder_hours)}


def parse_run_time_policy(
    raw: dict | None,
    defaults: RunTimePolicy = RunTimePolicy(),
    max_auto_shutdown_hours: int = MAX_AUTO_SHUTDOWN_HOURS,
) -> RunTimePolicy:
    """Check just the run-time policy options of ``raw`` (a workspace's ``user_options``).

    The same field parsers and messages as :meth:`OptionsSchema.parse`: what the schema
    accepts this accepts, and to the same values. Other keys are ignored (the schema checks
    them); a policy option left out takes its value from ``defaults``. Raises
    :class:`OptionsError` naming each bad field and what is allowed.
    """
    raw = _options_object(raw)
    values = {**defaults.as_raw(), **{key: raw[key] for key in LIFECYCLE_OPTIONS if key in raw}}
    errors: list[FieldError] = []
    checked = _check_run_time_policy(values, max_auto_shutdown_hours, errors)
    if errors:
        raise OptionsError(errors)
    return RunTimePolicy(**checked)


def _options_object(raw: object) -> dict:
    """``raw`` options as a dict ({} for None); OptionsError when they are not an object."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        message = f"must be a JSON object of option: value, got {shown(raw)}"
        raise OptionsError([FieldError("options", message)])
    return raw


def _check_run_time_policy(values: dict, max_hours: int, errors: list[FieldError]) -> dict:
    """The run-time policy fields of ``values`` (every one present), checked and canonical;
    problems are appended to ``errors``."""
    return {
        "auto_shutdown_hours": _check_auto_shutdown(
            values["auto_shutdown_hours"], max_hours, errors
        ),
        "shutdown_mode": _check_shutdown_mode(values["shutdown_mode"], errors),
        "keep_until": _check_keep_until(values["keep_until"], errors),
        "reminder_hours": _check_reminders(values["reminder_hours"], max_hours, errors),
    }


def shown(value: object, limit: int = 60) -> str:
    """``repr`` of a submitted value, shortened so a huge value cannot flood a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def whole_number(value: object) -> int | None:
    """``value`` as an int if it is one (or an int-valued string/float), else None.

    Forms send numbers as strings, so ``"20"`` is 20; ``True`` and ``2.5`` are refused.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, Real) and float(value).is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("+-").isdigit() and text.isascii():
            return int(text)
    return None


def _parse_whitelist(raw_value: object, access_mode: object) -> tuple[tuple[str, ...], list]:
    """The whitelist option: normalised entries (see ``hub_services.egress.policy.normalise``)
    and its FieldErrors."""
    ok_type = isinstance(raw_value, str) or (
        isinstance(raw_value, list) and all(isinstance(item, str) for item in raw_value)
    )
    if not ok_type:
        message = (
            f"must be text with one URL per line, or a list of URL strings; got {shown(raw_value)}"
        )
        return (), [FieldError("whitelist", message)]
    entries, problems = parse_whitelist(raw_value)
    errors = [
        FieldError("whitelist", f"line {p.line} {shown(p.entry)}: {p.rule}") for p in problems
    ]
    if (entries or problems) and access_mode in ACCESS_MODES and access_mode != "restricted":
        errors.insert(
            0,
            FieldError(
                "whitelist",
                f"is only allowed with access_mode 'restricted' (got {access_mode!r}); "
                "choose restricted or leave the whitelist empty",
            ),
        )
    # duplicates and entries covered by a broader one are dropped (squid refuses x.org + .x.org);
    # the rest keep the user's order
    return tuple(normalised_entries(entries)), errors


@dataclass(frozen=True)
class OptionsSchema:
    """What a user may choose for a workspace, and the defaults for what they leave out.

    ``image_templates`` maps an image template key to its display name; ``resource_models``
    comes from :func:`benchhub.resource_models.load_catalog`. Sizes are whole GB
    (GiB), times whole hours. Construction raises :class:`ValueError` when a default is
    not itself allowed.
    """

    resource_models: dict[str, ResourceModel]
    image_templates: dict[str, str]
    default_image: str
    storage_min_gb: int = 1
    storage_max_gb: int = 16384
    default_resource_model: str = "standard-small"
    default_storage_gb: int = 10
    default_auto_shutdown_hours: int = 0
    max_auto_shutdown_hours: int = MAX_AUTO_SHUTDOWN_HOURS
    default_shutdown_mode: str = "after_start"
    default_reminder_hours: tuple[int, ...] = (24, 1)
    max_description_chars: int = 1000
    # image template key -> the resource model choosing it preselects (and a request without
    # resource_model gets); a template not listed uses default_resource_model
    template_resource_models: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problems = []
        for key, model in self.template_resource_models.items():
            if model not in self.resource_models:
                problems.append(
                    f"image template {key!r}: resource_model {model!r} is not in the catalog; "
                    f"choose one of: {', '.join(self.resource_models) or '(none configured)'}"
                )
        if self.default_image not in self.image_templates:
            problems.append(
                f"default_image {self.default_image!r} is not an image template; "
                f"choose one of: {', '.join(self.image_templates) or '(none configured)'}"
            )
        if self.default_resource_model not in self.resource_models:
            problems.append(
                f"default_resource_model {self.default_resource_model!r} is not in the catalog; "
                f"choose one of: {', '.join(self.resource_models) or '(none configured)'}"
            )
        if not 1 <= self.storage_min_gb <= self.default_storage_gb <= self.storage_max_gb:
            problems.append(
                "storage sizes must satisfy 1 <= storage_min_gb <= default_storage_gb "
                f"<= storage_max_gb, got {self.storage_min_gb}, {self.default_storage_gb}, "
                f"{self.storage_max_gb}"
            )
        if not 0 <= self.default_auto_shutdown_hours <= self.max_auto_shutdown_hours:
            problems.append(
                "default_auto_shutdown_hours must be from 0 to max_auto_shutdown_hours "
                f"({self.max_auto_shutdown_hours}), got {self.default_auto_shutdown_hours}"
            )
        if self.default_shutdown_mode not in SHUTDOWN_MODES:
            problems.append(
                f"default_shutdown_mode must be one of {', '.join(SHUTDOWN_MODES)}, "
                f"got {self.default_shutdown_mode!r}"
            )
        reminder_errors: list[FieldError] = []
        _check_reminders(
            list(self.default_reminder_hours), self.max_auto_shutdown_hours, reminder_errors
        )
        problems.extend(f"default_{e.field}: {e.message}" for e in reminder_errors)
        if problems:
            raise ValueError("; ".join(problems))

    def defaults(self) -> dict:
        """The raw options used for keys a request leaves out."""
        return {
            "image": self.default_image,
            "resource_model": self.model_of(self.default_image),
            "storage_gb": self.default_storage_gb,
            "access_mode": "open",
            "whitelist": [],
            "description": "",
            "auto_shutdown_hours": self.default_auto_shutdown_hours,
            "shutdown_mode": self.default_shutdown_mode,
            "keep_until": "",
            "reminder_hours": list(self.default_reminder_hours),
            "restore_checkpoint": RESTORE_LATEST,
            "packages": {},
            "project": PERSONAL,
            "permissions": None,
        }

    def model_of(self, image: str) -> str:
        """The resource model preselected for the image template ``image``."""
        return self.template_resource_models.get(image, self.default_resource_model)

    def parse(self, raw: dict | None, host: HostCapacity | None = None) -> WorkspaceSpec:
        """Check ``raw`` options (missing keys take defaults) and return a :class:`WorkspaceSpec`.

        Unknown keys are refused. With ``host``, a resource model that host cannot run is
        refused too. Every problem is collected; if any, raises one :class:`OptionsError`.
        """
        raw = _options_object(raw)
        allowed = ", ".join(OPTION_NAMES)
        errors = [
            FieldError(str(key), f"unknown option {str(key)!r}; allowed options: {allowed}")
            for key in raw
            if key not in OPTION_NAMES
        ]
        values = {**self.defaults(), **{k: v for k, v in raw.items() if k in OPTION_NAMES}}
        if "resource_model" not in raw and isinstance(values["image"], str):
            values["resource_model"] = self.model_of(values["image"])
        checked = {
            "image": self._check_image(values["image"], errors),
            "resource_model": self._check_model(values["resource_model"], host, errors),
            "storage_gb": self._check_storage(values["storage_gb"], errors),
            "access_mode": self._check_access_mode(values["access_mode"], errors),
            "description": self._check_description(values["description"], errors),
            **_check_run_time_policy(values, self.max_auto_shutdown_hours, errors),
            "restore_checkpoint": _check_restore_checkpoint(values["restore_checkpoint"], errors),
        }
        whitelist, whitelist_errors = _parse_whitelist(values["whitelist"], values["access_mode"])
        errors.extend(whitelist_errors)
        checked["packages"], package_problems = parse_packages(values["packages"])
        errors.extend(FieldError(*problem) for problem in package_problems)
        checked["project"], project_problems = parse_project_name(values["project"])
        checked["permissions"], permission_problems = parse_permissions(values["permissions"])
        errors.extend(FieldError(*p) for p in (*project_problems, *permission_problems))
        if errors:
            raise OptionsError(errors)
        return WorkspaceSpec(whitelist=whitelist, **checked)

    def _check_image(self, value: object, errors: list[FieldError]) -> str:
        allowed = ", ".join(self.image_templates)
        if not isinstance(value, str) or value not in self.image_templates:
            errors.append(
                FieldError("image", f"{shown(value)} is not an image template; allowed: {allowed}")
            )
        return value

    def _check_model(
        self, value: object, host: HostCapacity | None, errors: list[FieldError]
    ) -> str:
        if not isinstance(value, str) or value not in self.resource_models:
            allowed = ", ".join(self.resource_models)
            message = f"{shown(value)} is not a resource model; allowed: {allowed}"
            errors.append(FieldError("resource_model", message))
            return value
        reason = host and unavailable_reason(self.resource_models[value], host)
        if reason:
            errors.append(
                FieldError("resource_model", f"{value!r} is unavailable on this host: {reason}")
            )
        return value

    def _check_storage(self, value: object, errors: list[FieldError]) -> int | None:
        number = whole_number(value)
        if number is None or not self.storage_min_gb <= number <= self.storage_max_gb:
            errors.append(
                FieldError(
                    "storage_gb",
                    f"must be a whole number of GB from {self.storage_min_gb} to "
                    f"{self.storage_max_gb}, got {shown(value)}",
                )
            )
        return number

    def _check_access_mode(self, value: object, errors: list[FieldError]) -> str:
        if value not in ACCESS_MODES or not isinstance(value, str):
            message = f"{shown(value)} is not an access mode; allowed: {', '.join(ACCESS_MODES)}"
            errors.append(FieldError("access_mode", message))
        return value

    def _check_description(self, value: object, errors: list[FieldError]) -> str:
        limit = self.max_description_chars
        if not isinstance(value, str):
            message = f"must be text of at most {limit} characters, got {shown(value)}"
            errors.append(FieldError("description", message))
        elif len(value) > limit:
            message = f"must be text of at most {limit} characters, got {len(value)} characters"
            errors.append(FieldError("description", message))
        return value

    def check_change(self, old: WorkspaceSpec | None, new: WorkspaceSpec) -> None:
        """Refuse a change from ``old`` (None for a new workspace) to ``new`` that would lose
        data: storage can grow, never shrink. Raises :class:`OptionsError` on ``storage_gb``.
        Other changes (image template, model, access) are allowed on restart."""
        if old is not None and new.storage_gb < old.storage_gb:
            message = (
                f"cannot shrink storage from {old.storage_gb} GB to {new.storage_gb} GB; "
                f"storage can only grow (stop the workspace and choose ≥ {old.storage_gb})"
            )
            raise OptionsError([FieldError("storage_gb", message)])


def _check_auto_shutdown(value: object, max_hours: int, errors: list[FieldError]) -> int | None:
    number = whole_number(value)
    if number is None or not 0 <= number <= max_hours:
        errors.append(
            FieldError(
                "auto_shutdown_hours",
                f"must be a whole number of hours from 0 to {max_hours} "
                f"(0 = no automatic shutdown), got {shown(value)}",
            )
        )
    return number


def _check_shutdown_mode(value: object, errors: list[FieldError]) -> str:
    if not isinstance(value, str) or value not in SHUTDOWN_MODES:
        message = (
            f"{shown(value)} is not a shutdown mode; allowed: {', '.join(SHUTDOWN_MODES)} "
            "(hours counted from start, or from the last activity)"
        )
        errors.append(FieldError("shutdown_mode", message))
    return value


def _check_keep_until(value: object, errors: list[FieldError]) -> str:
    """``keep_until`` as canonical UTC ISO text ("" for none)."""
    if value is None or value == "":
        return ""
    message = (
        f"must be an ISO 8601 time with a timezone, e.g. {_KEEP_UNTIL_EXAMPLE}, "
        f"or empty for none; got {shown(value)}"
    )
    try:
        parsed = datetime.fromisoformat(value.strip()) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    try:
        if parsed is None or parsed.utcoffset() is None:
            raise ValueError("no time or no timezone")
        return parsed.astimezone(UTC).isoformat(timespec="seconds")
    except (ValueError, OverflowError):  # OverflowError: e.g. 0001-01-01 at +05:00 in UTC
        errors.append(FieldError("keep_until", message))
        return value


def _check_restore_checkpoint(value: object, errors: list[FieldError]) -> str:
    """``restore_checkpoint``: "" (latest), "none", or the shape of a checkpoint id or name
    (whitespace becomes ``_``, as in checkpoint names)."""
    if value is None:
        return RESTORE_LATEST
    # names are stored with runs of whitespace as one "_" (as checkpoint names are)
    text = "_".join(value.split()) if isinstance(value, str) else None
    known = text in (RESTORE_LATEST, RESTORE_NONE)
    if text is None or not (known or _CHECKPOINT_REF.fullmatch(text)):
        message = (
            f"must be empty (the latest checkpoint), 'none' (the image as built) or a "
            f"checkpoint id or name of this workspace, e.g. '20250101T120000123Z-a1b2c3' or "
            f"'before_upgrade'; got {shown(value)}"
        )
        errors.append(FieldError("restore_checkpoint", message))
        return value
    return text


def _check_reminders(value: object, max_hours: int, errors: list[FieldError]) -> tuple:
    """``reminder_hours``: up to MAX_REMINDERS whole hours from 1 to ``max_hours`` (a list or
    comma-separated text; [] for no reminders), returned unique and longest first."""
    if isinstance(value, str):
        value = [part for part in value.replace(" ", "").split(",") if part]
    hours = [whole_number(v) for v in value] if isinstance(value, list) else [None]
    if None in hours or len(hours) > MAX_REMINDERS or not all(1 <= h <= max_hours for h in hours):
        message = (
            f"must be a list of at most {MAX_REMINDERS} whole numbers of hours from 1 to "
            f"{max_hours} (how long before a shutdown or restart to remind), got {shown(value)}"
        )
        errors.append(FieldError("reminder_hours", message))
        return ()
    return tuple(sorted(set(hours), reverse=True))


def options_from_form(formdata: dict[str, list[str]]) -> dict:
    """Turn JupyterHub spawn-form data (each value a list of strings) into raw options.

    Single values are unwrapped (and stripped), several values stay a list (``parse``
    reports it); empty values are omitted so defaults apply. Textarea text
    (``description``, ``whitelist``) is kept as given except that CRLF becomes LF. The
    whitelist is dropped when the access mode is (or defaults to) ``open``, because the
    hidden textarea is still submitted. ``_xsrf`` is dropped; any other key is kept for
    ``parse`` to refuse.
    """
    raw: dict = {}
    for key, values in formdata.items():
        if key in _FORM_ONLY_KEYS:
            continue
        values = [v for v in values if isinstance(v, str) and v.strip()]
        if len(values) == 1 and key in _TEXTAREA_KEYS:
            # Browsers submit textarea line breaks as CRLF but count them as one character.
            raw[key] = values[0].replace("\r\n", "\n")
        elif len(values) == 1:
            raw[key] = values[0].strip()
        elif values:
            raw[key] = values
    if raw.get("access_mode", "open") == "open":
        raw.pop("whitelist", None)
    return packages_from_form(raw)  # its three text fields become one ``packages`` option
