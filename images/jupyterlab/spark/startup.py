"""BenchHub's PySpark kernels: ``spark`` and ``sc`` ready when the kernel starts.

IPython runs this file in the kernel's namespace at start (``IPKernelApp.exec_files`` in the
kernel specs under /opt/venv/share/jupyter/kernels/pyspark-*). ``BENCHHUB_SPARK_MODE`` is
``local``, ``remote`` or ``dynamic``; ``SPARK_CONF_DIR`` is the mode's directory in /data/.spark,
whose ``spark-defaults.conf`` Spark reads when the kernel's driver starts: edit it and restart
the kernel. A missing file is written with defaults (for the remote modes, sized to the members
of the workspace's cluster, from /data/.spark/cluster.json, which the clusters service writes
while a cluster runs).
"""


def _bench_spark_start():
    import json
    import os
    import pathlib
    import sys

    mode = os.environ.get("BENCHHUB_SPARK_MODE", "local")
    conf = pathlib.Path(os.environ["SPARK_CONF_DIR"]) / "spark-defaults.conf"
    cluster_file = pathlib.Path(
        os.environ.get("BENCHHUB_SPARK_CLUSTER", "/data/.spark/cluster.json")
    )
    try:
        cluster = json.loads(cluster_file.read_text())
    except (OSError, ValueError):
        cluster = None
    if not conf.exists():
        conf.parent.mkdir(parents=True, exist_ok=True)
        partial = conf.with_name(conf.name + ".partial")
        partial.write_text(_bench_spark_defaults(mode, cluster))
        os.replace(partial, conf)
        print(f"Default Spark settings written to {conf}: edit them, then restart the kernel.")
    if mode != "local" and cluster is None:
        why = (
            "this kernel runs Spark on the workspace's cluster, and none is running: start "
            "a cluster (Services > clusters), then restart the kernel; the kernel "
            "'PySpark – Local' needs no cluster"
        )
        print(why, file=sys.stderr)
        return _BenchSparkUnavailable(why)
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()
    sc = spark.sparkContext
    print(
        f"Spark {spark.version} ready: sc.master = {sc.master}, application "
        f"{sc.applicationId} ({sc.appName}); settings: {conf}"
    )
    return spark


class _BenchSparkUnavailable:
    """``spark`` and ``sc`` of a remote kernel without a cluster: it says why when shown, is
    false, and any use raises that reason (in the notebook, where the user looks)."""

    def __init__(self, why: str):
        self._why = why

    def __repr__(self) -> str:
        return f"<no Spark: {self._why}>"

    def __bool__(self) -> bool:
        return False

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(self._why)

    @property
    def sparkContext(self):  # noqa: N802 (SparkSession's name)
        return self


def _bench_spark_memory_limit() -> int:
    """The container's memory limit in bytes (cgroup v2 or v1), or 0 when unlimited/unknown."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        return int(text) if text.isdigit() and int(text) < 1 << 60 else 0
    return 0


def _bench_spark_defaults(mode: str, cluster: dict | None) -> str:
    """The first spark-defaults.conf of ``mode`` (see the module docstring)."""
    title = {
        "local": "PySpark – Local",
        "remote": "PySpark – Remote",
        "dynamic": "PySpark – Remote - Dynamic",
    }[mode]
    lines = [
        f"# {title}: Spark settings, read when the kernel starts (restart it after a change).",
        "# Every property: https://spark.apache.org/docs/latest/configuration.html",
        "",
        f"spark.app.name                   pyspark-{mode}",
    ]
    if mode == "local":
        limit = _bench_spark_memory_limit()
        driver_mb = max(1024, limit // 2 // 1024**2) if limit else 1024
        lines += [
            "# The driver and its executors run in this workspace, on all its cores.",
            "spark.master                     local[*]",
            f"spark.driver.memory              {driver_mb}m",
        ]
        return "\n".join(lines) + "\n"
    executor = (cluster or {}).get("executor") or {"cores": 1, "memory": "1g"}
    lines += [
        "# The driver runs in this workspace; executors run on the cluster's members.",
        "spark.master                     spark://spark-master:7077",
        "spark.driver.host                workspace",
        "spark.driver.bindAddress         0.0.0.0",
        "spark.task.cpus                  1",
        f"spark.executor.cores             {executor['cores']}",
        f"spark.executor.memory            {executor['memory']}",
    ]
    if mode == "dynamic":
        lines += [
            "",
            "# Executors come and go with the work; the cluster scales with them.",
            "spark.dynamicAllocation.enabled                  true",
            "spark.dynamicAllocation.shuffleTracking.enabled  true",
            "spark.dynamicAllocation.minExecutors             0",
            "spark.dynamicAllocation.executorIdleTimeout      60s",
            "spark.dynamicAllocation.schedulerBacklogTimeout  1s",
        ]
        if (cluster or {}).get("max_executors"):
            lines.append(
                f"spark.dynamicAllocation.maxExecutors             {cluster['max_executors']}"
            )
    return "\n".join(lines) + "\n"


spark = _bench_spark_start()
sc = spark.sparkContext
for _name in (
    "_bench_spark_start",
    "_bench_spark_memory_limit",
    "_bench_spark_defaults",
    "_BenchSparkUnavailable",
):
    globals().pop(_name)  # the user's namespace keeps only spark and sc
del _name
