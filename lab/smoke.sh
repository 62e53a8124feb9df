#!/usr/bin/env bash
# make lab-smoke: the lab end to end, as a new user would try it (issue 10). Brings the
# lab up, then checks, failing loudly on the first miss:
#   1. every initiator pings responder.cyphonic.internal by name, IPv4 and IPv6, 0 % loss
#   2. getent and dig (UDP, TCP, A, AAAA) answer with the responder's virtual IPs
#   3. a 3-second iperf3 through a tunnel, by name; a tunnel set up by name rekeys on
#      time (this lab: every 10 s) and carries pings throughout
#   4. a name that does not exist gets NXDOMAIN; malformed DNS gets FORMERR or a counted drop
#   5. nms-server kill -9 and restart: every node registered again within 15 s, the
#      tunnels already up carry pings throughout
#   6. a path down for longer than the silence limit: the tunnel closes; pings to the
#      peer's virtual IP reopen it (no name lookup) once the path is back
#   7. the responder daemon kill -9 and restart: its peers notice, a new lookup rebuilds
#   8. a node of another group: lookups across groups get SERVFAIL, counted as forbidden;
#      its resolver forwards other names to an upstream (a python3 DNS answerer in cy-cloud)
#   9. a NAT site (masquerade, unsolicited inbound dropped): the direct rows of DESIGN §5
#      end to end — same site (over the LAN), NATed → public, public → NATed
#  10. lab down leaves no namespace, process or file
# The lab is torn down on any exit (trap); it refuses to start when a lab is up already.
# Environment: BIN (default .build/release), LAB_DIR, LAB_INITIATORS (at least 8).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
export BIN=${BIN:-.build/release}
DIR=${LAB_DIR:-/run/cyphonic-lab}
N=${LAB_INITIATORS:-10}
NAME=responder.cyphonic.internal
LAST=$(printf 'cy-init%02d' "$N")

say() { echo "lab-smoke: $*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
[ "$(id -u)" -eq 0 ] || { say "skipped: needs root (network namespaces, TUN)"; exit 0; }
# It brings up its own lab and tears it down: never someone else's.
if ip netns list 2>/dev/null | grep -q '^cy-'; then
  say "a lab (cy-* namespaces) is up; 'make lab-down' first (the smoke test would tear it down)"
  exit 1
fi
[ "$N" -ge 8 ] || { say "needs LAB_INITIATORS >= 8"; exit 1; }
trap 'lab/lab.sh down >/dev/null 2>&1 || true' EXIT

# The nodes rekey every 10 s, so the tunnels set up by name rekey several times during the run.
REKEY_SECONDS=10
LAB_REKEY_SECONDS=$REKEY_SECONDS lab/lab.sh up >/dev/null
vip4=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["virtualIPv4"])' "$DIR/responder/node.json")
vip6=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["virtualIPv6"])' "$DIR/responder/node.json")
say "lab up; $NAME is $vip4 / $vip6"

say "1. ping by name from $N initiators (IPv4 and IPv6, 5 packets each)"
for i in $(seq -f %02g 1 "$N"); do
  for v in 4 6; do
    out=$(ip netns exec "cy-init$i" ping -$v -c 5 -i 0.2 -W 2 $NAME 2>&1) || true
    echo "$out" | grep -q " 0% packet loss" || fail "cy-init$i ping -$v $NAME: $(echo "$out" | tail -2 | head -1)"
  done
done

say "2. getent and dig answer with the virtual IPs"
ahosts=$(ip netns exec cy-init01 getent ahosts $NAME)
echo "$ahosts" | grep -q "^$vip4 " || fail "getent ahosts $NAME lacks $vip4: $ahosts"
echo "$ahosts" | grep -q "^$vip6 " || fail "getent ahosts $NAME lacks $vip6: $ahosts"
ip netns exec cy-init02 getent hosts $NAME | grep -q "$NAME" || fail "getent hosts $NAME"
[ "$(ip netns exec cy-init03 dig +short $NAME A)" = "$vip4" ] || fail "dig $NAME A"
[ "$(ip netns exec cy-init03 dig +short $NAME AAAA)" = "$vip6" ] || fail "dig $NAME AAAA"
[ "$(ip netns exec cy-init04 dig +tcp +short $NAME A)" = "$vip4" ] || fail "dig +tcp $NAME A"
[ "$(ip netns exec cy-init04 dig +tcp +short $NAME AAAA)" = "$vip6" ] || fail "dig +tcp $NAME AAAA"

say "3. iperf3 for 3 s through the tunnel, by name"
bps=$(ip netns exec cy-init05 iperf3 -c $NAME -t 3 -J | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]))')
[ "$bps" -gt 0 ] || fail "iperf3 moved nothing"
say "   iperf3: $((bps / 1000000)) Mbit/s"
# handshakes PEER — from cy-init07's status: handshakes completed with PEER, and the age of the newest.
handshakes() {
  "$BIN/cyphonic-node" status --control "$DIR/init07.sock" --json | python3 -c '
import json, sys
p = [p for p in json.load(sys.stdin)["peers"] if p["fqdn"] == sys.argv[1]]
age = p[0].get("handshakeAgeSeconds") if p else None
print(p[0]["handshakes"] if p else 0, -1 if age is None else int(age))' "$1"
}
read -r h0 _ < <(handshakes $NAME)
out=$(ip netns exec cy-init07 ping -c 125 -i 0.2 -W 1 $NAME 2>&1) || true
read -r h1 age < <(handshakes $NAME)
echo "$out" | grep -q " 0% packet loss" || fail "pings lost across rekeys of a tunnel set up by name: $(echo "$out" | grep loss)"
# Two or three rekeys in 25 s (one side rekeys; both sides rekeying would make about five).
[ $((h1 - h0)) -ge 2 ] && [ $((h1 - h0)) -le 4 ] && [ "$age" -ge 0 ] && [ "$age" -le $((REKEY_SECONDS + 5)) ] \
  || fail "cy-init07's tunnel to $NAME did not rekey once every $REKEY_SECONDS s: $((h1 - h0)) handshakes in 25 s, the newest ${age} s old (-1: none)"
say "   cy-init07 -> $NAME: $((h1 - h0)) rekeys in 25 s of pings, 0 % loss"

say "4. NXDOMAIN for an unknown name; malformed queries"
ip netns exec cy-init06 dig nosuch.cyphonic.internal A | grep -q "status: NXDOMAIN" || fail "nosuch.cyphonic.internal is not NXDOMAIN"
ip netns exec cy-init06 python3 - <<'PY' || fail "malformed DNS queries were not answered as expected"
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
def ask(b):
    s.sendto(b, ("127.0.0.53", 53))
    try: return s.recv(4096)
    except socket.timeout: return None
assert ask(b"\x12\x34\x01") is None                                       # shorter than a header: dropped
r = ask(struct.pack(">HHHHHH", 0x4242, 0x0100, 2, 0, 0, 0) + b"\x00\x00\x01\x00\x01" * 2)
assert r and r[:2] == b"\x42\x42" and r[3] & 0x0f == 1, r                 # two questions: FORMERR
r = ask(struct.pack(">HHHHHH", 0x4343, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01")
assert r and r[3] & 0x0f == 1, r                                           # pointer loop: FORMERR
PY
[ "$(ip netns exec cy-init06 dig +short $NAME A)" = "$vip4" ] || fail "the resolver stopped answering after malformed queries"
ip netns exec cy-init06 dig example.org A | grep -q "status: REFUSED" || fail "a name outside the overlay without an upstream is not REFUSED"

say "5. nms-server kill -9 and restart while a tunnel carries pings"
ip netns exec cy-init01 ping -c 120 -i 0.1 -W 1 "$vip4" >"$DIR/ping-during-nms-restart.txt" 2>&1 &
ping_pid=$!
pid_of() { ip netns pids "$1" | xargs -r ps -o pid=,comm= -p | awk -v c="$2" '$2 == c { print $1 }'; }
nms_pid=$(pid_of cy-cloud nms-server)
kill -9 "$nms_pid"
sleep 1
lab/lab.sh start-nms
start=$SECONDS
until [ "$("$BIN/nms-server" status --control "$DIR/nms.sock" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["registered"])' 2>/dev/null || echo 0)" -ge $((N + 1)) ]; do
  [ $((SECONDS - start)) -le 15 ] || fail "not every node registered again within 15 s of the NMS restart"
  sleep 0.2
done
say "   all $((N + 1)) nodes registered again $((SECONDS - start)) s after the restart"
wait $ping_pid || true
grep -q " 0% packet loss" "$DIR/ping-during-nms-restart.txt" || fail "pings lost during the NMS restart: $(grep loss "$DIR/ping-during-nms-restart.txt")"

say "6. the path to $NAME down for 25 s: the tunnel closes; pings by address reopen it"
# field NODE EXPR — EXPR (Python, on the JSON as s) of NODE's status.
field() {
  "$BIN/cyphonic-node" status --control "$DIR/$1.sock" --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(eval(sys.argv[1]))' "$2"
}
ip netns exec cy-init04 ping -c 2 -i 0.2 -W 2 $NAME >/dev/null 2>&1 || fail "cy-init04 ping $NAME before the outage"
queries=$(field init04 's["resolver"]["counters"]["queries"]')
# Tunnel datagrams (to and from the nodes' port) dropped both ways; the NMS stays reachable.
ip netns exec cy-init04 nft -f - <<'NFT'
table inet cysmoke {
  chain in { type filter hook input priority 0; udp sport 30000 drop; }
  chain out { type filter hook output priority 0; udp dport 30000 drop; }
}
NFT
start=$SECONDS
# keepaliveSeconds 5 in the lab: closed after 2 x 5 + 5 s of silence.
until [ "$(field init04 's["reopen"]["parkedAddresses"]')" -ge 2 ]; do
  [ $((SECONDS - start)) -le 30 ] || fail "cy-init04 did not close its silent tunnel to $NAME within 30 s: $(field init04 's["reopen"]')"
  sleep 1
done
say "   cy-init04 closed the silent tunnel after $((SECONDS - start)) s"
sleep $((25 - (SECONDS - start) > 0 ? 25 - (SECONDS - start) : 0))
ip netns exec cy-init04 nft delete table inet cysmoke
start=$SECONDS
until ip netns exec cy-init04 ping -c 1 -W 1 "$vip4" >/dev/null 2>&1; do
  [ $((SECONDS - start)) -le 20 ] || fail "pings to $vip4 did not reopen cy-init04's tunnel within 20 s of the path's return: $(field init04 's["reopen"]'), drops $(field init04 's["drops"]["no_route"]') no_route"
done
[ "$(field init04 's["resolver"]["counters"]["queries"]')" = "$queries" ] || fail "the tunnel came back through a name lookup, not the packets"
[ "$(field init04 's["reopen"]["asked"]')" -ge 1 ] || fail "reopen not counted: $(field init04 's["reopen"]')"
ip netns exec cy-init04 ping -6 -c 3 -i 0.2 -W 2 "$vip6" 2>&1 | grep -q " 0% packet loss" || fail "IPv6 pings to $vip6 after the reopen"
say "   pings to $vip4 went through again $((SECONDS - start)) s after the path came back (asked $(field init04 's["reopen"]["asked"]') times, no lookup)"

say "7. responder daemon kill -9 and restart: a new lookup rebuilds the tunnel"
resp_pid=$(pid_of cy-resp cyphonic-node)
kill -9 "$resp_pid"
sleep 0.5
lab/lab.sh start-node cy-resp
start=$SECONDS
until ip netns exec "$LAST" ping -c 1 -W 1 $NAME >/dev/null 2>&1; do
  [ $((SECONDS - start)) -le 45 ] || fail "$LAST did not reach $NAME within 45 s of the responder's restart"
  sleep 0.5
done
say "   $LAST reached the restarted responder by name after $((SECONDS - start)) s"

say "8. a node of another group is refused by policy (SERVFAIL, counted)"
. lab/topology.sh
topology_attach cy-other 198.19.0.30 other 2001:db8:1::30
"$BIN/as-server" node add outsider --group other --data-dir "$DIR/as" --json \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' >"$DIR/outsider.token"
ip netns exec cy-other "$BIN/cyphonic-node" enroll --as 198.19.0.2:4501 --ca "$DIR/as/ca.pem" \
  --token-file "$DIR/outsider.token" --state-dir "$DIR/outsider" >/dev/null
cat >"$DIR/outsider.json" <<EOF
{ "stateDir": "$DIR/outsider", "control": "$DIR/outsider.sock", "metrics": "",
  "resolver": { "listen": ["127.0.0.53:53"], "upstream": ["198.19.0.2:5353"] } }
EOF
# An upstream DNS server in cy-cloud: answers every A query with 198.19.0.99.
ip netns exec cy-cloud python3 -c '
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("198.19.0.2", 5353))
while True:
    q, a = s.recvfrom(4096)
    end = 12
    while q[end]: end += 1 + q[end]
    question = q[12:end + 5]
    r = q[:2] + b"\x81\x80" + struct.pack(">HHHH", 1, 1, 0, 0) + question
    r += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton("198.19.0.99")
    s.sendto(r, a)
' >/dev/null 2>&1 &
ip netns exec cy-other "$BIN/cyphonic-node" run --config "$DIR/outsider.json" >"$DIR/outsider.log" 2>&1 &
start=$SECONDS
until "$BIN/cyphonic-node" status --control "$DIR/outsider.sock" --json 2>/dev/null \
  | python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["signaling"]["state"] != "registered")' 2>/dev/null; do
  [ $((SECONDS - start)) -le 15 ] || fail "outsider did not register"
  sleep 0.2
done
ip netns exec "$LAST" dig outsider.cyphonic.internal A | grep -q "status: SERVFAIL" || fail "a lookup across groups was not SERVFAIL"
"$BIN/cyphonic-node" status --control "$DIR/$(printf init%02d "$N").sock" --json | python3 -c '
import json, sys
f = json.load(sys.stdin)["resolver"]["counters"]["failures"]
sys.exit(0 if f.get("forbidden", 0) >= 1 else "no forbidden failure counted: %s" % f)' || fail "SERVFAIL not counted as forbidden"
mkdir -p /etc/netns/cy-other
printf 'nameserver 127.0.0.53\n' >/etc/netns/cy-other/resolv.conf
[ "$(ip netns exec cy-other dig +short example.org A)" = "198.19.0.99" ] || fail "a name outside the overlay was not forwarded to the upstream"

say "9. a NAT site: same site over the LAN, NATed -> public, public -> NATed"
topology_nat_site cy-nat1 198.19.0.40 nat1 198.19.10
topology_lan_host cy-lan1 198.19.10.2 cy-nat1 lan1
topology_lan_host cy-lan2 198.19.10.3 cy-nat1 lan2
lab/lab.sh add-node lan1 cy-lan1
lab/lab.sh add-node lan2 cy-lan2
# route_to FROM-NAME PEER — how FROM's tunnel to PEER was made, and to which endpoint.
route_to() {
  "$BIN/cyphonic-node" status --control "$DIR/$1.sock" --json | python3 -c '
import json, sys
for p in json.load(sys.stdin)["peers"]:
    if p["fqdn"] == sys.argv[1]: print(p["route"], p.get("endpoint"))' "$2"
}
nat=$("$BIN/cyphonic-node" status --control "$DIR/lan1.sock" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["signaling"]["natIPv4"])')
say "   lan1 behind cy-nat1: NAT on IPv4: $nat"
for pair in "cy-lan1 lan1 lan2" "cy-lan1 lan1 responder" "$LAST $(printf init%02d "$N") lan2"; do
  # shellcheck disable=SC2086 # a pair is three words
  set -- $pair
  out=$(ip netns exec "$1" ping -4 -c 3 -i 0.2 -W 2 "$3.cyphonic.internal" 2>&1) || true
  echo "$out" | grep -q " 0% packet loss" || fail "$2 -> $3 across the NAT: $(echo "$out" | tail -2 | head -1)"
  say "   $2 -> $3: $(route_to "$2" "$3.cyphonic.internal")"
done
route_to lan1 lan2.cyphonic.internal | grep -q "^local 198.19.10.3:" || fail "lan1 -> lan2 did not go over the LAN"
route_to lan1 responder.cyphonic.internal | grep -q "^direct 198.19.0.10:" || fail "lan1 -> responder is not direct"
route_to "$(printf init%02d "$N")" lan2.cyphonic.internal | grep -q "^direct 198.19.0.40:" || fail "public -> NATed lan2 is not direct to its mapped address"

say "10. lab down leaves nothing"
lab/lab.sh down >/dev/null
ip netns list | grep -q '^cy-' && fail "namespaces left: $(ip netns list | grep '^cy-')"
ls /etc/netns/cy-* >/dev/null 2>&1 && fail "/etc/netns/cy-* left"
[ -e "$DIR" ] && fail "$DIR left"
pgrep -f "$BIN/(cyphonic-node|nms-server|as-server|trs-relay)" >/dev/null && fail "daemons left: $(pgrep -af "$BIN/")"
say "PASS"
