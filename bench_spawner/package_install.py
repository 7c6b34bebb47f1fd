"""Packages at creation, the spawner's side: install a workspace's ``packages`` option before
it is first reported ready, and leave nothing behind when a first start fails.

A mixin of :class:`bench_spawner.spawner.BenchSpawner` (kept apart so the spawner stays an
orchestrator). The pure parts are in :mod:`benchhub.package_spec` (the option, the marker, the
difference) and :mod:`benchhub.package_commands` (the command lines, the failure sentence).
It relies on the spawner's ``docker``, ``_step``, ``_emit``, ``object_id``, ``image``,
``volume``, ``root_inside_decision`` (:class:`~bench_spawner.root_inside.WorkspaceRoot`),
``user_options``, ``start_timeout``, ``log`` and ``_log_name``.

* :meth:`install_packages` (from ``start``, once the server answers) reads the marker the last
  successful install left in the container's filesystem (restored with the checkpoint), installs
  only what it does not list, one progress step per command with its duration, and writes the
  marker when every install succeeded. A failed command raises a :class:`SpawnException` whose
  message is the installer's own error lines: ``start``'s failure path shows it as the
  ``errored`` reason and releases the container.
* Commands run through their own :class:`~benchhub.docker_engine.DockerEngine` (bounded output,
  a deadline), never on the spawner's single docker thread, which every other call of the hub
  shares: an install of minutes must not hold the hub's other starts and stops.
* :meth:`run_pre_spawn_hook` gives a start that installs packages ``package_install_timeout``
  seconds on top of ``start_timeout`` (JupyterHub reads it as the start begins).
"""

from __future__ import annotations

import asyncio
import time

from docker.errors import APIError, NotFound
from jupyterhub.spawner import SpawnException
from traitlets import Float, Integer, TraitError, Unicode, validate
from traitlets.config import LoggingConfigurable

from benchhub.checkpoints.errors import CheckpointError
from benchhub.checkpoints.workspace import read_state
from benchhub.container_defaults import GIB
from benchhub.docker_engine import DockerEngine, ExecResult
from benchhub.package_commands import (
    ROOT,
    ROOT_ENVIRONMENT,
    WORKSPACE_USER,
    InstallCommand,
    failure_reason,
    install_commands,
    no_r_reason,
    no_root_for_apt_reason,
    r_probe_command,
    read_marker_command,
    write_marker_command,
)
from benchhub.package_spec import (
    PackageSpec,
    missing_packages,
    parse_marker,
    record_installed,
)

from .workspace_status import exit_reason, read_outcome, write_outcome

__all__ = ["WorkspacePackages"]

MAX_MARKER_BYTES = 256 * 1024  # a marker this module writes is far smaller (bounded lists)
FIRST_PROGRESS, LAST_PROGRESS = 76, 94  # after the server and the egress proxy (50-75)
ENGINE_GRACE_S = 60


class WorkspacePackages(LoggingConfigurable):
    """Settings (``c.BenchSpawner.package_*``) and the install steps of a start."""

    package_install_timeout = Float(
        900,
        help="""Seconds that all package installs of one start may take together, e.g. 900.

        A start whose options list packages gets this much time on top of
        c.Spawner.start_timeout; installs still running then fail the start with a reason that
        names this setting.""",
    ).tag(config=True)
    package_install_concurrency = Integer(
        4,
        help="""How many install commands (apt-get, pip, Rscript) may run at once across all
        workspaces of this hub, e.g. 4; more wait for a free slot (within their time).""",
    ).tag(config=True)
    package_pip = Unicode(
        "/opt/venv/bin/pip",
        help="""The pip of the templates' kernel environment, run as the workspace user (uid
        1000), e.g. /opt/venv/bin/pip. The environment must belong to that user.""",
    ).tag(config=True)

    @validate("package_install_timeout", "package_install_concurrency")
    def _positive(self, proposal):
        if proposal["value"] <= 0:
            name = proposal["trait"].name
            example = 900 if name == "package_install_timeout" else 4
            raise TraitError(
                f"c.BenchSpawner.{name} must be positive, e.g. {example}; got {proposal['value']}"
            )
        return proposal["value"]

    _package_engines: dict[tuple[int, float], DockerEngine] = {}
    _start_timeout_without_packages: float | None = None

    @property
    def package_engine(self) -> DockerEngine:
        """The engine install commands run on (one per setting for the hub process). Its own
        time limit (the client's socket timeout) is longer than the installs' budget, so the
        budget's deadline is what ends a slow install, with a reason that names it."""
        key = (self.package_install_concurrency, self.package_install_timeout)
        engines = WorkspacePackages._package_engines
        if key not in engines:
            engines[key] = DockerEngine(threads=key[0], timeout=key[1] + ENGINE_GRACE_S)
        return engines[key]

    def run_pre_spawn_hook(self):
        # JupyterHub reads start_timeout right after calling start(): extend it here, for a
        # start whose (applied, canonical) options list packages, and only for that start
        if self._start_timeout_without_packages is None:
            self._start_timeout_without_packages = self.start_timeout
        wanted = (self.user_options or {}).get("packages")
        listed = isinstance(wanted, dict) and any(wanted.values())
        extra = self.package_install_timeout if listed else 0
        self.start_timeout = self._start_timeout_without_packages + extra
        return super().run_pre_spawn_hook()

    # ---- installing ---------------------------------------------------------------------------

    async def install_packages(self, wanted: PackageSpec) -> None:
        """Install in the running container what ``wanted`` lists and its marker does not;
        then write the marker. Raises :class:`SpawnException` with the installer's error (or
        a timeout naming ``package_install_timeout``) when a command fails."""
        if not wanted:
            return
        deadline = time.monotonic() + self.package_install_timeout
        marker = read_marker_command()
        found = await self._exec(marker, WORKSPACE_USER, {}, deadline, MAX_MARKER_BYTES)
        installed = parse_marker(found.output if found.ok else None)
        missing = missing_packages(wanted, installed)
        if not missing:
            self._emit(LAST_PROGRESS, "Packages: all installed already (kept by the checkpoint)")
            return
        if missing.apt and not (await self.root_inside_decision())[0]:
            raise SpawnException(no_root_for_apt_reason(), reason="packages")
        if missing.r and not (await self._exec(r_probe_command(), WORKSPACE_USER, {}, deadline)).ok:
            raise SpawnException(no_r_reason(self.image), reason="packages")
        commands = install_commands(missing, self.package_pip)
        span = LAST_PROGRESS - FIRST_PROGRESS
        for i, command in enumerate(commands):
            progress = FIRST_PROGRESS + span * i // len(commands)
            await self._step(progress, command.doing, self._install(command, deadline))
        marker = write_marker_command(record_installed(installed, missing))
        written = await self._exec(marker, ROOT, ROOT_ENVIRONMENT, deadline)
        if not written.ok:  # the packages are there; the next start would install them again
            self.log.warning(
                "%s: could not write the package marker: %s", self._log_name, written.output
            )

    async def _install(self, command: InstallCommand, deadline: float) -> None:
        result = await self._exec(command.argv, command.user, command.environment, deadline)
        if not result.ok:
            await self._raise_if_stopped()  # e.g. out of memory: say that, not the exec's error
            self.log.info(
                "%s: %s failed (%s): %s",
                self._log_name,
                command.what,
                result.exit_code,
                result.output[-4000:],
            )
            reason = failure_reason(command, result.exit_code, result.output, self.image)
            raise SpawnException(reason, reason="packages")

    async def _exec(
        self, argv, user: str, environment: dict, deadline: float, max_output: int | None = None
    ) -> ExecResult:
        """Run ``argv`` in this run's container within ``deadline`` (``time.monotonic()``)."""
        limit = {"max_output": max_output} if max_output else {}
        run = self.package_engine.exec(self.object_id, argv, environment, user, **limit)
        try:
            return await asyncio.wait_for(run, max(deadline - time.monotonic(), 0.001))
        except APIError as e:  # e.g. 409: the container stopped under the install
            await self._raise_if_stopped()
            raise SpawnException(
                f"installing packages failed: {e.explanation or e}", reason="packages"
            ) from None
        except TimeoutError:
            raise SpawnException(
                f"installing packages took longer than {self.package_install_timeout:g} s "
                "(c.BenchSpawner.package_install_timeout); list fewer packages, or ask an "
                "administrator to allow more time",
                reason="packages",
            ) from None

    async def _raise_if_stopped(self) -> None:
        """A :class:`SpawnException` saying why, when this run's container no longer runs."""
        try:
            obj = await self.docker("inspect_container", self.object_id)
        except NotFound:
            obj = None
        if obj is not None and obj["State"]["Running"]:
            return
        if obj is None:
            why = "its container is gone"
        else:
            memory = obj["HostConfig"].get("Memory") or 0
            why = exit_reason(obj["State"], memory / GIB if memory else None)
        raise SpawnException(
            f"the workspace stopped while installing packages: {why}", reason="packages"
        )

    # ---- a failed first start ------------------------------------------------------------------

    async def never_ran(self) -> bool:
        """Whether nothing of this workspace is kept yet: no ``/data`` volume and no checkpoint
        record (asked before a start creates them)."""
        if await self.volume.size_gb() is not None:
            return False
        return not await self._keeps_checkpoint_record(any_record=True)

    async def _keeps_checkpoint_record(self, any_record: bool) -> bool:
        """Whether the workspace's checkpoint record must be kept: any record at all
        (``any_record``), else one that leads to checkpoints (a clone's origin, a last
        checkpoint). An unreadable record is kept (it may be the only link)."""
        try:
            state = await asyncio.to_thread(read_state, self.volume.dir)
        except CheckpointError:
            return True
        if state is None:
            return False
        return any_record or bool(state.origin or state.last)

    async def discard_first_start(self) -> None:
        """After a failed start of a workspace that :meth:`never_ran`: remove the volume (and
        with it the storage claim) that this start made, keeping only the ``errored`` outcome,
        so a failed creation holds no disk. A clone (its checkpoint record, which this start
        adopted, leads to the checkpoints it starts from) keeps its directory."""
        if await self._keeps_checkpoint_record(any_record=False):
            return
        outcome = await asyncio.to_thread(read_outcome, self.volume.dir)
        await self.volume.delete()
        if outcome is not None:
            await asyncio.to_thread(write_outcome, self.volume.dir, outcome)
