#!/usr/bin/env bash
# The main job of the overlay workspace (see README.md, "Quick start"):
# build the example binaries and run the local demo, a cluster of nodes
# running overlayd in network namespaces (`scripts/demo.sh --help` lists the
# options: --nodes, --pods, --range, --keep).
#
# The demo runs the binaries next to its own executable: overlayd (the node
# agent), overlay (the CNI plugin) and overlayctl, so all four are built.
# Cargo's build progress goes to standard error, the demo's report to standard
# output. The demo replaces this script's process (exec), so Ctrl-C or a
# SIGTERM sent to the script reaches the demo, which then deletes everything
# it created.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ip >/dev/null || ! command -v ping >/dev/null || ! command -v tcpdump >/dev/null; then
    echo "demo.sh: installing iproute2, iputils-ping and tcpdump" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 iputils-ping tcpdump >/dev/null
fi
bins=(--bin overlay-demo --bin overlayd --bin overlay --bin overlayctl)
echo "demo.sh: building overlay-demo, overlayd, overlay and overlayctl (release; the first build takes a few minutes)" >&2
cargo build --release -p overlay-examples "${bins[@]}"
# Already built: this only runs it (cargo run execs the binary on Unix).
exec cargo run --release -q -p overlay-examples --bin overlay-demo -- "$@"
