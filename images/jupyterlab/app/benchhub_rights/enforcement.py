"""Apply the transfer rule (``policy``) to every request a Jupyter server serves.

Tornado hands every matched route to ``Application.get_handler_delegate`` with the handler class
that will serve it. ``enforce`` wraps that one public method: when the class is one the rule
knows (contents API, the contents manager's files handler, view, nbconvert), the request is
served by a subclass that checks it after the server's own login (so strangers still get the
server's usual 403 or redirect) and before the handler runs, and, for contents ``GET``, checks
the answer before it leaves. Choosing by handler class, not by URL, means no spelling of a path
(encoded characters, doubled slashes, a base URL) reaches a handler unchecked, and routes added
later by other extensions are covered the same way.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

from tornado import web

from .policy import (
    Route,
    TransferRights,
    refusal_message,
    transfer_of_contents_reply,
    transfer_of_request,
)


def route_classifier(files_handler_class: type | None) -> Callable[[type], Route]:
    """The Route of a handler class, for a server whose contents manager serves /files/ with
    ``files_handler_class``."""
    from jupyter_server.nbconvert.handlers import NbconvertFileHandler, NbconvertPostHandler
    from jupyter_server.services.contents.handlers import ContentsHandler
    from jupyter_server.view.handlers import ViewHandler

    def route_of(handler_class: type) -> Route:
        if issubclass(handler_class, ContentsHandler):
            return Route.CONTENTS
        if files_handler_class is not None and issubclass(handler_class, files_handler_class):
            return Route.FILES
        if issubclass(handler_class, ViewHandler):
            return Route.VIEW
        if issubclass(handler_class, (NbconvertFileHandler, NbconvertPostHandler)):
            return Route.NBCONVERT
        return Route.OTHER

    return route_of


def enforce(
    web_app: web.Application,
    rights: TransferRights,
    route_of: Callable[[type], Route],
    log: logging.Logger,
) -> None:
    """Make ``web_app`` refuse, with 403 and the missing right named, every upload or download
    its rights do not allow. Does nothing when both rights are on."""
    if rights.all_allowed:
        return
    checked: dict[type, type] = {}
    serve = web_app.get_handler_delegate

    def get_handler_delegate(request, target_class, *args, **kwargs):
        route = route_of(target_class)
        if route is not Route.OTHER:
            if target_class not in checked:
                checked[target_class] = _checked_handler(target_class, route, rights, log)
            target_class = checked[target_class]
        return serve(request, target_class, *args, **kwargs)

    web_app.get_handler_delegate = get_handler_delegate


def _checked_handler(
    handler_class: type, route: Route, rights: TransferRights, log: logging.Logger
) -> type:
    class TransferChecked(handler_class):
        async def prepare(self):
            prepared = super().prepare()
            if inspect.isawaitable(prepared):
                await prepared
            if self._finished or not self.current_user:
                return  # the server's own login answers strangers
            query = {
                name: [v.decode("utf-8", "replace") for v in values]
                for name, values in self.request.query_arguments.items()
            }
            self._refuse_unless_allowed(
                transfer_of_request(route, self.request.method, query, self.request.body)
            )

        def finish(self, chunk=None):
            if (
                route is Route.CONTENTS
                and chunk is not None
                and self.request.method == "GET"
                and self.get_status() == 200
            ):
                # raised out of the handler's get(): tornado answers with write_error
                self._refuse_unless_allowed(transfer_of_contents_reply(chunk))
            return super().finish(chunk)

        def _refuse_unless_allowed(self, right):
            if right is None or rights.allows(right):
                return
            user = self.current_user
            name = getattr(user, "username", None) or getattr(user, "name", None) or user
            log.warning(
                "BenchHub: refused %s (%s rights are off): %s %s by %s",
                right,
                right,
                self.request.method,
                self.request.path,
                name,
            )
            raise web.HTTPError(403, refusal_message(right), reason="Forbidden")

    TransferChecked.__name__ = f"TransferChecked{handler_class.__name__}"
    TransferChecked.__qualname__ = TransferChecked.__name__
    return TransferChecked
