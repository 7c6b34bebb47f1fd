"""``/hub/api/bench/quotas/...``: read and set limits per user and per group.

- ``GET /hub/api/bench/quotas/users/<name>`` — the user's effective limits (``limits``: a value
  or null for none; ``sources``: where each comes from), their own document (``own``:
  configuration with the REST-set keys over it), their groups, and their current use
  (running workspaces, CPUs, memory, GPUs, cluster members, allocated storage). Scope
  ``read:users`` for that user: the user themselves, admins, and services holding it (the
  clusters service reads a user's limits before it starts or grows a cluster).
- ``PUT /hub/api/bench/quotas/users/<name>`` — replace the limits admins set for the user by
  REST with the body (``{}`` removes them: configuration applies again); scope ``admin:users``.
  Kept in ``c.BenchQuotas.users_file``.
- ``GET``/``PUT /hub/api/bench/quotas/groups/<name>`` — the same for a JupyterHub group
  (``read:groups`` / ``admin:groups``); kept in the group's properties in the hub's database.

A bad body is a 400 naming the field and what is allowed, and changes nothing. The rule is
:mod:`benchhub.quotas`; the settings and the use are :mod:`.quota_admission`.
"""

from __future__ import annotations

import json

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import needs_scope
from tornado import web

from benchhub.quotas import LimitsError, parse_limits

from .quota_admission import BenchQuotas

__all__ = ["QUOTA_HANDLERS"]


class _QuotaHandler(APIHandler):
    @property
    def quotas(self) -> BenchQuotas:
        return BenchQuotas(config=self.settings["config"], log=self.log)

    def limits_body(self) -> dict:
        """The request's limits document, or a 400 naming the field (nothing stored)."""
        try:
            return parse_limits(self.get_json_body() or {})
        except LimitsError as e:
            raise web.HTTPError(400, str(e)) from None

    def write_json(self, body: dict) -> None:
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(body))


class UserQuotaAPIHandler(_QuotaHandler):
    """``/api/bench/quotas/users/<name>``."""

    async def _report(self, user_name: str) -> dict:
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, f"no such user: {user_name}")
        probe = self.settings["spawner_class"](config=self.settings["config"], user=user)
        if not hasattr(probe, "quota_report"):
            raise web.HTTPError(501, "the configured spawner has no BenchHub quotas")
        return await probe.quota_report()

    @needs_scope("read:users")
    async def get(self, user_name):
        self.write_json(await self._report(user_name))

    @needs_scope("admin:users")
    async def put(self, user_name):
        if self.find_user(user_name) is None:
            raise web.HTTPError(404, f"no such user: {user_name}")
        doc = self.limits_body()
        await self.quotas.store_user(user_name, doc)
        self.log.info("quotas: %s set %s's limits to %s", self.current_user, user_name, doc)
        self.write_json(await self._report(user_name))


class GroupQuotaAPIHandler(_QuotaHandler):
    """``/api/bench/quotas/groups/<name>``."""

    def _group(self, group_name: str) -> orm.Group:
        group = orm.Group.find(self.db, name=group_name)
        if group is None:
            raise web.HTTPError(404, f"no such group: {group_name}")
        return group

    def _report(self, group: orm.Group) -> dict:
        quotas = self.quotas
        configured = quotas.group_limits.get(group.name) or {}
        stored = quotas.stored_group(group)
        return {
            "group": group.name,
            "limits": {**configured, **stored},
            "configured": configured,
            "stored": stored,
        }

    @needs_scope("read:groups")
    async def get(self, group_name):
        self.write_json(self._report(self._group(group_name)))

    @needs_scope("admin:groups")
    async def put(self, group_name):
        group = self._group(group_name)
        doc = self.limits_body()
        BenchQuotas.store_group(self.db, group, doc)
        self.log.info("quotas: %s set group %s's limits to %s", self.current_user, group_name, doc)
        self.write_json(self._report(group))


QUOTA_HANDLERS = [
    (r"/api/bench/quotas/users/([^/]+)", UserQuotaAPIHandler),
    (r"/api/bench/quotas/groups/([^/]+)", GroupQuotaAPIHandler),
]
