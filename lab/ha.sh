# shellcheck shell=bash
# The HA scenario of the lab (SCENARIO=ha, issue 15; lab/README.md "HA scenario"), sourced
# by lab/lab.sh: the cloud as replicas, each in a namespace of its own so that one can be
# killed: PostgreSQL, 2 AS, 2 NMS (one bundle, registrations shared in PostgreSQL) and 2
# named relays; the base lab's responder and initiators, and one relayed pair behind
# NATs (lan4 behind a symmetric NAT, lan1 behind an endpoint-independent one).
#
#   cy-pg   .30 / ::30  PostgreSQL 5432 (databases cyphonic_as, cyphonic_nms)
#   cy-as1  .31 / ::31  as-server 4501          cy-as2  .32 / ::32  as-server 4501
#   cy-nms1 .33 / ::33  nms-server 4502, 4512   cy-nms2 .34 / ::34  nms-server 4502, 4512
#   cy-trs1 .35 / ::35  trs-relay 4503          cy-trs2 .36 / ::36  trs-relay 4503
#   cy-nat1 .40 (EIM) ─ cy-lan1 198.19.10.2     cy-nat3 .42 (symmetric) ─ cy-lan4 198.19.12.2

HA_PG4=198.19.0.30
# The PostgreSQL cluster lives outside $DIR (which only root may enter): the server runs
# as the postgres user. lab.sh down removes it.
HA_PGDIR=${DIR}-pg
HA_PG_URL="postgresql://cyphonic@$HA_PG4:5432"
HA_NODES="lan1 lan4"

# ha_addr4 SERVICE — the underlay IPv4 address of as1, as2, nms1, nms2, trs1, trs2.
ha_addr4() { case $1 in as1) echo 198.19.0.31 ;; as2) echo 198.19.0.32 ;; nms1) echo 198.19.0.33 ;; nms2) echo 198.19.0.34 ;; trs1) echo 198.19.0.35 ;; trs2) echo 198.19.0.36 ;; esac; }
# ha_addr6 SERVICE — the same last number in 2001:db8:1::/64 (as1 -> 2001:db8:1::31).
ha_addr6() { echo "2001:db8:1::$(ha_addr4 "$1" | awk -F. '{print $4}')"; }

# ha_as_cli ARGS… — the AS's command line, in cy-as1's namespace (it reaches PostgreSQL there).
ha_as_cli() { ip netns exec cy-as1 "$BIN/as-server" "$@"; }

ha_pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# ha_pg_down — stops the lab's PostgreSQL cleanly (lab.sh down calls it before killing
# what is left in the namespaces).
ha_pg_down() {
  [ -f "$HA_PGDIR/data/postmaster.pid" ] || return 0
  runuser -u postgres -- "$(ha_pg_bin)/pg_ctl" -D "$HA_PGDIR/data" -m fast -w -t 10 stop >/dev/null 2>&1 || true
  return 0
}

ha_pg_up() {
  local bin
  bin=$(ha_pg_bin)
  [ -x "$bin/initdb" ] || { say "no PostgreSQL server (apt-get install postgresql)"; return 1; }
  rm -rf "$HA_PGDIR"
  mkdir -p "$HA_PGDIR"
  chown postgres: "$HA_PGDIR"
  chmod 0700 "$HA_PGDIR"
  runuser -u postgres -- "$bin/initdb" -D "$HA_PGDIR/data" -U cyphonic -A trust -E UTF8 --no-sync >"$HA_PGDIR/initdb.log" 2>&1
  # The lab's underlay may connect (trust: the lab's own namespaces only).
  printf 'host all all 198.19.0.0/24 trust\nhost all all 2001:db8:1::/64 trust\n' >>"$HA_PGDIR/data/pg_hba.conf"
  ip netns exec cy-pg runuser -u postgres -- "$bin/pg_ctl" -D "$HA_PGDIR/data" -l "$HA_PGDIR/server.log" -w -t 30 \
    -o "-c listen_addresses='$HA_PG4' -k $HA_PGDIR -c max_connections=100 -c shared_buffers=32MB" start >/dev/null
  ip netns exec cy-pg runuser -u postgres -- psql -h "$HA_PGDIR" -U cyphonic -d postgres -qc 'CREATE DATABASE cyphonic_as' >/dev/null
  ip netns exec cy-pg runuser -u postgres -- psql -h "$HA_PGDIR" -U cyphonic -d postgres -qc 'CREATE DATABASE cyphonic_nms' >/dev/null
}

# ha_start_as as1|as2, ha_start_nms nms1|nms2, ha_start_trs trs1|trs2 — each returns once
# its log has a new "listening" line (also when started again after a kill -9).
ha_start_as() {
  local before
  before=$(listening_lines "$DIR/$1.log")
  ip netns exec "cy-$1" "$BIN/as-server" serve --data-dir "$DIR/$1" --listen "$(ha_addr4 "$1"):4501" \
    --listen "[$(ha_addr6 "$1")]:4501" --metrics 127.0.0.1:9451 >>"$DIR/$1.log" 2>&1 &
  wait_until_more_lines "$1 to listen" "$DIR/$1.log" "$before"
}

ha_start_nms() {
  local before
  before=$(listening_lines "$DIR/$1.log")
  ip netns exec "cy-$1" "$BIN/nms-server" serve --bundle "$DIR/nms" --database "$HA_PG_URL/cyphonic_nms" --replica "$1" \
    --listen "$(ha_addr4 "$1"):4502" --listen "[$(ha_addr6 "$1")]:4502" \
    --probe-listen "$(ha_addr4 "$1"):4512" --probe-listen "[$(ha_addr6 "$1")]:4512" \
    --relay "trs1.$DOMAIN=$(ha_addr4 trs1):4503,[$(ha_addr6 trs1)]:4503" \
    --relay "trs2.$DOMAIN=$(ha_addr4 trs2):4503,[$(ha_addr6 trs2)]:4503" \
    --as "$(ha_addr4 as1):4501" --metrics 127.0.0.1:9453 --control "$DIR/$1.sock" >>"$DIR/$1.log" 2>&1 &
  wait_until_more_lines "$1 to listen" "$DIR/$1.log" "$before"
}

ha_start_trs() {
  local before
  before=$(listening_lines "$DIR/$1.log")
  ip netns exec "cy-$1" "$BIN/trs-relay" serve --bundle "$DIR/$1" --listen "$(ha_addr4 "$1"):4503" \
    --listen "[$(ha_addr6 "$1")]:4503" --as "$(ha_addr4 as1):4501" \
    --metrics 127.0.0.1:9454 --control "$DIR/$1.sock" >>"$DIR/$1.log" 2>&1 &
  wait_until_more_lines "$1 to listen" "$DIR/$1.log" "$before"
}
wait_until_more_lines() { wait_for "$1" 10 more_listening_lines "$2" "$3"; }
more_listening_lines() { [ "$(listening_lines "$1")" -gt "$2" ]; }

# ha_cloud_up — namespaces, PostgreSQL, both AS (one database, the second a copy of the
# first's directory), the NMS bundle (shared by both replicas) and two relay bundles.
ha_cloud_up() {
  local s
  topology_attach cy-pg $HA_PG4 pg 2001:db8:1::30
  for s in as1 as2 nms1 nms2 trs1 trs2; do topology_attach "cy-$s" "$(ha_addr4 $s)" "$s" "$(ha_addr6 $s)"; done
  say "[ha] PostgreSQL in cy-pg at $HA_PG4:5432 (databases cyphonic_as, cyphonic_nms)"
  ha_pg_up
  say "[ha] as-server in cy-as1 and cy-as2 on one database; NMS bundle for both replicas; relays trs1, trs2"
  ha_as_cli init --data-dir "$DIR/as1" --domain $DOMAIN --database "$HA_PG_URL/cyphonic_as" \
    --nms "$(ha_addr4 nms1):4502" --nms "$(ha_addr4 nms2):4502" --nms "[$(ha_addr6 nms1)]:4502" --nms "[$(ha_addr6 nms2)]:4502" \
    --trs "$(ha_addr4 trs1):4503" --trs "$(ha_addr4 trs2):4503" >/dev/null
  cp -a "$DIR/as1" "$DIR/as2"
  # lab.sh's enrol and add_node use $DIR/as (ca.pem, the command line): the first replica.
  ln -s as1 "$DIR/as"
  ha_as_cli service add nms nms.$DOMAIN --data-dir "$DIR/as1" --out "$DIR/nms" >/dev/null
  ha_as_cli service add trs trs1.$DOMAIN --data-dir "$DIR/as1" --out "$DIR/trs1" >/dev/null
  ha_as_cli service add trs trs2.$DOMAIN --data-dir "$DIR/as2" --out "$DIR/trs2" >/dev/null
  ha_start_as as1
  ha_start_as as2
  ha_start_trs trs1
  ha_start_trs trs2
  ha_start_nms nms1
  ha_start_nms nms2
}

# ha_registered — nodes registered with either NMS replica.
ha_registered() {
  local total=0 n s
  for s in nms1 nms2; do
    n=$("$BIN/nms-server" status --control "$DIR/$s.sock" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["registered"])' 2>/dev/null) || n=0
    total=$((total + n))
  done
  echo "$total"
}

# ha_nat_up — the relayed pair: lan1 behind cy-nat1 (EIM), lan4 behind cy-nat3 (symmetric).
ha_nat_up() {
  say "[ha] relayed pair: cy-lan1 behind cy-nat1 (EIM), cy-lan4 behind cy-nat3 (symmetric NAT)"
  topology_nat_site cy-nat1 198.19.0.40 nat1 198.19.10 eim
  topology_lan_host cy-lan1 198.19.10.2 cy-nat1 lan1
  topology_nat_site cy-nat3 198.19.0.42 nat3 198.19.12 symmetric
  topology_lan_host cy-lan4 198.19.12.2 cy-nat3 lan4
  # shellcheck disable=SC2086
  enrol_start_wait $HA_NODES
}

ha_status() {
  local s
  for s in nms1 nms2; do
    echo "== $s"
    "$BIN/nms-server" status --control "$DIR/$s.sock" || echo "$s: no status (killed?)"
  done
  for s in trs1 trs2; do
    echo "== $s"
    "$BIN/trs-relay" status --control "$DIR/$s.sock" || echo "$s: no status (killed?)"
  done
}

ha_try() {
  cat <<EOF

HA scenario (lab/README.md, "HA scenario"): PostgreSQL in cy-pg ($HA_PG4), as-server in
cy-as1/cy-as2, nms-server replicas in cy-nms1/cy-nms2 (one bundle, registrations shared
in PostgreSQL), relays trs1/trs2 in cy-trs1/cy-trs2; nodes spread over both NMS. Kill one
of each with kill -9 and watch the tunnels and lookups go on (make lab-smoke-ha does it):
  ip netns exec cy-init01 ping responder           # registered with either replica
  ip netns exec cy-lan4 ping lan1                  # relayed (symmetric NAT): trs1 or trs2
  ip netns pids cy-nms1 | xargs kill -9            # nodes of nms1 move to nms2 (< 15 s)
  ip netns pids cy-trs1 | xargs kill -9            # its paths move to trs2 (< 15 s)
  make lab-status
EOF
}
