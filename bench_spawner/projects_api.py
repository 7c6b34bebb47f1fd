"""Projects through the hub's REST API, where JupyterHub's groups API has no place for them.

A project is a JupyterHub group holding BenchHub's property (:mod:`benchhub.projects`);
membership is the group's. These handlers add what the groups API cannot say (docs/projects.md):

- ``GET /hub/api/bench/projects``: the caller's projects (every project for site admins),
  each with its members' standing; ``POST``: create one (site admins only, naming its owner).
- ``GET /hub/api/bench/projects/<name>``: one project (its members and site admins);
  ``PATCH``: its ``storage_gb`` or ``owner`` (site admins only).
- ``PUT``/``DELETE /hub/api/bench/projects/<name>/members/<user>``: a member's standing
  (added to the group if need be) / removal from the group (the project's owner, its
  administrators and site admins).
- ``GET /hub/api/bench/projects/<name>/workspaces``: the project's workspaces with status
  (viewers and up).
- ``POST /hub/api/bench/workspaces/<owner>/<workspace>/start`` and ``/stop``: what
  JupyterHub's server API does, for whoever :func:`benchhub.projects.decide` allows (a
  contributor using a workspace that allows it, a project administrator); JupyterHub's own
  routes keep their scopes.

Who may is always :func:`~benchhub.projects.decide` or :func:`~benchhub.projects.may_manage`,
asked before anything is read or changed: a refusal is a 403 with their reason; bad input a
400 naming the field and what is allowed, and nothing changes. "Site admin" is a caller
holding JupyterHub's unfiltered ``admin:groups`` scope (admin users, services with the
admin role). Every change is written to the hub log; a membership or role change applies at
a workspace's next start (nothing running changes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import Scope
from jupyterhub.slugs import is_valid_safe_slug
from tornado import web

from benchhub.projects import (
    Act,
    Person,
    Project,
    decide,
    may_manage,
    parse_membership,
)
from benchhub.storage_admission import GIB, StorageRequest
from benchhub.storage_allocations import StorageRefused

from .actors import ActionRequest
from .project_lookup import ProjectNotFound, is_project_group, load_project
from .project_membership import project_storage_owner

__all__ = ["PROJECT_HANDLERS"]

NAME_RULE = (
    "1 to 30 characters, lower-case letters a-z, digits 0-9 and single hyphens, starting "
    "with a letter"
)
MAX_STORAGE_GB = 16384


def _whole_gb(value: object) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_STORAGE_GB
    return value if ok else None


class ProjectsBase(APIHandler):
    """What every project handler needs: the caller, the body, the project, saving it."""

    def caller(self) -> Person:
        """The caller as :func:`~benchhub.projects.decide` sees them (403 without one)."""
        if self.current_user is None:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        site_admin = self.parsed_scopes.get("admin:groups") == Scope.ALL
        return Person(self.current_user.name, site_admin=site_admin)

    def json_object(self, allowed: tuple[str, ...]) -> dict:
        body = self.get_json_body() or {}
        if not isinstance(body, dict):
            raise web.HTTPError(400, f"the body must be a JSON object of {', '.join(allowed)}")
        unknown = sorted(str(key) for key in set(body) - set(allowed))
        if unknown:
            raise web.HTTPError(
                400, f"unknown fields {', '.join(unknown)}; allowed: {', '.join(allowed)}"
            )
        return body

    def group(self, name: str) -> orm.Group:
        group = orm.Group.find(self.db, name)
        if group is None or not is_project_group(group):
            raise web.HTTPError(404, f"there is no project {name!r}")
        return group

    def project(self, group: orm.Group) -> Project:
        return Project.from_group(group.name, group.properties, [u.name for u in group.users])

    def save(self, group: orm.Group, project: Project) -> None:
        group.properties = project.to_properties(group.properties)  # a new dict: stored
        self.db.commit()

    def existing_user(self, field: str, name: object) -> orm.User:
        user = orm.User.find(self.db, name) if isinstance(name, str) else None
        if user is None:
            raise web.HTTPError(400, f"{field}: {name!r} is not a user of this hub"[:300])
        return user

    def write_json(self, value, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(value))

    def storage_probe(self):
        """A spawner of the hub's configuration: its project storage root, volume class and
        storage admission (``c.StorageAdmission``), for claiming a project's size."""
        spawner_class = self.settings["spawner_class"]
        return spawner_class(config=self.settings["config"], user=self.current_user)

    async def claim_storage(self, name: str, size_gb: int) -> None:
        """Admit ``size_gb`` for project ``name``'s data (400 naming ``storage_gb`` when it
        does not fit or would shrink the data it has)."""
        probe = self.storage_probe()
        volume = probe.project_volume(name)
        current = await volume.size_gb()
        if current and size_gb < current:
            raise web.HTTPError(
                400,
                f"storage_gb: the project's data already has {current} GB; it may grow, not shrink",
            )
        admission = probe.project_storage_admission
        request = StorageRequest(
            "storage_gb", project_storage_owner(name), size_gb * GIB, what="project data"
        )
        try:
            if current is None:  # nothing made yet: the claim becomes exactly this size
                await asyncio.to_thread(admission.settle, volume.dir)
            if size_gb:
                await asyncio.to_thread(admission.admit, volume.dir, request)
        except StorageRefused as e:
            raise web.HTTPError(400, str(e)) from None


def project_json(project: Project) -> dict:
    """A project as the API shows it: its members (the owner first) with their standing."""
    members = [{"user": project.owner, "owner": True, **project.standing(project.owner).as_json()}]
    members += [
        {"user": user, "owner": False, **standing.as_json()}
        for user, standing in sorted(project.members.items())
        if user != project.owner
    ]
    return {
        "name": project.name,
        "owner": project.owner,
        "storage_gb": project.storage_gb,
        "members": members,
    }


class ProjectsAPIHandler(ProjectsBase):
    """``/hub/api/bench/projects``: list (GET) and create (POST, site admins)."""

    async def get(self):
        person = self.caller()
        found = []
        for group in self.db.query(orm.Group).order_by(orm.Group.name):
            if not is_project_group(group):
                continue
            project = self.project(group)
            if person.site_admin or project.standing(person.name) is not None:
                found.append(project_json(project))
        self.write_json({"projects": found})

    async def post(self):
        person = self.caller()
        if not person.site_admin:
            raise web.HTTPError(
                403, "only site admins create projects (a site admin creates it naming you owner)"
            )
        body = self.json_object(("name", "owner", "storage_gb"))
        name = body.get("name")
        if not isinstance(name, str) or not is_valid_safe_slug(name):
            raise web.HTTPError(400, f"name: must be {NAME_RULE}; got {name!r}"[:300])
        owner = self.existing_user("owner", body.get("owner"))
        storage_gb = _whole_gb(body.get("storage_gb", 0))
        if storage_gb is None:
            raise web.HTTPError(
                400, f"storage_gb: must be a whole number of GB from 0 to {MAX_STORAGE_GB}"
            )
        if orm.Group.find(self.db, name) is not None:
            raise web.HTTPError(409, f"name: a group named {name!r} already exists")
        await self.claim_storage(name, storage_gb)
        project = Project(name=name, owner=owner.name, storage_gb=storage_gb)
        group = orm.Group(name=name, properties=project.to_properties())
        group.users.append(owner)
        self.db.add(group)
        self.db.commit()
        self.log.info(
            "project %s created by %s: owner %s, %d GB of data",
            name,
            person.name,
            owner.name,
            storage_gb,
        )
        self.write_json(project_json(self.project(group)), 201)


class ProjectAPIHandler(ProjectsBase):
    """``/hub/api/bench/projects/<name>``: read (members) and change (site admins)."""

    async def get(self, name):
        person = self.caller()
        project = self.project(self.group(name))
        verdict = decide(person, Act.SEE, project, project.owner)
        if not verdict:
            raise web.HTTPError(403, verdict.reason)
        self.write_json(project_json(project))

    async def patch(self, name):
        person = self.caller()
        if not person.site_admin:
            raise web.HTTPError(403, "only site admins change a project's storage_gb or owner")
        group = self.group(name)
        body = self.json_object(("storage_gb", "owner"))
        project = self.project(group)
        changes = {}
        if "owner" in body:
            owner = self.existing_user("owner", body["owner"])
            if owner not in group.users:
                group.users.append(owner)
            members = {u: s for u, s in project.members.items() if u != owner.name}
            changes.update(owner=owner.name, members=members)
        if "storage_gb" in body:
            storage_gb = _whole_gb(body["storage_gb"])
            if storage_gb is None:
                raise web.HTTPError(
                    400, f"storage_gb: must be a whole number of GB from 0 to {MAX_STORAGE_GB}"
                )
            await self.claim_storage(name, storage_gb)
            changes["storage_gb"] = storage_gb
        self.save(group, dataclasses.replace(project, **changes))
        self.log.info(
            "project %s changed by %s: %s",
            name,
            person.name,
            ", ".join(f"{k} {v}" for k, v in changes.items() if k != "members") or "nothing",
        )
        self.write_json(project_json(self.project(group)))


class ProjectMemberAPIHandler(ProjectsBase):
    """``/hub/api/bench/projects/<name>/members/<user>``: a member's standing."""

    def _managed(self, name: str, user_name: str):
        person = self.caller()
        group = self.group(name)
        project = self.project(group)
        verdict = may_manage(person, project)
        if not verdict:
            raise web.HTTPError(403, verdict.reason)
        if user_name == project.owner:
            raise web.HTTPError(
                400,
                f"user: {user_name} owns project {name} and always has every right; "
                "a site admin changes the owner (PATCH the project's owner)",
            )
        return person, group, project

    async def put(self, name, user_name):
        person, group, project = self._managed(name, user_name)
        body = self.json_object(("role", "data_level", "upload", "download"))
        standing, problems = parse_membership(body)
        if problems:
            fields = "; ".join(f"{f.removeprefix('member.')}: {m}" for f, m in problems)
            raise web.HTTPError(400, fields)
        user = orm.User.find(self.db, user_name)
        if user is None:
            raise web.HTTPError(404, f"user: {user_name!r} is not a user of this hub")
        if user not in group.users:
            group.users.append(user)
        members = {**project.members, user_name: standing}
        self.save(group, dataclasses.replace(project, members=members))
        self.log.info(
            "project %s: %s set %s's standing to %s (applies at their workspaces' next start)",
            name,
            person.name,
            user_name,
            standing.as_json(),
        )
        self.write_json(project_json(self.project(group)))

    async def delete(self, name, user_name):
        person, group, project = self._managed(name, user_name)
        user = orm.User.find(self.db, user_name)
        if user is not None and user in group.users:
            group.users.remove(user)
        members = {u: s for u, s in project.members.items() if u != user_name}
        self.save(group, dataclasses.replace(project, members=members))
        self.log.info(
            "project %s: %s removed %s (applies at their workspaces' next start)",
            name,
            person.name,
            user_name,
        )
        self.set_status(204)


def _project_name_of(orm_spawner) -> str:
    options = orm_spawner.user_options or {}
    name = options.get("project", "") if isinstance(options, dict) else ""
    return name if isinstance(name, str) else ""


class ProjectWorkspacesAPIHandler(ProjectsBase):
    """``/hub/api/bench/projects/<name>/workspaces``: its workspaces and their status."""

    async def get(self, name):
        person = self.caller()
        project = self.project(self.group(name))
        verdict = decide(person, Act.SEE, project, project.owner)
        if not verdict:
            raise web.HTTPError(403, verdict.reason)
        found = []
        for orm_spawner in self.db.query(orm.Spawner).filter(orm.Spawner.name != ""):
            if _project_name_of(orm_spawner) != name:
                continue
            spawner = self.users[orm_spawner.user].spawners[orm_spawner.name]
            status = await spawner.workspace_status() if hasattr(spawner, "current_spec") else {}
            spec = spawner.current_spec() if hasattr(spawner, "current_spec") else None
            found.append(
                {
                    "owner": orm_spawner.user.name,
                    "name": orm_spawner.name,
                    **status,
                    "permissions": spec.permissions.as_json() if spec else None,
                    "project_data": getattr(spawner, "project_data_mode", "none")
                    if spawner.active
                    else None,
                }
            )
        found.sort(key=lambda w: (w["owner"], w["name"]))
        self.write_json({"project": name, "workspaces": found})


class ProjectWorkspaceBase(ProjectsBase):
    """A workspace acted on by whoever the project rule allows."""

    def decided(self, owner_name: str, server_name: str, act: Act):
        """``(owner, spawner, the request to journal)`` once :func:`decide` allows the
        caller ``act`` on the workspace (404 when there is none, 403 with the reason)."""
        person = self.caller()
        owner = self.find_user(owner_name)
        if owner is None or server_name not in owner.orm_spawners:
            raise web.HTTPError(404, f"{owner_name} has no workspace {server_name!r}")
        spawner = owner.spawners[server_name]
        spec = spawner.current_spec() if hasattr(spawner, "current_spec") else None
        if spec is None:
            raise web.HTTPError(409, f"{owner_name}/{server_name} has no valid options")
        try:
            project = load_project(self.db, spec.project, owner_name)
        except ProjectNotFound:
            raise web.HTTPError(
                409, f"the project {spec.project!r} of {owner_name}/{server_name} no longer exists"
            ) from None
        verdict = decide(person, act, project, owner_name, spec.permissions)
        if not verdict:
            raise web.HTTPError(403, verdict.reason)
        if verdict.logged and getattr(self.current_user, "kind", "user") == "user":
            request = ActionRequest(f"admin:{person.name}")  # as a site admin's is journaled
        else:
            request = ActionRequest.by(self.current_user, owner_name)
        self.log.info(
            "%s may %s %s/%s (%s)", person.name, act.value, owner_name, server_name, project.label
        )
        return owner, spawner, request


class ProjectWorkspaceAPIHandler(ProjectWorkspaceBase):
    """``PATCH``/``DELETE /hub/api/bench/workspaces/<owner>/<workspace>``: edit its options
    or delete it (stopped), as BenchHub's server API does, for the workspace's owner and the
    project's administrators (and site admins)."""

    async def patch(self, owner_name, server_name):
        owner, spawner, request = self.decided(owner_name, server_name, Act.EDIT)
        body = self.json_object(("user_options",))
        options, changed = await spawner.edit_options(body.get("user_options"))
        spawner.orm_spawner.user_options = options
        spawner.user_options = options
        self.db.commit()
        if changed:
            new = {key: options[key] for key in changed}
            await spawner.record_activity(
                "edited", f"edited {', '.join(changed)}", new, request.actor
            )
        self.write_json(self.server_model(spawner.orm_spawner, user=owner))

    async def delete(self, owner_name, server_name):
        owner, spawner, request = self.decided(owner_name, server_name, Act.DELETE)
        if spawner.active:
            raise web.HTTPError(
                400, f"workspace '{server_name}' is running: stop it first, then delete it"
            )
        spawner.action_request = request  # the journal's "deleted" names who asked
        try:
            await owner._delete_spawner(spawner)
        except BaseException:
            spawner.action_request = None
            raise
        self.db.delete(spawner.orm_spawner)
        owner.spawners.pop(server_name, None)
        self.db.commit()
        self.set_status(204)


class WorkspaceActionAPIHandler(ProjectWorkspaceBase):
    """``POST /hub/api/bench/workspaces/<owner>/<workspace>/(start|stop)`` for whoever the
    project rule allows; what JupyterHub's server API does for a start (without new
    options: the stored ones) and a stop (jupyterhub/apihandlers/users.py)."""

    # the actor the spawner journals this start with (read via spawner.handler)
    project_request: ActionRequest | None = None

    async def post(self, owner_name, server_name, action):
        act = Act.START if action == "start" else Act.STOP
        owner, spawner, request = self.decided(owner_name, server_name, act)
        if act == Act.START:
            await self._start(owner, server_name, spawner, request)
        else:
            await self._stop(owner, server_name, spawner, request)

    async def _start(self, owner, server_name, spawner, request: ActionRequest) -> None:
        if spawner.pending == "spawn":
            self.set_status(202)
            return
        if spawner.pending:
            raise web.HTTPError(400, f"{spawner._log_name} is pending {spawner.pending}")
        if spawner.ready:
            spawner._spawn_pending = True  # as JupyterHub: no start races this check
            try:
                state = await spawner.poll_and_notify()
            finally:
                spawner._spawn_pending = False
            if state is None:
                raise web.HTTPError(400, f"{spawner._log_name} is already running")
        self.project_request = request
        await self.spawn_single_user(owner, server_name, spawner.display_name or server_name)
        self.set_status(202 if spawner.pending == "spawn" else 201)

    async def _stop(self, owner, server_name, spawner, request: ActionRequest) -> None:
        if spawner.pending == "stop":
            self.set_status(202)
            return
        if spawner.pending:
            raise web.HTTPError(400, f"{spawner._log_name} is pending {spawner.pending}")
        if spawner.ready and await spawner.poll_and_notify() is None:
            spawner.action_request = request  # the stop's actor, as BenchHub's DELETE notes it
            try:
                await self.stop_single_user(owner, server_name)
            except BaseException:
                if spawner.action_request is request:
                    spawner.action_request = None
                raise
        self.set_status(202 if spawner._stop_pending else 204)


PROJECT_HANDLERS = [
    (r"/api/bench/projects", ProjectsAPIHandler),
    (r"/api/bench/projects/([^/]+)", ProjectAPIHandler),
    (r"/api/bench/projects/([^/]+)/members/([^/]+)", ProjectMemberAPIHandler),
    (r"/api/bench/projects/([^/]+)/workspaces", ProjectWorkspacesAPIHandler),
    (r"/api/bench/workspaces/([^/]+)/([^/]+)", ProjectWorkspaceAPIHandler),
    (r"/api/bench/workspaces/([^/]+)/([^/]+)/(start|stop)", WorkspaceActionAPIHandler),
]
