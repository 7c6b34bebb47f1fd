# BenchHub: the Spark master UI of the workspace's cluster through jupyter-server-proxy, at
# /user/<user>/<workspace>/proxy/spark-master:8080/ (the hub lets only the workspace's users
# in). Allowed while /data/.spark/cluster.json, written by the clusters service, says the
# cluster has web access; ports of this workspace (/proxy/<port>/, e.g. a driver UI on 4040)
# are always allowed.
import json
import pathlib

CLUSTER_FILE = pathlib.Path("/data/.spark/cluster.json")


def _allowed_host(handler, host):
    if host in ("localhost", "127.0.0.1"):
        return True
    if host != "spark-master":
        return False
    try:
        return bool(json.loads(CLUSTER_FILE.read_text()).get("web_ui"))
    except (OSError, ValueError, AttributeError):
        return False


c.ServerProxy.host_allowlist = _allowed_host  # noqa: F821 (c is the config object)
