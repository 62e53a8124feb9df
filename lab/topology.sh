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
