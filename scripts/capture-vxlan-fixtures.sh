#!/usr/bin/env bash
# Regenerate overlay-core/tests/fixtures/vxlan-*.pcap: frames sent by
# the Linux kernel's own VXLAN device, captured on a veth underlay between two
# throw-away test namespaces (see overlay-core/tests/fixtures/README.md).
#
# Run as root (it creates network namespaces; nothing touches the root
# namespace). The capture procedure itself is the privileged test
# `live_kernel_*` in overlay-core/tests/kernel_fixtures.rs: with
# OVERLAY_CAPTURE_FIXTURES_DIR set it also writes what it captured there, so
# the checked-in bytes and the live check can never follow different recipes
# (a new scenario without a fixture yet is captured for the first time). The
# live tests also check the UDP checksum setting each kernel device reports
# (`ip -d link show`) against the checksums it sends; `vxlan-ipv4-default`
# passes no checksum option and so records the kernel's own default.
# Afterwards the fixture tests run against the new files.
set -euo pipefail

cd "$(dirname "$0")/.."
FIXTURES=$PWD/overlay-core/tests/fixtures

if [[ $(id -u) -ne 0 ]]; then
    echo "capture-vxlan-fixtures.sh: run as root (the capture creates network namespaces)" >&2
    exit 1
fi
for tool in ip tcpdump ping; do
    command -v "$tool" >/dev/null || { echo "capture-vxlan-fixtures.sh: $tool is missing" >&2; exit 1; }
done

export OVERLAY_REQUIRE_PRIVILEGED=1
OVERLAY_CAPTURE_FIXTURES_DIR=$FIXTURES \
    cargo test -p overlay-core --test kernel_fixtures live_kernel_ -- --test-threads=1
cargo test -p overlay-core --test kernel_fixtures -- --skip live_
echo "fixtures written to $FIXTURES:"
ls -l "$FIXTURES"/vxlan-*.pcap
