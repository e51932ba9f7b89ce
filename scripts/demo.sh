#!/usr/bin/env bash
# The main job of the overlay workspace (see README.md, "Quick start"):
# build the example binaries and run the local demo.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ip >/dev/null || ! command -v ping >/dev/null || ! command -v tcpdump >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 iputils-ping tcpdump >/dev/null
fi
cargo run --release -q -p overlay-examples --bin overlay-demo -- "$@"
