"""Projects as the hub's database holds them (JupyterHub groups with BenchHub's property).

The hub process reads its own ORM (no HTTP round trip): :func:`load_project` gives the
:class:`benchhub.projects.Project` a workspace option names, :func:`projects_of` the projects a
user is in. Decisions are :func:`benchhub.projects.decide`'s; this module only reads.
"""

from __future__ import annotations

from jupyterhub import orm

from benchhub.projects import PERSONAL, PROPERTY, Project, personal_project

__all__ = ["ProjectNotFound", "is_project_group", "load_project", "projects_of"]


class ProjectNotFound(LookupError):
    """No JupyterHub group of that name holds BenchHub project settings."""


def is_project_group(group: orm.Group) -> bool:
    """Whether ``group`` is a BenchHub project (other groups serve other purposes)."""
    return isinstance(group.properties, dict) and PROPERTY in group.properties


def _project(group: orm.Group) -> Project:
    return Project.from_group(group.name, group.properties, [u.name for u in group.users])


def load_project(db, name: str, owner: str) -> Project:
    """The project ``name`` (``""``: ``owner``'s personal project); :class:`ProjectNotFound`
    when no project group has that name."""
    if name == PERSONAL:
        return personal_project(owner)
    group = orm.Group.find(db, name)
    if group is None or not is_project_group(group):
        raise ProjectNotFound(f"there is no project {name!r}")
    return _project(group)


def projects_of(db, user: str) -> list[Project]:
    """The projects ``user`` is a member or the owner of, by name."""
    found = []
    for group in db.query(orm.Group).order_by(orm.Group.name):
        if not is_project_group(group):
            continue
        project = _project(group)
        if project.standing(user) is not None:
            found.append(project)
    return found
