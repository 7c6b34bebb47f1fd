"""Projects, the spawner's side: which project a workspace runs in, whether its owner may,
and the project's shared data at ``/data/project``.

A mixin of :class:`bench_spawner.spawner.BenchSpawner` (kept apart so the spawner stays an
orchestrator). It relies on the spawner's ``user``, ``handler``, ``orm_spawner``,
``storage_class``, ``storage_root``, ``action_request`` and ``log``. The decisions are
:func:`benchhub.projects.decide` and :func:`benchhub.projects.project_data_mode`; the
project is read from the hub's own database (:mod:`.project_lookup`) at each check, so a
membership or role change applies at the workspace's next start and nothing running changes.

* :meth:`validate_options` (every option check: the REST API, the form, an edit, a start)
  refuses a ``project`` that does not exist (400 naming ``project``) and options the owner
  may not have there: a 403 with :func:`~benchhub.projects.decide`'s reason (the missing
  role, or ICA's wording naming each ``permissions.<field>`` the owner does not meet).
* :meth:`admit_project` (at every start, before anything is made) decides ``start`` for the
  owner with the workspace's stored permissions, claims the project's storage (its
  ``storage_gb`` counts against the host's capacity like a ``/data`` volume) and fixes the
  mode ``/data/project`` gets (:attr:`project_data_mode`).
* :meth:`project_data_source` (while the container is made) attaches the project's volume
  (an ext4 image like ``/data``'s, made at the first start that mounts it, under
  ``project_storage_root/<project>/data``) and gives the bind mount: a plain bind at
  ``/data/project``, read-only or read-write, or none. Cluster members mirror it from the
  workspace container's mounts (``docker inspect``). :meth:`detach_volumes` (at the end of
  a run) detaches it when no other run in the hub holds it.
"""

from __future__ import annotations

import asyncio
from functools import cached_property

from tornado import web
from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from benchhub.projects import Act, Person, Project, decide, project_data_mode
from benchhub.storage_admission import GIB, StorageRequest
from benchhub.storage_allocations import StorageAdmission, StorageRefused
from benchhub.volumes import StorageError, WorkspaceVolume
from benchhub.workspace_spec import WorkspaceSpec

from .actors import ActionRequest
from .project_lookup import ProjectNotFound, load_project

__all__ = ["PROJECT_DATA_PATH", "ProjectMembership", "project_storage_owner"]

PROJECT_DATA_PATH = "/data/project"
NO_PROJECT_DATA = "none"
STATE_KEY = "project"


def project_storage_owner(project: str) -> str:
    """Whose storage a project's data counts as in admission (never a person's quota)."""
    return f"project:{project}"


class ProjectMembership(LoggingConfigurable):
    """The project a workspace belongs to, checked at every option check and every start."""

    project_storage_root = Unicode(
        "/var/lib/benchhub/projects",
        help="""Host directory holding each project's shared data, mounted at /data/project
        (<root>/<project>/data/, an ext4 image of the project's storage_gb like /data's).
        List it in c.StorageAdmission.volume_roots so every process counts it. Example:
        /var/lib/benchhub/projects""",
    ).tag(config=True)

    # what the current (or last) start runs with: "" and "none" when stopped
    project_name: str = ""
    project_data_mode: str = NO_PROJECT_DATA
    _project_storage_gb: int = 0
    # project -> the runs ("user/workspace") in this hub holding its data: the last one to go
    # detaches it, so a project's loop device and mount live only while a workspace uses them
    _project_holders: dict[str, set[str]] = {}
    _project_locks: dict[str, asyncio.Lock] = {}

    # ---- decisions --------------------------------------------------------------------------

    def project_of(self, spec: WorkspaceSpec) -> Project:
        """The project ``spec`` names, as the hub's database holds it now (a 400 naming
        ``project`` when there is none of that name)."""
        try:
            return load_project(self.user.db, spec.project, self.user.name)
        except ProjectNotFound:
            raise web.HTTPError(
                400,
                f"project: there is no project {spec.project!r}; use one you are a member "
                "of (GET /hub/api/bench/projects) or empty for your personal project",
            ) from None

    def _workspace_exists(self) -> bool:
        return bool(self.orm_spawner is not None and self.orm_spawner.user_options)

    async def validate_options(self, raw: dict | None) -> WorkspaceSpec:
        """The options' check (see the base) and then the project's: the owner may create
        (or, for a workspace that exists, start) a workspace with these permissions there."""
        spec = await super().validate_options(raw)
        act = Act.START if self._workspace_exists() else Act.CREATE
        owner = self.user.name
        verdict = decide(Person(owner), act, self.project_of(spec), owner, spec.permissions)
        if not verdict:
            raise web.HTTPError(403, verdict.reason)
        return spec

    async def admit_project(self, spec: WorkspaceSpec) -> None:
        """At every start, before anything is made: a 403 with the reason when the owner's
        standing in the workspace's project no longer allows starting it with its
        permissions; the project data's storage claimed; the mode of ``/data/project``
        fixed. A start requested through BenchHub's project endpoints is journaled with the
        actor that endpoint decided (``handler.project_request``)."""
        owner = self.user.name
        project = self.project_of(spec)
        verdict = decide(Person(owner), Act.START, project, owner, spec.permissions)
        if not verdict:
            self.log.info("%s: start refused: %s", self._log_name, verdict.reason)
            raise web.HTTPError(403, verdict.reason)
        request = getattr(self.handler, "project_request", None)
        if isinstance(request, ActionRequest):
            self.action_request = request
        mode = project_data_mode(project, owner, spec.permissions)
        if mode != NO_PROJECT_DATA:
            await self._claim_project_storage(project)
        self.project_name, self.project_data_mode = project.name, mode
        self._project_storage_gb = project.storage_gb

    # ---- the project's data ---------------------------------------------------------------

    @cached_property
    def project_storage_admission(self) -> StorageAdmission:
        """Configured by ``c.StorageAdmission`` (the same capacity as ``/data``)."""
        return StorageAdmission(
            roots=[self.project_storage_root, self.storage_root], parent=self, log=self.log
        )

    def project_volume(self, project: str) -> WorkspaceVolume:
        return self.storage_class(self.project_storage_root, project, "data")

    async def _claim_project_storage(self, project: Project) -> None:
        volume = self.project_volume(project.name)
        request = StorageRequest(
            "storage_gb",
            project_storage_owner(project.name),
            project.storage_gb * GIB,
            what=f"the data of project {project.name}",
        )
        try:
            await asyncio.to_thread(self.project_storage_admission.admit, volume.dir, request)
        except StorageRefused as e:
            raise web.HTTPError(
                400, f"project {project.name}'s storage does not fit: {e.message}"
            ) from None

    async def project_data_source(self) -> tuple[str, bool] | None:
        """``(host path, read-only)`` to bind at ``/data/project`` for this start, or None.

        The project's volume is attached at its ``storage_gb`` (made at the first start,
        grown when it was enlarged, unless a running workspace holds it: then it keeps its
        size until a start when none does). It stays attached while a run of the hub holds
        it (:meth:`detach_volumes`): the project's workspaces share it."""
        if self.project_data_mode == NO_PROJECT_DATA:
            return None
        volume = self.project_volume(self.project_name)
        self._hold_project_data()
        wanted = self._project_storage_gb
        # members' starts at the same moment: one makes, grows or mounts the volume, the
        # others find it attached (two losetup + mount of one image would fail one start)
        async with self._project_lock(self.project_name):
            current = await volume.size_gb()
            try:
                source = await volume.attach(max(wanted, current or 0))
            except StorageError:
                if current is None or wanted <= current:
                    raise
                self.log.warning(
                    "project %s: cannot grow its data to %d GB while a workspace uses it; "
                    "kept at %d GB until a start when none does",
                    self.project_name,
                    wanted,
                    current,
                    exc_info=True,
                )
                source = await volume.attach(current)
        return str(source), self.project_data_mode != "read-write"

    @staticmethod
    def _project_lock(name: str) -> asyncio.Lock:
        """The hub's one lock over attaching and detaching project ``name``'s volume."""
        return ProjectMembership._project_locks.setdefault(name, asyncio.Lock())

    @property
    def _run_key(self) -> str:
        return f"{self.user.name}/{self.name}"

    def _hold_project_data(self) -> None:
        holders = ProjectMembership._project_holders.setdefault(self.project_name, set())
        holders.add(self._run_key)

    async def detach_volumes(self) -> None:
        """At the end of a run: detach ``/data``, and the project's data when this run was
        the last in the hub to hold it (another start attaches it again)."""
        await self.volume.detach()
        name = self.project_name
        holders = ProjectMembership._project_holders.get(name)
        if not name or holders is None or self._run_key not in holders:
            return
        holders.discard(self._run_key)
        if not holders:
            ProjectMembership._project_holders.pop(name, None)
            async with self._project_lock(name):
                if name not in ProjectMembership._project_holders:  # no start came meanwhile
                    await self.project_volume(name).detach()

    # ---- state ----------------------------------------------------------------------------

    def get_state(self):
        state = super().get_state()
        if state and self.project_name:
            state[STATE_KEY] = {"name": self.project_name, "data_mode": self.project_data_mode}
        return state

    def load_state(self, state):
        super().load_state(state)
        recorded = state.get(STATE_KEY) if isinstance(state, dict) else None
        if isinstance(recorded, dict):
            self.project_name = str(recorded.get("name") or "")
            self.project_data_mode = str(recorded.get("data_mode") or NO_PROJECT_DATA)
            if self.project_name and self.project_data_mode != NO_PROJECT_DATA:
                self._hold_project_data()  # a run the hub adopts after a restart

    def clear_state(self):
        super().clear_state()
        self.project_name, self.project_data_mode = "", NO_PROJECT_DATA
