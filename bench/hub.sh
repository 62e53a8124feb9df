#!/usr/bin/env bash
# make bench-hub: the paper's evaluation model — one responder, N initiators sending to
# it at once (N = 1, 2, 5, 10) — for cyphonic-node --pipeline single, the multi-threaded
# pipeline, wireguard-go and nebula, in one run and one topology. Per N: one iperf3 TCP
# stream from every initiator to the responder at once, and ping from initiator 1 to the
# responder during the load. Reports aggregate and per-initiator throughput (min, max,
# Jain's fairness index, seconds in which a flow stalled), ping loss and RTT under load,
# TCP retransmissions, and the responder daemon's CPU seconds per GB, threads and RSS.
#
#                         ns cy-net: bridge br0
#        ┌──────────────────────┬─────┴───────────────┬──── … ────┐
#   ns cy-resp             ns cy-init01          ns cy-init02      ns cy-init10
#   198.19.0.10/24         198.19.0.11/24        198.19.0.12/24    198.19.0.20/24   underlay
#   responder VIP          initiator VIPs (per variant; cyphonic's from the as-server)
#
# The names and addresses are the lab's (DESIGN §6), so a lab must not be up. Peers are
# static (the responder accepts the initiators it does not know). Needs root; installs
# iperf3, ping, wireguard-go, wg, nebula and bc when missing. Everything it creates is
# removed on exit (trap), also on failure.
#
# Environment: BENCH_SECONDS (load per N, default 8), BENCH_ROUNDS (default 3),
# HUB_COUNTS (default "1 2 5 10"), BENCH_VARIANTS (default all four; also cyphonic-multi-thread: a TUN reader thread;
# cyphonic-single-base and cyphonic-multi-base: the binaries in HUB_BASE_BIN, another build to compare
# against in the same run, e.g. main's while BIN holds a change), CYPHONIC_CONFIG
# (extra config keys for every node, e.g. '"poolSize": 16,'), BIN, BENCH_OUT; diagnostics:
# HUB_DIAG=1 (the daemons' drop and offload counters, and the context switches and CPU per
# thread of the responder and of init01, after each load), HUB_PERF=1 (a `perf record -g`
# profile of the responder and of init01 per cyphonic load, in BENCH_OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
. lab/topology.sh
. bench/variants.sh
BIN=${BIN:-.build/release}
SECS=${BENCH_SECONDS:-8}
ROUNDS=${BENCH_ROUNDS:-3}
COUNTS=${HUB_COUNTS:-1 2 5 10}
VARIANTS=${BENCH_VARIANTS:-cyphonic-single cyphonic-multi wireguard-go nebula}
OUT=${BENCH_OUT:-bench-out}
RESULTS="$OUT/hub-results.csv"
MAXN=$(printf '%s\n' $COUNTS | sort -n | tail -1)
RESP=cy-resp RESP_ADDR=198.19.0.10
inits() { for i in $(seq 1 "$MAXN"); do printf 'cy-init%02d\n' "$i"; done; }
init_ns() { printf 'cy-init%02d' "$1"; }

[ "$(id -u)" -eq 0 ] || { echo "bench-hub needs root (namespaces, TUN)"; exit 1; }
if ip netns list 2>/dev/null | grep -q '^cy-'; then
  echo "bench-hub: cy-* namespaces exist (a lab is up?): run 'make lab-down' first"
  exit 1
fi
for b in as-server cyphonic-node; do [ -x "$BIN/$b" ] || { echo "bench-hub: $BIN/$b missing: make release"; exit 1; }; done
need iperf3:iperf3 ping:iputils-ping wireguard-go:wireguard-go wg:wireguard-tools nebula:nebula bc:bc

WORK=$(mktemp -d /tmp/cyphonic-hub-XXXXXX)
DAEMONS=()
INIT_PIDS=()
INIT1_PID=
cleanup() {
  set +e
  for ns in $RESP $(inits) $TOPO_NET; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  rm -f /var/run/wireguard/wgr0.sock /var/run/wireguard/wgi[0-9][0-9].sock
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$OUT"

progress "topology: $TOPO_NET (bridge), $RESP, $(init_ns 1) … $(init_ns "$MAXN")"
topology_bridge
topology_attach $RESP $RESP_ADDR resp
# shellcheck disable=SC2046
for i in $(seq 1 "$MAXN"); do topology_attach $(topology_initiator "$i"); done

want() { [[ " $VARIANTS " == *" $1 "* ]]; }

stop_daemons() {
  [ ${#DAEMONS[@]} -gt 0 ] || return 0
  kill -TERM "${DAEMONS[@]}" 2>/dev/null || true
  wait "${DAEMONS[@]}" 2>/dev/null || true
  DAEMONS=()
  INIT_PIDS=()
  sleep 0.5
}

# load VARIANT ROUND N VIP RESPONDER_PID — one measurement: N TCP streams at once, ping during them.
load() {
  local variant=$1 round=$2 n=$3 vip=$4 pid=$5 i
  progress "$variant: $n initiator(s), round $round of $ROUNDS"
  local servers=() clients=()
  for i in $(seq 1 "$n"); do
    ip netns exec $RESP iperf3 -s -1 -p $((5200 + i)) -B "$vip" >/dev/null 2>&1 &
    servers+=($!)
  done
  sleep 0.5
  local c0 c1 ic0 ic1 rt0 ru0 rt1 ru1 it0=0 it1=0 t u
  c0=$(cpu_of "$pid")
  ic0=$(cpu_of "${INIT_PIDS[@]}")
  if [ -n "${HUB_DIAG:-}" ] && [[ $variant == cyphonic-* ]]; then
    thread_switches "$pid" >"$WORK/switches0"
    thread_switches "$INIT1_PID" >"$WORK/init-switches0"
  fi
  read -r rt0 ru0 < <(kernel_drops $RESP)
  for i in $(seq 1 "$n"); do read -r t u < <(kernel_drops "$(init_ns "$i")"); it0=$((it0 + t)); done
  for i in $(seq 1 "$n"); do
    ip netns exec "$(init_ns "$i")" timeout $((SECS + 30)) iperf3 -c "$vip" -p $((5200 + i)) -t "$SECS" -J \
      >"$WORK/iperf-$i.json" 2>/dev/null &
    clients+=($!)
  done
  sleep 1
  # HUB_PERF=1: 4 s of `perf record -g` of the responder's and init01's daemons during each cyphonic load.
  if [ -n "${HUB_PERF:-}" ] && [[ $variant == cyphonic-* ]]; then
    perf record -q -g -p "$pid" -o "$OUT/perf-$variant-n$n-r$round.data" -- sleep 4 >/dev/null 2>&1 &
    perf record -q -g -p "$INIT1_PID" -o "$OUT/perf-init01-$variant-n$n-r$round.data" -- sleep 4 >/dev/null 2>&1 &
  fi
  ip netns exec "$(init_ns 1)" ping -q -c $(((SECS - 2) * 10)) -i 0.1 -W 1 "$vip" >"$WORK/ping.txt" 2>&1 || true
  local threads rss
  threads=$(proc_status "$pid" Threads)
  rss=$(proc_status "$pid" VmRSS)
  wait "${clients[@]}" 2>/dev/null || true
  wait "${servers[@]}" 2>/dev/null || true
  # HUB_DIAG=1: the daemons' own drop counters (cumulative since start) after each load.
  if [ -n "${HUB_DIAG:-}" ] && [[ $variant == cyphonic-* ]]; then
    for s in responder init01; do
      progress "  $s drops: $("$BIN/cyphonic-node" status --control "$WORK/$s.sock" --json \
        | python3 -c 'import json,sys; s=json.load(sys.stdin); u=s.get("udp", {}); print({k: v for k, v in s["drops"].items() if v}, "received out of order:", sum(p.get("rxOutOfOrder", 0) for p in s["peers"]), "datagrams per received message: %.1f, runs not copied: %d of %d" % (u.get("datagramsReceived", 0) / max(1, u.get("messagesReceived", 0)), u.get("runsNotCopied", 0), u.get("messagesReceived", 0)), "packets per TUN write: %.1f" % (s["tun"]["packetsWritten"] / max(1, s["tun"]["writes"])))')"
    done
  fi
  c1=$(cpu_of "$pid")
  ic1=$(cpu_of "${INIT_PIDS[@]}")
  if [ -n "${HUB_DIAG:-}" ] && [[ $variant == cyphonic-* ]]; then
    thread_switches "$pid" >"$WORK/switches1"
    # Per responder thread over the load: voluntary / involuntary context switches, CPU ticks.
    progress "  responder threads (voluntary / involuntary switches / CPU ticks): $(thread_deltas "$WORK/switches0" "$WORK/switches1")"
    thread_switches "$INIT1_PID" >"$WORK/init-switches1"
    progress "  init01 threads (voluntary / involuntary switches / CPU ticks): $(thread_deltas "$WORK/init-switches0" "$WORK/init-switches1")"
  fi
  read -r rt1 ru1 < <(kernel_drops $RESP)
  for i in $(seq 1 "$n"); do read -r t u < <(kernel_drops "$(init_ns "$i")"); it1=$((it1 + t)); done
  python3 - "$WORK" "$n" "$variant" "$round" "$(echo "$c1 - $c0" | bc)" "$threads" "$rss" \
    "$((rt1 - rt0)) $((ru1 - ru0)) $((it1 - it0))" "$(echo "$ic1 - $ic0" | bc)" >>"$RESULTS" <<'PY'
import sys
sys.path.insert(0, "bench")
from loadstats import jain as fairness, ping_summary, tcp_flows
work, n, variant, rnd, cpu, threads, rss = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]), sys.argv[6], int(sys.argv[7] or 0)
drops = sys.argv[8].split()
rates, total_bytes, retrans, stalled = tcp_flows(["%s/iperf-%d.json" % (work, i) for i in range(1, n + 1)])
agg = sum(rates)
jain = fairness(rates)
loss, rtt = ping_summary(work + "/ping.txt")
cpu_gb = cpu / (total_bytes / 1e9) if total_bytes else float("nan")
# The initiators' daemons (cyphonic only: the others' processes are not tracked here).
init_cpu = float(sys.argv[9])
init_gb = init_cpu / (total_bytes / 1e9) if total_bytes and init_cpu > 0 else float("nan")
print("%s,%s,%d,%.3f,%.3f,%.3f,%.3f,%d,%.1f,%s,%d,%.3f,%s,%.1f,%s,%s,%s,%.3f" % (
    variant, rnd, n, agg, min(rates), max(rates), jain, stalled, loss, rtt, retrans, cpu_gb, threads, rss / 1024,
    drops[0], drops[1], drops[2], init_gb))
PY
}

# run_counts VARIANT ROUND VIP RESPONDER_PID
run_counts() {
  local n
  for n in $COUNTS; do load "$1" "$2" "$n" "$3" "$4"; done
}

echo "variant,round,n,aggregate_gbps,min_gbps,max_gbps,jain,stalled_s,ping_loss_pct,rtt_ms,retransmits,cpu_s_per_gb,threads,rss_mib,resp_tun_drops,resp_udp_rcvbuf_errors,init_tun_drops,init_cpu_s_per_gb" >"$RESULTS"

# cyphonic: certificates from a real as-server (run once, in the responder's namespace).
if [[ " $VARIANTS " == *" cyphonic-"* ]]; then
  progress "cyphonic: enrolling the responder and $MAXN initiators with as-server"
  "$BIN/as-server" init --data-dir "$WORK/as" --domain cyphonic.internal >/dev/null
  ip netns exec $RESP "$BIN/as-server" serve --data-dir "$WORK/as" --listen $RESP_ADDR:4501 --metrics 127.0.0.1:0 \
    >"$WORK/as.log" 2>&1 &
  AS_PID=$!
  for _ in $(seq 1 50); do grep -q listening "$WORK/as.log" 2>/dev/null && break; sleep 0.1; done
  enrol() {  # name namespace
    "$BIN/as-server" node add "$1" --data-dir "$WORK/as" --json \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])' >"$WORK/$1.token"
    ip netns exec "$2" "$BIN/cyphonic-node" enroll --as $RESP_ADDR:4501 --ca "$WORK/as/ca.pem" \
      --token-file "$WORK/$1.token" --state-dir "$WORK/$1" >/dev/null
  }
  enrol responder $RESP
  echo "{ ${CYPHONIC_CONFIG:-} \"stateDir\": \"$WORK/responder\", \"control\": \"$WORK/responder.sock\" }" >"$WORK/responder.json"
  for i in $(seq 1 "$MAXN"); do
    name=$(printf 'init%02d' "$i")
    enrol "$name" "$(init_ns "$i")"
    echo "{ ${CYPHONIC_CONFIG:-} \"stateDir\": \"$WORK/$name\", \"control\": \"$WORK/$name.sock\"," \
      "\"peers\": [{ \"fqdn\": \"responder.cyphonic.internal\", \"endpoint\": \"$RESP_ADDR:30000\" }] }" >"$WORK/$name.json"
  done
  kill $AS_PID
  wait $AS_PID 2>/dev/null || true
  CY_VIP=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["virtualIPv4"])' "$WORK/responder/node.json")
fi

start_cyphonic() {  # pipeline [tun-reading [bin]]
  local reading=${2:-workers} BIN=${3:-$BIN}
  ip netns exec $RESP "$BIN/cyphonic-node" run --config "$WORK/responder.json" --pipeline "$1" --tun-reading "$reading" --log-level warning \
    >"$WORK/responder.log" 2>&1 &
  RESP_PID=$!
  DAEMONS+=($!)
  INIT_PIDS=()
  for i in $(seq 1 "$MAXN"); do
    ip netns exec "$(init_ns "$i")" "$BIN/cyphonic-node" run --config "$WORK/$(printf 'init%02d' "$i").json" \
      --pipeline "$1" --tun-reading "$reading" --log-level warning >/dev/null 2>&1 &
    DAEMONS+=($!)
    INIT_PIDS+=($!)
    [ "$i" -ne 1 ] || INIT1_PID=$!
  done
  wait_tunnels "$CY_VIP"
}

# Rounds alternate the variants, so that drift of this noisy machine hits all alike.
for round in $(seq 1 "$ROUNDS"); do
  for variant in $VARIANTS; do
    progress "$variant: starting the responder and $MAXN initiators (round $round of $ROUNDS)"
    case $variant in
      cyphonic-single) start_cyphonic single && run_counts "$variant" "$round" "$CY_VIP" "$RESP_PID" ;;
      cyphonic-multi) start_cyphonic multi && run_counts "$variant" "$round" "$CY_VIP" "$RESP_PID" ;;
      cyphonic-multi-thread) start_cyphonic multi thread && run_counts "$variant" "$round" "$CY_VIP" "$RESP_PID" ;;
      cyphonic-single-base | cyphonic-multi-base)
        [ -x "${HUB_BASE_BIN:-}/cyphonic-node" ] || { progress "$variant needs HUB_BASE_BIN (a folder with cyphonic-node)"; exit 1; }
        start_cyphonic "$(echo "$variant" | sed 's/cyphonic-\(.*\)-base/\1/')" workers "$HUB_BASE_BIN" \
          && run_counts "$variant" "$round" "$CY_VIP" "$RESP_PID" ;;
      wireguard-go) start_wireguard && run_counts "$variant" "$round" 198.18.1.1 "$RESP_PID" ;;
      nebula) start_nebula && run_counts "$variant" "$round" 198.18.2.1 "$RESP_PID" ;;
      *) progress "unknown variant $variant" ;;
    esac
    stop_daemons
    rm -f "$WORK"/*.crt "$WORK"/*.key "$WORK"/nebula-*.yml
  done
done

python3 bench/hub-report.py "$RESULTS"
