"""Who may make a fast mount in a workspace, and in which mode: the service's checks, pure.

- **Whose token.** A caller acts on workspace ``alice/lab`` only if its scopes grant
  ``access:servers!server=alice/lab`` (JupyterHub's own scope resolution): alice's own API
  token (``access:servers!user=alice``) and an admin's do; the token of the workspace's
  server (role ``server``: ``access:servers!server=alice/lab`` only) does for that workspace
  and for no other, so a token read inside one workspace reaches none of its owner's other
  workspaces; bob's token does not.
- **Standing, again.** The project's group is read from the hub at each request: the caller
  must still be allowed to enter the workspace (:func:`benchhub.projects.decide`); a
  read-write mount further needs the workspace's ``/data/project`` mounted read-write *and*
  the owner's standing to still give read-write project data
  (:func:`benchhub.projects.project_data_mode`): a member demoted since the workspace
  started keeps the read-write ``/data/project`` of that start (membership changes apply at
  the next start, as in ICA) but gets no new read-write mount.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from jupyterhub.services.auth import check_scopes

from benchhub.projects import (
    Act,
    Person,
    Project,
    decide,
    parse_permissions,
    personal_project,
    project_data_mode,
)

__all__ = ["Refusal", "access_scope", "may_use", "mode_refusal", "person_of", "project_refusal"]


@dataclass(frozen=True)
class Refusal:
    """Why not: an HTTP ``status`` and a sentence that says what is missing."""

    status: int
    message: str


def access_scope(owner: str, workspace: str) -> str:
    return f"access:servers!server={owner}/{workspace}"


def may_use(caller: Mapping, owner: str, workspace: str) -> bool:
    """Whether the caller's token grants access to the workspace ``owner/workspace``."""
    held = set(caller.get("scopes") or ())
    return check_scopes({access_scope(owner, workspace)}, held)


def person_of(caller: Mapping) -> Person:
    """The person :func:`decide` judges: a user as themselves; a service the operator gave
    access to the workspace counts as a site admin (its role says what it may)."""
    if caller.get("kind") != "user":
        return Person(f"service:{caller.get('name')}", site_admin=True)
    return Person(str(caller.get("name")), site_admin=caller.get("admin") is True)


def workspace_project(owner: str, options: Mapping, group: Mapping | None) -> Project | None:
    """The project a workspace's options name, from its group model (None when the group is
    gone); the owner's personal project for ``""``."""
    name = options.get("project") or ""
    if not name:
        return personal_project(owner)
    if group is None:
        return None
    return Project.from_group(name, group.get("properties") or {}, group.get("users") or [])


def project_refusal(
    caller: Mapping, owner: str, options: Mapping, group: Mapping | None
) -> Refusal | None:
    """Why the caller may not make mounts in ``owner``'s workspace (with ``options``, in the
    project of ``group``) now, or None."""
    project = workspace_project(owner, options, group)
    if project is None:
        return Refusal(409, f"the workspace's project {options.get('project')!r} no longer exists")
    permissions, _ = parse_permissions(options.get("permissions"))
    decision = decide(person_of(caller), Act.ENTER, project, owner, permissions)
    if not decision:
        return Refusal(403, decision.reason)
    return None


def mode_refusal(
    owner: str, options: Mapping, group: Mapping | None, project_read_only: bool
) -> Refusal | None:
    """Why a read-write mount is refused in ``owner``'s workspace, or None:
    ``project_read_only`` is the live mode of its ``/data/project``."""
    if project_read_only:
        return Refusal(
            403,
            "mode read-write needs /data/project mounted read-write in this workspace; it is "
            "read-only (project data level below contributor): use mode read-only",
        )
    project = workspace_project(owner, options, group)
    permissions, _ = parse_permissions(options.get("permissions"))
    if project is None or project_data_mode(project, owner, permissions) != "read-write":
        return Refusal(
            403,
            f"mode read-write needs {owner}'s project data level contributor (and the "
            "workspace's permission project_data contributor); it no longer is: use mode "
            "read-only",
        )
    return None
