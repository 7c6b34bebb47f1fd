"""The handler bases of every BenchHub service's HTTP surface.

:class:`ServiceHandler` is an API handler: HubOAuth authenticates the caller (a hub token or
the service's login cookie), :meth:`~ServiceHandler.require` applies the one access rule
(:mod:`benchhub.access`) and every error is JSON::

    {"status": 403, "message": "<what is wrong and how to fix it>", ...extra}

(``extra``: the fields of an :class:`ApiError`, e.g. ``errors`` per field). An API request
without credentials is a 403 JSON too, never a redirect to the hub's login page, which a script
could not follow.

:class:`ServicePage` is a page a person opens: without a login the browser is sent to the hub's
login (HubOAuth's redirect), and it is rendered on the shared page template
(:mod:`benchhub.service_pages`) with the hub's navbar; its errors are that page with the message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import ClassVar

from jupyterhub.services.auth import HubOAuthenticated, UserNotAllowed
from tornado import web
from tornado.log import app_log

from .access import SEE, Action, is_person, may, may_for_everyone, scope_needed
from .service_pages import PageTemplates, ServicesMenu, hub_page_context

__all__ = [
    "NO_CREDENTIALS",
    "ApiError",
    "ServiceHandler",
    "ServicePage",
    "error_body",
    "refusal",
]

NO_CREDENTIALS = (
    "no credentials: send a hub API token (Authorization: token <token>) or log in to the hub "
    "and open the service's page"
)


class ApiError(web.HTTPError):
    """An HTTP error whose ``message`` and ``extra`` fields go to the client as JSON."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(status)
        self.message = message
        self.extra = extra

    def __str__(self) -> str:
        return f"HTTP {self.status_code}: {self.message}"


def error_body(status_code: int, error: BaseException | None, reason: str) -> dict:
    """The JSON body of an error: the sentence of an HTTP error (an :class:`ApiError`'s message
    and extra fields, a ``web.HTTPError``'s log message), else only the status's reason: what
    failed inside is in the service's log, not in the answer."""
    message, extra = None, {}
    if isinstance(error, web.HTTPError):
        message = getattr(error, "message", None) or error.log_message
        if message and error.args and not isinstance(error, ApiError):
            message = message % error.args
        extra = getattr(error, "extra", None) or {}
    return {**extra, "status": status_code, "message": message or reason}


def refusal(action: Action, owner: str, what: str | None = None) -> str:
    """The 403 sentence when the caller may not ``action`` ``what`` (``owner``'s workspaces by
    default): who may, and the scope a token would need."""
    what = what or f"{owner}'s workspaces"
    return (
        f"only {owner} or an admin may {action} {what}; a token needs the scope "
        f"{scope_needed(action)}!user={owner}"
    )


class ServiceHandler(HubOAuthenticated, web.RequestHandler):
    """Base of every handler of a BenchHub service (see the module docstring). Subclasses
    decorate their methods with ``@web.authenticated``."""

    # True for what a browser opens (pages, the script the hub's home page loads): without a
    # login it is sent through the hub's OAuth, which comes back with the service's cookie
    login_redirect: ClassVar[bool] = False
    _refused_caller: Mapping | None = None

    def check_hub_user(self, model):
        """HubOAuth's check (the scope ``access:services`` on this service); remembers whom it
        refused, so the 403 can say who and what is missing."""
        try:
            return super().check_hub_user(model)
        except UserNotAllowed:
            self._refused_caller = model
            raise

    def get_login_url(self) -> str:
        if self.login_redirect:
            return super().get_login_url()
        raise web.HTTPError(403, self._not_logged_in())

    def _not_logged_in(self) -> str:
        """Why a request has no caller: no credentials, or a caller HubOAuth refused."""
        refused = self._refused_caller
        if refused is None:
            return NO_CREDENTIALS
        needed = " or ".join(sorted(self.hub_scopes or ()))
        return f"{refused['kind']} {refused['name']} may not use this service: it needs {needed}"

    def require(
        self, action: Action, owner: str, workspace: str | None = None, what: str | None = None
    ) -> None:
        """403 unless the caller may ``action`` ``owner``'s workspaces (or the one named):
        :func:`benchhub.access.may`. ``what`` names the thing in the refusal."""
        if not may(self.current_user, action, owner, workspace):
            raise web.HTTPError(403, refusal(action, owner, what))

    async def require_seeing(
        self, hub, owner: str, workspace: str | None = None, what: str | None = None
    ) -> None:
        """:meth:`require` of SEE, where a member of the workspace's project sees it too: the
        project is read from the hub (``hub``, a :class:`~benchhub.hub_client.HubClient`) only
        for a person in some group whom the rest of the rule refuses."""
        caller = self.current_user
        if may(caller, SEE, owner, workspace):
            return
        if workspace is not None and is_person(caller) and caller.get("groups"):
            project = await hub.project_of(owner, workspace)
            if may(caller, SEE, owner, workspace, project):
                return
        raise web.HTTPError(403, refusal(SEE, owner, what))

    def may_see_project(self, project: str) -> bool:
        """Whether the caller may list ``project``'s workspaces: a member of it (a person in
        its hub group), or whoever may see everyone's."""
        caller = self.current_user
        member = bool(project) and is_person(caller) and project in (caller.get("groups") or ())
        return member or may_for_everyone(caller, SEE)

    def require_project(self, project: str) -> None:
        """403 unless :meth:`may_see_project`."""
        if not self.may_see_project(project):
            raise web.HTTPError(
                403, f"project: only a project you are a member of, got {project!r}"
            )

    def _error_body(self, status_code: int, **kwargs) -> dict:
        error = kwargs.get("exc_info", (None, None, None))[1]
        body = error_body(status_code, error, self._reason)
        silent = isinstance(error, web.HTTPError) and not error.log_message
        if status_code == 403 and silent and not isinstance(error, ApiError):
            # tornado's @authenticated refuses a POST (PUT, DELETE...) without a caller
            # silently: say why
            if self.current_user is None:
                body["message"] = self._not_logged_in()
        return body

    def write_error(self, status_code: int, **kwargs) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(self._error_body(status_code, **kwargs)))


class ServicePage(ServiceHandler):
    """A page of a service, on the shared page template (see the module docstring). Subclasses
    set :attr:`templates` to their service's and answer with :meth:`render_page`. The
    application's setting ``services_menu`` (a :class:`ServicesMenu`) fills the Services menu."""

    login_redirect = True
    templates: ClassVar[PageTemplates] = PageTemplates()

    def _page_context(self, services) -> dict:
        auth = self.hub_auth
        xsrf = self.xsrf_token
        return hub_page_context(
            self.current_user,
            hub_prefix=auth.hub_prefix,
            services=services,
            xsrf_token=xsrf.decode() if isinstance(xsrf, bytes) else xsrf,
            login_url=auth.login_url,
            hub_host=auth.hub_host,
        )

    @property
    def services_menu(self) -> ServicesMenu | None:
        return self.settings.get("services_menu")

    async def render_page(self, template: str, title: str, **context) -> None:
        """Write ``template`` (which extends ``page.html``) with the hub's navbar, ``title`` as
        ``page_title`` and the page's ``context``."""
        menu = self.services_menu
        services = await menu.entries() if menu else []
        page = {**self._page_context(services), "page_title": title, **context}
        self.write(self.templates.render(template, page))

    def write_error(self, status_code: int, **kwargs) -> None:
        body = self._error_body(status_code, **kwargs)
        menu = self.services_menu
        try:
            page = {
                **self._page_context(menu.cached() if menu else []),
                "page_title": f"{status_code} {self._reason}",
                "status_code": status_code,
                "reason": self._reason,
                "message": body["message"],
            }
            html = self.templates.render("error.html", page)
        except Exception:  # the error page itself failed: say what failed first, as JSON
            app_log.exception("cannot render the error page")
            super().write_error(status_code, **kwargs)
            return
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(html)
