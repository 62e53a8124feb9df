# The reference tunnels of the hub benchmarks (sourced by bench/hub.sh and lab/eval.sh,
# not run): wireguard-go and Nebula between the responder namespace $RESP ($RESP_ADDR)
# and the initiator namespaces init_ns 1 … $MAXN, their keys and configs in $WORK, their
# pids appended to DAEMONS and the responder's in RESP_PID; and the shared probes.
# Overlay addresses: wireguard-go 198.18.1.0/24, Nebula 198.18.2.0/24 (the responder .1).

# Waits until every initiator pings $1 through its tunnel.
wait_tunnels() {
  local vip=$1 i ok
  for i in $(seq 1 "$MAXN"); do
    ok=0
    for _ in $(seq 1 50); do
      ip netns exec "$(init_ns "$i")" ping -c 1 -W 1 "$vip" >/dev/null 2>&1 && { ok=1; break; }
      sleep 0.2
    done
    [ $ok -eq 1 ] || { progress "initiator $i: no tunnel to $vip"; return 1; }
  done
}

# Packets the kernel dropped in namespace $1: "TUN-queue UDP-receive-buffer" — the tunnel
# device's transmit drops (its queue towards the daemon was full) and UDP RcvbufErrors.
kernel_drops() {
  local tun udp
  tun=$(ip -n "$1" -s -j link show | python3 -c '
import json, sys
print(sum(l.get("stats64", {}).get("tx", {}).get("dropped", 0) for l in json.load(sys.stdin)
          if l["ifname"] != "lo" and not l["ifname"].startswith("v")))')
  udp=$(ip netns exec "$1" awk '/^Udp: [0-9]/ {print $6}' /proc/net/snmp)
  echo "$tun ${udp:-0}"
}

start_wireguard() {
  local mask
  mask=$(umask)
  umask 077
  local i
  wg genkey >"$WORK/wgr.key"
  wg pubkey <"$WORK/wgr.key" >"$WORK/wgr.pub"
  # Distinct interface names: wireguard-go's control sockets share /var/run/wireguard.
  ip netns exec $RESP env WG_PROCESS_FOREGROUND=1 WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 wireguard-go wgr0 \
    >/dev/null 2>&1 &
  RESP_PID=$!
  DAEMONS+=($!)
  for _ in $(seq 50); do ip -n $RESP link show wgr0 >/dev/null 2>&1 && break; sleep 0.1; done
  ip netns exec $RESP wg set wgr0 listen-port 51820 private-key "$WORK/wgr.key"
  ip -n $RESP addr add 198.18.1.1/24 dev wgr0
  ip -n $RESP link set wgr0 up
  for i in $(seq 1 "$MAXN"); do
    local ns dev
    ns=$(init_ns "$i")
    dev=$(printf 'wgi%02d' "$i")
    wg genkey >"$WORK/$dev.key"
    wg pubkey <"$WORK/$dev.key" >"$WORK/$dev.pub"
    ip netns exec "$ns" env WG_PROCESS_FOREGROUND=1 WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 wireguard-go "$dev" \
      >/dev/null 2>&1 &
    DAEMONS+=($!)
    for _ in $(seq 50); do ip -n "$ns" link show "$dev" >/dev/null 2>&1 && break; sleep 0.1; done
    ip netns exec "$ns" wg set "$dev" listen-port 51820 private-key "$WORK/$dev.key" \
      peer "$(cat "$WORK/wgr.pub")" allowed-ips 198.18.1.1/32 endpoint $RESP_ADDR:51820
    ip netns exec $RESP wg set wgr0 peer "$(cat "$WORK/$dev.pub")" allowed-ips "198.18.1.$((10 + i))/32"
    ip -n "$ns" addr add "198.18.1.$((10 + i))/24" dev "$dev"
    ip -n "$ns" link set "$dev" up
  done
  umask "$mask"
  wait_tunnels 198.18.1.1
}

# nebula_config NAME STATIC_HOST_MAP [DEV] — $WORK/nebula-NAME.yml for a Nebula node with
# certificate $WORK/NAME.crt: no lighthouse, no punching, MTU 1300, everything allowed.
nebula_config() {
  cat >"$WORK/nebula-$1.yml" <<YML
pki: {ca: $WORK/ca.crt, cert: $WORK/$1.crt, key: $WORK/$1.key}
static_host_map: $2
lighthouse: {am_lighthouse: false, hosts: []}
listen: {host: 0.0.0.0, port: 4242}
punchy: {punch: false}
tun: {dev: ${3:-nebula1}, mtu: 1300}
logging: {level: warning}
firewall:
  outbound: [{port: any, proto: any, host: any}]
  inbound: [{port: any, proto: any, host: any}]
YML
}

start_nebula() {
  local i
  (cd "$WORK" && nebula-cert ca -name hub >/dev/null && nebula-cert sign -name resp -ip 198.18.2.1/24 >/dev/null)
  nebula_config resp '{}'
  ip netns exec $RESP nebula -config "$WORK/nebula-resp.yml" >/dev/null 2>&1 &
  RESP_PID=$!
  DAEMONS+=($!)
  for i in $(seq 1 "$MAXN"); do
    local name
    name=$(printf 'i%02d' "$i")
    (cd "$WORK" && nebula-cert sign -name "$name" -ip "198.18.2.$((10 + i))/24" >/dev/null)
    nebula_config "$name" "{\"198.18.2.1\": [\"$RESP_ADDR:4242\"]}"
    ip netns exec "$(init_ns "$i")" nebula -config "$WORK/nebula-$name.yml" >/dev/null 2>&1 &
    DAEMONS+=($!)
  done
  wait_tunnels 198.18.2.1
}
