#!/usr/bin/env bash
# make bench-setup: tunnel set-up time in the lab (issue 10), from a DNS query for a
# peer's name to its answer, which the resolver gives only once the tunnel is up:
# DirectionRequest → NMS → RouteDirection to the responder → confirmation →
# RouteDirection to the initiator → the peer handshake → the responder's first packet.
# Brings the lab up (release binaries), then each initiator in turn ends its tunnel to
# the responder (control socket `forget`) and resolves the name again, SETUP_ROUNDS
# times (default 10: 100 set-ups over 10 initiators). Reports median, p90, p99 and max;
# writes bench-out/setup-results.csv. The lab is torn down on exit.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
export BIN=${BIN:-.build/release}
DIR=${LAB_DIR:-/run/cyphonic-lab}
N=${LAB_INITIATORS:-10}
ROUNDS=${SETUP_ROUNDS:-10}
NAME=responder.cyphonic.internal
OUT=bench-out
[ "$(id -u)" -eq 0 ] || { progress "needs root (network namespaces)"; exit 1; }
mkdir -p $OUT
trap 'lab/lab.sh down >/dev/null 2>&1 || true' EXIT
progress "lab up (release binaries, $N initiators)"
lab/lab.sh up >/dev/null
# Each initiator's first lookup once, untimed (the first ARP/neighbour entries, caches).
for i in $(seq -f %02g 1 "$N"); do ip netns exec "cy-init$i" ping -c 1 -W 2 $NAME >/dev/null; done
echo "initiator,round,milliseconds,answer" >$OUT/setup-results.csv
for i in $(seq -f %02g 1 "$N"); do
  progress "cy-init$i: $ROUNDS set-ups"
  ip netns exec "cy-init$i" python3 bench/setup-probe.py "$DIR/init$i.sock" $NAME "$ROUNDS" 0.3 \
    | awk -v i="init$i" '{print i "," NR "," $1 "," $2}' >>$OUT/setup-results.csv
done
python3 - $OUT/setup-results.csv <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
ok = sorted(float(r["milliseconds"]) for r in rows if not r["answer"].startswith("rcode"))
bad = len(rows) - len(ok)
def pct(p): return ok[min(len(ok) - 1, int(round(p / 100 * (len(ok) - 1))))]
print(f"tunnel set-ups: {len(rows)} ({bad} failed); DNS query -> answer with the tunnel up:")
print(f"  median {statistics.median(ok):.2f} ms   p90 {pct(90):.2f} ms   p99 {pct(99):.2f} ms   max {ok[-1]:.2f} ms   min {ok[0]:.2f} ms")
sys.exit(1 if bad else 0)
PY
