#!/usr/bin/env bash
# `make docker-test`: the four images built and run for real on this machine, which has no
# Docker engine running. A private dockerd (own data-root, socket, pidfile; no iptables,
# no bridge: the host firewall is untouched) builds the images from the release binaries
# (make dist) on a Debian bookworm base made here with mmdebstrap (no registry is
# reachable; the tarball is cached in .build/docker-base). Then the engine is restarted
# inside a network namespace this test makes (cydk-cloud), so "host network" means that
# namespace: docker-compose starts the AS, NMS and TRS from docker/compose.yaml there, the
# AS enrols two nodes, and two node containers (each in a namespace of its own, wired to
# the cloud by veth, with NET_ADMIN, NET_BIND_SERVICE and /dev/net/tun only) ping each
# other by name through their resolvers. Every container, image, the daemon and its
# data-root, and the namespaces are removed at the end, also on failure.
# Environment: DOCKER_TEST_KEEP_BASE=0 drops the cached base tarball too.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[ "$(id -u)" -eq 0 ] || { echo "docker-test skipped: needs root (dockerd, network namespaces)"; exit 0; }
for tool in /usr/sbin/dockerd /usr/bin/docker mmdebstrap docker-compose; do
  command -v "$tool" >/dev/null || { echo "docker-test: $tool missing (make docker-test installs docker.io mmdebstrap docker-compose)" >&2; exit 1; }
done
for p in as-server nms-server trs-relay cyphonic-node; do
  [ -x ".build/dist/$p/bin/$p" ] || { echo "docker-test: .build/dist/$p missing (make dist)" >&2; exit 1; }
done

if ip netns list | grep -qw "cydk-cloud"; then
  echo "docker-test: namespace cydk-cloud exists (another docker-test running, or one that was killed -9: ip netns del cydk-cloud)" >&2
  exit 1
fi
W=$(mktemp -d /tmp/cydk.XXXXXX)   # short: unix socket paths under it must stay < 108 bytes
SOCK=$W/docker.sock
export DOCKER_HOST=unix://$SOCK
D=(/usr/bin/docker)                # Debian's CLI: the docker first on PATH may lack the classic builder
BASE_TAR=$ROOT/.build/docker-base/bookworm-minbase.tar
BASE_IMAGE=cydk/debian:bookworm
NS_CLOUD=cydk-cloud
NS_MADE=""
NODES=(node1 node2)
START=$SECONDS
log() { printf '[docker-test %3ds] %s\n' $((SECONDS - START)) "$*"; }

stop_daemon() {
  [ -s "$W/dockerd.pid" ] || return 0
  local pid; pid=$(cat "$W/dockerd.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$W/dockerd.pid"
  # A daemon that had to be killed leaves its containerd and shims: they all run under $W.
  for _ in $(seq 1 50); do pgrep -f "$W" >/dev/null || break; pkill -KILL -f "$W" 2>/dev/null; sleep 0.1; done
  return 0
}

cleanup() {
  local rc=$?
  set +e
  if [ -S "$SOCK" ] && "${D[@]}" info >/dev/null 2>&1; then
    "${D[@]}" ps -aq | xargs -r "${D[@]}" rm -f >/dev/null 2>&1
    "${D[@]}" images -q | sort -u | xargs -r "${D[@]}" rmi -f >/dev/null 2>&1
    "${D[@]}" volume ls -q | xargs -r "${D[@]}" volume rm -f >/dev/null 2>&1
  fi
  stop_daemon
  # Mounts a killed daemon may leave under its data-root.
  grep -o " $W[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null
  [ -n "$NS_MADE" ] && ip netns del "$NS_MADE" 2>/dev/null   # with it the bridge and the nodes' veth ends
  rm -rf "$W"
  [ "${DOCKER_TEST_KEEP_BASE:-1}" = 0 ] && rm -f "$BASE_TAR"
  if [ $rc -ne 0 ]; then log "FAILED (exit $rc); everything it made is removed"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_daemon() { # [netns]: the engine, in that network namespace
  local pre=()
  # nsenter switches the network namespace only (`ip netns exec` remounts /sys, which
  # hides the cgroup mounts dockerd needs).
  [ -n "${1:-}" ] && pre=(nsenter "--net=/run/netns/$1")
  "${pre[@]}" /usr/sbin/dockerd --data-root "$W/data" --exec-root "$W/exec" -H "unix://$SOCK" \
    --pidfile "$W/dockerd.pid" --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    --bridge=none --userland-proxy=false >>"$W/dockerd.log" 2>&1 </dev/null &
  for _ in $(seq 1 150); do "${D[@]}" info >/dev/null 2>&1 && return 0; sleep 0.2; done
  if [ -z "${1:-}" ]; then
    echo "docker-test skipped: dockerd does not start on this machine:"; tail -5 "$W/dockerd.log"
    exit 0
  fi
  echo "docker-test: dockerd does not start inside namespace $1:"; tail -20 "$W/dockerd.log"
  exit 1
}

# --- images -------------------------------------------------------------------------
start_daemon
log "private dockerd up ($("${D[@]}" version --format '{{.Server.Version}}'), data-root $W/data)"
if [ ! -s "$BASE_TAR" ]; then
  mkdir -p "$(dirname "$BASE_TAR")"
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  log "base image: mmdebstrap --variant=minbase bookworm from $mirror"
  mmdebstrap --quiet --format=tar --variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr bookworm "$BASE_TAR.tmp" \
    "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
    "deb ${mirror%/debian}/debian-security bookworm-security main" >"$W/mmdebstrap.log" 2>&1 ||
    { tail -20 "$W/mmdebstrap.log"; exit 1; }
  mv "$BASE_TAR.tmp" "$BASE_TAR"
fi
"${D[@]}" import "$BASE_TAR" "$BASE_IMAGE" >/dev/null
# The build context: the repository's layout, with only what the Dockerfile copies.
mkdir -p "$W/context/.build" "$W/context/docker"
cp -a .build/dist "$W/context/.build/dist"
cp -a docker/config "$W/context/docker/config"
for p in as-server nms-server trs-relay cyphonic-node; do
  log "building cyphonic/$p"
  "${D[@]}" build --quiet --network host --build-arg BASE="$BASE_IMAGE" -f docker/Dockerfile --target "$p" \
    -t "cyphonic/$p:latest" "$W/context" >/dev/null
done
log "images:"
"${D[@]}" images --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' | grep cyphonic/ | sort
log "the base image alone: $("${D[@]}" images --format '{{.Size}}' "$BASE_IMAGE")"
for p in as-server nms-server trs-relay cyphonic-node; do
  # No Swift toolchain in the image: the binary runs on what the image has.
  v=$("${D[@]}" run --rm --network none "cyphonic/$p:latest" --version)
  libs=$("${D[@]}" run --rm --network none --entrypoint /usr/bin/ldd "cyphonic/$p:latest" "/usr/local/bin/$p" | awk '{print $1}' | grep -v vdso | tr '\n' ' ')
  log "  $v; links: $libs"
  case "$libs" in *swift* | *Foundation* | *dispatch*) echo "docker-test: $p links the Swift runtime dynamically" >&2; exit 1 ;; esac
done

# --- the cloud namespace, the engine inside it ---------------------------------------
stop_daemon
ip netns add $NS_CLOUD
NS_MADE=$NS_CLOUD
ip -n $NS_CLOUD link set lo up
ip -n $NS_CLOUD link add br0 type bridge
ip -n $NS_CLOUD addr add 198.19.210.1/24 dev br0
ip -n $NS_CLOUD addr add 2001:db8:1:d0::1/64 dev br0 nodad
ip -n $NS_CLOUD link set br0 up
start_daemon $NS_CLOUD
log "dockerd restarted inside namespace $NS_CLOUD (the cloud host: 198.19.210.1, 2001:db8:1:d0::1)"

# --- the cloud services, with docker-compose and docker/compose.yaml ------------------
P=$W/compose                # the compose project directory: its ./cyphonic holds bundles and tokens
mkdir -p "$P/cyphonic"
chown 10001:10001 "$P/cyphonic"
export CYPHONIC_RELAY=198.19.210.1:4503   # the relay the NMS hands to nodes (compose.yaml)
COMPOSE=(docker-compose -p cydk -f "$ROOT/docker/compose.yaml" --project-directory "$P")
"${COMPOSE[@]}" config -q
"${COMPOSE[@]}" run --rm -T as-server init --data-dir /var/lib/cyphonic-as --domain cyphonic.internal \
  --vip4 198.18.0.0/16 --vip6 2001:db8:c0ff:ee::/64 --nms 198.19.210.1:4502 --trs 198.19.210.1:4503 >"$W/init.log"
for role in nms trs; do
  "${COMPOSE[@]}" run --rm -T -v "$P/cyphonic:/out" as-server service add $role $role.cyphonic.internal --out /out/$role >/dev/null
done
"${COMPOSE[@]}" run --rm -T --entrypoint /bin/cat as-server /var/lib/cyphonic-as/ca.pem >"$P/cyphonic/ca.pem"
for n in "${NODES[@]}"; do
  "${COMPOSE[@]}" run --rm -T as-server node add "$n" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' >"$P/cyphonic/$n.token"
done
log "AS initialised, NMS and TRS bundles written, ${#NODES[@]} nodes added (docker-compose run)"
"${COMPOSE[@]}" up -d --no-build as-server nms-server trs-relay 2>&1 | sed 's/^/  /'
for _ in $(seq 1 60); do
  healthy=$("${D[@]}" ps --filter health=healthy --format '{{.Names}}' | grep -c '^cydk_' || true)
  [ "$healthy" -ge 3 ] && break
  sleep 1
done
"${D[@]}" ps --format '  {{.Names}}  {{.Status}}' | sort
[ "$healthy" -ge 3 ] || { echo "docker-test: the cloud services did not become healthy"; "${COMPOSE[@]}" logs --tail 20; exit 1; }
log "cloud services healthy"

# --- two node containers, each in a namespace of its own ------------------------------
i=10
for n in "${NODES[@]}"; do
  i=$((i + 1))
  # The node's "host": a holder container whose network namespace the node joins, wired
  # to the cloud bridge (so the node finds its network in place when it starts).
  # (docker turns IPv6 off in a container without an IPv6 network; the overlay uses it.)
  "${D[@]}" run -d --name "cydk-$n-net" --network none --dns 127.0.0.53 \
    --sysctl net.ipv6.conf.all.disable_ipv6=0 --sysctl net.ipv6.conf.default.disable_ipv6=0 \
    --entrypoint /bin/sleep cyphonic/cyphonic-node:latest infinity 2>&1 >/dev/null | grep -v 'Localhost DNS setting' || true
  pid=$("${D[@]}" inspect -f '{{.State.Pid}}' "cydk-$n-net")
  ip link add "cydk-$n" type veth peer name eth0 netns "$pid"
  ip link set "cydk-$n" netns $NS_CLOUD
  ip -n $NS_CLOUD link set "cydk-$n" master br0 up
  nsenter -t "$pid" -n sh -c "ip link set lo up; ip link set eth0 up; ip addr add 198.19.210.$i/24 dev eth0; ip addr add 2001:db8:1:d0::$i/64 dev eth0 nodad"
  cat >"$P/cyphonic/$n.json" <<JSON
// $n in its container: enrols at its first start with the token, then runs.
{
  "stateDir": "/var/lib/cyphonic-node",
  "enroll": { "asEndpoint": "198.19.210.1:4501", "ca": "/etc/cyphonic/ca.pem", "tokenFile": "/etc/cyphonic/token" },
  "control": "/run/cyphonic/cyphonic-node.sock",
  "resolver": { "listen": ["127.0.0.53:53"] },
  "directRetrySeconds": 5,
  "logLevel": "info"
}
JSON
  "${D[@]}" run -d --name "cydk-$n" --network "container:cydk-$n-net" \
    --cap-drop ALL --cap-add NET_ADMIN --cap-add NET_BIND_SERVICE --device /dev/net/tun \
    --security-opt no-new-privileges:true --read-only --tmpfs /run/cyphonic --tmpfs /tmp \
    -v "cydk-$n-state:/var/lib/cyphonic-node" -v "$P/cyphonic/$n.json:/etc/cyphonic/node.json:ro" \
    -v "$P/cyphonic/ca.pem:/etc/cyphonic/ca.pem:ro" -v "$P/cyphonic/$n.token:/etc/cyphonic/token:ro" \
    cyphonic/cyphonic-node:latest 2>&1 >/dev/null | grep -v 'IPv4 forwarding is disabled' || true
done
# A node's status, read whole (a pipe into head or grep -q could end docker exec early:
# SIGPIPE, a failure under pipefail); the error instead when it does not answer.
node_status() { "${D[@]}" exec "cydk-$1" cyphonic-node status --control /run/cyphonic/cyphonic-node.sock 2>&1 || true; }
for n in "${NODES[@]}"; do
  for _ in $(seq 1 60); do
    grep -Eq '^nms +registered' <<<"$(node_status "$n")" && break
    sleep 0.5
  done
  s=$(node_status "$n")
  grep -Eq '^nms +registered' <<<"$s" || { echo "docker-test: $n did not register:"; echo "$s"; "${D[@]}" logs --tail 30 "cydk-$n"; exit 1; }
  log "$n enrolled and registered: $(echo "$s" | head -1 | sed 's/^node *//')"
done

# --- the two ping each other by name ---------------------------------------------------
# From an application container beside each node (sharing its network namespace, as an
# app would): the node's own container keeps no capability ping could use.
app() { # node, command...: run it in an application container in the node's namespace
  local n=$1; shift
  "${D[@]}" run --rm --network "container:cydk-$n-net" --entrypoint "$1" cyphonic/cyphonic-node:latest "${@:2}" 2>&1 |
    grep -v 'IPv4 forwarding is disabled'
}
for pair in "node1 node2" "node2 node1"; do
  set -- $pair
  log "$1: getent hosts $2.cyphonic.internal; ping -c 3 $2.cyphonic.internal; ping -6 -c 2 ..."
  app "$1" /usr/bin/getent ahosts "$2.cyphonic.internal" | sed 's/^/  /'
  out=$(app "$1" /usr/bin/ping -c 3 -W 3 "$2.cyphonic.internal")
  echo "$out" | sed 's/^/  /'
  grep -q ' 0% packet loss' <<<"$out" || { echo "docker-test: $1 cannot ping $2 by name"; exit 1; }
  out=$(app "$1" /usr/bin/ping -6 -c 2 -W 3 "$2.cyphonic.internal" | tail -2)
  echo "$out" | sed 's/^/  /'
  grep -q ' 0% packet loss' <<<"$out" || { echo "docker-test: $1 cannot ping $2 over IPv6 by name"; exit 1; }
done
# The alert rules of examples/prometheus parse, and every metric they name is one the
# running daemons export.
promtool check rules examples/prometheus/cyphonic-alerts.yml >/dev/null
scrape() { "${D[@]}" exec "$1" /bin/bash -c "exec 3<>/dev/tcp/127.0.0.1/$2 && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3"; }
exported=$( { scrape cydk_as-server_1 9451; scrape cydk_nms-server_1 9453; scrape cydk_trs-relay_1 9454; scrape cydk-node1 9452; } |
  awk '!/^#/ {sub(/[{ ].*/, ""); print}' | sort -u)
for m in $(grep -oE '\b(as|nms|trs|cyphonic_node)_[a-z_]+' examples/prometheus/cyphonic-alerts.yml | sort -u); do
  grep -qx "$m" <<<"$exported" || { echo "docker-test: the alert rules name $m, which no daemon exports"; exit 1; }
done
for m in process_resident_memory_bytes process_cpu_seconds_total; do
  [ "$(grep -cx "$m" <<<"$exported")" -ge 1 ] || { echo "docker-test: no daemon exports $m"; exit 1; }
done
for c in cydk_as-server_1:9451 cydk_nms-server_1:9453 cydk_trs-relay_1:9454; do
  page=$(scrape "${c%:*}" "${c#*:}")   # whole page first: grep -q in a pipe would end it early (SIGPIPE under pipefail)
  grep -q '^process_resident_memory_bytes [1-9]' <<<"$page" || { echo "docker-test: ${c%:*} exports no process memory"; exit 1; }
done
log "alert rules: promtool ok; the $(grep -oE '\b(as|nms|trs|cyphonic_node)_[a-z_]+' examples/prometheus/cyphonic-alerts.yml | sort -u | wc -l) metrics they use are all exported"
grep -E '^peer|^resolver' <<<"$(node_status node1)" | sed 's/^/  /'
# --- backup while serving; the AS host lost; restore into a fresh volume ---------------
mkdir -p "$P/backup" && chown 10001:10001 "$P/backup"
# (into the volume, then out with docker cp: the container's root file system is read-only)
"${COMPOSE[@]}" exec -T as-server as-server backup --data-dir /var/lib/cyphonic-as --out /var/lib/cyphonic-as/backup | sed 's/^/  /'
"${D[@]}" cp "$("${COMPOSE[@]}" ps -q as-server):/var/lib/cyphonic-as/backup" "$P/backup/as"
"${COMPOSE[@]}" exec -T as-server rm -rf /var/lib/cyphonic-as/backup   # the copy holds the CA key
chown -R 10001:10001 "$P/backup"
"${COMPOSE[@]}" down -v --timeout 10 >/dev/null 2>&1   # containers and the AS volume: gone
log "AS backed up while serving, then its containers and volume removed"
"${COMPOSE[@]}" run --rm -T -v "$P/backup:/backup" as-server restore --from /backup/as --data-dir /var/lib/cyphonic-as 2>&1 | grep -v "^Creating" | sed 's/^/  /'
"${COMPOSE[@]}" up -d --no-build as-server nms-server trs-relay >/dev/null 2>&1
for n in "${NODES[@]}"; do
  before=$(node_status "$n")
  before=${before%%$'\n'*}
  since=$(date -u +%Y-%m-%dT%H:%M:%S)
  "${D[@]}" restart -t 15 "cydk-$n" >/dev/null
  for _ in $(seq 1 60); do
    grep -Eq '^nms +registered' <<<"$(node_status "$n")" && break
    sleep 0.5
  done
  after=$(node_status "$n")
  after=${after%%$'\n'*}
  logs=$("${D[@]}" logs --since "$since" "cydk-$n" 2>&1)
  grep -q "logged in to the AS at 198.19.210.1:4501" <<<"$logs" ||
    { echo "docker-test: $n did not log in to the restored AS"; "${D[@]}" logs --tail 20 "cydk-$n"; exit 1; }
  [ "$before" = "$after" ] || { echo "docker-test: $n changed: $before -> $after"; exit 1; }
  log "$n logged in to the restored AS and kept its addresses: $(echo "${after#node}" | xargs)"
done
out=$(app node1 /usr/bin/ping -c 2 -W 3 node2.cyphonic.internal | tail -2)
grep -q ' 0% packet loss' <<<"$out" || { echo "docker-test: no ping by name after the restore: $out"; exit 1; }
log "node1 pings node2 by name again after the restore"
# Clean stop: SIGTERM, and the node says goodbye and removes its TUN.
"${D[@]}" stop -t 15 cydk-node1 >/dev/null
grep -q "shut down cleanly" <("${D[@]}" logs cydk-node1 2>&1) || { echo "docker-test: node1 did not shut down cleanly"; exit 1; }
"${COMPOSE[@]}" down --timeout 10 2>&1 | sed 's/^/  /'
log "PASS: 4 images built and run; AS, NMS, TRS from compose; two node containers pinged each other by name; the AS restored from a backup kept their addresses"
