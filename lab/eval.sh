#!/usr/bin/env bash
# make lab-eval: the paper's evaluation (Figs. 5-8) on the lab (lab/lab.sh: as-server,
# nms-server and trs-relay in cy-cloud, 1 responder, 10 initiators that reach it by name),
# with raw veth, wireguard-go and Nebula in the same namespaces and the same run.
#
#   per round (EVAL_ROUNDS, default 3), each variant in turn (so drift hits all alike):
#     raw              iperf3 to the responder's underlay address (no tunnel): the ceiling
#     cyphonic-single  every cyphonic-node restarted with --pipeline single (names, NMS)
#     cyphonic-multi   the same with the multi-threaded pipeline
#     wireguard-go     the cyphonic nodes stopped; wireguard-go in the same namespaces
#     nebula           the same with Nebula
#   per N = 1 … 10 initiators sending at once to the responder:
#     TCP  one iperf3 stream per initiator, ping from init01 during it: aggregate Gbit/s,
#          RTT under load, the responder's CPU per GB, threads and RSS (and its anonymous
#          part: the daemon's own memory, not its mapped program text; and its PSS), its
#          context switches per GB (voluntary: a thread went to sleep; involuntary: it was
#          preempted), the initiators' CPU, malloc in use / held (cyphonic: its status),
#          kernel drops
#     UDP  one unlimited iperf3 UDP flow (1200-byte datagrams) per initiator: received
#          Gbit/s, loss, datagrams out of order
#     and once per variant and round: idle RTT (init01 -> responder)
#   then: cyphonic-bench peers (1 … EVAL_PEERS simulated peers with real handshakes:
#   the responder's threads and RSS), cyphonic-bench pipeline (the stages alone), and
#   Prometheus' series of the run (it scrapes every daemon each second) -> plots and
#   lab/results/REPORT.md (lab/eval-report.py, matplotlib in a venv under .build/).
#
# Environment: EVAL_QUICK=1 (N = 1 5 10, 1 round, short loads, 200 peers), EVAL_COUNTS,
# EVAL_ROUNDS, EVAL_SECONDS (TCP load), EVAL_UDP_SECONDS, EVAL_PEERS, EVAL_VARIANTS (empty:
# only the simulated peers and the pipeline bench),
# EVAL_OUT (default lab/results), BIN (default .build/release). Needs root and no lab up;
# everything it starts and creates is removed on exit, also on failure or Ctrl-C (the
# results stay in EVAL_OUT).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/variants.sh
BIN=${BIN:-.build/release}
if [ -n "${EVAL_QUICK:-}" ]; then
  COUNTS=${EVAL_COUNTS:-1 5 10} ROUNDS=${EVAL_ROUNDS:-1} SECS=${EVAL_SECONDS:-4} USECS=${EVAL_UDP_SECONDS:-3}
  PEERS=${EVAL_PEERS:-200}
else
  COUNTS=${EVAL_COUNTS:-1 2 3 4 5 6 7 8 9 10} ROUNDS=${EVAL_ROUNDS:-3} SECS=${EVAL_SECONDS:-5}
  USECS=${EVAL_UDP_SECONDS:-3} PEERS=${EVAL_PEERS:-1000}
fi
VARIANTS=${EVAL_VARIANTS-raw cyphonic-single cyphonic-multi wireguard-go nebula}
OUT=${EVAL_OUT:-lab/results}
# The lab it brings up: 10 initiators, in LAB_DIR (lab.sh's default unless set).
export LAB_INITIATORS=10
LAB=${LAB_DIR:-/run/cyphonic-lab}
export LAB_DIR=$LAB
DOMAIN=cyphonic.internal
RESP=cy-resp RESP_ADDR=198.19.0.10
MAXN=$(printf '%s\n' $COUNTS | sort -n | tail -1)
init_ns() { printf 'cy-init%02d' "$1"; }
node_namespaces() { echo $RESP; for i in $(seq 1 10); do init_ns "$i"; echo; done; }
prom() { ip netns exec cy-cloud curl -sf "http://127.0.0.1:9090/api/v1/$1" "${@:2}"; }

[ "$(id -u)" -eq 0 ] || { echo "lab-eval needs root (network namespaces, TUN)"; exit 1; }
if ip netns list 2>/dev/null | grep -q '^cy-'; then echo "lab-eval: cy-* namespaces exist (a lab is up?): run 'make lab-down' first"; exit 1; fi
for b in as-server nms-server trs-relay cyphonic-node cyphonic-bench; do
  [ -x "$BIN/$b" ] || { echo "lab-eval: $BIN/$b missing: make release"; exit 1; }
done
need iperf3:iperf3 ping:iputils-ping wireguard-go:wireguard-go wg:wireguard-tools nebula:nebula bc:bc \
  prometheus:prometheus socat:socat curl:curl readelf:binutils nm:binutils

WORK=$(mktemp -d /tmp/cyphonic-eval-XXXXXX)
DAEMONS=()
cleanup() {
  set +e
  [ ${#DAEMONS[@]} -gt 0 ] && kill -9 "${DAEMONS[@]}" 2>/dev/null
  lab/lab.sh down >/dev/null 2>&1
  rm -f /var/run/wireguard/wgr0.sock /var/run/wireguard/wgi[0-9][0-9].sock
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'progress "interrupted: cleaning up"; exit 130' INT TERM
mkdir -p "$OUT"
rm -rf "$OUT/failures"  # evidence of flows that carried nothing: this run's only
RESULTS=$OUT/eval-load.csv IDLE=$OUT/eval-idle.csv
echo "variant,round,n,tcp_gbps,tcp_min_gbps,jain,rtt_load_ms,ping_loss_pct,retransmits,resp_cpu_s,init_cpu_s,resp_cpu_s_per_gb,threads,rss_mib,malloc_in_use_mib,malloc_held_mib,udp_gbps,udp_loss_pct,udp_out_of_order,resp_tun_drops,resp_udp_rcvbuf_errors,rss_anon_mib,pss_mib,resp_voluntary_switches_per_gb,resp_involuntary_switches_per_gb,init_cpu_s_per_gb" >"$RESULTS"
echo "variant,round,rtt_idle_ms" >"$IDLE"
EVAL_START=$(date +%s)
total_steps=$(($(echo $VARIANTS | wc -w) * ROUNDS * $(echo $COUNTS | wc -w)))
step=0

progress "lab up (release binaries, Prometheus scraping every second)"
PROMETHEUS=1 LAB_SCRAPE_INTERVAL=1s LAB_PIPELINE=multi BIN=$BIN lab/lab.sh up >"$WORK/lab-up.txt"
CY_VIP=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["virtualIPv4"])' "$LAB/responder/node.json")

# The cyphonic-node pid in namespace $1 (empty when none).
node_pid() { tunnel_pid "$1" cyphonic-node; }
# tunnel_pid NAMESPACE [COMMANDS] — the pid of the first process named one of COMMANDS
# (default: any of the tunnel daemons) in the namespace.
tunnel_pid() {
  local p names=${2:-cyphonic-node wireguard-go nebula}
  for p in $(ip netns pids "$1" 2>/dev/null); do
    [[ " $names " == *" $(cat /proc/"$p"/comm 2>/dev/null) "* ]] && { echo "$p"; return 0; }
  done
  return 0
}
stop_nodes() {
  local ns pids=()
  for ns in $(node_namespaces); do
    p=$(node_pid "$ns")
    if [ -n "$p" ]; then pids+=("$p"); fi
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 50); do
    local alive=0
    for p in "${pids[@]}"; do [ -d /proc/"$p" ] && alive=1; done
    [ $alive -eq 0 ] && return 0
    sleep 0.1
  done
  progress "a node daemon did not stop within 5 s of SIGTERM: killed"
  kill -9 "${pids[@]}" 2>/dev/null || true
  sleep 0.2
}
# start_nodes PIPELINE — every node daemon with that pipeline; waits for 11 registrations
# and a tunnel from every initiator to the responder (set up by name through the NMS).
start_nodes() {
  local f ns i
  for f in "$LAB"/responder.json "$LAB"/init[0-9][0-9].json; do
    python3 - "$f" "$1" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["pipeline"] = sys.argv[2]; c["logLevel"] = "warning"
json.dump(c, open(sys.argv[1], "w"))
PY
  done
  for ns in $(node_namespaces); do BIN=$BIN lab/lab.sh start-node "$ns"; done
  # Each daemon registered again (the NMS may still list the old registrations), then a
  # lookup by name from every initiator until its tunnel answers.
  local name state
  for name in responder $(seq -f 'init%02g' 1 10); do
    for _ in $(seq 1 150); do
      state=$("$BIN/cyphonic-node" status --control "$LAB/$name.sock" --json 2>/dev/null \
        | python3 -c 'import json,sys; print((json.load(sys.stdin).get("signaling") or {}).get("state", ""))' 2>/dev/null || true)
      [ "$state" = registered ] && break
      sleep 0.2
    done
    [ "$state" = registered ] || progress "$name: not registered with the NMS (state '$state')"
  done
  for i in $(seq 1 "$MAXN"); do
    for _ in $(seq 1 20); do
      ip netns exec "$(init_ns "$i")" ping -c 1 -W 1 responder.$DOMAIN >/dev/null 2>&1 && break
      sleep 0.2
    done
  done
  wait_tunnels "$CY_VIP"
}
stop_references() {
  [ ${#DAEMONS[@]} -gt 0 ] || return 0
  kill -TERM "${DAEMONS[@]}" 2>/dev/null || true
  wait "${DAEMONS[@]}" 2>/dev/null || true
  DAEMONS=()
  rm -f "$WORK"/*.crt "$WORK"/*.key "$WORK"/nebula-*.yml
  sleep 0.5
}

# idle VARIANT ROUND VIP — 50 pings 20 ms apart from init01, nothing else running.
idle() {
  local rtt
  rtt=$(ip netns exec "$(init_ns 1)" ping -q -c 50 -i 0.02 -W 1 "$3" 2>/dev/null | awk -F/ '/^rtt/ {print $5}' || true)
  echo "$1,$2,${rtt:-nan}" >>"$IDLE"
}

# keep_failure VARIANT ROUND N I — initiator I's TCP flow carried nothing: keeps what
# tells why (both daemons' status and log tails, the initiator's routes, a ping to the
# responder's address now and one by name) in $OUT/failures/, once per initiator and
# round, and says so.
keep_failure() {
  local v=$1 r=$2 n=$3 i=$4 name ns dir node
  name=$(printf 'init%02d' "$i") ns=$(init_ns "$i")
  dir="$OUT/failures/$v-round$r-$name"
  [ -d "$dir" ] && return 0
  mkdir -p "$dir"
  echo "first load without traffic: N = $n" >"$dir/what.txt"
  for node in "$name" responder; do
    "$BIN/cyphonic-node" status --control "$LAB/$node.sock" --json >"$dir/$node-status.json" 2>&1 || true
    tail -n 200 "$LAB/$node.log" >"$dir/$node.log" 2>/dev/null || true
  done
  ip -n "$ns" route >"$dir/$name-routes.txt" 2>&1 || true
  ip netns exec "$ns" ping -c 3 -i 0.2 -W 1 "$CY_VIP" >"$dir/ping-now.txt" 2>&1 || true
  # By name: a new lookup through the NMS (does it set the tunnel up again?).
  ip netns exec "$ns" ping -c 3 -i 0.2 -W 1 "responder.$DOMAIN" >"$dir/ping-by-name.txt" 2>&1 || true
  progress "$v round $r: $name's TCP flow carried nothing at N = $n; its status and logs are in $dir"
}

# load VARIANT ROUND N VIP RESPONDER_PID — TCP with ping, then UDP, from N initiators at once.
load() {
  local variant=$1 round=$2 n=$3 vip=$4 pid=$5 i
  step=$((step + 1))
  progress "[$step/$total_steps, $(($(date +%s) - EVAL_START)) s] $variant, round $round of $ROUNDS: N = $n"
  local servers=() clients=() inits=()
  for i in $(seq 1 "$n"); do inits+=("$(tunnel_pid "$(init_ns "$i")")"); done
  for i in $(seq 1 "$n"); do
    ip netns exec $RESP timeout $((SECS + 40)) iperf3 -s -1 -p $((5300 + i)) -B "$vip" >/dev/null 2>&1 &
    servers+=($!)
  done
  sleep 0.4
  local c0 ic0 rt0 ru0 rt1 ru1 s0="0 0" s1="0 0"
  c0=$( [ -n "$pid" ] && cpu_of "$pid" || echo 0)
  [ -n "$pid" ] && s0=$(context_switches "$pid")
  ic0=$(cpu_of "${inits[@]}" 2>/dev/null || echo 0)
  read -r rt0 ru0 < <(kernel_drops $RESP)
  for i in $(seq 1 "$n"); do
    ip netns exec "$(init_ns "$i")" timeout $((SECS + 30)) iperf3 -c "$vip" -p $((5300 + i)) -t "$SECS" -J \
      >"$WORK/tcp-$i.json" 2>/dev/null &
    clients+=($!)
  done
  sleep 1
  ip netns exec "$(init_ns 1)" ping -q -c $(((SECS - 2) * 10)) -i 0.1 -W 1 "$vip" >"$WORK/ping.txt" 2>&1 || true
  local threads=0 rss=0 anon=0 pss=0 malloc="nan nan"
  if [ -n "$pid" ]; then
    threads=$(proc_status "$pid" Threads); rss=$(proc_status "$pid" VmRSS); anon=$(proc_status "$pid" RssAnon); pss=$(proc_pss "$pid")
  fi
  wait "${clients[@]}" 2>/dev/null || true
  wait "${servers[@]}" 2>/dev/null || true
  local c1 ic1
  c1=$( [ -n "$pid" ] && cpu_of "$pid" || echo 0)
  [ -n "$pid" ] && s1=$(context_switches "$pid")
  ic1=$(cpu_of "${inits[@]}" 2>/dev/null || echo 0)
  read -r rt1 ru1 < <(kernel_drops $RESP)
  if [[ $variant == cyphonic-* ]]; then
    # The flows that carried nothing, read as the figures read them (bench/loadstats.py).
    for i in $(python3 -c 'import sys; sys.path.insert(0, "bench"); from loadstats import tcp_flows
rates = tcp_flows(["%s/tcp-%d.json" % (sys.argv[1], i) for i in range(1, int(sys.argv[2]) + 1)])[0]
print(" ".join(str(i + 1) for i, rate in enumerate(rates) if rate == 0))' "$WORK" "$n"); do
      keep_failure "$variant" "$round" "$n" "$i"
    done
    malloc=$("$BIN/cyphonic-node" status --control "$LAB/responder.sock" --json 2>/dev/null | python3 -c '
import json, sys
p = json.load(sys.stdin).get("process") or {}
print("%.2f %.2f" % (p.get("mallocInUseBytes", 0) / 1048576, p.get("mallocHeldBytes", 0) / 1048576))' || echo "nan nan")
  fi
  # UDP: one unlimited flow per initiator at once.
  servers=() clients=()
  for i in $(seq 1 "$n"); do
    ip netns exec $RESP timeout $((USECS + 40)) iperf3 -s -1 -p $((5400 + i)) -B "$vip" >/dev/null 2>&1 &
    servers+=($!)
  done
  sleep 0.4
  for i in $(seq 1 "$n"); do
    ip netns exec "$(init_ns "$i")" timeout $((USECS + 30)) iperf3 -c "$vip" -p $((5400 + i)) -u -b 0 -l 1200 -t "$USECS" -J \
      >"$WORK/udp-$i.json" 2>/dev/null &
    clients+=($!)
  done
  wait "${clients[@]}" 2>/dev/null || true
  wait "${servers[@]}" 2>/dev/null || true
  python3 - "$WORK" "$n" "$variant" "$round" "$(echo "$c1 - $c0" | bc)" "$(echo "$ic1 - $ic0" | bc)" "$threads" "$rss" \
    "$malloc" "$((rt1 - rt0)) $((ru1 - ru0))" "$anon" "$pss" "$s0" "$s1" >>"$RESULTS" <<'PY'
import json, sys
sys.path.insert(0, "bench")
from loadstats import jain as fairness, ping_summary, tcp_flows
work, n, variant, rnd = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
cpu, icpu, threads, rss = float(sys.argv[5]), float(sys.argv[6]), sys.argv[7], int(sys.argv[8] or 0)
malloc, drops, anon, pss = sys.argv[9].split(), sys.argv[10].split(), int(sys.argv[11] or 0), int(sys.argv[12] or 0)
switches = [b - a for a, b in zip(map(int, sys.argv[13].split()), map(int, sys.argv[14].split()))]
rates, total, retrans, _ = tcp_flows(["%s/tcp-%d.json" % (work, i) for i in range(1, n + 1)])
agg = sum(rates)
jain = fairness(rates)
loss, rtt = ping_summary(work + "/ping.txt")
udp, sent, lost, ooo = 0.0, 0, 0, 0
for i in range(1, n + 1):
    try:
        s = json.load(open("%s/udp-%d.json" % (work, i)))["end"]["streams"][0]["udp"]
        udp += (s["packets"] - s["lost_packets"]) * 1200 * 8 / s["seconds"] / 1e9
        sent += s["packets"]; lost += s["lost_packets"]; ooo += max(0, s.get("out_of_order", 0))
    except Exception:
        pass
cpu_gb = cpu / (total / 1e9) if total and cpu > 0 else float("nan")
init_gb = icpu / (total / 1e9) if total and icpu > 0 else float("nan")
per_gb = [x / (total / 1e9) if total and cpu > 0 else float("nan") for x in switches]
print("%s,%s,%d,%.3f,%.3f,%.3f,%s,%.1f,%d,%.2f,%.2f,%.3f,%s,%.1f,%s,%s,%.3f,%.1f,%d,%s,%s,%.1f,%.1f,%.0f,%.0f,%.3f" % (
    variant, rnd, n, agg, min(rates), jain, rtt, loss, retrans, cpu, icpu, cpu_gb, threads, rss / 1024,
    malloc[0], malloc[1], udp, 100.0 * lost / sent if sent else 100.0, ooo, drops[0], drops[1], anon / 1024, pss / 1024,
    per_gb[0], per_gb[1], init_gb))
PY
}

# run_variant VARIANT ROUND
run_variant() {
  local v=$1 r=$2 vip pid n
  case $v in
    raw) stop_nodes; vip=$RESP_ADDR; pid= ;;
    cyphonic-single | cyphonic-multi)
      stop_nodes
      start_nodes "${v#cyphonic-}"
      vip=$CY_VIP pid=$(node_pid $RESP) ;;
    wireguard-go) stop_nodes; start_wireguard; vip=198.18.1.1 pid=$RESP_PID ;;
    nebula) stop_nodes; start_nebula; vip=198.18.2.1 pid=$RESP_PID ;;
    *) progress "unknown variant $v"; return ;;
  esac
  echo "$v,$r,$(date +%s)" >>"$WORK/windows.csv"
  idle "$v" "$r" "$vip"
  for n in $COUNTS; do load "$v" "$r" "$n" "$vip" "$pid"; done
  # What the responder's resident pages are, after its loads (the last round's is kept).
  if [[ $v == cyphonic-* ]]; then
    if python3 bench/rss-pages.py "$pid" >"$WORK/pages.txt" 2>"$WORK/pages.err"; then
      mv "$WORK/pages.txt" "$OUT/responder-pages-$v.txt"
    else
      progress "rss-pages failed ($(head -c 200 "$WORK/pages.err")): no page-by-page memory for $v"
    fi
  fi
  echo "$v,$r,$(date +%s)" >>"$WORK/windows.csv"
  stop_references
}

for round in $(seq 1 "$ROUNDS"); do
  for v in $VARIANTS; do run_variant "$v" "$round"; done
done

# Fig. 8 beyond the paper: simulated peers with real handshakes (from cy-init10's
# underlay address; the responder accepts unknown peers of its CA, and this many
# handshakes from one address, for this run only).
progress "Fig. 8: $PEERS simulated peers against the responder (multi pipeline)"
stop_nodes
python3 - "$LAB/responder.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(pipeline="multi", acceptUnknownPeers=True, handshakesPerSourcePerSecond=2000, handshakesPerSecond=5000, handshakeLoadThreshold=100000)
json.dump(c, open(sys.argv[1], "w"))
PY
start_nodes multi
# Start-up work leaves libdispatch with a few extra worker threads for some seconds.
sleep 10
checkpoints=$(python3 -c 'import sys; n=int(sys.argv[1]); print(",".join(str(c) for c in (1, 10, 100, 1000, n) if c <= n))' "$PEERS" | tr ',' '\n' | sort -nu | paste -sd,)
ip netns exec "$(init_ns 10)" "$BIN/cyphonic-bench" peers --count "$PEERS" --as-dir "$LAB/as" --responder $RESP_ADDR:30000 \
  --control "$LAB/responder.sock" --pid "$(node_pid $RESP)" --checkpoints "$checkpoints" --rate 200 --bind 198.19.0.20 \
  --csv "$OUT/eval-peers.csv" | tee "$WORK/peers.txt" || progress "cyphonic-bench peers failed: Fig. 8 beyond the paper is missing from the report"

# Prometheus' series of the whole run, then the lab goes down before the pipeline bench.
progress "Prometheus: exporting the run's series"
now=$(date +%s)
for q in 'sum by (instance) (rate(cyphonic_node_peer_rx_bytes_total{instance="198.19.0.10:9452"}[5s]))' \
  'sum(rate(cyphonic_node_reorder_waits_total{instance="198.19.0.10:9452"}[5s]))' \
  'sum by (reason) (rate(cyphonic_node_drops_total{instance="198.19.0.10:9452"}[5s]))' \
  'sum(increase(cyphonic_node_handshakes_total[5s]))' \
  'cyphonic_node_malloc_in_use_bytes{instance="198.19.0.10:9452"}' \
  'cyphonic_node_malloc_held_bytes{instance="198.19.0.10:9452"}' \
  'process_resident_memory_bytes{instance="198.19.0.10:9452"}' \
  'cyphonic_node_os_threads{instance="198.19.0.10:9452"}'; do
  prom query_range --data-urlencode "query=$q" --data-urlencode "start=$EVAL_START" --data-urlencode "end=$now" \
    --data-urlencode "step=1" || echo '{}'
  echo
done >"$OUT/eval-prometheus.jsonl"
# Per-peer bytes, one series per peer (the responder's view), for the plot.
prom query_range --data-urlencode 'query=rate(cyphonic_node_peer_rx_bytes_total{instance="198.19.0.10:9452",peer=~"init.*"}[5s])' \
  --data-urlencode "start=$EVAL_START" --data-urlencode "end=$now" --data-urlencode "step=1" >"$OUT/eval-prometheus-peers.json" || true
[ -f "$WORK/windows.csv" ] && cp "$WORK/windows.csv" "$OUT/eval-windows.csv"
lab/lab.sh down >/dev/null 2>&1

progress "the pipeline's stages alone: cyphonic-bench pipeline (no lab running)"
"$BIN/cyphonic-bench" pipeline --rounds "$([ -n "${EVAL_QUICK:-}" ] && echo 1 || echo 3)" --csv "$OUT/eval-pipeline.csv" | tee "$WORK/pipeline.txt" \
  || progress "cyphonic-bench pipeline failed: its table is missing from the report"

progress "plots and REPORT.md (matplotlib in a virtual environment under .build/eval-venv)"
VENV=.build/eval-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
  need python3:python3
  dpkg-query -W -f='${Status}' python3-venv 2>/dev/null | grep -q "install ok installed" || scripts/ensure-packages.sh python3-venv
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q matplotlib
fi
"$VENV/bin/python" lab/eval-report.py "$OUT" "$(($(date +%s) - EVAL_START))" "${EVAL_QUICK:+quick}"
progress "done in $(($(date +%s) - EVAL_START)) s: $OUT/REPORT.md"
