"""BenchHub's embedded default deployment: one machine, local Docker Engine, SQLite.

Read this file as documentation: every setting a site is likely to change is here, with the
environment variable that overrides it. `make run` starts `jupyterhub -f jupyterhub_config.py`
from the repository directory.
"""

import json
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlparse

from bench_spawner.hub_api import register_handlers
from bench_spawner.quota_admission import BenchQuotas
from bench_spawner.spawner import BenchSpawner
from benchhub.admin_password import admin_names, admin_password
from benchhub.networks import host_mtu
from benchhub.spend_client import reader_token
from hub_services.egress.policy import FORBIDDEN_DESTINATIONS
from hub_services.mounts.relay import relay_route

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)
here = Path(__file__).resolve().parent
state_dir = Path(os.environ.get("BENCHHUB_STATE_DIR", here / ".cache" / "hub"))
state_dir.mkdir(parents=True, exist_ok=True)

# Every person may use every BenchHub service's pages and API (what each shows them is the
# service's own access rule); each service's role is added with the service.
c.JupyterHub.services = []
# Users share their own workspaces (JupyterHub's sharing API: shares!user) by name
# (read:users:name) or with a share code; BenchHub checks who may use a share (docs/sharing.md).
c.JupyterHub.load_roles = [{"name": "user", "scopes": ["self", "shares!user", "read:users:name"]}]
# c.WorkspacePresence.window_seconds = 900  # "who is in" looks back this far (docs/sharing.md)


def hub_service(name: str, port: int, command: list[str], scopes: list[str], **extra) -> None:
    """Run ``command`` as the hub service ``name`` on ``port`` (in the Services menu, logins
    through the hub without a confirmation page), with the role ``<name>-service`` of
    ``scopes``, and let every user open it."""
    c.JupyterHub.services.append(
        {
            "name": name,
            "display": True,
            "url": f"http://127.0.0.1:{port}",
            "oauth_no_confirm": True,
            "command": command,
            **extra,
        }
    )
    c.JupyterHub.load_roles.append(
        {"name": f"{name}-service", "services": [name], "scopes": scopes}
    )
    c.JupyterHub.load_roles[0]["scopes"].append(f"access:services!service={name}")


# --- where the hub listens ----------------------------------------------------------------------
# Users: http://127.0.0.1:8000 (the proxy). Workspaces reach the hub API on the gateway address
# of their Docker network, so the hub binds all interfaces on its own port (8081).
c.JupyterHub.bind_url = os.environ.get("BENCHHUB_URL", "http://127.0.0.1:8000")
c.JupyterHub.hub_bind_url = f"http://0.0.0.0:{os.environ.get('BENCHHUB_HUB_PORT', '8081')}"
c.JupyterHub.hub_connect_url = f"http://127.0.0.1:{os.environ.get('BENCHHUB_HUB_PORT', '8081')}"
c.JupyterHub.db_url = f"sqlite:///{state_dir / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state_dir / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.pid_file = str(state_dir / "jupyterhub-proxy.pid")
chp = here / ".cache" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
if chp.exists() and not shutil.which("configurable-http-proxy"):
    c.ConfigurableHTTPProxy.command = [str(chp)]

# --- who can log in ------------------------------------------------------------------------------
# The built-in shared-password authenticator: every user name with the shared password (>= 8
# characters), admins (BENCHHUB_ADMINS, default "admin") only with the admin password: the
# one in BENCHHUB_ADMIN_PASSWORD, else the one generated on the first run and kept in
# <state dir>/admin-password (mode 0600; `make run` prints it). Replace with your site's
# authenticator.
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ.get("BENCHHUB_PASSWORD", "benchhub-user")
c.SharedPasswordAuthenticator.admin_password = admin_password(state_dir).password
c.Authenticator.admin_users = admin_names()
c.Authenticator.allow_all = True

# --- workspaces ----------------------------------------------------------------------------------
c.JupyterHub.spawner_class = "bench"
c.JupyterHub.allow_named_servers = True
c.JupyterHub.default_server_name = "workspace"
c.JupyterHub.named_server_limit_per_user = int(os.environ.get("BENCHHUB_WORKSPACES_PER_USER", "0"))
c.JupyterHub.template_paths = [str(here / "bench_spawner" / "templates")]
c.JupyterHub.cleanup_servers = False  # workspaces keep running across hub restarts
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 60
c.Spawner.default_url = "/lab"
c.BenchSpawner.storage_root = os.environ.get(
    "BENCHHUB_STORAGE_ROOT", "/var/lib/benchhub/workspaces"
)
# c.BenchSpawner.resource_models = {"standard-small": {"cpus": 2, "memory_gb": 8}, ...}
# The image templates users pick a workspace from (docs/templates.md): the image, as
# images/build.sh names it (the same BENCHHUB_*_IMAGE variables; `make images-all` builds them),
# the app it opens (JupyterLab unless "app" says otherwise: any web app, as VS Code here) and the
# resource model choosing it preselects. A site's own template (RStudio, say) is one more entry.
c.BenchSpawner.image_templates = {
    "jupyterlab": {
        "image": os.environ.get("BENCHHUB_JUPYTERLAB_IMAGE", "benchhub/jupyterlab:latest"),
        "display_name": "JupyterLab",
        "description": "JupyterLab with Python, the PySpark kernels and the Grid Engine client; "
        "install what you need with pip or apt-get.",
        "version": "JupyterLab 4, Python 3.11",
        "resource_model": "standard-small",
    },
    "datascience": {
        "image": os.environ.get("BENCHHUB_DATASCIENCE_IMAGE", "benchhub/datascience:latest"),
        "display_name": "Data science (Python)",
        "description": "JupyterLab with pandas, scikit-learn, statsmodels, seaborn, altair, "
        "plotly, ipywidgets, jupytext, itables, jupyterlab-git and real-time collaboration.",
        "version": "pandas 3, scikit-learn 1.9, Python 3.11",
        "resource_model": "standard-small",
    },
    "r": {
        "image": os.environ.get("BENCHHUB_R_IMAGE", "benchhub/r:latest"),
        "display_name": "R",
        "description": "JupyterLab with an R kernel, ggplot2, dplyr, data.table and the "
        "tidyverse's core packages; install.packages() keeps packages in your home.",
        "version": "R 4.2 (Debian 12)",
        "resource_model": "standard-small",
    },
    "vscode": {
        "image": os.environ.get("BENCHHUB_VSCODE_IMAGE", "benchhub/vscode:latest"),
        "display_name": "VS Code",
        "description": "Visual Studio Code in the browser (code-server), opened on /data; "
        "extensions and settings are kept in your home.",
        "version": "code-server " + os.environ.get("BENCHHUB_CODE_SERVER_VERSION", "4.117.0"),
        "resource_model": "standard-small",
        # code-server without a login of its own on the container's loopback: the hub's login
        # in front of the server's proxy is the only way in (docs/templates.md);
        # bench-code-server adds the workspace's upload and download rights
        "app": {
            "command": [
                "bench-code-server",
                "--auth=none",
                "--bind-addr=127.0.0.1:{port}",
                "--disable-telemetry",
                "--disable-update-check",
                "--disable-workspace-trust",
                "/data",
            ],
            "port": 13777,
        },
    },
}
# c.BenchSpawner.storage_min_gb, storage_max_gb, default_storage_gb = 1, 16384, 10

# --- names of what BenchHub creates in Docker (BENCHHUB_PREFIX keeps several hubs apart) ---------
prefix = os.environ.get("BENCHHUB_PREFIX", "bench")
c.BenchSpawner.prefix = prefix
c.BenchSpawner.open_network = f"{prefix}-open"
c.BenchSpawner.restricted_network = f"{prefix}-restricted"
c.BenchSpawner.restricted_subnet = os.environ.get("BENCHHUB_RESTRICTED_SUBNET", "10.213.0.0/16")

# --- storage: admission of volumes, limits of containers' own files (docs/configuration.md) -----
# Workspace /data volumes and cluster members' /scratch are sparse images, admitted by their full
# size: all of them together may not exceed the capacity (BENCHHUB_STORAGE_CAPACITY_GB; 0 = what
# their filesystem can hold: the space available plus what the images occupy, less
# BENCHHUB_STORAGE_RESERVE_PERCENT of its size) times BENCHHUB_STORAGE_OVERCOMMIT, and one user's
# not BENCHHUB_STORAGE_USER_QUOTA (GB, or a share such as "50%"; "" = none). The hub and the
# clusters service count the same roots and share one lock file in them.
clusters_scratch = os.environ.get(
    "BENCHHUB_CLUSTER_SCRATCH_ROOT", "/var/lib/benchhub/cluster-scratch"
)
# Each project's shared data (/data/project, docs/projects.md) is a volume like /data, admitted
# against the same capacity under <state dir>/projects (BENCHHUB_PROJECT_STORAGE_ROOT).
c.BenchSpawner.project_storage_root = os.environ.get(
    "BENCHHUB_PROJECT_STORAGE_ROOT", str(state_dir / "projects")
)
storage_admission = {
    "volume_roots": [
        c.BenchSpawner.storage_root,
        clusters_scratch,
        c.BenchSpawner.project_storage_root,
    ],
    "capacity_gb": float(os.environ.get("BENCHHUB_STORAGE_CAPACITY_GB", "0")),
    "overcommit": float(os.environ.get("BENCHHUB_STORAGE_OVERCOMMIT", "1")),
    "reserve_percent": float(os.environ.get("BENCHHUB_STORAGE_RESERVE_PERCENT", "5")),
    "user_quota": os.environ.get("BENCHHUB_STORAGE_USER_QUOTA", "50%"),
}
for setting, value in storage_admission.items():
    setattr(c.StorageAdmission, setting, value)
# Limits per user and per group (docs/operations.md, "Quotas"): running workspaces, CPUs, memory,
# GPUs, storage. Set c.BenchQuotas.user_limits = {"*": {...}, "alice": {...}} and group_limits;
# admins change them by REST (/hub/api/bench/quotas/...): users' in this file, groups' in the hub's
# database. A user's max_storage_gb replaces StorageAdmission.user_quota for that user.
c.BenchQuotas.users_file = str(state_dir / "quotas-users.json")
# A container's own files (home, /tmp, installed packages: its writable layer) are limited by its
# resource model's "disk_gb" (default 20 GB): the hub measures them and stops a workspace that
# passed it (reason "disk limit"; the stop takes its checkpoint), the clusters service replaces
# such a member. How often: c.WritableLayerWatch.min_interval (1 s near the limit), max_interval.
# c.BenchSpawner.resource_models = {"standard-small": {"cpus": 2, "memory_gb": 8, "disk_gb": 20}}

# --- restricted workspaces: the egress proxy and its service --------------------------------------
# A restricted workspace's only way out is a squid container that allows its own whitelist. The
# egress service owns that container; the spawner records each restricted workspace's address
# and whitelist in the shared state directory and waits until the proxy has loaded it.
egress_dir = os.environ.get("BENCHHUB_EGRESS_DIR", "/var/lib/benchhub/egress")
egress_forbidden = json.loads(os.environ.get("BENCHHUB_EGRESS_FORBIDDEN", "null"))
if egress_forbidden is None:  # private ranges: a whitelisted name may not point into the site
    egress_forbidden = list(FORBIDDEN_DESTINATIONS)
c.BenchSpawner.egress_config_dir = egress_dir
c.BenchSpawner.egress_container = f"{prefix}-egress"
hub_service(
    "egress",
    int(os.environ.get("BENCHHUB_EGRESS_PORT", "10101")),
    [
        sys.executable,
        "-m",
        "hub_services.egress",
        f"--config-dir={egress_dir}",
        f"--container={prefix}-egress",
        f"--image={os.environ.get('BENCHHUB_EGRESS_IMAGE', 'benchhub/egress:latest')}",
        f"--outside-network={prefix}-egress-out",
        f"--restricted-network={prefix}-restricted",
        f"--mtu={host_mtu()}",
        f"--forbidden={json.dumps(egress_forbidden)}",
        f"--interval={os.environ.get('BENCHHUB_EGRESS_INTERVAL', '10')}",
    ],
    # which workspaces run, to drop the records of those that stopped behind its back
    ["list:users", "read:users", "read:servers"],
)

# --- the lifecycle service: automatic shutdown, 30-day restart, reminders, activity log ---------
# Times are seconds; BENCHHUB_LIFECYCLE_HOUR shortens the "hour" of the workspace options for
# demos and tests. Reminders are mailed when BENCHHUB_SMTP_HOST is set (the home page shows them).
activity_journal = state_dir / "activity.jsonl"
lifecycle_db = os.environ.get("BENCHHUB_LIFECYCLE_DB", f"sqlite:///{state_dir}/lifecycle.sqlite")
c.BenchSpawner.activity_journal = str(activity_journal)
lifecycle_command = [
    sys.executable,
    "-m",
    "hub_services.lifecycle",
    f"--db-url={lifecycle_db}",
    f"--journal={activity_journal}",
    f"--interval={os.environ.get('BENCHHUB_LIFECYCLE_INTERVAL', '60')}",
    f"--hour={os.environ.get('BENCHHUB_LIFECYCLE_HOUR', '3600')}",
    f"--restart-every={os.environ.get('BENCHHUB_LIFECYCLE_RESTART_EVERY', str(30 * 86400))}",
    f"--not-accessed-limit={os.environ.get('BENCHHUB_LIFECYCLE_NOT_ACCESSED', str(7 * 86400))}",
    f"--idle-window={os.environ.get('BENCHHUB_LIFECYCLE_IDLE_WINDOW', '300')}",
    f"--idle-cpu-share={os.environ.get('BENCHHUB_LIFECYCLE_IDLE_CPU_SHARE', '0.05')}",
    f"--hub-url={c.JupyterHub.bind_url}",
    f"--prefix={prefix}",
    # the usage ledger (docs/operations.md, "Usage accounting"): reconciled with the engine
    # this often; its rates (c.UsageRates) in the file BENCHHUB_LIFECYCLE_CONFIG names
    f"--usage-interval={os.environ.get('BENCHHUB_LIFECYCLE_INTERVAL', '60')}",
]
if os.environ.get("BENCHHUB_LIFECYCLE_CONFIG"):
    lifecycle_command.append(f"--config={os.environ['BENCHHUB_LIFECYCLE_CONFIG']}")
if os.environ.get("BENCHHUB_SMTP_HOST"):
    lifecycle_command += [
        "--smtp",
        f"--smtp-host={os.environ['BENCHHUB_SMTP_HOST']}",
        f"--smtp-port={os.environ.get('BENCHHUB_SMTP_PORT', '25')}",
        f"--smtp-sender={os.environ.get('BENCHHUB_SMTP_SENDER', 'benchhub@localhost')}",
        f"--smtp-to={os.environ.get('BENCHHUB_SMTP_TO', '{user}@localhost')}",
    ]
hub_service(
    "lifecycle",
    int(os.environ.get("BENCHHUB_LIFECYCLE_PORT", "10102")),
    lifecycle_command,
    # stop and start workspaces (servers), read their options and activity. No access:servers:
    # it asks a workspace's Jupyter server about kernels with that server's own token, since
    # no credential worth more than one workspace may travel to a workspace (docs/security.md)
    ["list:users", "read:users", "read:servers", "servers"],
)
# The Usage page (usage per day, the table, CSV) has its own entry in the Services menu: a
# service "usage" at the lifecycle service's URL, which sends /services/usage/ to its page.
c.JupyterHub.services.append(
    {
        "name": "usage",
        "display": True,
        "url": next(s["url"] for s in c.JupyterHub.services if s["name"] == "lifecycle"),
    }
)
c.JupyterHub.load_roles[0]["scopes"].append("access:services!service=usage")
# Monthly budgets (c.BenchQuotas ... "monthly_budget", docs/operations.md): for a user with one,
# the hub asks the usage API above for their spend this month with the token of "budget-reader"
# (kept in <state dir>/budget-reader-token): seeing any user's usage (read:servers) on this
# service only. If the lifecycle service cannot answer, such a user's starts are refused (503).
budget_reader_token = reader_token(state_dir)
c.JupyterHub.services.append({"name": "budget-reader", "api_token": budget_reader_token})
c.JupyterHub.load_roles.append(
    {
        "name": "budget-reader",
        "services": ["budget-reader"],
        "scopes": ["read:servers", "access:services!service=lifecycle"],
    }
)
# The service serves under the hub's base URL (JUPYTERHUB_SERVICE_PREFIX), which is the path of
# BENCHHUB_URL when a site mounts the hub below "/".
hub_base_path = urlparse(c.JupyterHub.bind_url).path.rstrip("/")
c.BenchQuotas.spend_url = (
    next(s["url"] for s in c.JupyterHub.services if s["name"] == "lifecycle")
    + f"{hub_base_path}/services/lifecycle/api/usage"
)
c.BenchQuotas.spend_token = budget_reader_token

# --- checkpoints: on every stop and every 5 minutes while running; restored on start -------------
# A checkpoint is what a workspace changed in its container's filesystem (packages, home
# directory, configuration; not /data). The store is a local directory (BENCHHUB_CHECKPOINT_DIR)
# unless BENCHHUB_CHECKPOINT_S3_BUCKET is set: then an S3 bucket (any S3-compatible service via
# BENCHHUB_CHECKPOINT_S3_ENDPOINT; credentials from the AWS_* variables or boto3's usual chain).
# Give each hub its own directory or bucket prefix: the service deletes the checkpoints of
# workspaces it cannot find under its storage root.
checkpoint_dir = os.environ.get("BENCHHUB_CHECKPOINT_DIR", str(state_dir / "checkpoints"))
checkpoint_s3 = {
    key: os.environ.get(f"BENCHHUB_CHECKPOINT_S3_{key.upper()}", "")
    for key in ("bucket", "prefix", "endpoint")
}
if checkpoint_s3["bucket"]:
    c.CheckpointStore.backend_class = "benchhub.checkpoints.backends.S3Backend"
    c.S3Backend.bucket = checkpoint_s3["bucket"]
    c.S3Backend.prefix = checkpoint_s3["prefix"]
    c.S3Backend.endpoint_url = checkpoint_s3["endpoint"] or None
else:
    c.LocalDirectoryBackend.root = checkpoint_dir
checkpoint_keep = int(os.environ.get("BENCHHUB_CHECKPOINT_KEEP", "30"))
c.BenchSpawner.checkpoint_keep_automatic = checkpoint_keep
# c.BenchSpawner.checkpoints_enabled = False   # on by default when the hub runs as root
# c.BenchSpawner.checkpoint_exclude = ["/data", "/scratch"]
# The service takes a checkpoint of each running workspace every BENCHHUB_CHECKPOINT_INTERVAL
# seconds, serves the API and the page (Services menu), and deletes deleted workspaces'
# checkpoints (after BENCHHUB_CHECKPOINT_ORPHAN_GRACE seconds) and unreferenced chunks. What one
# user's named checkpoints may keep in the store (the stored bytes of the distinct chunks they
# reference): BENCHHUB_CHECKPOINT_NAMED_QUOTA_GB (0 = no quota).
checkpoints_command = [
    sys.executable,
    "-m",
    "hub_services.checkpoints",
    f"--interval={os.environ.get('BENCHHUB_CHECKPOINT_INTERVAL', '300')}",
    f"--tick={os.environ.get('BENCHHUB_CHECKPOINT_TICK', '10')}",
    f"--gc-interval={os.environ.get('BENCHHUB_CHECKPOINT_GC_INTERVAL', str(6 * 3600))}",
    f"--orphan-grace={os.environ.get('BENCHHUB_CHECKPOINT_ORPHAN_GRACE', '86400')}",
    f"--keep={checkpoint_keep}",
    f"--prefix={prefix}",
    f"--storage-root={c.BenchSpawner.storage_root}",
    "--CheckpointService.named_quota_gb="
    + os.environ.get("BENCHHUB_CHECKPOINT_NAMED_QUOTA_GB", "20"),
]
if checkpoint_s3["bucket"]:
    checkpoints_command += [
        "--backend=benchhub.checkpoints.backends.S3Backend",
        f"--s3-bucket={checkpoint_s3['bucket']}",
        f"--s3-prefix={checkpoint_s3['prefix']}",
    ] + ([f"--s3-endpoint={checkpoint_s3['endpoint']}"] if checkpoint_s3["endpoint"] else [])
else:
    checkpoints_command.append(f"--store-dir={checkpoint_dir}")
hub_service(
    "checkpoints",
    int(os.environ.get("BENCHHUB_CHECKPOINTS_PORT", "10103")),
    checkpoints_command,
    # read workspaces' options, create and start a workspace for "start as new", set the option
    # that chooses the checkpoint a stopped workspace's next start restores; list users to find
    # a project's workspaces
    ["list:users", "read:users", "read:servers", "start:servers"],
    # hub services get a clean environment: pass S3 credentials on explicitly
    environment={k: v for k, v in os.environ.items() if k.startswith("AWS_")},
)

# --- clusters: Grid Engine clusters attached to workspaces (hub_services/clusters) -------------
# A workspace's owner (or an admin) starts a static or autoscaled cluster from the Services menu or
# POST /services/clusters/api/clusters/<user>/<workspace>; see docs/clusters.md. Each cluster gets
# its own subnet of BENCHHUB_CLUSTER_SUBNETS (must not overlap the site's networks). Times are
# seconds; BENCHHUB_CLUSTER_MIN_LIFETIME and _STABILISATION shorten the auto scaler's pacing for
# demos and tests (ICA Bench: members live at least 300 s). Members' /scratch is admitted like
# workspace volumes (the storage settings above).
hub_service(
    "clusters",
    int(os.environ.get("BENCHHUB_CLUSTERS_PORT", "10104")),
    [
        sys.executable,
        "-m",
        "hub_services.clusters",
        f"--prefix={prefix}",
        f"--state-dir={os.environ.get('BENCHHUB_CLUSTER_STATE_DIR', state_dir / 'clusters')}",
        f"--scratch-root={clusters_scratch}",
        f"--image={os.environ.get('BENCHHUB_CLUSTER_IMAGE', 'benchhub/cluster:latest')}",
        f"--subnet-pool={os.environ.get('BENCHHUB_CLUSTER_SUBNETS', '10.231.0.0/16')}",
        f"--interval={os.environ.get('BENCHHUB_CLUSTER_INTERVAL', '5')}",
        f"--stabilisation={os.environ.get('BENCHHUB_CLUSTER_STABILISATION', '60')}",
        f"--min-lifetime={os.environ.get('BENCHHUB_CLUSTER_MIN_LIFETIME', '300')}",
        f"--watch-new-jobs={os.environ.get('BENCHHUB_CLUSTER_WATCH_NEW_JOBS', 'True')}",
        f"--mtu={host_mtu()}",
        "--log-level=INFO",
        *(
            f"--StorageAdmission.{setting}={item}"
            for setting, value in storage_admission.items()
            for item in (value if isinstance(value, list) else [value])
        ),
    ],
    # which workspaces run (list users, read their servers) and the resource-model catalog
    ["list:users", "read:users", "read:servers"],
)

# --- fast mounts: project data mounted into running workspaces (hub_services/mounts) -----------
# `workspace-ctl data create-mount` in a workspace (docs/mounts.md) calls the mounts service with
# the workspace's own server token, through the hub's API port (the only host port workspaces
# reach, restricted ones too): the hub relays /hub/api/bench/mounts/... to the service, adding no
# credential. The server role gains access to this one service; the service accepts a server
# token only for its own workspace. It runs as root (it joins containers' mount namespaces).
mounts_port = int(os.environ.get("BENCHHUB_MOUNTS_PORT", "10105"))
hub_service(
    "mounts",
    mounts_port,
    [
        sys.executable,
        "-m",
        "hub_services.mounts",
        f"--prefix={prefix}",
        f"--interval={os.environ.get('BENCHHUB_MOUNTS_INTERVAL', '5')}",
    ],
    # a workspace's options (its project and permissions) and its project's group, to check
    # the caller's standing again at each mount
    ["read:users", "read:servers", "read:groups"],
)
c.JupyterHub.load_roles.append(
    {
        "name": "server",
        "scopes": [
            "users:activity!user",
            "access:servers!server",
            "access:services!service=mounts",
        ],
    }
)
c.JupyterHub.extra_handlers = [relay_route(mounts_port)]

# --- monitoring: Prometheus metrics on /hub/metrics and /services/<name>/metrics (docs/metrics.md)
# Reading them takes a token with the scope read:metrics (admins have it). With
# BENCHHUB_METRICS_TOKEN set, a hub service "prometheus" holds that token and nothing else:
# Prometheus sends it (Authorization: Bearer <token>) to the hub and to every BenchHub service.
if os.environ.get("BENCHHUB_METRICS_TOKEN"):
    c.JupyterHub.services.append(
        {"name": "prometheus", "api_token": os.environ["BENCHHUB_METRICS_TOKEN"]}
    )
    c.JupyterHub.load_roles.append(
        {"name": "metrics-reader", "services": ["prometheus"], "scopes": ["read:metrics"]}
    )

# --- BenchHub's handlers, and the configuration checked ------------------------------------------
# BenchHub's refinements of JupyterHub's server API and spawn page (names, validation, delete);
# the hub does not start, and says why, with a JupyterHub whose internals they cannot rely on.
register_handlers()
# A resource model, image template, storage range or default the spawner cannot work with stops
# the hub here, with a sentence naming the setting and how to fix it. (A configuration layered
# on top of this file is checked the same way whenever a spawner is made.)
BenchSpawner.check_config(c)
BenchQuotas(config=c)  # so does a limit in c.BenchQuotas that is not a limit (docs/operations.md)
