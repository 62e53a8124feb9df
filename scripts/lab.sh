#!/usr/bin/env bash
# The lab of network namespaces (DESIGN §6): a bridge namespace cy-net, the cloud
# cy-cloud (as-server), the responder cy-resp and initiators cy-init01 … cy-init10, every
# node enrolled with the AS and running cyphonic-node. Until nms-server and the resolver
# exist, the initiators reach the responder as a static peer (no FQDN resolution yet).
#
#   scripts/lab.sh up     build (release), create and start everything, print how to use it
#   scripts/lab.sh down   stop every process and remove every namespace and file it made
#   scripts/lab.sh status each node's sessions
#
# Environment: LAB_INITIATORS (default 10), LAB_DIR (default /run/cyphonic-lab),
# BIN (default .build/release), LAB_PIPELINE (multi or single).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
. scripts/topology.sh

N=${LAB_INITIATORS:-10}
DIR=${LAB_DIR:-/run/cyphonic-lab}
BIN=${BIN:-.build/release}
PIPELINE=${LAB_PIPELINE:-multi}

CLOUD=cy-cloud
RESP=cy-resp
AS_ADDR=198.19.0.2
RESP_ADDR=198.19.0.10

inits() { for i in $(seq 1 "$N"); do printf 'cy-init%02d\n' "$i"; done; }
say() { echo "lab: $*" >&2; }

down() {
  set +e
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^cy-'); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null
  done
  sleep 1
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^cy-'); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$DIR"
  say "down: every cy-* namespace, process and $DIR removed"
}

node_config() {
  local name=$1 peers=$2
  cat >"$DIR/$name.json" <<EOF
{ "stateDir": "$DIR/$name", "control": "$DIR/$name.sock", "metrics": "127.0.0.1:9452",
  "pipeline": "$PIPELINE", "peers": $peers }
EOF
}

up() {
  [ "$(id -u)" -eq 0 ] || { say "needs root (namespaces, TUN)"; exit 1; }
  if ip netns list 2>/dev/null | grep -q '^cy-'; then say "a lab is up already: 'make lab-down' first"; exit 1; fi
  for b in as-server cyphonic-node; do [ -x "$BIN/$b" ] || { say "$BIN/$b missing: run 'make release'"; exit 1; }; done
  trap 'say "failed; tearing down"; down' ERR
  mkdir -p "$DIR"
  chmod 700 "$DIR"
  say "namespaces: $TOPO_NET (bridge), $CLOUD, $RESP, cy-init01 … $(inits | tail -1)"
  topology_bridge
  topology_attach $CLOUD $AS_ADDR cloud
  topology_attach $RESP $RESP_ADDR resp
  for i in $(seq 1 "$N"); do
    # shellcheck disable=SC2046
    topology_attach $(topology_initiator "$i")
  done

  say "as-server in $CLOUD at $AS_ADDR:4501"
  "$BIN/as-server" init --data-dir "$DIR/as" --domain cyphonic.internal >/dev/null
  ip netns exec $CLOUD "$BIN/as-server" serve --data-dir "$DIR/as" --listen $AS_ADDR:4501 \
    --metrics 127.0.0.1:9451 >"$DIR/as.log" 2>&1 &
  for _ in $(seq 1 50); do grep -q "listening" "$DIR/as.log" 2>/dev/null && break; sleep 0.1; done

  enrol() {  # name namespace
    "$BIN/as-server" node add "$1" --data-dir "$DIR/as" --json \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' >"$DIR/$1.token"
    ip netns exec "$2" "$BIN/cyphonic-node" enroll --as $AS_ADDR:4501 --ca "$DIR/as/ca.pem" \
      --token-file "$DIR/$1.token" --state-dir "$DIR/$1" >/dev/null
    rm -f "$DIR/$1.token"
  }
  say "enrolling responder and $N initiators"
  enrol responder $RESP
  node_config responder '[]'
  i=0
  for ns in $(inits); do
    i=$((i + 1))
    local name
    name=$(printf 'init%02d' $i)
    enrol "$name" "$ns"
    node_config "$name" "[{ \"fqdn\": \"responder.cyphonic.internal\", \"endpoint\": \"$RESP_ADDR:30000\" }]"
  done

  say "starting cyphonic-node ($PIPELINE pipeline) in every node namespace"
  ip netns exec $RESP "$BIN/cyphonic-node" run --config "$DIR/responder.json" >"$DIR/responder.log" 2>&1 &
  i=0
  for ns in $(inits); do
    i=$((i + 1))
    local name
    name=$(printf 'init%02d' $i)
    ip netns exec "$ns" "$BIN/cyphonic-node" run --config "$DIR/$name.json" >"$DIR/$name.log" 2>&1 &
  done
  local rvip
  rvip=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["virtualIPv4"])' "$DIR/responder/node.json")
  say "waiting for $N tunnels"
  local ok=0
  for _ in $(seq 1 100); do
    ok=0
    for ns in $(inits); do ip netns exec "$ns" ping -c 1 -W 1 "$rvip" >/dev/null 2>&1 && ok=$((ok + 1)); done
    [ $ok -eq "$N" ] && break
    sleep 0.3
  done
  trap - ERR
  cat <<EOF

CYPHONIC lab is up: $ok of $N initiators reach the responder through their tunnels.
  responder   responder.cyphonic.internal  $rvip  (namespace $RESP, underlay $RESP_ADDR)
  initiators  init01 … $(printf 'init%02d' "$N").cyphonic.internal  (namespaces cy-init01 …, underlay 198.19.0.11 …)
  AS          $AS_ADDR:4501 in $CLOUD; state, configs and logs in $DIR

Try:
  ip netns exec cy-init01 ping $rvip
  ip netns exec $RESP iperf3 -s -D ; ip netns exec cy-init01 iperf3 -c $rvip
  ip netns exec $RESP $BIN/cyphonic-node status --control $DIR/responder.sock
  make lab-down

(Names such as responder.cyphonic.internal resolve once nms-server and the node's
resolver exist; until then initiators know the responder as a static peer.)
EOF
  [ $ok -eq "$N" ]
}

status() {
  for s in "$DIR"/*.sock; do
    [ -S "$s" ] || continue
    "$BIN/cyphonic-node" status --control "$s" | head -2
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
