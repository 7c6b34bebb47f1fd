"""Sharing a running workspace: JupyterHub's sharing API with BenchHub's rule in front.

JupyterHub (>= 5) lets a server's owner grant others ``access:servers!server=<owner>/<name>``
as a *share* (by user name, ``POST /hub/api/shares/<owner>/<name>``) or a *share code*
(``POST /hub/api/share-codes/<owner>/<name>``, exchanged at ``/hub/accept-share``).
BenchHub keeps that mechanism and adds one rule: **a share is the owner's consent, nothing
more**. Whoever uses it must still meet the workspace's project and permissions, i.e.
:func:`benchhub.projects.decide` for :attr:`~benchhub.projects.Act.ENTER` with the
workspace's permissions read as if ``others_may_use`` were on (:func:`share_consent`): a
contributor of the workspace's project with the rights the workspace runs with may use a
share; a viewer, a non-member, someone below the permissions may not, whatever the owner
shared. Site admins and project administrators always may (their entries are logged).

The rule is checked

- when sharing by name (:class:`CheckedServerShareAPIHandler`: 403 with the reason, nothing
  is granted) — sharing with a group is refused (400): groups change behind the owner's back;
- when a share code is accepted (:class:`CheckedAcceptShareHandler`: a page saying why,
  nothing is accepted);
- on entry: the OAuth authorization to the workspace's server
  (:class:`EntryCheckedOAuthAuthorizeHandler`, 403 with the reason) and every identification
  a workspace's server asks of the hub (:class:`EntryCheckedSelfAPIHandler`: the share's
  scopes are left out of ``/hub/api/user``'s answer for someone the rule now refuses, so a
  personal API token stops working too). So a collaborator who left the project or lost a
  right is refused at their next request, share or no share.

Revoking (``PATCH``/``DELETE /hub/api/shares/<owner>/<name>``, or the collaborator's own
``DELETE /hub/api/users/<u>/shared/<owner>/<name>``) also deletes the OAuth tokens the
collaborator holds for that server, so their open JupyterLab must log in again (and is
refused); the server itself keeps the hub's answers for at most one second
(``HubOAuth.cache_max_age`` in ``images/jupyterlab/app/jupyter_server_config.py``).

``POST /hub/api/bench/workspaces/<owner>/<name>/join`` (:class:`JoinWorkspaceAPIHandler`)
lets a contributor enter another member's workspace that allows it (``others_may_use``)
the same way: the hub grants the caller a share on the owner's behalf.

Shares made, revoked, share codes created, revoked and used go to the workspace's activity
journal (actions ``shared``, ``share-revoked``, ``share-code-created``,
``share-code-revoked``, ``share-code-used``).
"""

from __future__ import annotations

import contextlib
import json

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.apihandlers.shares import (
    ServerShareAPIHandler,
    ServerShareCodeAPIHandler,
    UserShareAPIHandler,
)
from jupyterhub.apihandlers.users import SelfAPIHandler
from jupyterhub.handlers.pages import AcceptShareHandler
from jupyterhub.scopes import needs_scope, parse_scopes
from tornado import web

from .actors import actor_name
from .hub_api import WorkspaceOAuthAuthorizeHandler
from .share_rule import entry_decision

__all__ = ["SHARING_API_HANDLERS", "SHARING_PAGE_HANDLERS"]


def _workspace(handler, orm_spawner):
    """The spawner wrapper of ``orm_spawner`` (for its activity journal), or None when it is
    not a BenchHub workspace."""
    spawner = handler.users[orm_spawner.user].spawners[orm_spawner.name]
    return spawner if hasattr(spawner, "record_activity") else None


async def _journal(handler, orm_spawner, action: str, description: str, fields=None) -> None:
    """Journal ``action`` on the workspace with the caller as actor (``admin:<name>`` for
    an admin acting on someone else's, ``service:<name>`` for a service: ``actor_name``)."""
    spawner = _workspace(handler, orm_spawner)
    if spawner is not None:
        actor = actor_name(handler.current_user, orm_spawner.user.name)
        await spawner.record_activity(action, description, fields, actor=actor)


class _AnswerAfterJournal:
    """JupyterHub's handlers answer (``finish``, or a redirect) inside the methods these
    handlers extend, and the journal entry is written after them: without holding the answer,
    a caller could read the journal before the entry its request caused is in it. Within
    :meth:`_answer_held` the answer is kept and sent when the block ends, also when the
    journal write fails (the change is made by then); an error before the answer is sent
    as an error."""

    _holding = False
    _held: tuple | None = None

    def finish(self, chunk=None):
        if self._holding:
            self._held = (chunk,)
            return None
        return super().finish(chunk)

    @contextlib.asynccontextmanager
    async def _answer_held(self):
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            held, self._held = self._held, None
            if held is not None:
                self.finish(*held)


def _revoke_server_tokens(db, orm_spawner, user_ids) -> int:
    """Delete the OAuth tokens these users hold for the server's client: a revoked
    collaborator's open JupyterLab has to log in again, and is refused."""
    if not user_ids or not orm_spawner.oauth_client_id:
        return 0
    deleted = (
        db.query(orm.APIToken)
        .filter(orm.APIToken.client_id == orm_spawner.oauth_client_id)
        .filter(orm.APIToken.user_id.in_(list(user_ids)))
        .delete(synchronize_session=False)
    )
    db.commit()
    return deleted


def _refused(status: int, reason: str) -> web.HTTPError:
    error = web.HTTPError(status, reason)
    error.jupyterhub_message = reason  # shown on JupyterHub's error page
    return error


# ---- sharing by name, revoking ------------------------------------------------------------------


class CheckedServerShareAPIHandler(_AnswerAfterJournal, ServerShareAPIHandler):
    """``/hub/api/shares/<owner>/<name>``: JupyterHub's, with BenchHub's rule checked before
    a share is granted, OAuth tokens revoked with a share, and the journal."""

    @needs_scope("shares")
    async def post(self, user_name, server_name=None):
        body = self.get_json_body() or {}
        orm_spawner = target = None
        if server_name is not None and isinstance(body, dict):
            if body.get("group") is not None:
                raise web.HTTPError(
                    400,
                    "group: BenchHub shares a workspace with a user by name or with a "
                    "share code, not with a group",
                )
            orm_spawner = self._lookup_spawner(user_name, server_name)
            target = self.find_user(body["user"]) if isinstance(body.get("user"), str) else None
            if target is not None and target.name != user_name:
                decision = entry_decision(self.db, target, orm_spawner)
                if not decision:
                    raise web.HTTPError(403, f"cannot share with {target.name}: {decision.reason}")
        async with self._answer_held():
            await super().post(user_name, server_name)
            if self.get_status() < 400 and target is not None:
                await _journal(
                    self, orm_spawner, "shared", f"shared with {target.name}", {"with": target.name}
                )

    @needs_scope("shares")
    async def patch(self, user_name, server_name=None):
        body = self.get_json_body() or {}
        async with self._answer_held():
            await super().patch(user_name, server_name)
            named = body.get("user") if isinstance(body, dict) else None
            target = self.find_user(named) if isinstance(named, str) else None
            if target is not None and self.get_status() < 400:
                orm_spawner = self._lookup_spawner(user_name, server_name)
                if orm.Share.find(self.db, orm_spawner, target.orm_user) is None:
                    await self._revoked(orm_spawner, [target.orm_user])

    @needs_scope("shares")
    async def delete(self, user_name, server_name=None):
        users = []
        if server_name is not None:
            orm_spawner = self._lookup_spawner(user_name, server_name)
            users = [s.user for s in orm_spawner.shares if s.user is not None]
        async with self._answer_held():
            await super().delete(user_name, server_name)
            if users and self.get_status() < 400:
                await self._revoked(orm_spawner, users)

    async def _revoked(self, orm_spawner, users) -> None:
        _revoke_server_tokens(self.db, orm_spawner, {u.id for u in users})
        for user in users:
            await _journal(
                self,
                orm_spawner,
                "share-revoked",
                f"share with {user.name} revoked",
                {"with": user.name},
            )


class CheckedUserShareAPIHandler(_AnswerAfterJournal, UserShareAPIHandler):
    """``DELETE /hub/api/users/<u>/shared/<owner>/<name>`` (a collaborator giving a share
    back): JupyterHub's, with the OAuth tokens revoked and the journal."""

    @needs_scope("users:shares")
    async def delete(self, user_name, owner_name, _server_name):
        share = self._lookup_share(user_name, owner_name, _server_name)
        orm_spawner, user = share.spawner, share.user
        async with self._answer_held():
            super().delete(user_name, owner_name, _server_name)
            _revoke_server_tokens(self.db, orm_spawner, {user.id})
            await _journal(
                self,
                orm_spawner,
                "share-revoked",
                f"{user_name} gave the share back",
                {"with": user_name},
            )


# ---- share codes --------------------------------------------------------------------------------


class JournaledShareCodeAPIHandler(_AnswerAfterJournal, ServerShareCodeAPIHandler):
    """``/hub/api/share-codes/<owner>/<name>``: JupyterHub's, with the journal (the code
    itself is never journaled)."""

    @needs_scope("shares")
    async def post(self, user_name, server_name=None):
        async with self._answer_held():
            await super().post(user_name, server_name)
            if self.get_status() < 400 and server_name is not None:
                orm_spawner = self._lookup_spawner(user_name, server_name)
                await _journal(self, orm_spawner, "share-code-created", "share code created")

    @needs_scope("shares")
    async def delete(self, user_name, server_name=None):
        async with self._answer_held():
            super().delete(user_name, server_name)
            if self.get_status() < 400 and server_name is not None:
                orm_spawner = self._lookup_spawner(user_name, server_name)
                await _journal(self, orm_spawner, "share-code-revoked", "share code revoked")


class CheckedAcceptShareHandler(_AnswerAfterJournal, AcceptShareHandler):
    """``/hub/accept-share``: a share code is only accepted by someone BenchHub's rule lets
    use it; anyone else gets a page saying why, and nothing is accepted."""

    def _checked_code(self):
        share_code = orm.ShareCode.find(self.db, code=self.get_argument("code"))
        if share_code is None or share_code.owner == self.current_user.orm_user:
            return None  # JupyterHub's own answers (not found, can't share with yourself)
        decision = entry_decision(self.db, self.current_user, share_code.spawner)
        if not decision:
            owner, name = share_code.owner.name, share_code.spawner.name
            raise _refused(
                403,
                f"You cannot accept this share of {owner}'s workspace {name}: {decision.reason}.",
            )
        return share_code

    @web.authenticated
    async def get(self):
        self._checked_code()
        await super().get()

    @web.authenticated
    async def post(self):
        share_code = self._checked_code()
        orm_spawner = share_code.spawner if share_code is not None else None
        async with self._answer_held():
            super().post()
            if orm_spawner is not None and self.get_status() < 400:
                name = self.current_user.name
                await _journal(
                    self,
                    orm_spawner,
                    "share-code-used",
                    f"{name} accepted a share code",
                    {"with": name},
                )


# ---- entry --------------------------------------------------------------------------------------


class EntryCheckedOAuthAuthorizeHandler(WorkspaceOAuthAuthorizeHandler):
    """The OAuth authorization to a workspace's server: someone other than the owner must
    pass BenchHub's rule (403 with the reason); only admins' entries are journaled as admin
    entries (a collaborator's entry shows in who is in, :mod:`.presence`)."""

    entry = None  # the Decision for this request, when it is someone else's workspace

    def _check_entry(self) -> None:
        client_id = self.get_argument("client_id", "")
        client = self.oauth_provider.fetch_by_client_id(client_id) if client_id else None
        orm_spawner = getattr(client, "spawner", None)
        user = self.current_user
        if orm_spawner is None or user is None or orm_spawner.user.name == user.name:
            return
        self.entry = entry_decision(self.db, user, orm_spawner)
        if not self.entry:
            raise _refused(
                403,
                f"You cannot enter {orm_spawner.user.name}'s workspace "
                f"{orm_spawner.name}: {self.entry.reason}.",
            )

    @web.authenticated
    async def get(self):
        self._check_entry()
        await super().get()

    @web.authenticated
    def post(self):
        self._check_entry()
        super().post()

    def authorized(self, client_id: str) -> None:
        if self.entry is not None and not self.entry.logged:
            return
        super().authorized(client_id)


class EntryCheckedSelfAPIHandler(SelfAPIHandler):
    """``/hub/api/user`` (how a workspace's server identifies each request): the scopes a
    share gave are left out for someone BenchHub's rule now refuses on that workspace."""

    async def get(self):
        user = self.current_user
        if user is not None and not isinstance(user, orm.Service):
            dropped = set()
            for share in user.orm_user.all_shared_with_me:
                if not entry_decision(self.db, user, share.spawner):
                    owner, name = share.spawner.user.name, share.spawner.name
                    dropped |= {
                        s for s in self.expanded_scopes if s.endswith(f"!server={owner}/{name}")
                    }
            if dropped:
                self.expanded_scopes = set(self.expanded_scopes) - dropped
                self.parsed_scopes = parse_scopes(self.expanded_scopes)
        await super().get()


# ---- joining a workspace that allows it ---------------------------------------------------------


class JoinWorkspaceAPIHandler(APIHandler):
    """``POST /hub/api/bench/workspaces/<owner>/<name>/join``: the caller may enter
    ``owner``'s workspace as its permissions allow (``others_may_use`` for contributors;
    project and site admins always, logged): the hub grants them a share on the owner's
    behalf, so entering is the same mechanism as sharing. 403 with the reason otherwise.
    Answers ``{"url", "ready", "shared"}`` (``shared`` false for a site admin, whose role
    already gives access)."""

    async def post(self, owner_name, server_name):
        user = self.current_user
        if user is None or isinstance(user, orm.Service):
            raise web.HTTPError(403, "Missing or invalid credentials: join as a hub user.")
        if not self.has_scope(f"users:shares!user={user.name}"):
            raise web.HTTPError(403, f"this token may not take shares for {user.name}")
        owner = self.find_user(owner_name)
        if owner is None or server_name not in owner.orm_spawners:
            raise web.HTTPError(404, f"no workspace {owner_name}/{server_name}")
        if owner.name == user.name:
            raise web.HTTPError(400, "this is your own workspace: open it from the home page")
        orm_spawner = owner.orm_spawners[server_name]
        decision = entry_decision(self.db, user, orm_spawner, shared=False)
        if not decision:
            raise web.HTTPError(403, f"cannot join {owner_name}/{server_name}: {decision.reason}")
        shared = not user.admin
        if shared:
            orm.Share.grant(self.db, orm_spawner, user.orm_user)
            how = "as a project administrator" if decision.logged else "as its permissions allow"
            await _journal(
                self,
                orm_spawner,
                "shared",
                f"{user.name} joined ({how})",
                {"with": user.name, "via": "join"},
            )
        spawner = owner.spawners[server_name]
        self.set_header("Content-Type", "application/json")
        self.write(
            json.dumps(
                {
                    "url": owner.server_url(server_name),
                    "ready": bool(spawner.ready),
                    "shared": shared,
                }
            )
        )


SHARING_API_HANDLERS = [
    (r"/api/oauth2/authorize", EntryCheckedOAuthAuthorizeHandler),
    (r"/api/user", EntryCheckedSelfAPIHandler),
    (r"/api/shares/([^/]+)/([^/]*)", CheckedServerShareAPIHandler),
    (r"/api/users/([^/]+)/shared/([^/]+)/([^/]*)", CheckedUserShareAPIHandler),
    (r"/api/share-codes/([^/]+)/([^/]*)", JournaledShareCodeAPIHandler),
    (r"/api/bench/workspaces/([^/]+)/([^/]+)/join", JoinWorkspaceAPIHandler),
]
SHARING_PAGE_HANDLERS = [
    (r"/accept-share", CheckedAcceptShareHandler),
]
