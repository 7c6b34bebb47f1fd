"""``GET <service prefix>/metrics``: a hub service's Prometheus metrics, for a monitoring token.

Every BenchHub service keeps its series in its own prometheus_client ``CollectorRegistry``
(nothing of a library's default registry leaks in) and adds :func:`metrics_route` to its app.

Who may read them is JupyterHub's own rule for ``/hub/metrics``: a token with the scope
``read:metrics``. The handler asks the hub about the token as every service handler does
(HubOAuth; cached for a few minutes, as JupyterHub caches tokens for services), but requires
``read:metrics`` instead of the service's access scope, so one monitoring token (e.g. a hub
service with only that scope, docs/metrics.md) reads the hub and every service, and needs no
right to use any of them. A request without credentials, or with a token that lacks the scope,
is a 403 JSON saying what is missing. Browsers are not sent to a login: the service's login
cookie carries only the scopes the service asked for, never ``read:metrics``.
"""

from __future__ import annotations

from collections.abc import Iterable

from jupyterhub.utils import url_path_join
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from tornado import web

from .service_web import ServiceHandler

__all__ = ["METRICS_SCOPE", "MetricsHandler", "metrics_route", "zeroed"]

METRICS_SCOPE = "read:metrics"


class MetricsHandler(ServiceHandler):
    """The text exposition of the ``registry`` it is given (see the module)."""

    def initialize(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    @property
    def hub_scopes(self) -> set[str]:
        # HubOAuthenticated lets in a caller holding any of these (instead of the service's
        # access scope), and names them in the 403 for anyone else
        return {METRICS_SCOPE}

    @web.authenticated
    async def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.write(generate_latest(self.registry))


def metrics_route(prefix: str, registry: CollectorRegistry) -> tuple:
    """The app's route for ``<prefix>metrics`` serving ``registry``."""
    return (url_path_join(prefix, "metrics"), MetricsHandler, {"registry": registry})


def zeroed(metric, *label_sets: Iterable[str]):
    """``metric`` with a child for every combination of the label values given, one iterable
    per label in order: each series is scraped at 0 before its first event (a dashboard's
    rate() then starts at 0, not at the first event)."""
    combinations: list[tuple[str, ...]] = [()]
    for values in label_sets:
        combinations = [(*c, value) for c in combinations for value in values]
    for combination in combinations:
        metric.labels(*combination)
    return metric
