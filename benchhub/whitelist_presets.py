"""Whitelist presets, derived from how a workspace image's tools are configured.

The seeds' data-science whitelist names the package indexes that pip, conda, R and npm use.
A site that runs its own mirrors configures its tools to use them, so the preset's package
entries are read from the image's tool configuration at run time (pip's configured index, or
pip's own built-in default index and its files host; npm's registry; conda's channels; R's
repos) and never written into BenchHub. ``github.com`` (source code, not a package index)
completes the list as in the seeds.

:func:`data_science_preset` is pure; :func:`probe_image` runs a short-lived, network-less
container of the image to read the settings.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from benchhub.whitelist import parse_whitelist

CODE_HOSTS = ("github.com",)

# Runs inside the image (python3 is there: the single-user server needs it).
PROBE = r"""
import json, shutil, subprocess
def run(*argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:
        return ""
out = {"pip": [], "npm": [], "conda": [], "r": []}
cfg = run("pip", "config", "list")
for line in cfg.splitlines():
    key, _, value = line.partition("=")
    if key.endswith(("index-url", "extra-index-url")):
        out["pip"] += value.strip().strip("'\"").split()
if not out["pip"]:
    try:
        from pip._internal.models.index import PyPI
        out["pip"] = [PyPI.url, "https://" + PyPI.file_storage_domain + "/"]
    except Exception:
        pass
if shutil.which("npm"):
    out["npm"] = [run("npm", "config", "get", "registry")]
if shutil.which("conda"):
    try:
        info = json.loads(run("conda", "config", "--show", "channels", "channel_alias", "--json"))
        alias = info.get("channel_alias", "")
        out["conda"] = [c if "://" in c else alias for c in info.get("channels", [])]
    except Exception:
        pass
if shutil.which("Rscript"):
    out["r"] = run("Rscript", "-e", "cat(getOption('repos'), sep='\n')").split()
print(json.dumps(out))
"""


def _host(url: str) -> str | None:
    host = urlsplit(url if "://" in url else f"https://{url}").hostname
    return host.lower() if host else None


def data_science_preset(settings: dict[str, list[str]]) -> list[str]:
    """Whitelist lines: the hosts of every configured index (as far as the whitelist rules
    accept them), then the code hosts; no repeats."""
    hosts = []
    for tool in ("pip", "conda", "r", "npm"):
        for url in settings.get(tool, []):
            host = _host(url)
            # only names the whitelist rules accept (an index at a bare IP address cannot be
            # whitelisted: the proxy matches names)
            if host and host not in hosts and not parse_whitelist(host)[1]:
                hosts.append(host)
    return hosts + [h for h in CODE_HOSTS if h not in hosts]


def parse_probe_output(text: str) -> dict[str, list[str]]:
    """The probe's JSON, or empty settings when it printed nothing usable."""
    try:
        data = json.loads(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}
    return {k: [v for v in data.get(k, []) if isinstance(v, str) and v] for k in data}


def probe_image(client, image: str) -> dict[str, list[str]]:
    """Read the tools' index settings from ``image`` (blocking; run it in a thread)."""
    out = client.containers.run(
        image,
        ["python3", "-c", PROBE],
        entrypoint=[],
        network_mode="none",
        remove=True,
        stdout=True,
        stderr=False,
    )
    return parse_probe_output(out.decode(errors="replace"))
