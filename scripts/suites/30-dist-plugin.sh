#!/usr/bin/env bash
# The plugin as it ships (scripts/build-plugin.sh: dist profile, static)
# must be a static executable and pass the CNI conformance tests, which
# otherwise run against the debug build.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(scripts/build-plugin.sh)
if readelf -d "$bin" | grep -q NEEDED; then
    echo "$bin needs shared libraries:" >&2
    readelf -d "$bin" | grep NEEDED >&2
    exit 1
fi
echo "dist plugin: $bin (static, $(stat -c %s "$bin") bytes)"
OVERLAY_BRIDGE_BIN="$bin" OVERLAY_REQUIRE_PRIVILEGED=1 \
    cargo test --quiet -p overlay-examples --test cni_conformance
