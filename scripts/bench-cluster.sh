#!/usr/bin/env bash
# The reference plugin's cluster benchmarks (issue 13, item 7): TCP
# throughput pod to pod through overlayd's overlay against the same nodes'
# underlay and a hand-made kernel VXLAN (benches/benches/pod_throughput.rs),
# and convergence of a 3-node cluster from a cold start and after agent
# restarts (benches/benches/cluster_convergence.rs).
#
#   scripts/bench-cluster.sh                  # both
#   scripts/bench-cluster.sh pod_throughput   # one of them
#
# Needs root. Installs iperf3 and ethtool with apt-get when missing, builds
# overlayd, overlay and overlayctl in the release profile, then runs the
# benches (their knobs: OVERLAY_TPUT_ROUNDS, OVERLAY_TPUT_SECS,
# OVERLAY_TPUT_ARGS, OVERLAY_CONV_COLD, OVERLAY_CONV_RESTARTS; see each
# bench's header). On a busy machine run it under a real-time policy, which
# the agents and iperf3 inherit: `chrt -f 10 scripts/bench-cluster.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "bench-cluster.sh: needs root (network namespaces)" >&2
    exit 1
fi
missing=()
command -v iperf3 >/dev/null || missing+=(iperf3)
command -v ethtool >/dev/null || missing+=(ethtool)
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench-cluster.sh: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo="${CARGO:-cargo}"
echo "bench-cluster.sh: building the binaries (release)" >&2
"$cargo" build --release -p overlay-examples --bins
OVERLAY_BIN_DIR="$(pwd)/target/release"
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    OVERLAY_BIN_DIR="$CARGO_TARGET_DIR/release"
fi
export OVERLAY_BIN_DIR
benches=("$@")
[ ${#benches[@]} -gt 0 ] || benches=(pod_throughput cluster_convergence)
for b in "${benches[@]}"; do
    "$cargo" bench -p overlay-benches --bench "$b"
done
