"""BenchHub's rule for using a share of someone else's workspace (docs/sharing.md).

A share (or share code) is the owner's consent, nothing more: it counts as the workspace's
``others_may_use`` for the one person it names (:func:`share_consent`), and that person must
still pass :func:`benchhub.projects.decide` for ENTER: be a contributor of the workspace's
project with the upload and download rights and the project data level the workspace runs
with. Site admins and the project's owner and administrators always may (``logged``).

:func:`share_decision` is pure; :func:`entry_decision` reads the workspace's options and its
project from the hub's database.
"""

from __future__ import annotations

from dataclasses import replace

from benchhub.projects import (
    Act,
    Decision,
    Person,
    Project,
    WorkspacePermissions,
    decide,
    parse_permissions,
)

from .project_lookup import ProjectNotFound, load_project

__all__ = ["entry_decision", "share_consent", "share_decision"]


def share_consent(permissions: WorkspacePermissions) -> WorkspacePermissions:
    """The workspace's permissions with the owner's consent that a share expresses: a share
    lets *this* person use the workspace as ``others_may_use`` lets every contributor. The
    rights and the project data level the workspace runs with still have to be met."""
    return replace(permissions, others_may_use=True)


def share_decision(
    person: Person, project: Project, owner: str, permissions: WorkspacePermissions
) -> Decision:
    """May ``person`` use a share of ``owner``'s workspace (of ``project``, with
    ``permissions``)? :func:`~benchhub.projects.decide` for ENTER under the share's
    consent."""
    return decide(person, Act.ENTER, project, owner, share_consent(permissions))


def _person(user) -> Person:
    return Person(user.name, site_admin=bool(getattr(user, "admin", False)))


def entry_decision(db, user, orm_spawner, shared: bool = True) -> Decision:
    """May ``user`` (a JupyterHub user or orm user) enter ``orm_spawner`` (someone else's
    workspace)? With ``shared``, under a share's consent (:func:`share_decision`); without,
    as the workspace's own permissions allow (the join endpoint). A workspace whose project
    no longer exists lets only site admins in."""
    options = orm_spawner.user_options or {}
    owner = orm_spawner.user.name
    person = _person(user)
    project_name = options.get("project", "")
    try:
        project = load_project(db, project_name if isinstance(project_name, str) else "", owner)
    except ProjectNotFound:
        if person.site_admin:
            return Decision(True, logged=True)
        return Decision(
            False,
            f"{owner}'s workspace belongs to project {project_name!r}, which no longer exists",
        )
    permissions, _ = parse_permissions(options.get("permissions"))
    if shared:
        return share_decision(person, project, owner, permissions)
    return decide(person, Act.ENTER, project, owner, permissions)
