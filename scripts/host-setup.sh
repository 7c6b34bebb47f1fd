#!/usr/bin/env bash
# Prepare a Debian 12 host for BenchHub: system packages and a running Docker daemon.
# Idempotent. Usage: scripts/host-setup.sh [--test]   (--test adds chromium for browser tests)
set -euo pipefail

say() { printf '==> %s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

pkgs=(docker.io debootstrap e2fsprogs util-linux python3-venv nodejs npm curl ca-certificates)
for arg in "$@"; do
  case "$arg" in
    --test) pkgs+=(chromium chromium-driver) ;;
    -h|--help) sed -n '2,3p' "$0"; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

# A package also counts as present when its command comes from elsewhere (docker-ce, nodesource nodejs+npm).
declare -A provides=([docker.io]=dockerd [nodejs]=node [npm]=npm [chromium]=chromium [chromium-driver]=chromedriver)
say "Checking Debian packages: ${pkgs[*]}"
missing=()
for p in "${pkgs[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$st" == installed ]] && continue
  [[ -n "${provides[$p]:-}" ]] && command -v "${provides[$p]}" >/dev/null 2>&1 && continue
  missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  say "All packages present"
elif ((EUID == 0)); then
  say "Installing missing packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "Missing packages (not root, not installing): ${missing[*]}"
  say "Ask an administrator to run: apt-get install ${missing[*]}"
fi

# Root in a workspace must not be root on the host: BenchHub's engine remaps container uids
# into a subordinate range (Docker's userns-remap, docs/security.md). An engine restart must not
# stop the workspaces: live-restore keeps containers running while dockerd is down (docs/
# operations.md). Both are merged into daemon.json; the site's other settings are kept.
daemon_json=/etc/docker/daemon.json
if ((EUID == 0)); then
  mkdir -p /etc/docker
  python3 - "$daemon_json" <<'PY'
import json, os, sys
path = sys.argv[1]
config = json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
wanted = {"userns-remap": "default", "live-restore": True}
missing = {key: value for key, value in wanted.items() if key not in config}
if missing:
    config.update(missing)
    with open(path + ".tmp", "w") as f:
        json.dump(config, f, indent=2)
    os.replace(path + ".tmp", path)
    for key, value in missing.items():
        print(f"==> daemon.json: {key}={json.dumps(value)}")
PY
fi

if docker info >/dev/null 2>&1; then
  if docker info --format '{{json .SecurityOptions}}' | grep -q 'name=userns'; then
    say "Docker daemon is running (user namespaces remapped)"
  else
    say "WARNING: the running Docker daemon does not remap user namespaces; workspaces get no root"
    say "  (no apt-get) until it is restarted with $daemon_json (see docs/security.md)"
  fi
  if [[ "$(docker info --format '{{.LiveRestoreEnabled}}')" != "true" ]] && ((EUID == 0)); then
    # live-restore is one of the settings dockerd reloads on SIGHUP: no restart, nothing stops
    # the host engine's own pid: other dockerd processes (Docker-in-Docker nodes) may be visible
    if pid=$(cat /var/run/docker.pid 2>/dev/null) && kill -HUP "$pid"; then
      for _ in $(seq 1 20); do
        [[ "$(docker info --format '{{.LiveRestoreEnabled}}')" == "true" ]] && break
        sleep 0.5
      done
    fi
    if [[ "$(docker info --format '{{.LiveRestoreEnabled}}')" == "true" ]]; then
      say "Docker daemon reloaded: live-restore on (workspaces survive an engine restart)"
    else
      say "WARNING: live-restore is off: an engine restart stops every workspace (see $daemon_json)"
    fi
  fi
  exit 0
fi

if ((EUID != 0)); then
  command -v docker >/dev/null 2>&1 || die "docker is not installed; ask an administrator to install docker.io"
  die "docker is not usable: the daemon is not running or you are not in the 'docker' group (ask an admin; then log in again)"
fi

command -v dockerd >/dev/null 2>&1 || die "dockerd not found after installation"
log=/var/log/benchhub-dockerd.log
say "Starting dockerd (log: $log)"
# dockerd outlives this script: it must not keep descriptors it inherited (a caller's flock on a
# lock file would stay held for the daemon's whole life)
(
  for fd in $(seq 3 255); do eval "exec $fd>&-"; done
  exec setsid dockerd
) >"$log" 2>&1 </dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    say "Docker daemon is up"
    exit 0
  fi
  sleep 1
done
die "dockerd did not answer within 60 s; see $log"
