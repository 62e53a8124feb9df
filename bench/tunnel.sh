#!/usr/bin/env bash
# make bench-tunnel: one run, one topology, one build — raw veth, wireguard-go, nebula,
# cyphonic-node --pipeline single and the multi-threaded pipeline — measured with the
# same tools: iperf3 TCP (1 and 4 streams), iperf3 UDP (1300-byte datagrams, unlimited
# rate), ping RTT idle and under TCP load, and the tunnel daemons' CPU seconds per GB.
#
#   ns cyb-a                                   ns cyb-b
#   veth cyba0 198.19.200.1/24 ──────────────  veth cybb0 198.19.200.2/24    (underlay)
#   tunnel    198.18.<v>.1                     tunnel    198.18.<v>.2       (per variant)
#
# Needs root, iproute2, iperf3, ping, wireguard-go + wg, nebula + nebula-cert (Debian).
# Everything it creates is removed on exit (trap), also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.build/release}
SECS=${BENCH_SECONDS:-5}
OUT=${BENCH_OUT:-bench-out}
A=cyb-a B=cyb-b
WORK=$(mktemp -d /tmp/cyphonic-bench-XXXXXX)
mkdir -p "$OUT"
RESULTS="$OUT/tunnel-results.csv"

. bench/lib.sh
. bench/variants.sh

cleanup() {
  set +e
  for ns in $A $B; do
    ip netns pids $ns 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del $ns 2>/dev/null
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
[ "$(id -u)" -eq 0 ] || { echo "bench-tunnel needs root"; exit 1; }
# Install what a fresh machine lacks (Debian packages).
need iperf3:iperf3 ping:iputils-ping wireguard-go:wireguard-go wg:wireguard-tools nebula:nebula bc:bc

ip netns add $A; ip netns add $B
ip link add cyba0 netns $A type veth peer name cybb0 netns $B
ip -n $A addr add 198.19.200.1/24 dev cyba0; ip -n $B addr add 198.19.200.2/24 dev cybb0
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set cyba0 up; ip -n $B link set cybb0 up

# BENCH_VARIANTS="wireguard-go cyphonic-multi" limits the run (default: all).
want() { [[ -z "${BENCH_VARIANTS:-}" || " $BENCH_VARIANTS " == *" $1 "* ]]; }

# measure NAME SERVER_IP "DAEMON_PIDS_A" "DAEMON_PIDS_B"
measure() {
  local name=$1 ip=$2 pids="$3"
  progress "$name: TCP 1 stream"
  ip netns exec $B iperf3 -s -1 -B "$ip" >/dev/null 2>&1 & local srv=$!; sleep 0.5
  local c0; c0=$(cpu_of $pids)
  local b0 t0; read -r b0 t0 < <(host_jiffies)
  local tcp1 bytes1
  read -r tcp1 bytes1 < <(ip netns exec $A timeout 60 iperf3 -c "$ip" -t "$SECS" -J | python3 -c '
import json,sys; e=json.load(sys.stdin)["end"]["sum_received"]; print(e["bits_per_second"]/1e9, e["bytes"])')
  local c1; c1=$(cpu_of $pids)
  local b1 t1; read -r b1 t1 < <(host_jiffies)
  local busy; busy=$(echo "scale=1; 100 * ($b1 - $b0) / ($t1 - $t0)" | bc)
  local cpu_gb="-"
  [ -n "$pids" ] && cpu_gb=$(echo "scale=3; ($c1 - $c0) / ($bytes1 / 1000000000)" | bc)
  wait $srv
  progress "$name: TCP 4 streams"
  ip netns exec $B iperf3 -s -1 -B "$ip" >/dev/null 2>&1 & srv=$!; sleep 0.5
  local tcp4; tcp4=$(ip netns exec $A timeout 60 iperf3 -c "$ip" -t "$SECS" -P 4 -J | python3 -c '
import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9)')
  wait $srv
  progress "$name: UDP 1300-byte datagrams"
  ip netns exec $B iperf3 -s -1 -B "$ip" >/dev/null 2>&1 & srv=$!; sleep 0.5
  local udp loss ooo
  read -r udp loss ooo < <(ip netns exec $A timeout 60 iperf3 -c "$ip" -u -b 0 -l 1300 -t "$SECS" -J | python3 -c '
import json,sys; e=json.load(sys.stdin)["end"]; s=e["streams"][0]["udp"]
rx=(s["packets"]-s["lost_packets"])*1300*8/s["seconds"]/1e9
print(rx, round(s["lost_percent"],1), s.get("out_of_order",-1))')
  wait $srv
  progress "$name: ping idle"
  local idle; idle=$(ip netns exec $A ping -q -c 20 -i 0.05 "$ip" | awk -F/ '/^rtt/ {print $5}')
  progress "$name: ping under TCP load"
  ip netns exec $B iperf3 -s -1 -B "$ip" >/dev/null 2>&1 & srv=$!; sleep 0.5
  ip netns exec $A timeout 60 iperf3 -c "$ip" -t $((SECS + 2)) >/dev/null 2>&1 & local cli=$!
  sleep 1
  local loaded; loaded=$(ip netns exec $A ping -q -c 40 -i 0.1 "$ip" | awk -F/ '/^rtt/ {print $5}')
  wait $cli $srv
  printf '%s,%.3f,%.3f,%.3f,%s,%s,%s,%s,%s,%s\n' "$name" "$tcp1" "$tcp4" "$udp" "$loss" "$ooo" "${idle:-nan}" "${loaded:-nan}" "$cpu_gb" "$busy" >> "$RESULTS"
}

echo "variant,tcp1_gbps,tcp4_gbps,udp_gbps,udp_loss_pct,udp_out_of_order,rtt_idle_ms,rtt_load_ms,cpu_s_per_gb,host_busy_pct" > "$RESULTS"

# 1. Raw veth.
want raw-veth && measure "raw-veth" 198.19.200.2 ""

# 2. wireguard-go (its default MTU, 1420).
if want wireguard-go; then
progress "wireguard-go: setting up"
umask 077; for ns in $A $B; do ip netns exec $ns wg genkey > "$WORK/$ns.key"; wg pubkey < "$WORK/$ns.key" > "$WORK/$ns.pub"; done
# Distinct names: wireguard-go's control socket (/var/run/wireguard/NAME.sock) is shared by all namespaces.
ip netns exec $A env WG_PROCESS_FOREGROUND=1 WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 wireguard-go wga0 >/dev/null 2>&1 &
ip netns exec $B env WG_PROCESS_FOREGROUND=1 WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 wireguard-go wgb0 >/dev/null 2>&1 &
for _ in $(seq 50); do ip -n $A link show wga0 >/dev/null 2>&1 && ip -n $B link show wgb0 >/dev/null 2>&1 && break; sleep 0.1; done
ip netns exec $A wg set wga0 listen-port 51820 private-key "$WORK/$A.key" peer "$(cat "$WORK/$B.pub")" allowed-ips 198.18.1.2/32 endpoint 198.19.200.2:51820
ip netns exec $B wg set wgb0 listen-port 51820 private-key "$WORK/$B.key" peer "$(cat "$WORK/$A.pub")" allowed-ips 198.18.1.1/32 endpoint 198.19.200.1:51820
ip -n $A addr add 198.18.1.1/24 dev wga0; ip -n $B addr add 198.18.1.2/24 dev wgb0
ip -n $A link set wga0 up; ip -n $B link set wgb0 up
ip netns exec $A ping -c 3 -i 0.2 -W 2 198.18.1.2 >/dev/null
measure "wireguard-go" 198.18.1.2 "$(pgrep -f 'wireguard-go wg[ab]0' | tr '\n' ' ')"
pkill -f 'wireguard-go wg[ab]0' || true
sleep 0.5
fi

# 3. Nebula (Debian 1.6.1), static host map, no lighthouse.
if want nebula && command -v nebula >/dev/null && command -v nebula-cert >/dev/null; then
  progress "nebula: setting up"
  (cd "$WORK" && nebula-cert ca -name bench >/dev/null \
     && nebula-cert sign -name a -ip 198.18.2.1/24 >/dev/null && nebula-cert sign -name b -ip 198.18.2.2/24 >/dev/null)
  for n in a b; do
    oip=$([ $n = a ] && echo 2 || echo 1)
    nebula_config $n "{\"198.18.2.$oip\": [\"198.19.200.$oip:4242\"]}" nebb0
  done
  ip netns exec $A nebula -config "$WORK/nebula-a.yml" >/dev/null 2>&1 &
  ip netns exec $B nebula -config "$WORK/nebula-b.yml" >/dev/null 2>&1 &
  sleep 2
  if ip netns exec $A ping -c 3 -i 0.3 -W 2 198.18.2.2 >/dev/null 2>&1; then
    measure "nebula" 198.18.2.2 "$(pgrep -f 'nebula -config' | tr '\n' ' ')"
  else
    progress "nebula: no tunnel came up; skipped"
  fi
  pkill -f "nebula -config $WORK" || true
  sleep 0.5
fi

# 4./5. cyphonic-node, both pipelines, same build. Certificates from a real as-server.
progress "cyphonic: enrolling two nodes with as-server"
"$BIN/as-server" init --data-dir "$WORK/as" >/dev/null
TA=$("$BIN/as-server" node add benchA --data-dir "$WORK/as" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
TB=$("$BIN/as-server" node add benchB --data-dir "$WORK/as" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
ip netns exec $B "$BIN/as-server" serve --data-dir "$WORK/as" --listen 198.19.200.2:4501 --metrics 127.0.0.1:0 >/dev/null 2>&1 &
AS_PID=$!
sleep 1
ip netns exec $A "$BIN/cyphonic-node" enroll --as 198.19.200.2:4501 --ca "$WORK/as/ca.pem" --token "$TA" --state-dir "$WORK/na" >/dev/null
ip netns exec $B "$BIN/cyphonic-node" enroll --as 198.19.200.2:4501 --ca "$WORK/as/ca.pem" --token "$TB" --state-dir "$WORK/nb" >/dev/null
kill $AS_PID; wait $AS_PID 2>/dev/null || true
# CYPHONIC_CONFIG adds keys to both nodes' configs, e.g. CYPHONIC_CONFIG='"poolSize": 16, "udpOffload": false,'.
echo "{${CYPHONIC_CONFIG:-} \"stateDir\": \"$WORK/na\", \"control\": \"$WORK/a.sock\", \"metrics\": \"\", \"peers\": [{\"fqdn\": \"bencha.cyphonic.internal\", \"endpoint\": \"198.19.200.2:30000\"}]}" \
  | sed 's/bencha/benchb/' > "$WORK/a.json"
echo "{${CYPHONIC_CONFIG:-} \"stateDir\": \"$WORK/nb\", \"control\": \"$WORK/b.sock\", \"metrics\": \"\"}" > "$WORK/b.json"
# BENCH_ROUNDS (default 3): the two pipelines are measured in alternating rounds and
# the table shows each figure's median, so one noisy test does not decide the ratio.
ROUNDS=${BENCH_ROUNDS:-3}
for round in $(seq "$ROUNDS"); do
for pipeline in single multi; do
  want cyphonic-$pipeline || continue
  progress "cyphonic --pipeline $pipeline: starting (round $round of $ROUNDS)"
  ip netns exec $B "$BIN/cyphonic-node" run --config "$WORK/b.json" --pipeline $pipeline --workers ${CYPHONIC_WORKERS:-0} --log-level warning >/dev/null 2>&1 &
  PB=$!
  ip netns exec $A "$BIN/cyphonic-node" run --config "$WORK/a.json" --pipeline $pipeline --workers ${CYPHONIC_WORKERS:-0} --log-level warning >/dev/null 2>&1 &
  PA=$!
  for _ in $(seq 50); do ip netns exec $A ping -c 1 -W 1 198.18.0.2 >/dev/null 2>&1 && break; sleep 0.2; done
  measure "cyphonic-$pipeline" 198.18.0.2 "$PA $PB"
  kill -TERM $PA $PB; wait $PA $PB 2>/dev/null || true
  sleep 0.5
done
done

python3 - "$RESULTS" <<'PY'
import csv, sys, statistics
raw = list(csv.DictReader(open(sys.argv[1])))
# One row per variant: the median of each figure over its rounds (in first-seen order).
order, by = [], {}
for r in raw:
    if r["variant"] not in by:
        order.append(r["variant"])
        by[r["variant"]] = []
    by[r["variant"]].append(r)
def median_row(rs):
    out = {"variant": rs[0]["variant"], "rounds": len(rs)}
    for k in rs[0]:
        if k == "variant":
            continue
        try:
            vals = [float(r[k]) for r in rs]
            m = statistics.median(vals)
            out[k] = ("%.3f" % m) if k not in ("udp_out_of_order",) else "%d" % max(vals)
            if k in ("udp_loss_pct", "host_busy_pct"):
                out[k] = "%.1f" % m
        except ValueError:
            out[k] = rs[0][k]
    return out
rows = [median_row(by[v]) for v in order]
base = next((r for r in rows if r["variant"] == "wireguard-go"), None)
def ratio(r, k):
    try:
        return "%.2fx" % (float(r[k]) / float(base[k]))
    except Exception:
        return "-"
print("| variant | TCP 1 stream Gbit/s | TCP 4 streams Gbit/s | UDP 1300 B Gbit/s (loss %, out of order) | RTT idle ms | RTT under load ms | CPU s/GB | host CPU busy % (TCP 1) |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print("| %s | %s (%s) | %s (%s) | %s (%s %%, %s) (%s) | %s | %s | %s | %s |" % (
        r["variant"], r["tcp1_gbps"], ratio(r, "tcp1_gbps"), r["tcp4_gbps"], ratio(r, "tcp4_gbps"),
        r["udp_gbps"], r["udp_loss_pct"], r["udp_out_of_order"], ratio(r, "udp_gbps"),
        r["rtt_idle_ms"], r["rtt_load_ms"], r["cpu_s_per_gb"], r["host_busy_pct"]))
print("\n(ratios in parentheses are to wireguard-go measured in the same run; cyphonic rows are medians of %d alternating rounds)" % len(by.get("cyphonic-multi", by.get("cyphonic-single", [0]))))
if "cyphonic-single" in by and "cyphonic-multi" in by:
    for k, label in (("tcp1_gbps", "TCP 1 stream"), ("tcp4_gbps", "TCP 4 streams")):
        per = ["%.2fx" % (float(m[k]) / float(s[k])) for s, m in zip(by["cyphonic-single"], by["cyphonic-multi"])]
        print("multi / single per round, %s: %s" % (label, ", ".join(per)))
single = next((r for r in rows if r["variant"] == "cyphonic-single"), None)
multi = next((r for r in rows if r["variant"] == "cyphonic-multi"), None)
if single and multi:
    def m(k):
        try:
            return "%.2fx" % (float(multi[k]) / float(single[k]))
        except Exception:
            return "-"
    print("multi / single (medians): TCP 1 stream %s, TCP 4 streams %s, UDP %s; RTT under load %s" % (
        m("tcp1_gbps"), m("tcp4_gbps"), m("udp_gbps"), m("rtt_load_ms")))
PY
