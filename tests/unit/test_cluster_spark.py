"""Spark on a workspace cluster without Docker: the executor size and ``cluster.json`` the
kernels read, the master UI's address, and what the auto scaler concludes from the master's
JSON and the drivers' dynamic-allocation gauges (as Spark 4.0.1 prints them)."""

import contextlib
import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

from hub_services.clusters import spark
from hub_services.clusters.scaling import Capacity, Request
from hub_services.clusters.spark import (
    CLUSTER_FILE,
    SparkView,
    WorkerUse,
    cluster_file,
    executor_defaults,
    parse_observation,
    remove_cluster_file,
    ui_path,
    write_cluster_file,
)

MIB = 1024**2
GIB = 1024**3
MEMBER = Capacity(1, int(7.2 * GIB))  # standard-small: 1 core, 7.2 GiB (7372 MiB)
APP = "app-20261121165016-0000"
HOST = "bench-cluster-k3x9q2-m1"


# --- executor size -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "capacity, expected",
    [
        # 7372 MiB - 384 = 6988, floored to 128 MiB steps: 6912
        (MEMBER, {"cores": 1, "memory": "6912m", "per_member": 1}),
        # two 4-core executors, each 15360 MiB - 384 = 14976 (already a multiple of 128)
        (Capacity(8, 30 * GIB), {"cores": 4, "memory": "14976m", "per_member": 2}),
        # fewer than 8 cores: one executor of at most 4 cores; 16384 - 384 = 16000 (125 x 128)
        (Capacity(6, 16 * GIB), {"cores": 4, "memory": "16000m", "per_member": 1}),
        (Capacity(2, 8 * GIB), {"cores": 2, "memory": "7808m", "per_member": 1}),
        # 3 cores, 5000 MiB: 5000 - 384 = 4616, floored to 4608
        (Capacity(3, 5000 * MIB), {"cores": 3, "memory": "4608m", "per_member": 1}),
        # 16 cores, 64 GiB: four executors of 16384 - 384 = 16000
        (Capacity(16, 64 * GIB), {"cores": 4, "memory": "16000m", "per_member": 4}),
        # 10 cores: two 4-core executors (2 cores unused), 10240 / 2 - 384 = 4736
        (Capacity(10, 10 * GIB), {"cores": 4, "memory": "4736m", "per_member": 2}),
    ],
)
def test_executors_share_a_member_less_sparks_overhead(capacity, expected):
    assert executor_defaults(capacity) == expected


@pytest.mark.parametrize("capacity", [Capacity(1, 512 * MIB), Capacity(8, 1 * GIB), Capacity(1, 0)])
def test_an_executor_never_gets_less_than_512_mib(capacity):
    assert executor_defaults(capacity)["memory"] == "512m"


def test_a_member_without_whole_cores_still_gets_one_executor_of_one_core():
    assert executor_defaults(Capacity(0, 4 * GIB)) == {
        "cores": 1,
        "memory": "3712m",
        "per_member": 1,
    }


# --- master UI and cluster.json -----------------------------------------------------------------


@pytest.mark.parametrize(
    "base, expected",
    [
        ("/", "/user/alice/lab/proxy/spark-master:8080/"),
        ("/hub-prefix/", "/hub-prefix/user/alice/lab/proxy/spark-master:8080/"),
        ("/hub-prefix", "/hub-prefix/user/alice/lab/proxy/spark-master:8080/"),
    ],
)
def test_the_master_ui_is_reached_through_the_workspace_proxy(base, expected):
    assert ui_path(base, "alice", "lab") == expected


def test_user_and_workspace_names_are_quoted_in_the_ui_path():
    path = ui_path("/", "a.b+c@example.org", "my lab/2")
    assert path == "/user/a.b%2Bc%40example.org/my%20lab%2F2/proxy/spark-master:8080/"


def test_cluster_file_tells_kernels_the_master_their_host_and_executor_size():
    content = cluster_file("k3x9q2", "dynamic", 5, Capacity(8, 30 * GIB), "/user/a/b/proxy/x/")
    assert content == {
        "cluster_id": "k3x9q2",
        "type": "dynamic",
        "master_url": "spark://spark-master:7077",
        "driver_host": "workspace",
        "member": {"cores": 8, "memory_mib": 30720},
        "executor": {"cores": 4, "memory": "14976m"},
        "max_executors": 10,  # 2 per member x 5 members
        "web_ui": "/user/a/b/proxy/x/",
    }
    json.dumps(content)  # the file is JSON: every value must serialise


def test_cluster_file_without_a_web_ui_names_none():
    content = cluster_file("k3x9q2", "static", 3, MEMBER, None)
    assert content["web_ui"] is None
    assert content["max_executors"] == 3
    assert content["member"] == {"cores": 1, "memory_mib": 7372}


# --- writing and removing cluster.json -----------------------------------------------------------


def test_the_written_cluster_file_is_the_content_as_json(tmp_path):
    content = cluster_file("k3x9q2", "static", 2, MEMBER, None)
    write_cluster_file(str(tmp_path), content)
    path = tmp_path / CLUSTER_FILE
    assert path == tmp_path / ".spark" / "cluster.json"
    assert json.loads(path.read_text()) == content
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_newer_cluster_file_replaces_the_old_one(tmp_path):
    write_cluster_file(str(tmp_path), cluster_file("old111", "static", 2, MEMBER, None))
    write_cluster_file(str(tmp_path), cluster_file("new222", "static", 2, MEMBER, "/ui/"))
    assert json.loads((tmp_path / CLUSTER_FILE).read_text())["cluster_id"] == "new222"
    assert os.listdir(tmp_path / ".spark") == ["cluster.json"]


def test_removing_its_own_cluster_file_deletes_it(tmp_path):
    write_cluster_file(str(tmp_path), cluster_file("k3x9q2", "static", 2, MEMBER, None))
    remove_cluster_file(str(tmp_path), "k3x9q2")
    assert not (tmp_path / CLUSTER_FILE).exists()
    assert (tmp_path / ".spark").is_dir()  # the kernels' spark-defaults.conf live there too


def test_another_clusters_file_is_left_in_place(tmp_path):
    content = cluster_file("new222", "static", 2, MEMBER, None)
    write_cluster_file(str(tmp_path), content)
    remove_cluster_file(str(tmp_path), "old111")
    assert json.loads((tmp_path / CLUSTER_FILE).read_text()) == content


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '"k3x9q2"', "{}"])
def test_a_foreign_cluster_file_is_left_in_place_without_error(tmp_path, text):
    (tmp_path / ".spark").mkdir()
    (tmp_path / CLUSTER_FILE).write_text(text)
    remove_cluster_file(str(tmp_path), "k3x9q2")
    assert (tmp_path / CLUSTER_FILE).read_text() == text


def test_removing_a_missing_cluster_file_is_no_error(tmp_path):
    remove_cluster_file(str(tmp_path), "k3x9q2")
    (tmp_path / ".spark").mkdir()
    remove_cluster_file(str(tmp_path), "k3x9q2")
    assert os.listdir(tmp_path / ".spark") == []


def test_a_cluster_file_linked_out_of_data_is_not_followed(tmp_path):
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    target = outside / "cluster.json"
    target.write_text(json.dumps({"cluster_id": "k3x9q2"}))
    (data / ".spark").symlink_to(outside)
    remove_cluster_file(str(data), "k3x9q2")
    assert target.exists()
    with pytest.raises(OSError):
        write_cluster_file(str(data), cluster_file("k3x9q2", "static", 2, MEMBER, None))
    assert os.listdir(outside) == ["cluster.json"]
    assert json.loads(target.read_text()) == {"cluster_id": "k3x9q2"}


# --- what the master and the drivers report ------------------------------------------------------


def worker(host=HOST, state="ALIVE", coresused=1, memoryused=1024, **changes) -> dict:
    """One worker of the master's ``/json/`` as Spark 4.0.1 prints it."""
    return {
        "id": f"worker-20261121164900-{host}-36179",
        "host": host,
        "port": 36179,
        "webuiaddress": f"http://{host}:8081",
        "cores": 1,
        "coresused": coresused,
        "coresfree": 1 - coresused,
        "memory": 7372,
        "memoryused": memoryused,
        "memoryfree": 7372 - memoryused,
        "resources": {},
        "resourcesused": {},
        "resourcesfree": {},
        "state": state,
        "lastheartbeat": 1795279807361,
        **changes,
    }


def app(app_id=APP, memory=1024, name="pyspark-shell") -> dict:
    """One running application of the master's ``/json/``."""
    return {
        "id": app_id,
        "starttime": 1795279816614,
        "name": name,
        "cores": 2,
        "user": "jovyan",
        "memoryperexecutor": memory,
        "memoryperslave": memory,
        "resourcesperexecutor": [],
        "resourcesperslave": [],
        "submitdate": "Sat Nov 21 16:50:16 UTC 2026",
        "state": "RUNNING",
        "duration": 10518,
    }


def master(workers=None, apps=None) -> dict:
    workers = [worker()] if workers is None else workers
    apps = [app()] if apps is None else apps
    return {
        "url": "spark://spark-master:7077",
        "workers": workers,
        "aliveworkers": sum(w["state"] == "ALIVE" for w in workers),
        "cores": 1,
        "coresused": 1,
        "memory": 7372,
        "memoryused": 1024,
        "activeapps": apps,
        "completedapps": [],
        "activedrivers": [],
        "completeddrivers": [],
        "status": "ALIVE",
    }


def gauges(app_id=APP, target=8, have=2, **others) -> dict:
    """A driver's ExecutorAllocationManager gauges (dynamic allocation on)."""
    values = {
        "numberExecutorsToAdd": 4,
        "numberExecutorsPendingToRemove": 0,
        "numberAllExecutors": have,
        "numberTargetExecutors": target,
        "numberMaxNeededExecutors": target,
        "numberDecommissioningExecutors": 0,
        **others,
    }
    prefix = f"{app_id}.driver.ExecutorAllocationManager.executors."
    return {prefix + name: value for name, value in values.items()}


def driver(app_id=APP, port=4040, gauge_values=None, executor_cores="1") -> dict:
    return {
        "port": port,
        "app": app_id,
        "gauges": gauges(app_id) if gauge_values is None else gauge_values,
        "executor_cores": executor_cores,
    }


def observe(master_doc, *drivers, capacity=MEMBER) -> SparkView:
    """What the service concludes from OBSERVE_SCRIPT's output."""
    text = json.dumps({"master": master_doc, "drivers": list(drivers)}) + "\n"
    return parse_observation(text, capacity)


def test_executors_a_dynamic_application_lacks_become_one_request():
    view = observe(master(), driver())
    assert view.master_alive
    assert view.requests == [Request(f"spark {APP}", 6, Capacity(1, 1024 * MIB))]
    assert view.applications == [
        {
            "id": APP,
            "name": "pyspark-shell",
            "dynamic": True,
            "executors_wanted": 6,
            "executor_cores": 1,
            "executor_memory_bytes": 1024 * MIB,
        }
    ]


def test_a_request_asks_for_the_applications_executor_size():
    view = observe(
        master(apps=[app(memory=4096)]),
        driver(gauge_values=gauges(target=3, have=1), executor_cores="4"),
        capacity=Capacity(8, 30 * GIB),
    )
    assert view.requests == [Request(f"spark {APP}", 2, Capacity(4, 4 * GIB))]


@pytest.mark.parametrize("executor_cores", [None, "", "0", "-1", "two", "1.5"])
def test_without_executor_cores_an_executor_takes_a_whole_member(executor_cores):
    view = observe(master(), driver(executor_cores=executor_cores), capacity=Capacity(8, 30 * GIB))
    assert view.requests == [Request(f"spark {APP}", 6, Capacity(8, 1024 * MIB))]
    assert view.applications[0]["executor_cores"] == 8


def test_a_driver_missing_executor_cores_key_takes_a_whole_member():
    d = driver()
    del d["executor_cores"]
    view = observe(master(), d, capacity=Capacity(4, 16 * GIB))
    assert view.requests[0].need == Capacity(4, 1024 * MIB)


def test_a_local_kernels_driver_is_ignored():
    local = "local-1795279816614"
    view = observe(master(), driver(app_id=local, port=4041, gauge_values=gauges(local)))
    assert view.master_alive
    assert view.requests == [] and view.applications == []


def test_only_drivers_of_applications_the_master_runs_are_counted():
    local = "local-1795279816614"
    view = observe(
        master(), driver(app_id=local, port=4040, gauge_values=gauges(local)), driver(port=4041)
    )
    assert [a["id"] for a in view.applications] == [APP]
    assert [r.job_id for r in view.requests] == [f"spark {APP}"]


def test_an_application_without_dynamic_allocation_asks_for_nothing():
    view = observe(master(), driver(gauge_values={}))
    assert view.requests == []
    assert view.applications == [
        {
            "id": APP,
            "name": "pyspark-shell",
            "dynamic": False,
            "executors_wanted": 0,
            "executor_cores": 1,
            "executor_memory_bytes": 1024 * MIB,
        }
    ]


def test_an_application_whose_gauges_are_null_asks_for_nothing():
    d = driver()
    d["gauges"] = None
    view = observe(master(), d)
    assert view.requests == [] and view.applications[0]["dynamic"] is False


def test_another_applications_gauges_on_the_same_port_do_not_count():
    view = observe(master(), driver(gauge_values=gauges("app-20261121160000-0000")))
    assert view.requests == []
    assert view.applications[0]["dynamic"] is False


@pytest.mark.parametrize("target, have", [(2, 2), (1, 2), (0, 0)])
def test_an_application_with_the_executors_it_wants_asks_for_nothing(target, have):
    view = observe(master(), driver(gauge_values=gauges(target=target, have=have)))
    assert view.requests == []
    assert view.applications[0]["dynamic"] is True
    assert view.applications[0]["executors_wanted"] == 0


def test_each_dynamic_application_gets_its_own_request():
    other = "app-20261121165100-0001"
    view = observe(
        master(apps=[app(), app(other, memory=2048, name="etl")]),
        driver(),
        driver(app_id=other, port=4041, gauge_values=gauges(other, target=3, have=0)),
    )
    assert view.requests == [
        Request(f"spark {APP}", 6, Capacity(1, 1024 * MIB)),
        Request(f"spark {other}", 3, Capacity(1, 2048 * MIB)),
    ]
    assert [a["name"] for a in view.applications] == ["pyspark-shell", "etl"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "Error: No such container\n",
        "[]",
        "null",
        json.dumps({"master": None, "drivers": [driver()]}),
    ],
)
def test_without_a_master_nothing_is_concluded(text):
    assert parse_observation(text, MEMBER) == SparkView(master_alive=False)


def test_a_master_without_workers_or_applications_is_alive_and_idle():
    view = observe(master(workers=[], apps=[]))
    assert view == SparkView(master_alive=True)


def test_workers_are_keyed_by_host_with_their_use_in_bytes():
    view = observe(
        master(workers=[worker(), worker("bench-cluster-k3x9q2-m2", coresused=0, memoryused=0)])
    )
    assert view.workers == {
        HOST: WorkerUse(1, 1024 * MIB, True),
        "bench-cluster-k3x9q2-m2": WorkerUse(0, 0, True),
    }


def test_dead_workers_are_dropped():
    view = observe(master(workers=[worker(), worker("bench-cluster-k3x9q2-m2", state="DEAD")]))
    assert list(view.workers) == [HOST]


@pytest.mark.parametrize("dead_first", [True, False])
def test_a_member_whose_worker_registered_again_is_seen_alive(dead_first):
    dead = worker(state="DEAD", coresused=0, memoryused=0, port=40001)
    alive = worker(coresused=1, memoryused=2048)
    view = observe(master(workers=[dead, alive] if dead_first else [alive, dead]))
    assert view.workers == {HOST: WorkerUse(1, 2048 * MIB, True)}


@pytest.mark.parametrize("state", ["DECOMMISSIONED", "UNKNOWN"])
def test_a_worker_neither_alive_nor_dead_is_kept_as_not_alive(state):
    view = observe(master(workers=[worker(state=state, coresused=0, memoryused=0)]))
    assert view.workers == {HOST: WorkerUse(0, 0, False)}


class _Answers(http.server.BaseHTTPRequestHandler):
    """A real HTTP server's handler: ``server.answers`` maps a path to ``(status, headers,
    body)``; every path asked is recorded in ``server.asked``; anything else is a 404."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.asked.append(self.path)
        status, headers, body = self.server.answers.get(self.path, (404, {}, b""))
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _server(answers: dict):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    server.answers, server.asked = answers, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _json(status: int, doc) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(doc).encode()


def _observe_script(driver_port: int, master_port: int) -> str:
    """OBSERVE_SCRIPT run as the manager runs it (its own Python process), pointed at
    servers on loopback: driver UIs from ``driver_port`` on, the master's JSON."""
    argv = [
        sys.executable,
        "-c",
        spark.OBSERVE_SCRIPT,
        "127.0.0.1",
        str(driver_port),
        f"http://127.0.0.1:{master_port}/json/",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def test_the_observe_scripts_output_is_what_parse_observation_reads():
    """OBSERVE_SCRIPT against a real master JSON server and one real driver UI, the answers
    shaped as Spark 4.0.1 gives them."""
    prefix = f"{APP}.driver.ExecutorAllocationManager.executors."
    driver = {
        "/metrics/json/": _json(
            200,
            {
                "version": "4.0.0",
                "gauges": {
                    prefix + "numberTargetExecutors": {"value": 8},
                    prefix + "numberAllExecutors": {"value": 2},
                    f"{APP}.driver.BlockManager.memory.memUsed_MB": {"value": 3},
                },
                "counters": {},
                "histograms": {},
            },
        ),
        "/api/v1/applications": _json(200, [{"id": APP, "name": "pyspark-shell"}]),
        f"/api/v1/applications/{APP}/environment": _json(
            200,
            {
                "sparkProperties": [
                    ["spark.executor.cores", "1"],
                    ["spark.dynamicAllocation.enabled", "true"],
                ]
            },
        ),
    }
    with _server({"/json/": _json(200, master())}) as master_ui, _server(driver) as driver_ui:
        output = _observe_script(driver_ui.server_port, master_ui.server_port)
    drivers = [d for d in json.loads(output)["drivers"] if d["port"] == driver_ui.server_port]
    assert drivers == [
        {
            "port": driver_ui.server_port,
            "app": APP,
            "executor_cores": "1",
            "gauges": {prefix + "numberTargetExecutors": 8, prefix + "numberAllExecutors": 2},
        }
    ]
    view = parse_observation(output, MEMBER)
    assert view.requests == [Request(f"spark {APP}", 6, Capacity(1, 1024 * MIB))]
    assert view.workers == {HOST: WorkerUse(1, 1024 * MIB, True)}


def test_a_driver_ui_that_redirects_is_not_followed():
    """Whatever answers on the workspace's driver ports is the user's program: a redirect
    to a service the manager can reach is not followed, and that driver counts for nothing."""
    with _server({}) as elsewhere:
        target = f"http://127.0.0.1:{elsewhere.server_port}/hub/api/users"
        moved = {
            path: (302, {"Location": target}, b"")
            for path in ("/metrics/json/", "/api/v1/applications")
        }
        with _server({"/json/": _json(200, master())}) as master_ui, _server(moved) as driver:
            output = _observe_script(driver.server_port, master_ui.server_port)
        assert elsewhere.asked == []
    assert driver.asked == ["/metrics/json/"]
    assert not [d for d in json.loads(output)["drivers"] if d["port"] == driver.server_port]


def test_a_driver_ui_answering_more_than_a_mebibyte_is_not_read():
    huge = {
        "gauges": {
            f"{APP}.driver.ExecutorAllocationManager.x{i}": {"value": i} for i in range(40_000)
        }
    }
    body = json.dumps(huge).encode()
    assert len(body) > 1024 * 1024
    flood = {"/metrics/json/": (200, {}, body), "/api/v1/applications": _json(200, [{"id": APP}])}
    with _server({"/json/": _json(200, master())}) as master_ui, _server(flood) as driver:
        output = _observe_script(driver.server_port, master_ui.server_port)
    assert driver.asked == ["/metrics/json/"]  # nothing more asked of a driver that flooded
    assert len(output) < 64 * 1024
    assert parse_observation(output, MEMBER).master_alive
