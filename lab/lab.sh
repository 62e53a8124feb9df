#!/usr/bin/env bash
# The CYPHONIC lab (DESIGN §6, the paper's evaluation model, Fig. 4): one underlay bridge,
# the cloud services, one responder and N initiators, each in its own network namespace.
#
#                         cy-net (bridge br0, 198.19.0.0/24, 2001:db8:1::/64)
#        ┌──────────────────────┬───────────────┴──────┬──────────────┬─────────┐
#   cy-cloud .2 / ::2       cy-resp .10 / ::10   cy-init01 .11 / ::11   …   cy-init10 .20 / ::20
#   as-server  :4501        cyphonic-node :30000  cyphonic-node :30000       cyphonic-node
#   nms-server :4502,:4512  resolver 127.0.0.53   resolver 127.0.0.53        resolver
#   trs-relay  :4503        iperf3 -s             (tun cyph0: 198.18.x.y, 2001:db8:c0ff:ee::/64)
#
#   lab/lab.sh up      build-free: start everything from $BIN, wait until every node is
#                      registered with the NMS, print what to try
#                      SCENARIO=nat: then NAT routers, their LANs, a v4-only and a v6-only
#                      island with one node pair per row of DESIGN §5 (lab/README.md)
#                      SCENARIO=ha: the cloud as replicas instead of cy-cloud (lab/ha.sh):
#                      PostgreSQL, 2 AS, 2 NMS, 2 relays, each in a namespace of its own
#   lab/lab.sh status  each node's registration, NAT behaviour and tunnels; the NMS's and
#                      the TRS's view; with the NAT scenario, each pair's route
#   lab/lab.sh down    stop every process, remove every namespace, file and resolv.conf it
#                      made (idempotent; safe after a failed up)
#
# Environment: LAB_INITIATORS (default 10), LAB_DIR (default /run/cyphonic-lab),
# BIN (default .build/release), LAB_PIPELINE (multi or single), LAB_TIMEOUT (seconds to
# wait for registrations, default 60), SCENARIO (empty, nat or ha; for up), PROMETHEUS=1 (for
# up: Prometheus in cy-cloud scraping every daemon, browsable from this host at
# 127.0.0.1:$LAB_PROMETHEUS_PORT, default 9090), LAB_SCRAPE_INTERVAL (default 2s),
# LAB_REKEY_SECONDS (the nodes' rekeyAfterSeconds; default the daemon's 120 s),
# LAB_RELAY_AUTH_SECONDS (the NMS's relay authorization lifetime, at least 60; default 24 h).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
. lab/topology.sh

N=${LAB_INITIATORS:-10}
DIR=${LAB_DIR:-/run/cyphonic-lab}
BIN=${BIN:-.build/release}
PIPELINE=${LAB_PIPELINE:-multi}
REKEY=${LAB_REKEY_SECONDS:+ \"rekeyAfterSeconds\": $LAB_REKEY_SECONDS,}
TIMEOUT=${LAB_TIMEOUT:-60}
# Commands on a running lab (status, add-node, …) take the scenario it was brought up with.
SCENARIO=${SCENARIO:-$([ "${1:-}" != up ] && grep -vx base "$DIR/scenario" 2>/dev/null || true)}
PROMETHEUS=${PROMETHEUS:-}
PROM_PORT=${LAB_PROMETHEUS_PORT:-9090}
PROM_URL=""
SCRAPE=${LAB_SCRAPE_INTERVAL:-2s}
DOMAIN=cyphonic.internal

CLOUD=cy-cloud
RESP=cy-resp
CLOUD4=198.19.0.2
CLOUD6=2001:db8:1::2
RESP4=198.19.0.10
RESP6=2001:db8:1::10
. lab/ha.sh

inits() { for i in $(seq 1 "$N"); do printf 'cy-init%02d\n' "$i"; done; }
# node_name NAMESPACE — cy-resp: responder, cy-init01: init01, cy-lan1: lan1, …
node_name() {
  case "$1" in
    "$RESP") echo responder ;;
    cy-init*) echo "init${1#cy-init}" ;;
    *) echo "${1#cy-}" ;;
  esac
}
say() { echo "lab: $*" >&2; }

# On a failed up: keep the logs (outside $DIR, which down removes), tear down, and exit
# (without the exit, up would go on after the failed command: down turns errexit off).
failed() {
  set +e
  local keep
  keep=/tmp/cyphonic-lab-failed-$(date +%Y%m%d-%H%M%S)
  mkdir -p "$keep" && cp "$DIR"/*.log "$keep"/ 2>/dev/null
  say "failed; the daemons' logs are kept in $keep; tearing down"
  down
  exit 1
}

down() {
  set +e
  local namespaces
  namespaces=$(ip netns list 2>/dev/null | awk '{print $1}' | grep '^cy-')
  # The HA scenario's PostgreSQL: stopped cleanly first (its shared memory released).
  ha_pg_down
  # The host-side forward to Prometheus (the only process of the lab outside its namespaces).
  [ -f "$DIR/prometheus-forward.pid" ] && kill "$(cat "$DIR/prometheus-forward.pid")" 2>/dev/null
  for ns in $namespaces; do ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null; done
  for _ in $(seq 1 30); do
    local left=0
    for ns in $namespaces; do [ -n "$(ip netns pids "$ns" 2>/dev/null)" ] && left=1; done
    [ $left -eq 0 ] && break
    sleep 0.1
  done
  for ns in $namespaces; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf /etc/netns/cy-*
  rmdir /etc/netns 2>/dev/null  # only when empty: someone else's entries stay
  local scenario
  scenario=$(cat "$DIR/scenario" 2>/dev/null)
  rm -rf "$DIR" "${DIR}-pg"
  say "down${scenario:+ ($scenario lab)}: every cy-* namespace, its processes, /etc/netns/cy-* and $DIR removed"
}

# node_config NAME — the daemon's config: state from enrolment, NMS and TRS from the
# provision, the resolver on 127.0.0.53:53 of its namespace. A punch gets 2 s; a relayed
# tunnel tries the direct path again every 5 s (default 30 s), so the lab sees the
# switch soon.
node_config() {
  cat >"$DIR/$1.json" <<EOF
{ "stateDir": "$DIR/$1", "control": "$DIR/$1.sock", "metrics": "$(metrics_address "$2"):9452",
  "pipeline": "$PIPELINE", "keepaliveSeconds": 5, "punchTimeoutSeconds": 2, "directRetrySeconds": 5,$REKEY
  "resolver": { "listen": ["127.0.0.53:53"] } }
EOF
}

# metrics_address NAMESPACE — where a node serves /metrics: the underlay address for the
# responder and the initiators (so Prometheus in cy-cloud reaches them over the bridge),
# loopback elsewhere (the NAT scenario's LANs are not reachable from the cloud).
metrics_address() {
  case "$1" in
    "$RESP") echo $RESP4 ;;
    cy-init*) topology_initiator "$((10#${1#cy-init}))" | awk '{print $2}' ;;
    *) echo 127.0.0.1 ;;
  esac
}

# as_endpoint NAMESPACE — the AS over the family the namespace's underlay has: IPv4 when
# it has an IPv4 address, else IPv6 (the v6-only island).
as_endpoint() {
  if [ "$SCENARIO" = ha ]; then
    # HA: half the nodes enrol at each AS replica (by a checksum of the namespace name).
    local n
    n=$(printf %s "$1" | cksum | cut -d' ' -f1)
    echo "$(ha_addr4 "as$((n % 2 + 1))"):4501"
    return 0
  fi
  if [ -n "$(ip -n "$1" -4 -o addr show scope global)" ]; then echo "$CLOUD4:4501"; else echo "[$CLOUD6]:4501"; fi
}

# as_cli ARGS… — the AS's command line (HA: in cy-as1, where PostgreSQL is reachable).
as_cli() {
  if [ "$SCENARIO" = ha ]; then ha_as_cli "$@"; else "$BIN/as-server" "$@"; fi
}

# enrol NAME NAMESPACE [GROUP] — adds the node to the AS, enrols it with
# `cyphonic-node enroll`, writes its config and its namespace's resolv.conf.
enrol() {
  local group=()
  [ -n "${3:-}" ] && group=(--group "$3")
  as_cli node add "$1" "${group[@]}" --data-dir "$DIR/as" --json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' >"$DIR/$1.token"
  ip netns exec "$2" "$BIN/cyphonic-node" enroll --as "$(as_endpoint "$2")" --ca "$DIR/as/ca.pem" \
    --token-file "$DIR/$1.token" --state-dir "$DIR/$1" >/dev/null
  rm -f "$DIR/$1.token"
  node_config "$1" "$2"
  mkdir -p "/etc/netns/$2"
  printf 'nameserver 127.0.0.53\nsearch %s\noptions timeout:4 attempts:1\n' $DOMAIN >"/etc/netns/$2/resolv.conf"
}

# node_registered NAME — its daemon says it is registered with the NMS.
node_registered() {
  "$BIN/cyphonic-node" status --control "$DIR/$1.sock" --json 2>/dev/null \
    | python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["signaling"]["state"] != "registered")' 2>/dev/null
}

# add_node NAME NAMESPACE [GROUP] — one more node in an existing namespace of a running
# lab: enrolled, started, registered (lab/smoke.sh adds the NAT site's nodes this way).
add_node() {
  enrol "$@"
  ip netns exec "$2" "$BIN/cyphonic-node" run --config "$DIR/$1.json" >>"$DIR/$1.log" 2>&1 &
  wait_for "$1 to register with the NMS" 20 node_registered "$1"
}

# enrol_by_daemon NAME NAMESPACE — a node that enrols itself at its first start.
enrol_by_daemon() {
  as_cli node add "$1" --data-dir "$DIR/as" --json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' >"$DIR/$1.token"
  chmod 600 "$DIR/$1.token"
  cat >"$DIR/$1.json" <<EOF
{ "stateDir": "$DIR/$1", "control": "$DIR/$1.sock", "metrics": "$(metrics_address "$2"):9452",
  "pipeline": "$PIPELINE", "keepaliveSeconds": 5, "punchTimeoutSeconds": 2, "directRetrySeconds": 5,$REKEY
  "enroll": { "asEndpoint": "$(as_endpoint "$2")", "ca": "$DIR/as/ca.pem", "tokenFile": "$DIR/$1.token" },
  "resolver": { "listen": ["127.0.0.53:53"] } }
EOF
  mkdir -p "/etc/netns/$2"
  printf 'nameserver 127.0.0.53\nsearch %s\noptions timeout:4 attempts:1\n' $DOMAIN >"/etc/netns/$2/resolv.conf"
}

# wait_for WHAT SECONDS COMMAND... — polls COMMAND every 0.2 s; fails naming WHAT.
wait_for() {
  local what=$1 seconds=$2
  shift 2
  local end=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || { say "timed out after ${seconds}s waiting for $what"; return 1; }
    sleep 0.2
  done
}

registered() {
  if [ "$SCENARIO" = ha ]; then ha_registered; return 0; fi
  "$BIN/nms-server" status --control "$DIR/nms.sock" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["registered"])'
}

start_nms() {
  ip netns exec $CLOUD "$BIN/nms-server" serve --bundle "$DIR/nms" \
    --listen $CLOUD4:4502 --listen "[$CLOUD6]:4502" --probe-listen $CLOUD4:4512 --probe-listen "[$CLOUD6]:4512" \
    --relay $CLOUD4:4503 --relay "[$CLOUD6]:4503" \
    --as $CLOUD4:4501 --metrics 127.0.0.1:9453 --control "$DIR/nms.sock" \
    ${LAB_RELAY_AUTH_SECONDS:+--relay-authorization-lifetime "$LAB_RELAY_AUTH_SECONDS"} >>"$DIR/nms.log" 2>&1 &
}

# listening_lines LOG — how many "listening" lines LOG has (0 when it does not exist).
listening_lines() {
  local n
  n=$(grep -c listening "$1" 2>/dev/null) || n=${n:-0}
  echo "$n"
}

# start_trs — trs-relay in cy-cloud, dual-stack; returns once it logs a new "listening"
# line (also after a kill -9: lab/smoke-nat.sh restarts it with `lab.sh start-trs`).
start_trs() {
  local before
  before=$(listening_lines "$DIR/trs.log")
  ip netns exec $CLOUD "$BIN/trs-relay" serve --bundle "$DIR/trs" \
    --listen $CLOUD4:4503 --listen "[$CLOUD6]:4503" --as $CLOUD4:4501 \
    --metrics 127.0.0.1:9454 --control "$DIR/trs.sock" >>"$DIR/trs.log" 2>&1 &
  wait_for "the trs-relay to listen" 10 trs_listening "$before"
}
trs_listening() { [ "$(listening_lines "$DIR/trs.log")" -gt "$1" ]; }

# start_prometheus — Prometheus (Debian's package) in cy-cloud, scraping the AS, NMS, TRS
# (loopback of cy-cloud) and every base-lab node (underlay :9452) every $SCRAPE; its data
# in $DIR/prometheus; a socat forward makes it browsable at 127.0.0.1:$PROM_PORT here.
start_prometheus() {
  local targets ns
  targets="'$(metrics_address $RESP):9452'"
  for ns in $(inits); do targets="$targets, '$(metrics_address "$ns"):9452'"; done
  cat >"$DIR/prometheus.yml" <<EOF
global: { scrape_interval: $SCRAPE, evaluation_interval: $SCRAPE }
scrape_configs:
  - job_name: cloud
    static_configs: [{ targets: ['127.0.0.1:9451', '127.0.0.1:9453', '127.0.0.1:9454'] }]
  - job_name: nodes
    static_configs: [{ targets: [$targets] }]
EOF
  mkdir -p "$DIR/prometheus"
  ip netns exec $CLOUD prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/prometheus" \
    --web.listen-address=0.0.0.0:9090 --storage.tsdb.retention.time=1d >"$DIR/prometheus.log" 2>&1 &
  wait_for "Prometheus to be ready" 30 ip netns exec $CLOUD curl -sf http://127.0.0.1:9090/-/ready
  PROM_URL=""
  if ! command -v socat >/dev/null; then
    say "socat is missing: Prometheus is reachable only inside $CLOUD (ip netns exec $CLOUD curl 127.0.0.1:9090)"
  elif ss -Hltn "sport = :$PROM_PORT" 2>/dev/null | grep -q .; then
    say "port $PROM_PORT is taken on this host (a Prometheus of the host's own?): no forward; LAB_PROMETHEUS_PORT picks another"
  else
    PROM_URL="http://127.0.0.1:$PROM_PORT"
    socat TCP-LISTEN:"$PROM_PORT",bind=127.0.0.1,reuseaddr,fork EXEC:"ip netns exec $CLOUD socat STDIO TCP\:127.0.0.1\:9090" \
      </dev/null >/dev/null 2>"$DIR/prometheus-forward.log" &
    echo $! >"$DIR/prometheus-forward.pid"
  fi
}

start_node() { # namespace
  local name
  name=$(node_name "$1")
  ip netns exec "$1" "$BIN/cyphonic-node" run --config "$DIR/$name.json" >>"$DIR/$name.log" 2>&1 &
}

up() {
  [ "$(id -u)" -eq 0 ] || { say "needs root (namespaces, TUN)"; exit 1; }
  if ip netns list 2>/dev/null | grep -q '^cy-'; then say "a lab is up already: 'make lab-down' first"; exit 1; fi
  for b in as-server nms-server trs-relay cyphonic-node; do [ -x "$BIN/$b" ] || { say "$BIN/$b missing: run 'make release'"; exit 1; }; done
  case "$SCENARIO" in
    "") ;;
    nat) [ "$N" -ge 2 ] || { say "SCENARIO=nat needs LAB_INITIATORS >= 2 (init02 is in a pair)"; exit 1; } ;;
    ha) id postgres >/dev/null 2>&1 || { say "SCENARIO=ha needs PostgreSQL (apt-get install postgresql)"; exit 1; } ;;
    *) say "unknown SCENARIO '$SCENARIO' (empty, nat or ha)"; exit 1 ;;
  esac
  trap 'failed' ERR
  mkdir -p "$DIR"
  chmod 700 "$DIR"
  echo "${SCENARIO:-base}" >"$DIR/scenario"
  say "[1/7] namespaces: $TOPO_NET (bridge), $([ "$SCENARIO" = ha ] && echo "cy-pg, cy-as1 … cy-trs2" || echo $CLOUD), $RESP, cy-init01 … $(inits | tail -1)"
  topology_bridge
  [ "$SCENARIO" = ha ] || topology_attach $CLOUD $CLOUD4 cloud $CLOUD6
  topology_attach $RESP $RESP4 resp $RESP6
  for i in $(seq 1 "$N"); do
    # shellcheck disable=SC2046
    topology_attach $(topology_initiator "$i")
  done

  if [ "$SCENARIO" = ha ]; then
    say "[2-4/7] the cloud as replicas (lab/ha.sh)"
    ha_cloud_up
  else
    cloud_up
  fi

  say "[5/7] enrolling responder and $N initiators"
  enrol responder $RESP
  for ns in $(inits | head -n -1); do enrol "$(node_name "$ns")" "$ns"; done
  # The last initiator enrols itself: its daemon's `enroll` config (token file, CA, AS).
  local last
  last=$(inits | tail -1)
  enrol_by_daemon "$(node_name "$last")" "$last"
  up_nodes
}

# cloud_up — as-server, trs-relay and nms-server in cy-cloud (the base and NAT scenarios).
cloud_up() {
  say "[2/7] as-server in $CLOUD at $CLOUD4:4501 and [$CLOUD6]:4501"
  "$BIN/as-server" init --data-dir "$DIR/as" --domain $DOMAIN --nms $CLOUD4:4502 --nms "[$CLOUD6]:4502" \
    --trs $CLOUD4:4503 --trs "[$CLOUD6]:4503" >/dev/null
  "$BIN/as-server" service add nms nms.$DOMAIN --data-dir "$DIR/as" --out "$DIR/nms" >/dev/null
  "$BIN/as-server" service add trs trs.$DOMAIN --data-dir "$DIR/as" --out "$DIR/trs" >/dev/null
  ip netns exec $CLOUD "$BIN/as-server" serve --data-dir "$DIR/as" --listen $CLOUD4:4501 --listen "[$CLOUD6]:4501" \
    --metrics 127.0.0.1:9451 >"$DIR/as.log" 2>&1 &
  wait_for "the as-server to listen" 10 grep -q "listening" "$DIR/as.log"

  say "[3/7] trs-relay in $CLOUD at $CLOUD4:4503 and [$CLOUD6]:4503"
  start_trs

  say "[4/7] nms-server in $CLOUD at $CLOUD4:4502 and [$CLOUD6]:4502 (NAT probes :4512)"
  start_nms
  wait_for "the nms-server to listen" 10 grep -q "listening" "$DIR/nms.log"
}

# up_nodes — starts the node daemons, waits for their registrations, then the scenario's
# extra nodes, and prints what to try.
up_nodes() {
  say "[6/7] starting cyphonic-node ($PIPELINE pipeline) in every node namespace"
  start_node $RESP
  for ns in $(inits); do start_node "$ns"; done
  ip netns exec $RESP iperf3 -s -D --pidfile "$DIR/iperf3.pid" >/dev/null

  say "[7/7] waiting for $((N + 1)) registrations with the NMS (at most ${TIMEOUT}s)"
  local end=$((SECONDS + TIMEOUT)) count=0
  while :; do
    count=$(registered || echo 0)
    [ "$count" -ge $((N + 1)) ] && break
    if [ $SECONDS -ge $end ]; then
      say "only $count of $((N + 1)) nodes registered; not registered:"
      for ns in $RESP $(inits); do
        local name
        name=$(node_name "$ns")
        if [ ! -S "$DIR/$name.sock" ]; then
          say "  $name: its daemon is not running (log: $(tail -n 1 "$DIR/$name.log" 2>/dev/null))"
          continue
        fi
        "$BIN/cyphonic-node" status --control "$DIR/$name.sock" --json 2>/dev/null \
          | python3 -c 'import json,sys; s=json.load(sys.stdin)["signaling"]; sys.exit(0 if s["state"]=="registered" else print("  '"$name"':", s["state"], "-", s["reason"]) or 1)' \
          || true
      done
      false
    fi
    sleep 0.3
  done
  if [ "$SCENARIO" = nat ]; then
    nat_up
    count=$(registered)
  fi
  if [ "$SCENARIO" = ha ]; then
    ha_nat_up
    count=$(registered)
  fi
  if [ -n "$PROMETHEUS" ]; then
    say "Prometheus in $CLOUD, scraping every daemon every $SCRAPE"
    start_prometheus
  fi
  trap - ERR
  rm -f "$DIR"/*.token
  local rvip4 rvip6
  rvip4=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["virtualIPv4"])' "$DIR/responder/node.json")
  rvip6=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["virtualIPv6"])' "$DIR/responder/node.json")
  cat <<EOF

CYPHONIC lab is up: $count nodes registered with the NMS.
  responder   responder.$DOMAIN  $rvip4 $rvip6  (namespace $RESP, underlay $RESP4 / $RESP6)
  initiators  init01 … $(printf 'init%02d' "$N").$DOMAIN  (namespaces cy-init01 …, underlay 198.19.0.11 … / 2001:db8:1::11 …)
  cloud       $([ "$SCENARIO" = ha ] && echo "replicas: as-server .31/.32:4501, nms-server .33/.34:4502, trs-relay .35/.36:4503, PostgreSQL .30:5432 (namespaces cy-as1 … cy-pg)" || echo "as-server $CLOUD4:4501, nms-server $CLOUD4:4502, trs-relay $CLOUD4:4503 (namespace $CLOUD, also on [$CLOUD6])")
  state, configs and logs in $DIR

Try (the first lookup of a name sets up its tunnel through the NMS):
  ip netns exec cy-init01 ping responder.$DOMAIN
  ip netns exec cy-init01 ping -6 responder.$DOMAIN
  ip netns exec cy-init01 iperf3 -c responder.$DOMAIN
  ip netns exec cy-init01 dig responder.$DOMAIN AAAA
  make lab-status
  make lab-down
EOF
  if [ -n "$PROMETHEUS" ] && [ -n "$PROM_URL" ]; then
    cat <<EOF
Prometheus (in $CLOUD, every daemon scraped every $SCRAPE; left running until lab-down):
  $PROM_URL  from this host (a socat forward), e.g.
  curl -s '$PROM_URL/api/v1/query?query=rate(cyphonic_node_rx_bytes_total[10s])'
EOF
  elif [ -n "$PROMETHEUS" ]; then
    echo "Prometheus (in $CLOUD, left running until lab-down): ip netns exec $CLOUD curl -s 127.0.0.1:9090/api/v1/query?query=up"
  fi
  if [ "$SCENARIO" = nat ]; then nat_try; fi
  if [ "$SCENARIO" = ha ]; then ha_try; fi
  return 0
}

# The NAT scenario (SCENARIO=nat, lab/README.md): one pair per row of DESIGN §5, as
# "INITIATOR NAMESPACE PEER EXPECTED-ROUTE ROW" (the row is the rest of the line). The
# route is what the initiator's `cyphonic-node status` reports for its tunnel to PEER.
NAT_PAIRS='init01 cy-init01 responder direct both reachable (no NAT)
lan1 cy-lan1 lan2 local same public address (same site)
lan1 cy-lan1 responder direct one public, one NATed: the NATed side sends first
init02 cy-init02 lan2 direct one public, one NATed: public to NATed
lan1 cy-lan1 lan3 punched both behind EIM NATs: hole punching
lan4 cy-lan4 lan1 relay symmetric NAT on one side
lan5 cy-lan5 lan3 relay a punch that fails (cy-nat4 blocks cy-nat2)
v4only cy-v4only v6only relay no shared IP family'
NAT_NODES="lan1 lan2 lan3 lan4 lan5 v4only v6only"

# nat_up — the NAT scenario on top of the running base lab: four home routers (cy-nat3
# symmetric, the others endpoint-independent) with IPv4 LANs, cy-nat4 blocking cy-nat2's
# public address, an IPv4-only and an IPv6-only island; their nodes enrolled (each over
# the family its underlay has), started and registered.
nat_up() {
  say "[nat 1/2] routers cy-nat1 … cy-nat4 (198.19.0.40 … .43), LAN hosts cy-lan1 … cy-lan5, cy-v4only, cy-v6only"
  topology_nat_site cy-nat1 198.19.0.40 nat1 198.19.10 eim
  topology_lan_host cy-lan1 198.19.10.2 cy-nat1 lan1
  topology_lan_host cy-lan2 198.19.10.3 cy-nat1 lan2
  topology_nat_site cy-nat2 198.19.0.41 nat2 198.19.11 eim
  topology_lan_host cy-lan3 198.19.11.2 cy-nat2 lan3
  topology_nat_site cy-nat3 198.19.0.42 nat3 198.19.12 symmetric
  topology_lan_host cy-lan4 198.19.12.2 cy-nat3 lan4
  topology_nat_site cy-nat4 198.19.0.43 nat4 198.19.13 eim
  topology_lan_host cy-lan5 198.19.13.2 cy-nat4 lan5
  topology_block cy-nat4 198.19.0.41
  topology_attach cy-v4only 198.19.0.50 v4only
  topology_attach6 cy-v6only 2001:db8:1::51 v6only

  say "[nat 2/2] enrolling and starting $NAT_NODES; waiting for their registrations"
  # shellcheck disable=SC2086
  enrol_start_wait $NAT_NODES
}

# enrol_start_wait NAME… — enrols each node (namespace cy-NAME), starts its daemon, then
# waits for every one to register with the NMS.
enrol_start_wait() {
  local name
  for name in "$@"; do
    enrol "$name" "cy-$name"
    start_node "cy-$name"
  done
  for name in "$@"; do wait_for "$name to register with the NMS" 20 node_registered "$name"; done
}

nat_try() {
  cat <<EOF

NAT scenario (lab/README.md, "NAT scenario"): routers cy-nat1 198.19.0.40, cy-nat2 .41,
cy-nat4 .43 (endpoint-independent mapping), cy-nat3 .42 (symmetric); cy-nat4 drops UDP
to and from .41, so lan5 <-> lan3 cannot punch. Islands: cy-v4only 198.19.0.50 (IPv4
only), cy-v6only 2001:db8:1::51 (IPv6 only). One pair per row of DESIGN §5; the first
ping sets up the tunnel, 'make lab-status' shows the route each took:
EOF
  local init ns peer expected row
  while read -r init ns peer expected row; do
    printf '  ip netns exec %-10s ping %-10s # %-8s %s\n' "$ns" "$peer" "$expected" "$row"
  done <<<"$NAT_PAIRS"
  cat <<EOF
  ip netns exec cy-v4only  ping -6 v6only    # the relayed tunnel carries both families
  ip netns exec cy-lan1 iperf3 -s -1 -D; ip netns exec cy-lan4 iperf3 -c lan1   # through the relay
Relay -> direct: keep 'ip netns exec cy-lan5 ping lan3' running, then
  lab/lab.sh unblock cy-nat4 198.19.0.41    # lan5 tries direct every 5 s: route 'punched'
  lab/lab.sh block cy-nat4 198.19.0.41      # back to the relay
  make lab-status
EOF
}

# One node's status (JSON on stdin) in two or more lines.
STATUS_PY='
import json, sys
s = json.load(sys.stdin)
g = s.get("signaling") or {}
print("%-30s %-11s seen as %s  NAT v4: %s, v6: %s" % (s["fqdn"], g.get("state", "-"), g.get("observed") or "-",
      g.get("natIPv4") or "-", g.get("natIPv6") or "-"))
for p in s["peers"]:
    path = " path %d" % p["pathID"] if p.get("pathID") else ""
    reason = " (%s)" % p["routeReason"] if p.get("routeReason") else ""
    print("    tunnel to %s at %s: %s%s%s, rx %d tx %d packets" % (p["fqdn"], p.get("endpoint") or "?", p["route"], reason,
          path, p["rxPackets"], p["txPackets"]))
'

# The NAT scenario's pairs (NAT_PAIRS on stdin, the initiators' status JSON files in
# argv[1]): expected route, the route the initiator reports now and why.
PAIRS_PY='
import json, os, sys
rows = []
for line in sys.stdin.read().splitlines():
    init, ns, peer, expected, row = line.split(" ", 4)
    try: s = json.load(open(os.path.join(sys.argv[1], init + ".json")))
    except Exception: s = None
    fqdn = peer + "." + sys.argv[2]
    p = next((p for p in (s or {}).get("peers", []) if p["fqdn"] == fqdn), None)
    if s is None: now = "%s: no status (daemon down?)" % init
    elif p is None: now = "no tunnel yet (ip netns exec %s ping %s to set it up)" % (ns, peer)
    else:
        now = p["route"] + (" (%s)" % p["routeReason"] if p.get("routeReason") else "")
        if p["route"] != expected: now += "  <- expected " + expected
    rows.append(("%s -> %s" % (init, peer), expected, now, row))
print("%-20s %-9s %s" % ("pair", "expected", "now (initiator status: route, routeReason)"))
for pair, expected, now, row in rows: print("%-20s %-9s %s" % (pair, expected, now))
'

# node_sockets — every node daemon's control socket: responder, initiators, then the rest
# (NAT scenario nodes, smoke tests' extra nodes).
node_sockets() {
  local s
  for s in "$DIR"/responder.sock "$DIR"/init*.sock "$DIR"/*.sock; do
    [ -S "$s" ] || continue
    case "${s##*/}" in nms*.sock | trs*.sock) continue ;; esac
    echo "$s"
  done | awk '!seen[$0]++'
}

status() {
  local s scenario
  scenario=$(cat "$DIR/scenario" 2>/dev/null || echo base)
  [ -S "$DIR/nms.sock" ] || [ "$scenario" = ha ] || { say "no lab is up ($DIR/nms.sock missing)"; exit 1; }
  for s in $(node_sockets); do
    "$BIN/cyphonic-node" status --control "$s" --json | python3 -c "$STATUS_PY" \
      || echo "$(basename "$s" .sock): no status from its daemon ($s)"
  done
  echo
  if [ "$scenario" = ha ]; then
    ha_status
    return 0
  fi
  "$BIN/nms-server" status --control "$DIR/nms.sock"
  echo
  "$BIN/trs-relay" status --control "$DIR/trs.sock" || echo "trs-relay: no status ($DIR/trs.sock)"
  [ "$scenario" = nat ] || return 0
  echo
  echo "NAT scenario: one pair per row of DESIGN §5"
  local tmp init
  tmp=$(mktemp -d)
  for init in $(echo "$NAT_PAIRS" | awk '{print $1}' | sort -u); do
    "$BIN/cyphonic-node" status --control "$DIR/$init.sock" --json >"$tmp/$init.json" 2>/dev/null || rm -f "$tmp/$init.json"
  done
  echo "$NAT_PAIRS" | python3 -c "$PAIRS_PY" "$tmp" $DOMAIN
  rm -rf "$tmp"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  # For lab/smoke.sh and lab/smoke-nat.sh: start one daemon again (after a kill -9).
  start-nms) start_nms ;;
  start-trs) start_trs ;;
  start-node) start_node "$2" ;;
  start-prometheus) start_prometheus ;;
  add-node) add_node "$2" "$3" "${4:-}" ;;
  # The NAT scenario's knobs (lab/topology.sh): ROUTER drops UDP to and from OTHER, or
  # not; a router's mapping behaviour (eim or symmetric) at runtime.
  block) topology_block "$2" "$3" ;;
  unblock) topology_unblock "$2" "$3" ;;
  nat-mode) topology_nat_mode "$2" "$3" ;;
  nat-pairs) echo "$NAT_PAIRS" ;;
  *)
    echo "usage: [SCENARIO=nat|ha] $0 up | down | status | start-nms | start-trs | start-node NAMESPACE" >&2
    echo "       | add-node NAME NAMESPACE [GROUP] | block|unblock ROUTER IPV4 | nat-mode ROUTER eim|symmetric | nat-pairs" >&2
    exit 2
    ;;
esac
