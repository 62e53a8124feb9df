# The lab's underlay (DESIGN §6), shared by lab/lab.sh and bench/hub.sh (sourced): a
# bridge br0 in namespace cy-net, and namespaces joined to it by veth pairs, each with
# an IPv4 address in 198.19.0.0/24 and, when given, an IPv6 address in 2001:db8:1::/64.
#
#   cy-net: br0 ── b<tag> ═ v<tag> ── namespace (198.19.0.x/24, 2001:db8:1::x/64)

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

# topology_initiator I — the namespace, address, veth tag and IPv6 address of initiator I
# (1-based): cy-init01 198.19.0.11 i01 2001:db8:1::11 ...
topology_initiator() { printf 'cy-init%02d 198.19.0.%d i%02d 2001:db8:1::%d\n' "$1" $((10 + $1)) "$1" $((10 + $1)); }

# topology_nat_site ROUTER PUBLIC TAG LAN — a home router: namespace ROUTER on the bridge
# with PUBLIC/24, a LAN bridge br1 with LAN.1/24 behind it, masquerade on the public side
# (Linux keeps a flow's mapping: endpoint-independent) and unsolicited inbound dropped,
# as home routers do (DESIGN §6).
topology_nat_site() {
  local router=$1 public=$2 tag=$3 lan=$4
  topology_attach "$router" "$public" "$tag"
  ip -n "$router" link add br1 type bridge
  ip -n "$router" addr add "$lan.1/24" dev br1
  ip -n "$router" link set br1 up
  ip netns exec "$router" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$router" nft -f - <<EOF
table ip cy_nat {
  chain postrouting { type nat hook postrouting priority srcnat; oifname "v$tag" masquerade; }
  chain forward { type filter hook forward priority filter; policy drop; ct state established,related accept; iifname "br1" accept; }
  chain input { type filter hook input priority filter; iifname "v$tag" ct state new drop; }
}
EOF
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
