"""The image-template catalogue that ``jupyterhub_config.py`` ships, for the tests and the
benchmark that start the shipped templates (the test harness's own catalogue replaces it).

Read by loading the configuration file the way JupyterHub does, in a child process with a
throw-away state directory: loading it has effects (it creates that directory and an admin
password in it, registers BenchHub's handlers) that belong to no test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_LOAD = """
import json, sys
from traitlets.config.loader import PyFileConfigLoader
config = PyFileConfigLoader("jupyterhub_config.py", path=sys.argv[1]).load_config()
json.dump(
    {"image_templates": config.BenchSpawner.image_templates,
     "default_image_template": config.BenchSpawner.get("default_image_template", "jupyterlab")},
    sys.stdout,
)
"""


def shipped_catalogue() -> dict:
    """``{"image_templates": {...}, "default_image_template": key}`` as the shipped
    configuration sets them (with this environment's ``BENCHHUB_*_IMAGE`` variables)."""
    with tempfile.TemporaryDirectory(prefix="benchhub-catalogue-") as state:
        env = {**os.environ, "BENCHHUB_STATE_DIR": state}
        out = subprocess.run(
            [sys.executable, "-c", _LOAD, str(REPO)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    return json.loads(out.stdout)
