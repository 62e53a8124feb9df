# shellcheck shell=bash
# The lab's underlay (DESIGN §6), shared by lab/lab.sh and bench/hub.sh (sourced): a
# bridge br0 in namespace cy-net, and namespaces joined to it by veth pairs, each with
# an IPv4 address in 198.19.0.0/24 and, when given, an IPv6 address in 2001:db8:1::/64;
# home routers (NAT) with a LAN behind them; IPv4-only and IPv6-only hosts.
#
#   cy-net: br0 ── b<tag> ═ v<tag> ── namespace (198.19.0.x/24, 2001:db8:1::x/64)
#   cy-net: br0 ── b<tag> ═ v<tag> ── router (198.19.0.x/24, NAT) br1 ── b<t> ═ v<t> ── LAN host

TOPO_NET=cy-net

# Creates the bridge namespace.
topology_bridge() {
  ip netns add $TOPO_NET
  ip -n $TOPO_NET link set lo up
  ip -n $TOPO_NET link add br0 type bridge
  ip -n $TOPO_NET link set br0 up
}

# topology_attach NAMESPACE ADDRESS TAG [ADDRESS6] — creates NAMESPACE and joins it to the
# bridge with ADDRESS/24 (and ADDRESS6/64); veth names v<TAG> and b<TAG> (≤ 15 bytes).
# Without ADDRESS6 an IPv4-only host: its underlay interface has an IPv6 link-local
# address only, so no route to 2001:db8:1::/64 (the namespace's TUN still carries IPv6).
topology_attach() {
  local ns=$1 addr=$2 tag=$3 addr6=${4:-}
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "v$tag" netns "$ns" type veth peer name "b$tag" netns $TOPO_NET
  ip -n $TOPO_NET link set "b$tag" master br0 up
  ip -n "$ns" addr add "$addr/24" dev "v$tag"
  if [ -n "$addr6" ]; then
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 "net.ipv6.conf.v$tag.disable_ipv6=0"
    ip -n "$ns" addr add "$addr6/64" dev "v$tag" nodad
  fi
  ip -n "$ns" link set "v$tag" up
}

# topology_attach6 NAMESPACE ADDRESS6 TAG — an IPv6-only host: like topology_attach, but
# its underlay interface has ADDRESS6/64 and no IPv4 address at all (loopback keeps
# 127.0.0.1 for the node's resolver and metrics; the TUN still carries IPv4).
topology_attach6() {
  local ns=$1 addr6=$2 tag=$3
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "v$tag" netns "$ns" type veth peer name "b$tag" netns $TOPO_NET
  ip -n $TOPO_NET link set "b$tag" master br0 up
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 "net.ipv6.conf.v$tag.disable_ipv6=0"
  ip -n "$ns" addr add "$addr6/64" dev "v$tag" nodad
  ip -n "$ns" link set "v$tag" up
}

# topology_initiator I — the namespace, address, veth tag and IPv6 address of initiator I
# (1-based): cy-init01 198.19.0.11 i01 2001:db8:1::11 ...
topology_initiator() { printf 'cy-init%02d 198.19.0.%d i%02d 2001:db8:1::%d\n' "$1" $((10 + $1)) "$1" $((10 + $1)); }

# topology_nat_site ROUTER PUBLIC TAG LAN [MODE] — a home router: namespace ROUTER on the
# bridge with PUBLIC/24 (IPv4 only), a LAN bridge br1 with LAN.1/24 behind it, masquerade
# on the public side and unsolicited inbound dropped, as home routers do (DESIGN §6).
# MODE, the mapping behaviour (RFC 4787):
#   eim        (default) plain masquerade: Linux keeps a flow's source port while it is
#              free, so one LAN socket has one public port for every destination:
#              endpoint-independent mapping
#   symmetric  masquerade random,fully-random: a random public port per destination:
#              endpoint-dependent mapping
# Both filter by address and port: only replies to what the LAN sent get in.
topology_nat_site() {
  local router=$1 public=$2 tag=$3 lan=$4 mode=${5:-eim}
  topology_attach "$router" "$public" "$tag"
  ip -n "$router" link add br1 type bridge
  ip -n "$router" addr add "$lan.1/24" dev br1
  ip -n "$router" link set br1 up
  ip netns exec "$router" sysctl -qw net.ipv4.ip_forward=1
  topology_nat_rules "$tag" "$mode" | ip netns exec "$router" nft -f -
}

# topology_nat_rules TAG MODE — the router's nftables table `ip cy_nat`, as one nft
# transaction that also replaces the table when it exists (to stdout).
topology_nat_rules() {
  local tag=$1 masq
  case "$2" in
    eim) masq=masquerade ;;
    symmetric) masq="masquerade random,fully-random" ;;
    *) echo "topology: NAT mode '$2' is neither eim nor symmetric" >&2; return 1 ;;
  esac
  cat <<EOF
table ip cy_nat
delete table ip cy_nat
table ip cy_nat {
  chain postrouting { type nat hook postrouting priority srcnat; oifname "v$tag" $masq; }
  chain forward { type filter hook forward priority filter; policy drop; ct state established,related accept; iifname "br1" accept; }
  chain input { type filter hook input priority filter; iifname "v$tag" ct state new drop; }
}
EOF
}

# topology_nat_mode ROUTER MODE — switches a running router to MODE (eim or symmetric):
# replaces its table cy_nat atomically (a topology_block lives in a table of its own and
# stays), then flushes the router's conntrack table: a flow keeps the mapping it got
# when it started, so without the flush the flows already there would keep their old
# ports. After the flush the next packet of every flow from the LAN gets a new mapping
# under MODE; packets from outside to an old mapping are dropped.
topology_nat_mode() {
  local router=$1 mode=$2 tag
  tag=$(ip -n "$router" -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' | grep -m1 '^v') \
    || { echo "topology: $router has no underlay interface v<TAG>" >&2; return 1; }
  topology_nat_rules "${tag#v}" "$mode" | ip netns exec "$router" nft -f -
  topology_conntrack_flush "$router"
}

# topology_conntrack_flush NAMESPACE — forgets every IPv4 conntrack entry (so every NAT
# mapping) of NAMESPACE: `conntrack -F` when the tool is installed, else the same
# netlink request (IPCTNL_MSG_CT_DELETE without attributes) from python3.
topology_conntrack_flush() {
  if command -v conntrack >/dev/null; then
    ip netns exec "$1" conntrack -F -f ipv4 >/dev/null 2>&1
    return
  fi
  ip netns exec "$1" python3 -c '
import os, socket, struct
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)           # NETLINK_NETFILTER
body = struct.pack("=BBH", socket.AF_INET, 0, 0)                    # nfgenmsg: IPv4, version 0
s.sendto(struct.pack("=IHHII", 16 + len(body), (1 << 8) | 2,        # CTNETLINK, IPCTNL_MSG_CT_DELETE
                     0x1 | 0x4, 1, 0) + body, (0, 0))                # NLM_F_REQUEST | NLM_F_ACK
error = struct.unpack("=i", s.recv(4096)[16:20])[0]                  # NLMSG_ERROR; 0 is the ack
if error not in (0, -2):                                             # -ENOENT: nothing to flush
    raise SystemExit("conntrack flush: " + os.strerror(-error))
'
}

# topology_block ROUTER OTHER — ROUTER drops every forwarded UDP packet between its LAN
# and the public IPv4 address OTHER, both ways, flows already established included (the
# drop comes before cy_nat's `ct state established accept`): a hole punch with OTHER
# fails, and a direct tunnel through it stops. A table `ip cy_block` of its own, so
# topology_nat_mode leaves it alone. topology_unblock ROUTER OTHER lifts it again (a
# no-op when OTHER is not blocked).
topology_block() {
  ip netns exec "$1" nft -f - <<EOF
table ip cy_block {
  set peers { type ipv4_addr; }
  chain forward { type filter hook forward priority filter - 10; ip daddr @peers meta l4proto udp drop; ip saddr @peers meta l4proto udp drop; }
}
add element ip cy_block peers { $2 }
EOF
}

topology_unblock() {
  ip netns exec "$1" nft list set ip cy_block peers 2>/dev/null | grep -qE "[^0-9.]${2//./\\.}([^0-9.]|\$)" || return 0
  ip netns exec "$1" nft delete element ip cy_block peers "{ $2 }"
}

# topology_lan_host NAMESPACE ADDRESS ROUTER TAG — a host on ROUTER's LAN, default route
# through it.
topology_lan_host() {
  local ns=$1 addr=$2 router=$3 tag=$4
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "v$tag" netns "$ns" type veth peer name "b$tag" netns "$router"
  ip -n "$router" link set "b$tag" master br1 up
  ip -n "$ns" addr add "$addr/24" dev "v$tag"
  ip -n "$ns" link set "v$tag" up
  ip -n "$ns" route add default via "${addr%.*}.1"
}
