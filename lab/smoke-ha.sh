#!/usr/bin/env bash
# make lab-smoke-ha: the HA scenario end to end (issue 15; lab/README.md "HA scenario").
# Brings `SCENARIO=ha lab/lab.sh up` up with 4 initiators and the relayed pair lan4 ->
# lan1, then, failing loudly on the first miss:
#   1. the nodes are spread over both NMS replicas; every initiator pings the responder
#      by name (some across replicas), lan4 pings lan1 through a relay
#   2. pings run on through everything below, every 0.2 s: init01 -> responder (direct)
#      and lan4 -> lan1 (relayed)
#   3. kill -9 the NMS replica the responder is registered with: its nodes register with
#      the other within 15 s; new lookups (tunnels to names not looked up before) from
#      nodes of both replicas succeed, each within 15 s of the kill
#   4. kill -9 the relay that carries lan4 -> lan1: the path moves to the other relay
#      and pings flow again within 15 s
#   5. kill -9 the first AS: a node enrolled at the second logs in again there, and a new
#      node is enrolled there (the database is shared)
#   6. neither ping stream had a gap over 15 s; each kill's recovery time is printed
#   7. lab down leaves no namespace, process or file (nor the PostgreSQL cluster)
# On failure the logs and `lab.sh status` are kept in /tmp/cyphonic-lab-smoke-ha-failed-*.
# Environment: BIN (default .build/release), LAB_DIR.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
export BIN=${BIN:-.build/release}
export LAB_INITIATORS=4 SCENARIO=ha
DIR=${LAB_DIR:-/run/cyphonic-lab}
DOMAIN=cyphonic.internal

say() { echo "lab-smoke-ha: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || { say "skipped: needs root (network namespaces, TUN, PostgreSQL as its user)"; exit 0; }
if ip netns list 2>/dev/null | grep -q '^cy-'; then
  say "a lab (cy-* namespaces) is up; 'make lab-down' first (the smoke test would tear it down)"
  exit 1
fi
PINGS=() # background pings and lookups, ended by finish
finish() {
  local rc=$?
  set +e
  for p in "${PINGS[@]}"; do kill "$p" 2>/dev/null; done
  if [ $rc -ne 0 ] && [ -d "$DIR" ]; then
    local keep
    keep=/tmp/cyphonic-lab-smoke-ha-failed-$(date +%Y%m%d-%H%M%S)
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
secs() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }
vip() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$DIR/$1/node.json" "virtualIPv$2"; }
node_json() { "$BIN/cyphonic-node" status --control "$DIR/$1.sock" --json 2>/dev/null; }
# nms_of NODE — the NMS endpoint NODE is registered with (empty while it is not).
nms_of() { node_json "$1" | python3 -c 'import json,sys; s=json.load(sys.stdin)["signaling"]; print(s["nms"] if s["state"]=="registered" else "")' || true; }
# replica_of ENDPOINT — nms1 or nms2 (by the address in ENDPOINT).
replica_of() { case "$1" in *198.19.0.33:* | *::33\]:*) echo nms1 ;; *198.19.0.34:* | *::34\]:*) echo nms2 ;; *) echo "" ;; esac; }
# relay_of NODE PEER — trs1 or trs2: the relay NODE's tunnel to PEER goes through.
relay_of() {
  local e
  e=$(node_json "$1" | python3 -c '
import json, sys
for p in json.load(sys.stdin)["peers"]:
    if p["fqdn"] == sys.argv[1] and p["route"] == "relay": print(p.get("endpoint") or "")' "$2.$DOMAIN") || true
  case "$e" in *198.19.0.35:* | *::35\]:*) echo trs1 ;; *198.19.0.36:* | *::36\]:*) echo trs2 ;; *) echo "" ;; esac
}
count_on() { "$BIN/nms-server" status --control "$DIR/$1.sock" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["registered"])' 2>/dev/null || echo 0; }
# max_gap FILE START END — the longest time in ms without an answered ping in `ping -D`
# output, from 1 s after START (the first answer takes a moment) to END (epoch seconds):
# silence at either end counts too.
max_gap() {
  python3 -c '
import re, sys
t = [float(m.group(1)) for m in re.finditer(r"^\[(\d+\.\d+)\] \d+ bytes from", open(sys.argv[1]).read(), re.M)]
t = [float(sys.argv[2]) + 1] + t + [float(sys.argv[3])]
print(int(max(b - a for a, b in zip(t, t[1:])) * 1000))' "$1" "$2" "$3"
}
epoch() { date +%s.%N; }
answered() { grep -c " bytes from " "$1" 2>/dev/null || echo 0; }
# within SECONDS COMMAND… — runs COMMAND until it succeeds; prints ms it took; fails after SECONDS.
within() {
  local limit=$1 start
  shift
  start=$(now_ms)
  until "$@" >/dev/null 2>&1; do
    [ $(($(now_ms) - start)) -le $((limit * 1000)) ] || return 1
    sleep 0.2
  done
  echo $(($(now_ms) - start))
}
registered_on() { [ "$(replica_of "$(nms_of "$1")")" = "$2" ]; }
lookup() { ip netns exec "$1" getent hosts "$2.$DOMAIN"; }
pings_again() { ip netns exec "$1" ping -c 1 -W 1 "$2"; }
all_on() { [ "$(count_on "$1")" -ge "$2" ]; }

lab/lab.sh up >/dev/null
NODES="responder init01 init02 init03 init04 lan1 lan4"
TOTAL=7
say "HA lab up: PostgreSQL, 2 AS, 2 NMS replicas, 2 relays; $TOTAL nodes"

say "1. nodes over both NMS replicas; tunnels by name across them; lan4 -> lan1 relayed"
declare -A ON
for n in $NODES; do
  ON[$n]=$(replica_of "$(nms_of "$n")")
  [ -n "${ON[$n]}" ] || fail "$n is not registered with an NMS replica ($(nms_of "$n"))"
done
on1=$(count_on nms1)
on2=$(count_on nms2)
say "   registered: nms1 $on1, nms2 $on2 ($(for n in $NODES; do printf '%s@%s ' "$n" "${ON[$n]}"; done))"
[ "$on1" -ge 1 ] && [ "$on2" -ge 1 ] && [ $((on1 + on2)) -eq $TOTAL ] || fail "nodes are not spread over both replicas"
resp4=$(vip responder 4)
cross=0
for i in 01 02 03 04; do
  out=$(ip netns exec "cy-init$i" ping -c 3 -i 0.3 -W 2 "responder.$DOMAIN" 2>&1) || fail "init$i -> responder: $out"
  grep -q " 0% packet loss" <<<"$out" || fail "init$i -> responder lost pings: $(tail -2 <<<"$out")"
  [ "${ON[init$i]}" != "${ON[responder]}" ] && cross=$((cross + 1))
done
say "   4 initiators ping responder.$DOMAIN, 0% loss ($cross of them registered with the other replica than the responder)"
[ $cross -ge 1 ] || fail "no initiator registered with another replica than the responder's"
lan1=$(vip lan1 4)
ip netns exec cy-lan4 ping -c 3 -i 0.3 -W 2 "lan1.$DOMAIN" >/dev/null || fail "lan4 -> lan1 does not answer"
relay=$(relay_of lan4 lan1)
[ -n "$relay" ] || fail "lan4 -> lan1 is not relayed"
say "   lan4 -> lan1 relayed through $relay"

say "2. pings every 0.2 s from now on: init01 -> responder ($resp4), lan4 -> lan1 ($lan1)"
ping_start=$(epoch)
ip netns exec cy-init01 ping -D -i 0.2 -W 1 "$resp4" </dev/null >"$DIR/ping-direct.txt" 2>&1 &
PINGS+=($!)
ip netns exec cy-lan4 ping -D -i 0.2 -W 1 "$lan1" </dev/null >"$DIR/ping-relayed.txt" 2>&1 &
PINGS+=($!)
sleep 2

victim=${ON[responder]}
other=$([ "$victim" = nms1 ] && echo nms2 || echo nms1)
say "3. kill -9 $victim (the responder's NMS); its nodes move to $other; new lookups from both replicas"
kill9_at=$(now_ms)
ip netns pids "cy-$victim" | xargs -r kill -9
# New tunnels: names not looked up before, from a node of each replica (at once).
declare -A LOOKUP_MS
for pair in "init02 init03" "init03 init04" "init04 init01"; do
  read -r a b <<<"$pair"
  ( ms=$(within 15 lookup "cy-$a" "$b") && echo "$a $b $ms" >>"$DIR/lookups.txt" || echo "$a $b FAIL" >>"$DIR/lookups.txt" ) </dev/null >/dev/null 2>&1 &
  PINGS+=($!)
done
ms=$(within 15 all_on "$other" $TOTAL) || fail "the nodes did not all register with $other within 15 s of the kill (on it: $(count_on "$other"))"
say "   all $TOTAL nodes registered with $other $(secs "$ms") s after the kill"
wait_lookups() { [ "$(grep -c . "$DIR/lookups.txt" 2>/dev/null || echo 0)" -ge 3 ]; }
within 20 wait_lookups >/dev/null || fail "lookups did not finish"
while read -r a b ms; do
  [ "$ms" != FAIL ] || fail "new lookup $a -> $b failed for 15 s after the kill"
  say "   new lookup $a (was on ${ON[$a]}) -> $b ($b was on ${ON[$b]}): answered $(secs $(( ms + 0 ))) s after the kill"
done <"$DIR/lookups.txt"
ip netns exec cy-init02 ping -c 2 -i 0.3 -W 2 "init03.$DOMAIN" >/dev/null || fail "init02 -> init03 does not answer after the lookup"

say "4. kill -9 the relay of lan4 -> lan1 ($relay); the path moves to the other relay"
kill9_at=$(now_ms)
ip netns pids "cy-$relay" | xargs -r kill -9
moved() { r=$(relay_of lan4 lan1); [ -n "$r" ] && [ "$r" != "$relay" ] && pings_again cy-lan4 "$lan1"; }
ms=$(within 15 moved) || fail "lan4 -> lan1 did not move off $relay within 15 s (now: $(relay_of lan4 lan1))"
say "   lan4 -> lan1 through $(relay_of lan4 lan1), pinging again $(secs "$ms") s after the kill"

say "5. kill -9 as1; the second AS serves logins and enrolments from the shared database"
ip netns pids cy-as1 | xargs -r kill -9
enrolled_at_as2=""
for n in $NODES; do
  grep -q '198.19.0.32' "$DIR/$n/node.json" 2>/dev/null && { enrolled_at_as2=$n; break; }
done
[ -n "$enrolled_at_as2" ] || fail "no node was enrolled at as2"
out=$(ip netns exec "cy-$enrolled_at_as2" "$BIN/cyphonic-node" login --state-dir "$DIR/$enrolled_at_as2" 2>&1) \
  || fail "$enrolled_at_as2 cannot log in at as2: $out"
say "   $enrolled_at_as2 logged in again at as2"
ip netns exec cy-as1 "$BIN/as-server" node add extra --data-dir "$DIR/as1" --json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' >"$DIR/extra.token"
mkdir -p "$DIR/extra-state"
ip netns exec cy-init01 "$BIN/cyphonic-node" enroll --as 198.19.0.32:4501 --ca "$DIR/as/ca.pem" --token-file "$DIR/extra.token" \
  --state-dir "$DIR/extra-state" >/dev/null || fail "enrolment at as2 failed"
say "   a new node (extra) enrolled at as2: $(vip extra-state 4)"

say "6. the ping streams across all three kills"
sleep 1
ping_end=$(epoch)
for p in "${PINGS[@]}"; do kill "$p" 2>/dev/null || true; done
PINGS=()
sleep 0.3
gd=$(max_gap "$DIR/ping-direct.txt" "$ping_start" "$ping_end")
gr=$(max_gap "$DIR/ping-relayed.txt" "$ping_start" "$ping_end")
say "   init01 -> responder: $(answered "$DIR/ping-direct.txt") answered, longest gap $(secs "$gd") s"
say "   lan4 -> lan1 (relayed): $(answered "$DIR/ping-relayed.txt") answered, longest gap $(secs "$gr") s"
[ "$gd" -le 15000 ] || fail "init01 -> responder went $(secs "$gd") s without an answer"
[ "$gr" -le 15000 ] || fail "lan4 -> lan1 went $(secs "$gr") s without an answer"

say "7. lab down"
trap - EXIT
lab/lab.sh down >/dev/null
left=$(ip netns list 2>/dev/null | grep -c '^cy-' || true)
[ "$left" -eq 0 ] || fail "$left cy-* namespaces left"
[ ! -e "$DIR" ] && [ ! -e "${DIR}-pg" ] || fail "$DIR or ${DIR}-pg left"
pgrep -f "$DIR" >/dev/null && fail "processes of the lab left"
say "PASS"
