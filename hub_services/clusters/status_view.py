"""A cluster as the clusters API shows it: its record, the last scaling pass's view, where its
Spark UI is and the tail of its scaler log, as one JSON-able dict (pure)."""

from __future__ import annotations

from . import spark
from .containers import ClusterNames
from .state import ClusterRecord

__all__ = ["cluster_status"]


def cluster_status(
    rec: ClusterRecord, names: ClusterNames, view: dict, web_ui: str | None, scaler_log: list
) -> dict:
    """The status of ``rec``; ``view`` is the last pass's (``{}`` before the first: members
    then show as starting and Spark as unknown)."""
    members = view.get("members")
    if members is None:
        members = [
            {
                "name": m.name,
                "address": m.address,
                "state": "starting",
                "running_jobs": 0,
                "started_at": m.started_at,
                "preemptible": m.preemptible,
                "scratch": m.scratch,
                "free": None,
            }
            for m in rec.members.values()
        ]
    unknown_spark = {
        "master": "unknown",
        "workers": 0,
        "applications": [],
        "in_use": rec.spark_in_use,
    }
    return {
        "spark": {
            "master_url": spark.MASTER_URL,
            "web_ui": web_ui,
            **(view.get("spark") or unknown_spark),
        },
        "user": rec.user,
        "workspace": rec.workspace,
        "cluster_id": rec.cluster_id,
        "status": rec.status,
        "reason": rec.reason,
        "settings": rec.settings,
        "resource_model": rec.model,
        "created_at": rec.created_at,
        "network": names.network,
        "subnet": rec.subnet,
        "manager": names.manager,
        "members": members,
        "pending": view.get("pending", []),
        "unsatisfiable": view.get("unsatisfiable", []),
        "decision": view.get("decision"),
        "observed_at": view.get("observed_at"),
        "error": view.get("error", ""),
        "scaler_log": scaler_log,
    }
