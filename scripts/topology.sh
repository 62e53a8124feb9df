# The lab's underlay (DESIGN §6), shared by scripts/lab.sh and bench/hub.sh (sourced):
# a bridge br0 in namespace cy-net, and namespaces joined to it by veth pairs.
#
#   cy-net: br0 ── b<tag> ═ v<tag> ── namespace (198.19.0.x/24)

TOPO_NET=cy-net

# Creates the bridge namespace.
topology_bridge() {
  ip netns add $TOPO_NET
  ip -n $TOPO_NET link add br0 type bridge
  ip -n $TOPO_NET link set br0 up
}

# topology_attach NAMESPACE ADDRESS TAG — creates NAMESPACE and joins it to the bridge
# with ADDRESS/24 (veth names v<TAG> and b<TAG>, ≤ 15 bytes).
topology_attach() {
  local ns=$1 addr=$2 tag=$3
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "v$tag" netns "$ns" type veth peer name "b$tag" netns $TOPO_NET
  ip -n $TOPO_NET link set "b$tag" master br0 up
  ip -n "$ns" addr add "$addr/24" dev "v$tag"
  ip -n "$ns" link set "v$tag" up
}

# topology_initiator I — the namespace, address and veth tag of initiator I (1-based).
topology_initiator() { printf 'cy-init%02d 198.19.0.%d i%02d\n' "$1" $((10 + $1)) "$1"; }
