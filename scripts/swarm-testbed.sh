#!/usr/bin/env bash
# The test swarm: three Docker-in-Docker engines on this machine (docs/swarm.md).
# Usage: scripts/swarm-testbed.sh up|down|status|env|registry
#   up      make what is missing (idempotent): the network, a manager and two workers, the
#           swarm, and the workspace images loaded into the workers; prints the env lines
#   registry  (after up) a site registry for the nodes, Debian's docker-registry on one storage:
#           read-only in benchswarm-registry at REGISTRY_IP:5000 on the nodes' network (every
#           node lists it in insecure-registries), writable in benchswarm-registry-push at
#           127.0.0.1:PORT on this host only (the engine trusts loopback registries without
#           TLS); prints BENCHHUB_REGISTRY (push address, for images/build.sh) and
#           BENCHHUB_SWARM_REGISTRY (the nodes' address)
#   down    remove every benchswarm-* container, volume and network (idempotent)
#   status  the nodes as the manager sees them, and the images each worker holds
#   env     BENCHHUB_SWARM_DOCKER_HOST=... (the manager's engine API, for the hub on this host)
# Env:   BENCHHUB_SWARM_NODE_IMAGE  (default benchhub/swarm-node:latest; images/build.sh swarm-node)
#        BENCHHUB_SWARM_IMAGES      (default benchhub/jupyterlab:latest; space-separated, loaded
#                                    into every worker by `docker save | docker load`)
#        BENCHHUB_SWARM_MANAGER_IMAGES (default benchhub/egress:latest; loaded into the manager,
#                                    which runs the egress proxy of restricted workspaces)
#        BENCHHUB_SWARM_SHARED_DIR  (default /tmp/benchswarm-shared; this host's directory the
#                                    manager sees at the same path: the hub runs on a manager,
#                                    so the egress proxy bind-mounts the hub's egress state)
#        BENCHHUB_SWARM_SUBNET      (default 192.168.250.0/24; the nodes' bridge network)
#        BENCHHUB_SWARM_REGISTRY_PORT (default 5000; the registry's port on this host's loopback)
#
# Why Docker-in-Docker: the host engine runs with live-restore, which Docker refuses in swarm
# mode, so it never joins. Each node is a container that runs its own dockerd (privileged is
# refused on this kind of machine, "unable to apply caps", so: all capabilities but
# SYS_RESOURCE, no seccomp/AppArmor, the host's cgroups), with --userns=host because the host
# engine remaps user namespaces, and /var/lib/docker on a volume (overlay2 cannot sit on the
# container's own overlay root). Only the manager serves its engine API on TCP, to the
# network's gateway (this host) alone.
set -euo pipefail

NODE_IMAGE=${BENCHHUB_SWARM_NODE_IMAGE:-benchhub/swarm-node:latest}
IMAGES=${BENCHHUB_SWARM_IMAGES:-benchhub/jupyterlab:latest}
MANAGER_IMAGES=${BENCHHUB_SWARM_MANAGER_IMAGES:-benchhub/egress:latest}
SHARED=${BENCHHUB_SWARM_SHARED_DIR:-/tmp/benchswarm-shared}
SUBNET=${BENCHHUB_SWARM_SUBNET:-192.168.250.0/24}
NET=benchswarm-net
MANAGER=benchswarm-manager
WORKERS=(benchswarm-worker-1 benchswarm-worker-2)
LABEL=org.benchhub.testbed=swarm
REGISTRY=benchswarm-registry
REGISTRY_PUSH=benchswarm-registry-push
REGISTRY_HOST_PORT=${BENCHHUB_SWARM_REGISTRY_PORT:-5000}

say() { printf '==> %s\n' "$*"; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# address N: the Nth address of the subnet (a /24 or larger, given by its network address)
address() { local base=${SUBNET%/*}; printf '%s.%s\n' "${base%.*}" "$1"; }
GATEWAY=$(address 1)
manager_ip() { address 10; }
worker_ip() { address $((11 + $1)); }
registry_ip() { address 5; }
registry_address() { echo "$(registry_ip):5000"; }  # as the nodes reach it

# the MTU of the host's default route: Docker's bridges default to 1500, which stalls large
# transfers where the host has less (1400 on the development machine)
host_mtu() {
  local dev
  dev=$(ip route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')
  cat "/sys/class/net/${dev:-eth0}/mtu" 2>/dev/null || echo 1500
}

running() { [[ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" == true ]]; }
on() { local node=$1; shift; docker exec "$node" docker "$@"; }

ensure_network() {
  docker network inspect "$NET" >/dev/null 2>&1 && return
  say "network $NET ($SUBNET)"
  docker network create --driver bridge --subnet "$SUBNET" --gateway "$GATEWAY" \
    --opt "com.docker.network.driver.mtu=$(host_mtu)" --label "$LABEL" "$NET" >/dev/null
}

# ensure_node NAME ADDRESS [NODE-ARGS...]: the node container runs (wait_engine waits for
# its engine)
ensure_node() {
  local name=$1 ip=$2 mtu mounts=()
  shift 2
  mtu=$(host_mtu)
  if [[ "$name" == "$MANAGER" ]]; then
    mkdir -p "$SHARED"
    mounts=(-v "$SHARED:$SHARED")
    if running "$name" && ! docker inspect -f '{{range .Mounts}}{{.Destination}} {{end}}' "$name" \
      | grep -qw "$SHARED"; then
      die "$name does not see $SHARED; remake the testbed: $0 down; $0 up"
    fi
  fi
  if ! running "$name"; then
    docker rm -f "$name" >/dev/null 2>&1 || true
    say "node $name ($ip)"
    docker run -d --name "$name" --hostname "$name" --label "$LABEL" \
      --network "$NET" --ip "$ip" --userns=host \
      --cap-add ALL --cap-drop SYS_RESOURCE \
      --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
      --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw \
      -v "$name-docker:/var/lib/docker" --tmpfs /run "${mounts[@]}" \
      "$NODE_IMAGE" "$@" --mtu "$mtu" --insecure-registry "$(registry_address)" >/dev/null
  fi
}

wait_engine() {
  local name=$1 i
  for ((i = 0; i < 600; i++)); do
    on "$name" info >/dev/null 2>&1 && return
    running "$name" || { docker logs --tail 20 "$name" >&2; die "node $name exited"; }
    sleep 0.1
  done
  docker logs --tail 20 "$name" >&2
  die "the engine in $name did not answer in 60 s"
}

swarm_state() { on "$1" info -f '{{.Swarm.LocalNodeState}}' 2>/dev/null || echo missing; }

ensure_swarm() {
  local worker token i
  if [[ "$(swarm_state "$MANAGER")" != active ]]; then
    say "swarm init on $MANAGER"
    on "$MANAGER" swarm init --advertise-addr "$(manager_ip)" >/dev/null
  fi
  token=$(on "$MANAGER" swarm join-token -q worker)
  for i in "${!WORKERS[@]}"; do
    worker=${WORKERS[$i]}
    [[ "$(swarm_state "$worker")" == active ]] && continue
    say "$worker joins"
    on "$worker" swarm join --advertise-addr "$(worker_ip "$i")" --token "$token" \
      "$(manager_ip):2377" >/dev/null
  done
  # a node that left (a worker made again from nothing) stays listed as down: forget it
  on "$MANAGER" node ls -q --filter role=worker | while read -r id; do
    if [[ "$(on "$MANAGER" node inspect -f '{{.Status.State}}' "$id")" == down ]]; then
      on "$MANAGER" node rm --force "$id" >/dev/null
    fi
  done
}

# ensure_images "IMAGES" NODE...: load the images into every node that lacks one: one
# `docker save`, fanned out to the nodes in parallel through a fifo each (measured against a
# site registry in docs/swarm.md)
ensure_images() {
  local images=$1 image worker missing fifo fifos pids dir start=$SECONDS
  shift
  dir=$(mktemp -d /tmp/benchswarm-load.XXXXXX)
  for image in $images; do
    docker image inspect "$image" >/dev/null 2>&1 || die "$image missing on this host (make images)"
    missing=()
    for worker in "$@"; do
      on "$worker" image inspect "$image" >/dev/null 2>&1 || missing+=("$worker")
    done
    ((${#missing[@]})) || continue
    say "loading $image into ${missing[*]}"
    fifos=() pids=()
    for worker in "${missing[@]:1}"; do
      fifo=$dir/$worker
      mkfifo "$fifo"
      docker exec -i "$worker" docker load -q <"$fifo" >/dev/null &
      fifos+=("$fifo") pids+=($!)
    done
    docker save "$image" | tee "${fifos[@]}" | docker exec -i "${missing[0]}" docker load -q >/dev/null
    ((${#pids[@]} == 0)) || wait "${pids[@]}"
    rm -f -- "${fifos[@]}"
    for worker in "${missing[@]}"; do
      on "$worker" image inspect "$image" >/dev/null 2>&1 || die "$image did not load into $worker"
    done
    say "$image loaded in $((SECONDS - start)) s"
  done
  rmdir -- "$dir"
}

print_env() {
  echo "BENCHHUB_SWARM_DOCKER_HOST=tcp://$(manager_ip):2375"
  echo "BENCHHUB_SWARM_SHARED_DIR=$SHARED"
}

# the site registry (only on request: `up` does not pay for it); the nodes made by `up` list
# it as insecure (plain HTTP), a testbed made before they did must be made again
registry() {
  local node i
  running "$MANAGER" || die "the test swarm is not up (run: $0 up)"
  for node in "$MANAGER" "${WORKERS[@]}"; do
    on "$node" info -f '{{range .RegistryConfig.IndexConfigs}}{{.Name}} {{end}}' \
      | grep -qw "$(registry_address)" \
      || die "$node does not list $(registry_address) as insecure; remake the testbed: $0 down; $0 up"
  done
  # read-only where the nodes (and so the workspaces, whose traffic leaves from their node's
  # address) reach it; writable only on this host's loopback, from the engine's default
  # bridge, which Docker keeps apart from the nodes' network
  if ! running "$REGISTRY"; then
    docker rm -f "$REGISTRY" >/dev/null 2>&1 || true
    say "registry $REGISTRY, read-only ($(registry_address))"
    docker run -d --name "$REGISTRY" --label "$LABEL" --network "$NET" --ip "$(registry_ip)" \
      -v "$REGISTRY-data:/var/lib/docker-registry" \
      --entrypoint docker-registry "$NODE_IMAGE" serve /etc/docker/registry/testbed.yml >/dev/null
  fi
  if ! running "$REGISTRY_PUSH"; then
    docker rm -f "$REGISTRY_PUSH" >/dev/null 2>&1 || true
    say "registry $REGISTRY_PUSH, writable (127.0.0.1:$REGISTRY_HOST_PORT on this host only)"
    docker run -d --name "$REGISTRY_PUSH" --label "$LABEL" --network bridge \
      -p "127.0.0.1:$REGISTRY_HOST_PORT:5000" -v "$REGISTRY-data:/var/lib/docker-registry" \
      -e 'REGISTRY_STORAGE_MAINTENANCE_READONLY={"enabled": false}' \
      --entrypoint docker-registry "$NODE_IMAGE" serve /etc/docker/registry/testbed.yml >/dev/null
  fi
  for ((i = 0; i < 100; i++)); do
    curl -fsS -o /dev/null "http://127.0.0.1:$REGISTRY_HOST_PORT/v2/" 2>/dev/null \
      && docker exec "$REGISTRY" bash -c 'exec 3<>/dev/tcp/127.0.0.1/5000' 2>/dev/null && break
    for name in "$REGISTRY" "$REGISTRY_PUSH"; do
      running "$name" || { docker logs --tail 20 "$name" >&2; die "$name exited"; }
    done
    sleep 0.1
  done
  ((i < 100)) || die "$REGISTRY or $REGISTRY_PUSH did not answer in 10 s"
  echo "BENCHHUB_REGISTRY=127.0.0.1:$REGISTRY_HOST_PORT"
  echo "BENCHHUB_SWARM_REGISTRY=$(registry_address)"
}

up() {
  local start=$SECONDS i
  docker image inspect "$NODE_IMAGE" >/dev/null 2>&1 \
    || die "$NODE_IMAGE missing (run: images/build.sh swarm-node)"
  ensure_network
  ensure_node "$MANAGER" "$(manager_ip)" --api-from "$GATEWAY"
  for i in "${!WORKERS[@]}"; do ensure_node "${WORKERS[$i]}" "$(worker_ip "$i")"; done
  wait_engine "$MANAGER"
  for i in "${!WORKERS[@]}"; do wait_engine "${WORKERS[$i]}"; done
  ensure_swarm
  ensure_images "$IMAGES" "${WORKERS[@]}"
  ensure_images "$MANAGER_IMAGES" "$MANAGER"
  say "test swarm up in $((SECONDS - start)) s"
  print_env
}

down() {
  local names
  names=$(docker ps -aq --filter "name=^benchswarm-")
  [[ -z "$names" ]] || docker rm -f -v $names >/dev/null
  names=$(docker volume ls -q --filter "name=^benchswarm-")
  [[ -z "$names" ]] || docker volume rm -f $names >/dev/null
  names=$(docker network ls -q --filter "name=^benchswarm-")
  [[ -z "$names" ]] || docker network rm $names >/dev/null
  rm -rf -- "$SHARED"  # the egress state of the hubs that ran on it
  say "test swarm down"
}

status() {
  local worker
  running "$MANAGER" || { echo "down"; return 0; }
  on "$MANAGER" node ls
  for worker in "${WORKERS[@]}"; do
    echo "--- $worker images:"
    on "$worker" image ls --format '{{.Repository}}:{{.Tag}}' 2>/dev/null || echo "(not running)"
  done
}

docker info >/dev/null 2>&1 || die "docker is not usable (run scripts/host-setup.sh)"
case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) print_env ;;
  registry) registry ;;
  *) die "usage: $0 up|down|status|env|registry" ;;
esac
