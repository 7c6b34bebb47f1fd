"""The one typed schema for a workspace cluster's settings.

:meth:`ClusterSchema.parse` checks what a user asks for (from a form or the REST API, the
same way ``benchhub.workspace_spec.OptionsSchema`` checks workspace options): defaults for
what is left out, unknown keys refused, every problem collected into one
``benchhub.workspace_spec.OptionsError`` whose messages name the field and what is allowed.

A cluster is ``static`` (``members`` members, 1 to 50, always running) or ``dynamic``
(``min_members`` to ``max_members``, 0 <= min <= max <= 50, scaled by the auto scaler). Each
member has the resource model ``resource_model``; ``dedicated_manager`` gives the manager a
machine of its own instead of reserving one core per member for scheduling; ``scratch_gb``
(0 = none) is each member's ephemeral ``/scratch``; ``web_access`` opens the manager's web UI;
``preemptible`` is ICA Bench's economy mode (members may be interrupted).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from benchhub.resource_models import ResourceModel
from benchhub.workspace_spec import FieldError, OptionsError, shown, whole_number

from .scaling import MAX_MEMBERS, ScalingPolicy
from .sge import member_capacity

__all__ = ["CLUSTER_TYPES", "SETTING_NAMES", "ClusterSchema", "ClusterSettings"]

CLUSTER_TYPES = ("static", "dynamic")
SETTING_NAMES = (
    "type",
    "members",
    "min_members",
    "max_members",
    "resource_model",
    "dedicated_manager",
    "scratch_gb",
    "web_access",
    "preemptible",
)
_ONLY_FOR = {"members": "static", "min_members": "dynamic", "max_members": "dynamic"}
_TRUE = ("true", "on", "yes", "1")
_FALSE = ("false", "off", "no", "0")


@dataclass(frozen=True)
class ClusterSettings:
    """A checked cluster. A static cluster has ``min_members == max_members``."""

    type: str
    min_members: int
    max_members: int
    resource_model: str
    dedicated_manager: bool
    scratch_gb: int
    web_access: bool
    preemptible: bool

    def to_options(self) -> dict:
        """The canonical JSON-able form; :meth:`ClusterSchema.parse` of it gives back an
        equal value. A static cluster is written with ``members``, a dynamic one with
        ``min_members`` and ``max_members``."""
        options = asdict(self)
        if self.type == "static":
            options["members"] = options.pop("min_members")
            del options["max_members"]
        return options

    def scaling_policy(self, model: ResourceModel, **pacing) -> ScalingPolicy:
        """The auto scaler's bounds for this cluster with members of ``model`` (which must be
        ``resource_model``'s entry); ``pacing`` passes ``stabilisation``/``min_lifetime``."""
        capacity = member_capacity(model, self.dedicated_manager)
        return ScalingPolicy(self.min_members, self.max_members, capacity, **pacing)


def _boolean(value: object) -> bool | None:
    """``value`` as a bool: JSON true/false, or form text true/false, on/off, yes/no, 1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    return None


@dataclass(frozen=True)
class ClusterSchema:
    """What a user may choose for a cluster. ``resource_models`` comes from
    ``benchhub.resource_models.load_catalog``; ``max_scratch_gb`` is in whole GB.
    Construction raises :class:`ValueError` when the default model is not in the catalog."""

    resource_models: dict[str, ResourceModel]
    default_resource_model: str = "standard-medium"
    max_scratch_gb: int = 16384

    def __post_init__(self) -> None:
        if self.default_resource_model not in self.resource_models:
            raise ValueError(
                f"default_resource_model {self.default_resource_model!r} is not in the catalog; "
                f"choose one of: {', '.join(self.resource_models) or '(none configured)'}"
            )
        if self.max_scratch_gb < 0:
            raise ValueError(f"max_scratch_gb must be 0 or more, got {self.max_scratch_gb}")

    def parse(self, raw: dict | None, prefix: str = "") -> ClusterSettings:
        """Check ``raw`` settings and return :class:`ClusterSettings`.

        ``type`` is required; ``members`` too for static, ``max_members`` for dynamic
        (``min_members`` defaults to 0). Other keys default to the schema's model, no
        dedicated manager, no scratch, no web access, not preemptible. Error fields are the
        setting names with ``prefix`` in front (e.g. ``"cluster."``). Raises one
        ``OptionsError`` listing every problem.
        """
        errors = _Errors(prefix)
        if not isinstance(raw, dict):
            errors.add("", f"must be a JSON object of setting: value, got {shown(raw)}")
            errors.raise_if_any()
        allowed = ", ".join(SETTING_NAMES)
        for key in raw:
            if key not in SETTING_NAMES:
                errors.add(str(key), f"unknown setting {str(key)!r}; allowed settings: {allowed}")
        kind = self._check_type(raw.get("type"), errors)
        low, high = self._check_members(raw, kind, errors)
        model = self._check_model(raw.get("resource_model", self.default_resource_model), errors)
        flags = {
            name: self._check_flag(name, raw.get(name, False), errors)
            for name in ("dedicated_manager", "web_access", "preemptible")
        }
        scratch = self._check_scratch(raw.get("scratch_gb", 0), errors)
        if model is not None and flags["dedicated_manager"] is not None:
            try:
                member_capacity(self.resource_models[model], flags["dedicated_manager"])
            except ValueError as err:
                errors.add("resource_model", str(err))
        errors.raise_if_any()
        return ClusterSettings(kind, low, high, model, scratch_gb=scratch, **flags)

    def _check_type(self, value: object, errors: _Errors) -> str | None:
        if value in CLUSTER_TYPES and isinstance(value, str):
            return value
        got = "nothing" if value is None else repr(value)
        errors.add("type", f"must be one of: {', '.join(CLUSTER_TYPES)}; got {got}")
        return None

    def _check_members(
        self, raw: dict, kind: str | None, errors: _Errors
    ) -> tuple[int | None, int | None]:
        """``(min_members, max_members)``; a static cluster's ``members`` is both."""
        for key, only in _ONLY_FOR.items():
            if key in raw and kind is not None and kind != only:
                other = "members" if kind == "static" else "min_members and max_members"
                errors.add(key, f"is only for type {only!r}; a {kind} cluster takes {other}")
        if kind == "static":
            members = self._count("members", raw.get("members"), 1, errors)
            return members, members
        if kind == "dynamic":
            low = self._count("min_members", raw.get("min_members", 0), 0, errors)
            high = self._count("max_members", raw.get("max_members"), 1, errors)
            if low is not None and high is not None and low > high:
                errors.add(
                    "min_members",
                    f"must not exceed max_members ({high}), got {low}; lower min_members or "
                    "raise max_members",
                )
            return low, high
        return None, None

    def _count(self, name: str, value: object, least: int, errors: _Errors) -> int | None:
        number = None if value is None else whole_number(value)
        if number is None or not least <= number <= MAX_MEMBERS:
            got = "nothing" if value is None else shown(value)
            errors.add(name, f"must be a whole number from {least} to {MAX_MEMBERS}, got {got}")
            return None
        return number

    def _check_model(self, value: object, errors: _Errors) -> str | None:
        if isinstance(value, str) and value in self.resource_models:
            return value
        allowed = ", ".join(self.resource_models)
        errors.add("resource_model", f"{shown(value)} is not a resource model; allowed: {allowed}")
        return None

    def _check_flag(self, name: str, value: object, errors: _Errors) -> bool | None:
        flag = _boolean(value)
        if flag is None:
            errors.add(name, f"must be true or false, got {shown(value)}")
        return flag

    def _check_scratch(self, value: object, errors: _Errors) -> int | None:
        number = whole_number(value)
        if number is None or not 0 <= number <= self.max_scratch_gb:
            errors.add(
                "scratch_gb",
                f"must be a whole number of GB from 0 (no scratch) to {self.max_scratch_gb}, "
                f"got {shown(value)}",
            )
            return None
        return number


class _Errors:
    """Collects FieldErrors with a field-name prefix; raises them as one OptionsError."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.items: list = []

    def add(self, field: str, message: str) -> None:
        """Record a problem with ``field`` ("" for the settings as a whole)."""
        name = self.prefix + field if field else self.prefix.rstrip(".") or "cluster"
        self.items.append(FieldError(name, message))

    def raise_if_any(self) -> None:
        """Raise the collected problems as one ``OptionsError``; nothing when there are none."""
        if self.items:
            raise OptionsError(self.items)
