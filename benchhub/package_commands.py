"""The commands that install a workspace's packages, and the sentence a failure becomes.

Pure: :func:`install_commands` turns the packages a start is missing (a checked
:class:`~benchhub.package_spec.PackageSpec`) into ``docker exec`` command lines, and
:func:`failure_reason` turns a failed command's exit code and output into the one line a
user sees as the workspace's ``errored`` reason. The spawner runs them
(``bench_spawner.package_install``).

* apt runs as root in the container (``apt-get update``, then ``apt-get install -y
  --no-install-recommends``, then the package lists and downloaded ``.deb`` files are removed
  as the image's own build does, so checkpoints stay small);
* pip runs as the workspace user (uid 1000) with the image's venv pip, so the packages land in
  the kernel's environment;
* R runs ``Rscript`` as the workspace user and installs into the user library
  (``R_LIBS_USER``), failing when a package did not install (``install.packages`` itself only
  warns).

No command goes through a shell with user text in it: names are separate arguments (they
passed the grammars of :mod:`benchhub.package_spec`), and the two constant shell scripts get
them as ``"$@"``. Every command inherits the container's environment, so a restricted
workspace's installs go through its egress proxy like the user's own would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .package_spec import PackageSpec, marker_text

__all__ = [
    "MARKER_PATH",
    "ROOT",
    "ROOT_ENVIRONMENT",
    "WORKSPACE_USER",
    "InstallCommand",
    "failure_reason",
    "install_commands",
    "meaningful_lines",
    "no_r_reason",
    "no_root_for_apt_reason",
    "r_probe_command",
    "read_marker_command",
    "write_marker_command",
]

# In the container's own filesystem (not /data), so checkpoints keep it with what it describes.
MARKER_PATH = "/var/lib/benchhub/packages.json"
ROOT, WORKSPACE_USER = "0", "1000"
APT_GET = "/usr/bin/apt-get"  # by path: an image's apt-get wrapper (for sudo) is not needed as root
# What runs as root finds its programs only in the system's directories, never first in the
# user's venv (the container's PATH starts with /opt/venv/bin, which the user owns).
ROOT_ENVIRONMENT = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
MAX_REASON_LINES, MAX_LINE_CHARS = 3, 200

_APT_INSTALL = (
    f'{APT_GET} install -y --no-install-recommends "$@" && {APT_GET} clean '
    "&& rm -rf /var/lib/apt/lists/*"
)
# R: install into the user library and fail (install.packages only warns) when one is missing
_R_INSTALL = """
pkgs <- commandArgs(trailingOnly = TRUE)
lib <- path.expand(Sys.getenv("R_LIBS_USER"))
if (!nzchar(lib)) stop("R_LIBS_USER is not set: there is no user library to install into")
dir.create(lib, recursive = TRUE, showWarnings = FALSE)
.libPaths(c(lib, .libPaths()))
install.packages(pkgs, lib = lib)
ok <- vapply(pkgs, requireNamespace, logical(1), lib.loc = .libPaths(), quietly = TRUE)
if (!all(ok)) stop("not installed: ", paste(pkgs[!ok], collapse = ", "), call. = FALSE)
""".strip()
_WRITE_MARKER = (
    'd=$(dirname "$0"); mkdir -p "$d" && printf "%s\\n" "$1" > "$d/.packages.json.tmp" '
    '&& mv -f "$d/.packages.json.tmp" "$0"'
)

# the lines of each installer's output that say what went wrong
_MEANINGFUL = {
    "apt": re.compile(r"^E: "),
    "pip": re.compile(r"^(ERROR|error):"),
    "r": re.compile(r"^Error|not available|had non-zero exit status|no package called"),
}
_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")
_NOT_FOUND = re.compile(r"executable file not found|no such file or directory", re.IGNORECASE)


@dataclass(frozen=True)
class InstallCommand:
    """One command run in the workspace container: ``doing`` is its progress message,
    ``what`` names it in a failure (``pip install``), ``installer`` picks the output lines a
    failure shows, ``tool`` is the program that must exist in the image."""

    installer: str
    doing: str
    what: str
    tool: str
    argv: tuple[str, ...]
    user: str
    environment: dict[str, str] = field(default_factory=dict)


def _listed(entries: tuple[str, ...], limit: int = 5) -> str:
    shown = ", ".join(entries[:limit])
    return shown + (f" and {len(entries) - limit} more" if len(entries) > limit else "")


def _count(n: int, installer: str) -> str:
    return f"{n} {installer} package{'s' if n != 1 else ''}"


def install_commands(missing: PackageSpec, pip: str) -> list[InstallCommand]:
    """The commands that install ``missing``, in order (apt, pip, R); ``pip`` is the path of
    the image's pip (the kernel's environment), e.g. ``/opt/venv/bin/pip``."""
    commands = []
    apt_env = {**ROOT_ENVIRONMENT, "DEBIAN_FRONTEND": "noninteractive"}
    if missing.apt:
        update = (APT_GET, "update")
        commands.append(
            InstallCommand(
                "apt",
                "Updating the apt package lists",
                "apt-get update",
                APT_GET,
                update,
                ROOT,
                apt_env,
            )
        )
        commands.append(
            InstallCommand(
                "apt",
                f"Installing {_count(len(missing.apt), 'apt')} ({_listed(missing.apt)})",
                "apt-get install",
                APT_GET,
                ("/bin/sh", "-c", _APT_INSTALL, "sh", *missing.apt),
                ROOT,
                apt_env,
            )
        )
    if missing.pip:
        options = ("--no-input", "--disable-pip-version-check", "--no-cache-dir")
        commands.append(
            InstallCommand(
                "pip",
                f"Installing {_count(len(missing.pip), 'pip')} ({_listed(missing.pip)})",
                "pip install",
                pip,
                (pip, "install", *options, "--progress-bar", "off", "--", *missing.pip),
                WORKSPACE_USER,
            )
        )
    if missing.r:
        commands.append(
            InstallCommand(
                "r",
                f"Installing {_count(len(missing.r), 'R')} ({_listed(missing.r)})",
                "R install.packages",
                "Rscript",
                ("Rscript", "-e", _R_INSTALL, *missing.r),
                WORKSPACE_USER,
            )
        )
    return commands


def r_probe_command() -> tuple[str, ...]:
    """Exits 0 when the image has ``Rscript`` (checked before anything is installed)."""
    return ("/bin/sh", "-c", "command -v Rscript")


def no_root_for_apt_reason() -> str:
    """Why apt packages cannot be installed where a workspace gets no root inside."""
    return (
        "apt packages need root inside the workspace, which this hub gives only on a Docker "
        "engine that remaps user ids (docs/security.md, 'Root inside a workspace'); remove "
        "packages.apt (pip packages work)"
    )


def no_r_reason(image: str) -> str:
    """Why R packages cannot be installed in ``image`` (it has no ``Rscript``)."""
    return (
        f"R packages need a template with R: Rscript is not in the image {image}; choose a "
        "template with R or remove the R packages (packages.r)"
    )


def read_marker_command() -> tuple[str, ...]:
    return ("cat", MARKER_PATH)


def write_marker_command(installed: PackageSpec) -> tuple[str, ...]:
    """Writes the marker for ``installed`` atomically (a temporary file, then a rename); run
    as root, only after every install succeeded."""
    return ("/bin/sh", "-c", _WRITE_MARKER, MARKER_PATH, marker_text(installed))


def meaningful_lines(installer: str, output: str) -> list[str]:
    """The last few lines of ``output`` that say what went wrong (pip's ``ERROR:``, apt's
    ``E:``, R's errors and "not available"), else its last non-empty lines; terminal escapes
    and control characters removed, each line cut at :data:`MAX_LINE_CHARS` characters."""
    lines = [_CONTROL.sub("", line).strip() for line in output.splitlines()]
    lines = [line for line in lines if line]
    pattern = _MEANINGFUL.get(installer)
    chosen = [line for line in lines if pattern and pattern.search(line)] or lines
    return [
        line if len(line) <= MAX_LINE_CHARS else line[: MAX_LINE_CHARS - 1] + "…"
        for line in chosen[-MAX_REASON_LINES:]
    ]


def failure_reason(command: InstallCommand, exit_code: int, output: str, image: str) -> str:
    """One line for the workspace's ``errored`` reason when ``command`` failed."""
    if exit_code in (126, 127) and _NOT_FOUND.search(output):
        if command.installer == "r":
            return no_r_reason(image)
        return (
            f"{command.what} is not possible in the image {image}: {command.tool} is not "
            f"there; remove packages.{command.installer} or choose another template"
        )
    if exit_code == 137:  # SIGKILL: in a container, almost always its memory limit
        return (
            f"{command.what} was killed (exit code 137; out of memory is the usual cause: "
            "choose a resource model with more memory, or install fewer packages at once)"
        )
    detail = "; ".join(meaningful_lines(command.installer, output)) or "no output"
    code = f"exit code {exit_code}" if exit_code >= 0 else "stopped"
    return f"{command.what} failed ({code}): {detail}"
