"""The hub's Projects page (``/hub/projects``): the caller's projects, each member's standing,
and, for those who may manage members, forms that call the projects API
(:mod:`.projects_api`), which decides again. A page for people; the API is the contract.
"""

from __future__ import annotations

from jupyterhub import orm
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.scopes import Scope
from tornado import web

from benchhub.projects import DATA_LEVELS, ROLES, Person, Project, may_manage

from .project_lookup import is_project_group
from .projects_api import project_json

__all__ = ["ProjectsPageHandler"]


class ProjectsPageHandler(BaseHandler):
    """``GET /hub/projects``: a browser login (JupyterHub's ``web.authenticated``)."""

    @web.authenticated
    async def get(self):
        user = self.current_user
        person = Person(user.name, site_admin=self.parsed_scopes.get("admin:groups") == Scope.ALL)
        shown = []
        for group in self.db.query(orm.Group).order_by(orm.Group.name):
            if not is_project_group(group):
                continue
            project = Project.from_group(
                group.name, group.properties, [u.name for u in group.users]
            )
            if person.site_admin or project.standing(person.name) is not None:
                shown.append({**project_json(project), "manage": bool(may_manage(person, project))})
        html = await self.render_template(
            "projects.html", projects=shown, roles=ROLES, data_levels=DATA_LEVELS
        )
        self.finish(html)
