"""Resource models: the named CPU / memory / GPU sizes a workspace can be started with.

The catalog is configured as plain dicts (so a traitlets ``Dict`` trait can hold it) and
turned into :class:`ResourceModel` values by :func:`load_catalog`, which refuses a
malformed entry with a sentence saying which model is wrong and how to fix it.

Memory is in GiB throughout; the user-facing text says "GB" as ICA Bench does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from numbers import Real

# Workspace names and resource model names share one rule: they end up in container
# names, volume names and URLs, so they stay ASCII and free of dots and spaces.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,63}")
NAME_RULE = "1 to 63 characters, each a letter A-Z or a-z, a digit 0-9, '-' or '_'"


def is_valid_name(name: object) -> bool:
    """True when ``name`` is a string that satisfies :data:`NAME_RULE`."""
    return isinstance(name, str) and NAME_PATTERN.fullmatch(name) is not None


def _num(value: float) -> str:
    """Format a quantity without a useless ``.0`` (``8.0`` -> ``"8"``, ``23.4`` -> ``"23.4"``)."""
    return f"{value:g}"


# The writable-layer limit of a model that does not set disk_gb: room for a home directory,
# /tmp and the packages a user installs on top of the image (GiB).
DEFAULT_DISK_GB = 20.0


@dataclass(frozen=True)
class ResourceModel:
    """One named workspace size.

    ``cpus`` is in cores (may be fractional), ``memory_gb`` and ``gpu_memory_gb`` in GiB,
    ``gpus`` a whole number of devices. ``disk_gb`` (GiB) limits the container's own files
    (its writable layer: home, ``/tmp``, installed packages; not ``/data`` or ``/scratch``),
    :data:`DEFAULT_DISK_GB` unless the model says otherwise. Build instances with
    :func:`load_catalog` to get the values checked.
    """

    name: str
    cpus: float
    memory_gb: float
    gpus: int = 0
    gpu_memory_gb: float = 0.0
    disk_gb: float = DEFAULT_DISK_GB

    def describe(self) -> str:
        """Short human text, e.g. ``"2 CPU, 8 GB"`` or ``"8 CPU, 61 GB, 1 GPU (16 GB)"``."""
        text = f"{_num(self.cpus)} CPU, {_num(self.memory_gb)} GB"
        if self.gpus:
            text += f", {self.gpus} GPU ({_num(self.gpu_memory_gb)} GB)"
        return text


def _model(cpus: float, memory_gb: float, gpus: int = 0, gpu_memory_gb: float = 0.0) -> dict:
    entry: dict = {"cpus": cpus, "memory_gb": memory_gb}
    if gpus:
        entry.update(gpus=gpus, gpu_memory_gb=gpu_memory_gb)
    return entry


# Modelled on ICA Bench's catalog. Plain dicts so a traitlets Dict trait can hold it.
DEFAULT_RESOURCE_MODELS: dict[str, dict] = {
    "standard-small": _model(2, 8),
    "standard-medium": _model(4, 16),
    "standard-large": _model(8, 32),
    "standard-xlarge": _model(16, 64),
    "standard-2xlarge": _model(32, 128),
    "himem-small": _model(8, 64),
    "himem-medium": _model(16, 128),
    "himem-large": _model(48, 384),
    "hicpu-small": _model(16, 32),
    "hicpu-medium": _model(36, 72),
    "hicpu-large": _model(72, 144),
    "gpu-small": _model(8, 61, gpus=1, gpu_memory_gb=16),
    "gpu-medium": _model(32, 244, gpus=4, gpu_memory_gb=64),
}

MODEL_KEYS = ("cpus", "memory_gb", "gpus", "gpu_memory_gb", "disk_gb")
_REQUIRED_KEYS = ("cpus", "memory_gb")


def _is_number(value: object) -> bool:
    # bool is an int subclass; True CPUs is a configuration mistake, not 1 CPU.
    return isinstance(value, Real) and not isinstance(value, bool)


def _field_problems(fields: dict) -> list[str]:
    """Problems with one model's fields, each a sentence ending in how to fix it."""
    problems = []
    unknown = sorted(str(key) for key in fields if key not in MODEL_KEYS)
    if unknown:
        problems.append(
            f"unknown key(s) {', '.join(unknown)}; allowed keys: {', '.join(MODEL_KEYS)}"
        )
    for key in _REQUIRED_KEYS:
        if key not in fields:
            problems.append(f"'{key}' is missing; add it (a number greater than 0)")
    for key, unit in (("cpus", "CPU cores, e.g. 4"), ("memory_gb", "GiB, e.g. 16")):
        value = fields.get(key, 1)
        if not _is_number(value) or value <= 0:
            problems.append(f"'{key}' must be a number greater than 0 ({unit}), got {value!r}")
    gpus = fields.get("gpus", 0)
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
        problems.append(f"'gpus' must be a whole number 0 or more, got {gpus!r}")
    disk = fields.get("disk_gb", DEFAULT_DISK_GB)
    if not _is_number(disk) or disk <= 0:
        problems.append(
            f"'disk_gb' must be a number greater than 0 (GiB of the container's own files, "
            f"e.g. 20), got {disk!r}"
        )
    gpu_memory = fields.get("gpu_memory_gb", 0)
    if not _is_number(gpu_memory) or gpu_memory < 0:
        problems.append(
            f"'gpu_memory_gb' must be a number 0 or more (GiB per workspace), got {gpu_memory!r}"
        )
    elif gpu_memory > 0 and gpus == 0:
        problems.append(
            "'gpu_memory_gb' is set but 'gpus' is 0; set 'gpus' or drop 'gpu_memory_gb'"
        )
    return problems


def load_catalog(raw: dict[str, dict]) -> dict[str, ResourceModel]:
    """Check a configured catalog and return it as ``{name: ResourceModel}`` in the same order.

    Every model name must satisfy :data:`NAME_RULE`; ``cpus`` and ``memory_gb`` are
    required numbers > 0; ``gpus`` is an int >= 0; ``gpu_memory_gb`` a number >= 0 and only
    with ``gpus``; ``disk_gb`` a number > 0 (default :data:`DEFAULT_DISK_GB`); other keys
    are refused. Raises :class:`ValueError` listing every problem
    (joined with ``"; "``), each naming the model and how to fix it.
    """
    if not isinstance(raw, dict) or not raw:
        raise ValueError(
            "the resource model catalog must be a non-empty dict of "
            "{name: {'cpus': ..., 'memory_gb': ...}}; define at least one model"
        )
    problems = []
    for name, fields in raw.items():
        if not is_valid_name(name):
            problems.append(f"resource model name {name!r} is invalid; use {NAME_RULE}")
            continue
        if not isinstance(fields, dict):
            problems.append(
                f"resource model '{name}' must be a dict like "
                f"{{'cpus': 2, 'memory_gb': 8}}, got {fields!r}"
            )
            continue
        problems.extend(f"resource model '{name}': {p}" for p in _field_problems(fields))
    if problems:
        raise ValueError("; ".join(problems))
    return {
        name: ResourceModel(
            name=name,
            cpus=float(fields["cpus"]),
            memory_gb=float(fields["memory_gb"]),
            gpus=int(fields.get("gpus", 0)),
            gpu_memory_gb=float(fields.get("gpu_memory_gb", 0.0)),
            disk_gb=float(fields.get("disk_gb", DEFAULT_DISK_GB)),
        )
        for name, fields in raw.items()
    }


@dataclass(frozen=True)
class HostCapacity:
    """What one Docker host can give a single workspace: cores, GiB of memory, GPU devices."""

    cpus: float
    memory_gb: float
    gpus: int


def _plural(count: float, noun: str) -> str:
    return f"{_num(count)} {noun}" if count == 1 else f"{_num(count)} {noun}s"


def unavailable_reason(
    model: ResourceModel, host: HostCapacity, where: str = "this host"
) -> str | None:
    """Why ``host`` cannot run ``model``, or None when it can; ``where`` names the host in the
    sentence (e.g. "the largest worker node" on a swarm).

    Checks CPUs, then memory, then GPUs and returns only the first shortfall, e.g.
    ``"needs 16 CPUs; this host has 2"``, ``"needs 64 GB memory; this host has 23.4 GB"``,
    ``"needs 1 GPU; this host has none"``. Host memory is shown rounded to 0.1 GB.
    """
    if model.cpus > host.cpus:
        return f"needs {_plural(model.cpus, 'CPU')}; {where} has {_num(host.cpus)}"
    if model.memory_gb > host.memory_gb:
        return (
            f"needs {_num(model.memory_gb)} GB memory; "
            f"{where} has {_num(round(host.memory_gb, 1))} GB"
        )
    if model.gpus > host.gpus:
        has = _num(host.gpus) if host.gpus else "none"
        return f"needs {_plural(model.gpus, 'GPU')}; {where} has {has}"
    return None
