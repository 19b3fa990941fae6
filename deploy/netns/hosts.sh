#!/usr/bin/env bash
# Builds (or removes) a small network of "hosts" on this machine with network namespaces: a bridge in its
# own namespace and one namespace per host, each joined to the bridge by a veth pair. Nothing is routed
# to or from the machine's own network; the addresses exist only inside these namespaces.
#
#   deploy/netns/hosts.sh up PREFIX HOST...     PREFIX-HOST gets eth0 = 10.77.0.N/24 (N = 1, 2, … in order)
#   deploy/netns/hosts.sh down PREFIX HOST...   removes them (and the bridge namespace PREFIX-br)
#   deploy/netns/hosts.sh link PREFIX HOST up|down   takes a host's link down or up (at the bridge)
#
# Links are shaped with `tc netem` (0.5 ms delay, 1 Gbit/s) where the kernel has netem; where it does
# not, `up` says so on stderr and the links stay unshaped. Needs root and iproute2.
set -euo pipefail

command=${1:-}; prefix=${2:-}; shift 2 || true
[[ -n "$command" && -n "$prefix" ]] || { echo "usage: hosts.sh up|down|link PREFIX HOST..." >&2; exit 2; }
bridge="$prefix-br"

case "$command" in
  up)
    ip netns add "$bridge"
    ip -n "$bridge" link add br0 type bridge
    ip -n "$bridge" link set br0 up
    ip -n "$bridge" link set lo up
    n=0
    shaped=yes
    for host in "$@"; do
      n=$((n + 1))
      ns="$prefix-$host"
      ip netns add "$ns"
      ip link add "v$n-$prefix" type veth peer name "b$n-$prefix"
      ip link set "v$n-$prefix" netns "$ns"
      ip link set "b$n-$prefix" netns "$bridge"
      ip -n "$ns" link set "v$n-$prefix" name eth0
      ip -n "$ns" addr add "10.77.0.$n/24" dev eth0
      ip -n "$ns" link set eth0 up
      ip -n "$ns" link set lo up
      ip -n "$bridge" link set "b$n-$prefix" master br0
      ip -n "$bridge" link set "b$n-$prefix" up
      if ! ip netns exec "$ns" tc qdisc add dev eth0 root netem delay 0.5ms rate 1gbit 2>/dev/null; then
        shaped=no
      fi
    done
    if [[ $shaped == no ]]; then
      echo "hosts.sh: this kernel has no netem qdisc: the links are unshaped (no delay, no rate limit)" >&2
    fi
    ;;
  down)
    for host in "$@"; do ip netns del "$prefix-$host" 2>/dev/null || true; done
    ip netns del "$bridge" 2>/dev/null || true
    ;;
  link)
    host=$1; state=$2
    n=$(ip -n "$prefix-$host" -o addr show dev eth0 | sed -n 's/.*inet 10\.77\.0\.\([0-9]*\)\/24.*/\1/p')
    ip -n "$bridge" link set "b$n-$prefix" "$state"
    ;;
  *) echo "hosts.sh: unknown command '$command'" >&2; exit 2 ;;
esac
