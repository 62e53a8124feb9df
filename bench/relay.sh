#!/usr/bin/env bash
# make bench-relay: the same tunnel relayed and direct, in one run (issue 11). The NAT lab's
# lan5 -> lan3 pair: cy-nat4 blocks cy-nat2, so the punch fails and the tunnel goes through
# trs-relay; unblocking opens the direct path and the tunnel moves there. Per round and
# path: TCP throughput (iperf3, 10 s), idle RTT (ping, 100 x 20 ms), RTT under that load,
# trs-relay CPU per GB relayed; saturating UDP (iperf3 -u -b 0) with the datagrams that
# arrive out of order end to end. Writes
# bench-out/relay-results.csv and prints the ratios relayed / direct.
# Environment: BIN (default .build/release), ROUNDS (default 3), SECONDS_PER_TEST (10).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
export BIN=${BIN:-.build/release}
ROUNDS=${ROUNDS:-3}
T=${SECONDS_PER_TEST:-10}
DIR=${LAB_DIR:-/run/cyphonic-lab}
OUT=bench-out
DOMAIN=cyphonic.internal
say() { echo "bench-relay: $*" >&2; }
[ "$(id -u)" -eq 0 ] || { say "needs root (network namespaces, TUN)"; exit 1; }
if ip netns list 2>/dev/null | grep -q '^cy-'; then say "a lab is up; 'make lab-down' first"; exit 1; fi
. lab/topology.sh
trap 'lab/lab.sh down >/dev/null 2>&1 || true' EXIT
mkdir -p "$OUT"
SCENARIO=nat LAB_INITIATORS=2 lab/lab.sh up >/dev/null
say "NAT lab up"
route() {
  "$BIN/cyphonic-node" status --control "$DIR/lan5.sock" --json | python3 -c '
import json, sys
print(next((p["route"] for p in json.load(sys.stdin)["peers"] if p["fqdn"] == sys.argv[1]), "none"))' "lan3.$DOMAIN"
}
late() {
  "$BIN/cyphonic-node" status --control "$DIR/lan3.sock" --json | python3 -c '
import json, sys
print(next((p.get("rxOutOfOrder", 0) for p in json.load(sys.stdin)["peers"] if p["fqdn"] == sys.argv[1]), 0))' "lan5.$DOMAIN"
}
trs_ticks() { awk '{ print $14 + $15 }' "/proc/$(ip netns pids cy-cloud | xargs -r ps -o pid=,comm= -p | awk '$2 == "trs-relay" { print $1 }')/stat"; }
HZ=$(getconf CLK_TCK)
ip netns exec cy-lan5 ping -c 3 -i 0.2 -W 2 "lan3.$DOMAIN" >/dev/null
lan3=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["virtualIPv4"])' "$DIR/lan3/node.json")
ip netns exec cy-lan3 iperf3 -s -D >/dev/null
sleep 0.5
rtt() { ip netns exec cy-lan5 ping -q -c "$1" -i "$2" "$lan3" | awk -F'[/ ]' '/^rtt/ { print $8 }'; }

measure() { # ROUND PATH
  local idle loaded json bps bytes t0 t1 cpu late0 late1
  idle=$(rtt 100 0.02)
  late0=$(late)
  t0=$(trs_ticks)
  ip netns exec cy-lan5 ping -q -c $((T * 5 - 5)) -i 0.2 "$lan3" >"$OUT/relay-loaded-ping.txt" &
  local ping_pid=$!
  json=$(ip netns exec cy-lan5 iperf3 -c "$lan3" -t "$T" -J)
  wait $ping_pid || true
  t1=$(trs_ticks)
  late1=$(late)
  loaded=$(awk -F'[/ ]' '/^rtt/ { print $8 }' "$OUT/relay-loaded-ping.txt")
  read -r bps bytes < <(echo "$json" | python3 -c '
import json, sys
e = json.load(sys.stdin)["end"]["sum_received"]
print(int(e["bits_per_second"]), int(e["bytes"]))')
  cpu=$(echo "scale=3; ($t1 - $t0) / $HZ / ($bytes / 1000000000)" | bc)
  # Saturating UDP (one flow, no rate limit): iperf3 counts the datagrams that arrive out
  # of order end to end (both nodes' pipelines and, relayed, the relay).
  read -r udp ooo lost < <(ip netns exec cy-lan5 iperf3 -c "$lan3" -u -b 0 -l 1300 -t 5 -J | python3 -c '
import json, sys
s = json.load(sys.stdin)["end"]["sum"]
# Received rate: the sending rate less what was lost on the way.
print(round(s["bits_per_second"] * (1 - s.get("lost_percent", 0) / 100) / 1e6, 1), s.get("out_of_order", 0), round(s.get("lost_percent", 0), 2))')
  echo "$1,$2,$(echo "scale=1; $bps / 1000000" | bc),$idle,$loaded,$cpu,$((late1 - late0)),$udp,$ooo,$lost" >>"$OUT/relay-results.csv"
  say "   round $1 $2: TCP $(echo "scale=1; $bps / 1000000" | bc) Mbit/s, idle RTT $idle ms, loaded RTT $loaded ms, trs-relay CPU $cpu s/GB; UDP $udp Mbit/s received, $ooo out of order, $lost % lost"
}

echo "round,path,tcp_mbit_s,idle_rtt_ms,loaded_rtt_ms,trs_cpu_s_per_gb,rx_late_by_counter,udp_mbit_s,udp_out_of_order,udp_lost_percent" >"$OUT/relay-results.csv"
for round in $(seq 1 "$ROUNDS"); do
  [ "$(route)" = relay ] || { say "lan5 -> lan3 is '$(route)', not relayed"; exit 1; }
  measure "$round" relayed
  topology_unblock cy-nat4 198.19.0.41
  for _ in $(seq 1 100); do [ "$(route)" != relay ] && break; sleep 0.2; done
  [ "$(route)" != relay ] || { say "lan5 -> lan3 did not go direct after the unblock"; exit 1; }
  measure "$round" direct
  topology_block cy-nat4 198.19.0.41
  for _ in $(seq 1 100); do [ "$(route)" = relay ] && break; sleep 0.2; done
done
python3 - "$OUT/relay-results.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def med(path, key): return statistics.median(float(r[key]) for r in rows if r["path"] == path)
tr, td = med("relayed", "tcp_mbit_s"), med("direct", "tcp_mbit_s")
ir, id_ = med("relayed", "idle_rtt_ms"), med("direct", "idle_rtt_ms")
lr, ld = med("relayed", "loaded_rtt_ms"), med("direct", "loaded_rtt_ms")
print(f"medians over {len(rows) // 2} rounds (same tunnel, same run):")
print(f"  TCP          relayed {tr:8.1f} Mbit/s  direct {td:8.1f} Mbit/s  ratio {tr / td:.2f}")
print(f"  idle RTT     relayed {ir:8.3f} ms      direct {id_:8.3f} ms      relay adds {ir - id_:+.3f} ms")
print(f"  loaded RTT   relayed {lr:8.3f} ms      direct {ld:8.3f} ms")
print(f"  trs-relay CPU per GB relayed: {med('relayed', 'trs_cpu_s_per_gb'):.2f} s")
ur, ud = med("relayed", "udp_mbit_s"), med("direct", "udp_mbit_s")
print(f"  UDP received   relayed {ur:8.1f} Mbit/s  direct {ud:8.1f} Mbit/s  ratio {ur / ud:.2f}  (sender unlimited)")
for path in ("relayed", "direct"):
    print(f"  UDP datagrams out of order end to end, {path}: {sum(int(r['udp_out_of_order']) for r in rows if r['path'] == path)}")
PY
