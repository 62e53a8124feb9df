#!/usr/bin/env bash
# make lab-smoke-nat: the NAT scenario end to end (issue 11, point 4; DESIGN §5–§6,
# lab/README.md "NAT scenario"). Brings `SCENARIO=nat lab/lab.sh up` up with 2
# initiators, then checks, failing loudly on the first miss:
#   1. every pair of the scenario (one per row of DESIGN §5) pings its peer by name,
#      0 % loss, and the initiator's status reports the expected route
#   2. a 3-second iperf3 through the relay (lan4 -> lan1, symmetric NAT)
#   3. v4only <-> v6only (no shared underlay family) over both virtual families; then
#      forged relay requests with lan1's identity (another signer, expired, other nodes)
#      are refused and counted by the relay
#   4. trs-relay kill -9 and restart: lan4 -> lan1 pings again within 15 s
#   5. relay -> direct: cy-nat4 stops blocking cy-nat2 while lan5 pings lan3; the tunnel
#      goes direct (punched) within 20 s, no ping lost
#   6. direct -> relay: cy-nat4 blocks again while lan5 pings lan3; the tunnel is relayed
#      again and pings flow again within 5 s of the block
#   7. a relayed tunnel outlives its path authorization: the lab's NMS authorizes relay
#      paths for 60 s (LAB_RELAY_AUTH_SECONDS); lan4 pings lan1 through the relay for
#      80 s, across a renewal and past the end of the authorization it had: 0 % loss,
#      the same path, both ends' authorization of it renewed
#   8. lab down leaves no namespace, process or file
# The lab is torn down on any exit (trap; on failure the logs and `lab.sh status` are kept
# in /tmp/cyphonic-lab-smoke-nat-failed-*); it refuses to start when a lab is up already.
# Environment: BIN (default .build/release), LAB_DIR.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
export BIN=${BIN:-.build/release}
export LAB_INITIATORS=2 SCENARIO=nat
# Relay paths authorized for 60 s (the NMS's least): every relayed tunnel of the run
# lives on renewed authorizations, and step 7 watches one renewal closely.
export LAB_RELAY_AUTH_SECONDS=60
DIR=${LAB_DIR:-/run/cyphonic-lab}
DOMAIN=cyphonic.internal

say() { echo "lab-smoke-nat: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || { say "skipped: needs root (network namespaces, TUN, nftables)"; exit 0; }
# It brings up its own lab and tears it down: never someone else's (lab/smoke.sh uses
# cy-nat1 and 198.19.10.0/24 too, so the two never run at once).
if ip netns list 2>/dev/null | grep -q '^cy-'; then
  say "a lab (cy-* namespaces) is up; 'make lab-down' first (the smoke test would tear it down)"
  exit 1
fi
. lab/topology.sh

finish() {
  local rc=$?
  set +e
  if [ $rc -ne 0 ] && [ -d "$DIR" ]; then
    local keep
    keep=/tmp/cyphonic-lab-smoke-nat-failed-$(date +%Y%m%d-%H%M%S)
    mkdir -p "$keep"
    cp "$DIR"/*.log "$DIR"/ping-*.txt "$keep"/ 2>/dev/null
    lab/lab.sh status >"$keep/status.txt" 2>&1
    say "logs and 'lab.sh status' kept in $keep"
  fi
  lab/lab.sh down >/dev/null 2>&1
}
trap finish EXIT
trap 'say "FAIL: line $LINENO: $BASH_COMMAND"' ERR

now_ms() { echo $(($(date +%s%N) / 1000000)); }
since() { local ms=$(($(now_ms) - $1)); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }
vip() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$DIR/$1/node.json" "virtualIPv$2"; }
# tunnel NODE PEER — route, routeReason and endpoint of NODE's tunnel to PEER (tab
# separated), nothing when it has none.
tunnel() {
  "$BIN/cyphonic-node" status --control "$DIR/$1.sock" --json 2>/dev/null | python3 -c '
import json, sys
for p in json.load(sys.stdin)["peers"]:
    if p["fqdn"] == sys.argv[1]:
        print("\t".join((p["route"], p.get("routeReason") or "", p.get("endpoint") or ""))); break' "$2.$DOMAIN" || true
}
route() { tunnel "$1" "$2" | cut -f1; }
describe() { # NODE PEER: "route (reason) via endpoint"
  local r reason endpoint
  IFS=$'\t' read -r r reason endpoint <<<"$(tunnel "$1" "$2")" || true
  echo "${r:-no tunnel}${reason:+ ($reason)} via ${endpoint:-?}"
}
pid_of() { ip netns pids "$1" | xargs -r ps -o pid=,comm= -p | awk -v c="$2" '$2 == c { print $1 }'; }
# reach NS VIP SECONDS — polls one ping every 0.5 s until VIP answers; fails after SECONDS.
reach() {
  local start
  start=$(now_ms)
  until ip netns exec "$1" ping -c 1 -W 1 "$2" >/dev/null 2>&1; do
    [ $(($(now_ms) - start)) -le $(($3 * 1000)) ] || return 1
    sleep 0.5
  done
}

lab/lab.sh up >/dev/null
mapfile -t PAIRS < <(lab/lab.sh nat-pairs)
say "NAT lab up: ${#PAIRS[@]} pairs, one per row of DESIGN §5"

say "1. every pair pings its peer by name (IPv4, 3 packets, 0% loss), with the expected route"
for pair in "${PAIRS[@]}"; do
  read -r init ns peer expected row <<<"$pair"
  out=$(ip netns exec "$ns" ping -4 -c 3 -i 0.2 -W 2 "$peer.$DOMAIN" 2>&1) || true
  echo "$out" | grep -q " 0% packet loss" || fail "$init -> $peer ($row): $(echo "$out" | tail -2 | head -1)"
  say "   $init -> $peer ($row): $(describe "$init" "$peer")"
  [ "$(route "$init" "$peer")" = "$expected" ] || fail "$init -> $peer: route '$(route "$init" "$peer")', expected '$expected'"
done

say "2. iperf3 for 3 s through the relay: lan4 (symmetric NAT) -> lan1"
lan1=$(vip lan1 4)
ip netns exec cy-lan1 iperf3 -s -D >/dev/null
for _ in $(seq 1 25); do
  [ -n "$(ip netns exec cy-lan1 ss -Hltn 'sport = :5201')" ] && break
  sleep 0.2
done
json=$(ip netns exec cy-lan4 iperf3 -c "$lan1" -t 3 -J) || true
bps=$(echo "$json" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(int(r["end"]["sum_received"]["bits_per_second"]) if "error" not in r else "error: " + r["error"])' 2>&1) || true
[[ $bps =~ ^[0-9]+$ && $bps -gt 0 ]] || fail "iperf3 lan4 -> lan1 through the relay: $bps"
# rx_late NODE PEER — packets NODE took from PEER after a newer one (out of order).
rx_late() {
  "$BIN/cyphonic-node" status --control "$DIR/$1.sock" --json | python3 -c '
import json, sys
print(next((p.get("rxOutOfOrder", 0) for p in json.load(sys.stdin)["peers"] if p["fqdn"] == sys.argv[1]), "none"))' "$2.$DOMAIN"
}
say "   iperf3 TCP through the relay: $((bps / 1000000)) Mbit/s"
# One UDP flow at 300 Mbit/s: iperf3 counts datagrams that arrive out of order end to end.
ooo=$(ip netns exec cy-lan4 iperf3 -c "$lan1" -u -b 300M -l 1300 -t 2 -J | python3 -c '
import json, sys
s = json.load(sys.stdin)["end"]["sum"]
print(s.get("out_of_order", 0), round(s.get("lost_percent", 0), 2))' 2>&1) || true
say "   iperf3 UDP through the relay: out of order, lost %: $ooo"
[ "${ooo%% *}" = 0 ] || fail "datagrams out of order through the relay: $ooo"

say "3. v4only <-> v6only over both virtual families (the tunnel is relayed by the dual-stack TRS)"
for from in v4only v6only; do
  to=$([ $from = v4only ] && echo v6only || echo v4only)
  for v in 4 6; do
    out=$(ip netns exec "cy-$from" ping -$v -c 3 -i 0.2 -W 2 "$to.$DOMAIN" 2>&1) || true
    echo "$out" | grep -q " 0% packet loss" || fail "$from ping -$v $to: $(echo "$out" | tail -2 | head -1)"
  done
  say "   $from -> $to, ping -4 and -6: 0% loss; its tunnel: $(describe "$from" "$to")"
done

say "   forged relay requests with lan1's identity: another signer, expired, two other nodes"
ip netns exec cy-lan1 "$BIN/cyphonic-bench" forge-relay --relay 198.19.0.2:4503 --state-dir "$DIR/lan1" \
  --signing-cert "$DIR/nms/nms.$DOMAIN.sign.pem" --signing-key "$DIR/nms/nms.$DOMAIN.sign.key" 2>&1 | sed 's/^/     /' >&2 \
  || fail "a forged relay request was granted"
"$BIN/trs-relay" status --control "$DIR/trs.sock" --json | python3 -c '
import json, sys
r = json.load(sys.stdin)["refused"]
sys.exit(0 if all(r.get(k, 0) >= 1 for k in ("bad_signature", "expired", "wrong_node")) else "not counted: %s" % r)' \
  || fail "the relay did not count the forged requests by reason"

say "4. trs-relay kill -9 and restart: lan4 -> lan1 pings again within 15 s"
trs_pid=$(pid_of cy-cloud trs-relay)
[ -n "$trs_pid" ] || fail "no trs-relay in cy-cloud"
kill -9 "$trs_pid"
sleep 1
start=$(now_ms)
lab/lab.sh start-trs
reach cy-lan4 "$lan1" 15 || fail "lan4 -> lan1 ($lan1) did not answer within 15 s of the TRS restart"
say "   lan4 -> lan1 answered $(since "$start") s after the restart"
lan3=$(vip lan3 4)
reach cy-lan5 "$lan3" 15 || fail "lan5 -> lan3 ($lan3) did not answer within 15 s of the TRS restart"
say "   lan5 -> lan3 answered $(since "$start") s after the restart"

say "5. relay -> direct: cy-nat4 unblocks cy-nat2 while lan5 pings lan3; no ping lost"
[ "$(route lan5 lan3)" = relay ] || fail "lan5 -> lan3 is not relayed before the unblock: $(describe lan5 lan3)"
# 25 s of pings: longer than the 20 s the switch may take, so the pings span it.
ip netns exec cy-lan5 ping -c 250 -i 0.1 "$lan3" >"$DIR/ping-relay-to-direct.txt" 2>&1 &
ping_pid=$!
sleep 1
topology_unblock cy-nat4 198.19.0.41
start=$(now_ms)
until r=$(route lan5 lan3); [ "$r" = punched ] || [ "$r" = direct ]; do
  [ $(($(now_ms) - start)) -le 20000 ] || fail "lan5 -> lan3 still '$r' 20 s after the unblock: $(describe lan5 lan3)"
  sleep 0.2
done
say "   lan5 -> lan3 went $r $(since "$start") s after the unblock: $(describe lan5 lan3)"
kill -0 $ping_pid 2>/dev/null || fail "the pings ended before the switch"
wait $ping_pid || true
grep -q " 0% packet loss" "$DIR/ping-relay-to-direct.txt" \
  || fail "pings lost across relay -> direct: $(grep loss "$DIR/ping-relay-to-direct.txt")"
say "   $(grep loss "$DIR/ping-relay-to-direct.txt"); out of order across the switch (counted): lan3 took $(rx_late lan3 lan5), lan5 took $(rx_late lan5 lan3)"

say "6. direct -> relay: cy-nat4 blocks cy-nat2 again while lan5 pings lan3; pings flow again within 5 s"
ip netns exec cy-lan5 ping -D -O -c 150 -i 0.1 "$lan3" >"$DIR/ping-direct-to-relay.txt" 2>&1 &
ping_pid=$!
sleep 2
topology_block cy-nat4 198.19.0.41
block=$(date +%s.%N)
start=$(now_ms)
until [ "$(route lan5 lan3)" = relay ]; do
  [ $(($(now_ms) - start)) -le 10000 ] || fail "lan5 -> lan3 not relayed 10 s after the block: $(describe lan5 lan3)"
  sleep 0.2
done
took=$(($(now_ms) - start))
say "   lan5 -> lan3 relayed again $(since "$start") s after the block: $(describe lan5 lan3)"
[ $took -le 5000 ] || fail "the fallback to the relay took more than 5 s"
wait $ping_pid || true
# The longest time without a reply, from ping's -D timestamps (receive times).
read -r gap gap_at replies after <<<"$(python3 - "$DIR/ping-direct-to-relay.txt" "$block" <<'PY'
import re, sys
ts = [float(t) for t in re.findall(r"^\[(\d+\.\d+)\] \d+ bytes from", open(sys.argv[1]).read(), re.M)]
block = float(sys.argv[2])
gap, at = max(((b - a, a) for a, b in zip(ts, ts[1:])), default=(0.0, block))
print("%.2f %.2f %d %d" % (gap, at - block, len(ts), sum(t > block for t in ts)))
PY
)"
say "   longest gap between replies: $gap s (from $gap_at s after the block); $replies replies, $after after the block; $(grep loss "$DIR/ping-direct-to-relay.txt")"
[ "$after" -ge 30 ] || fail "only $after replies after the block"
python3 -c 'import sys; sys.exit(float(sys.argv[1]) > 5)' "$gap" || fail "pings stopped for $gap s (more than 5 s)"

say "7. a relayed tunnel outlives its authorization: lan4 pings lan1 across a renewal and past the old one's end"
# expiry NODE PEER — when NODE's authorization of its path to PEER ends (Unix s); path_id
# NODE PEER — that path's id.
peer_field() {
  "$BIN/cyphonic-node" status --control "$DIR/$1.sock" --json | python3 -c '
import json, sys
print(next((p.get(sys.argv[2]) for p in json.load(sys.stdin)["peers"] if p["fqdn"] == sys.argv[1]), None))' "$2.$DOMAIN" "$3"
}
expiry() { peer_field "$1" "$2" pathAuthorizationExpires; }
path_id() { peer_field "$1" "$2" pathID; }
[ "$(route lan4 lan1)" = relay ] || fail "lan4 -> lan1 is not relayed: $(describe lan4 lan1)"
path=$(path_id lan4 lan1)
old4=$(expiry lan4 lan1)
old1=$(expiry lan1 lan4)
[[ $old4 =~ ^[0-9]+$ ]] || fail "lan4's status gives no authorization expiry for lan1: $old4"
# 80 s of pings. The authorization lan4 holds was given at most 45 s ago (renewals come 45 s
# into 60), so the renewal comes within 50 s and the old one ends within 15 s of it: the
# pings outlast it by 15 s or more, and end on their own (no echo cut off in flight).
ip netns exec cy-lan4 ping -c 400 -i 0.2 "$lan1" >"$DIR/ping-renewal.txt" 2>&1 &
ping_pid=$!
start=$(now_ms)
until [ "$(expiry lan4 lan1)" -gt "$old4" ]; do
  [ $(($(now_ms) - start)) -le 50000 ] || fail "lan4's authorization for lan1 (ending at $old4) not renewed within 50 s"
  sleep 0.5
done
say "   renewed $(since "$start") s into the pings (it ended at $old4, now at $(expiry lan4 lan1)); pinging on past $old4"
wait $ping_pid || true
[ "$(date +%s)" -gt "$old4" ] || fail "the pings ended before the old authorization did"
[ "$(expiry lan1 lan4)" -gt "$old1" ] || fail "lan1 did not get the renewed authorization (still $(expiry lan1 lan4))"
[ "$(path_id lan4 lan1)" = "$path" ] || fail "the path changed ($path -> $(path_id lan4 lan1)): renewed, not replaced, was expected"
[ "$(route lan4 lan1)" = relay ] || fail "lan4 -> lan1 no longer relayed: $(describe lan4 lan1)"
grep -q " 0% packet loss" "$DIR/ping-renewal.txt" || fail "pings lost across the renewal: $(grep loss "$DIR/ping-renewal.txt")"
say "   $(grep loss "$DIR/ping-renewal.txt"); path $path, the same on both ends' renewed authorization"

say "8. lab down leaves nothing"
trap - ERR
lab/lab.sh down >/dev/null
ip netns list | grep -q '^cy-' && fail "namespaces left: $(ip netns list | grep '^cy-')"
ls /etc/netns/cy-* >/dev/null 2>&1 && fail "/etc/netns/cy-* left"
[ -e "$DIR" ] && fail "$DIR left"
pgrep -f "$BIN/(cyphonic-node|nms-server|as-server|trs-relay)" >/dev/null && fail "daemons left: $(pgrep -af "$BIN/")"
say "PASS"
