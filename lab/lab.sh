#!/usr/bin/env bash
# The CYPHONIC lab (DESIGN §6, the paper's evaluation model, Fig. 4): one underlay bridge,
# the cloud services, one responder and N initiators, each in its own network namespace.
#
#                         cy-net (bridge br0, 198.19.0.0/24, 2001:db8:1::/64)
#        ┌──────────────────────┬───────────────┴──────┬──────────────┬─────────┐
#   cy-cloud .2 / ::2       cy-resp .10 / ::10   cy-init01 .11 / ::11   …   cy-init10 .20 / ::20
#   as-server  :4501        cyphonic-node :30000  cyphonic-node :30000       cyphonic-node
#   nms-server :4502,:4512  resolver 127.0.0.53   resolver 127.0.0.53        resolver
#                           iperf3 -s             (tun cyph0: 198.18.x.y, 2001:db8:c0ff:ee::/64)
#
#   lab/lab.sh up      build-free: start everything from $BIN, wait until every node is
#                      registered with the NMS, print what to try
#   lab/lab.sh status  each node's registration, NAT behaviour and tunnels; the NMS's view
#   lab/lab.sh down    stop every process, remove every namespace, file and resolv.conf it
#                      made (idempotent; safe after a failed up)
#
# Environment: LAB_INITIATORS (default 10), LAB_DIR (default /run/cyphonic-lab),
# BIN (default .build/release), LAB_PIPELINE (multi or single), LAB_TIMEOUT (seconds to
# wait for registrations, default 60).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
. lab/topology.sh

N=${LAB_INITIATORS:-10}
DIR=${LAB_DIR:-/run/cyphonic-lab}
BIN=${BIN:-.build/release}
PIPELINE=${LAB_PIPELINE:-multi}
TIMEOUT=${LAB_TIMEOUT:-60}
DOMAIN=cyphonic.internal

CLOUD=cy-cloud
RESP=cy-resp
CLOUD4=198.19.0.2
CLOUD6=2001:db8:1::2
RESP4=198.19.0.10
RESP6=2001:db8:1::10

inits() { for i in $(seq 1 "$N"); do printf 'cy-init%02d\n' "$i"; done; }
node_name() { [ "$1" = "$RESP" ] && echo responder || echo "init${1#cy-init}"; }
say() { echo "lab: $*" >&2; }

# On a failed up: keep the logs (outside $DIR, which down removes), then tear down.
failed() {
  local keep
  keep=/tmp/cyphonic-lab-failed-$(date +%Y%m%d-%H%M%S)
  mkdir -p "$keep" && cp "$DIR"/*.log "$keep"/ 2>/dev/null
  say "failed; the daemons' logs are kept in $keep; tearing down"
  down
}

down() {
  set +e
  local namespaces
  namespaces=$(ip netns list 2>/dev/null | awk '{print $1}' | grep '^cy-')
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
  rm -rf "$DIR"
  say "down: every cy-* namespace, its processes, /etc/netns/cy-* and $DIR removed"
}

# node_config NAME — the daemon's config: state from enrolment, NMS from the provision,
# the resolver on 127.0.0.53:53 of its namespace.
node_config() {
  cat >"$DIR/$1.json" <<EOF
{ "stateDir": "$DIR/$1", "control": "$DIR/$1.sock", "metrics": "127.0.0.1:9452",
  "pipeline": "$PIPELINE", "keepaliveSeconds": 5,
  "resolver": { "listen": ["127.0.0.53:53"] } }
EOF
}

# enrol NAME NAMESPACE [GROUP] — adds the node to the AS, enrols it with
# `cyphonic-node enroll`, writes its config and its namespace's resolv.conf.
enrol() {
  local group=()
  [ -n "${3:-}" ] && group=(--group "$3")
  "$BIN/as-server" node add "$1" "${group[@]}" --data-dir "$DIR/as" --json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' >"$DIR/$1.token"
  ip netns exec "$2" "$BIN/cyphonic-node" enroll --as $CLOUD4:4501 --ca "$DIR/as/ca.pem" \
    --token-file "$DIR/$1.token" --state-dir "$DIR/$1" >/dev/null
  rm -f "$DIR/$1.token"
  node_config "$1"
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
  "$BIN/as-server" node add "$1" --data-dir "$DIR/as" --json \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' >"$DIR/$1.token"
  chmod 600 "$DIR/$1.token"
  cat >"$DIR/$1.json" <<EOF
{ "stateDir": "$DIR/$1", "control": "$DIR/$1.sock", "metrics": "127.0.0.1:9452",
  "pipeline": "$PIPELINE", "keepaliveSeconds": 5,
  "enroll": { "asEndpoint": "$CLOUD4:4501", "ca": "$DIR/as/ca.pem", "tokenFile": "$DIR/$1.token" },
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

registered() { "$BIN/nms-server" status --control "$DIR/nms.sock" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["registered"])'; }

start_nms() {
  ip netns exec $CLOUD "$BIN/nms-server" serve --bundle "$DIR/nms" \
    --listen $CLOUD4:4502 --listen "[$CLOUD6]:4502" --probe-listen $CLOUD4:4512 --probe-listen "[$CLOUD6]:4512" \
    --as $CLOUD4:4501 --metrics 127.0.0.1:9453 --control "$DIR/nms.sock" >>"$DIR/nms.log" 2>&1 &
}

start_node() { # namespace
  local name
  name=$(node_name "$1")
  ip netns exec "$1" "$BIN/cyphonic-node" run --config "$DIR/$name.json" >>"$DIR/$name.log" 2>&1 &
}

up() {
  [ "$(id -u)" -eq 0 ] || { say "needs root (namespaces, TUN)"; exit 1; }
  if ip netns list 2>/dev/null | grep -q '^cy-'; then say "a lab is up already: 'make lab-down' first"; exit 1; fi
  for b in as-server nms-server cyphonic-node; do [ -x "$BIN/$b" ] || { say "$BIN/$b missing: run 'make release'"; exit 1; }; done
  trap 'failed' ERR
  mkdir -p "$DIR"
  chmod 700 "$DIR"
  say "[1/6] namespaces: $TOPO_NET (bridge), $CLOUD, $RESP, cy-init01 … $(inits | tail -1)"
  topology_bridge
  topology_attach $CLOUD $CLOUD4 cloud $CLOUD6
  topology_attach $RESP $RESP4 resp $RESP6
  for i in $(seq 1 "$N"); do
    # shellcheck disable=SC2046
    topology_attach $(topology_initiator "$i")
  done

  say "[2/6] as-server in $CLOUD at $CLOUD4:4501 and [$CLOUD6]:4501"
  "$BIN/as-server" init --data-dir "$DIR/as" --domain $DOMAIN --nms $CLOUD4:4502 --nms "[$CLOUD6]:4502" >/dev/null
  "$BIN/as-server" service add nms nms.$DOMAIN --data-dir "$DIR/as" --out "$DIR/nms" >/dev/null
  ip netns exec $CLOUD "$BIN/as-server" serve --data-dir "$DIR/as" --listen $CLOUD4:4501 --listen "[$CLOUD6]:4501" \
    --metrics 127.0.0.1:9451 >"$DIR/as.log" 2>&1 &
  wait_for "the as-server to listen" 10 grep -q "listening" "$DIR/as.log"

  say "[3/6] nms-server in $CLOUD at $CLOUD4:4502 and [$CLOUD6]:4502 (NAT probes :4512)"
  start_nms
  wait_for "the nms-server to listen" 10 grep -q "listening" "$DIR/nms.log"

  say "[4/6] enrolling responder and $N initiators"
  enrol responder $RESP
  for ns in $(inits | head -n -1); do enrol "$(node_name "$ns")" "$ns"; done
  # The last initiator enrols itself: its daemon's `enroll` config (token file, CA, AS).
  local last
  last=$(inits | tail -1)
  enrol_by_daemon "$(node_name "$last")" "$last"

  say "[5/6] starting cyphonic-node ($PIPELINE pipeline) in every node namespace"
  start_node $RESP
  for ns in $(inits); do start_node "$ns"; done
  ip netns exec $RESP iperf3 -s -D --pidfile "$DIR/iperf3.pid" >/dev/null

  say "[6/6] waiting for $((N + 1)) registrations with the NMS (at most ${TIMEOUT}s)"
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
  trap - ERR
  rm -f "$DIR"/*.token
  local rvip4 rvip6
  rvip4=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["virtualIPv4"])' "$DIR/responder/node.json")
  rvip6=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["virtualIPv6"])' "$DIR/responder/node.json")
  cat <<EOF

CYPHONIC lab is up: $count nodes registered with the NMS.
  responder   responder.$DOMAIN  $rvip4 $rvip6  (namespace $RESP, underlay $RESP4 / $RESP6)
  initiators  init01 … $(printf 'init%02d' "$N").$DOMAIN  (namespaces cy-init01 …, underlay 198.19.0.11 … / 2001:db8:1::11 …)
  cloud       as-server $CLOUD4:4501, nms-server $CLOUD4:4502 (namespace $CLOUD)
  state, configs and logs in $DIR

Try (the first lookup of a name sets up its tunnel through the NMS):
  ip netns exec cy-init01 ping responder.$DOMAIN
  ip netns exec cy-init01 ping -6 responder.$DOMAIN
  ip netns exec cy-init01 iperf3 -c responder.$DOMAIN
  ip netns exec cy-init01 dig responder.$DOMAIN AAAA
  make lab-status
  make lab-down
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
    print("    tunnel to %s at %s: %s%s, rx %d tx %d packets" % (p["fqdn"], p.get("endpoint") or "?", p["route"], path,
          p["rxPackets"], p["txPackets"]))
'

status() {
  [ -S "$DIR/nms.sock" ] || { say "no lab is up ($DIR/nms.sock missing)"; exit 1; }
  for s in "$DIR"/responder.sock "$DIR"/init*.sock; do
    [ -S "$s" ] || continue
    "$BIN/cyphonic-node" status --control "$s" --json | python3 -c "$STATUS_PY"
  done
  echo
  "$BIN/nms-server" status --control "$DIR/nms.sock"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  # For lab/smoke.sh: start one daemon again (after a kill -9).
  start-nms) start_nms ;;
  start-node) start_node "$2" ;;
  add-node) add_node "$2" "$3" "${4:-}" ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
