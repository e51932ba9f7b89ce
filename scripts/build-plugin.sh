#!/usr/bin/env bash
# Build the overlay-bridge CNI plugin as it ships: the `dist` profile (LTO,
# one codegen unit, stripped), statically linked against glibc so that the
# binary can be copied into /opt/cni/bin of any node, like the reference
# plugins, and skips the dynamic loader at every pod operation.
#
#   scripts/build-plugin.sh            # prints the path of the binary
#   install -m 0755 "$(scripts/build-plugin.sh)" /opt/cni/bin/overlay-bridge
#
# CARGO_TARGET_DIR is honoured. Needs the static glibc (libc6-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(uname -m)-unknown-linux-gnu"
# An explicit --target keeps the flag off build scripts and proc macros,
# which must stay dynamic.
CARGO_ENCODED_RUSTFLAGS="-Ctarget-feature=+crt-static" \
    "${CARGO:-cargo}" build --quiet --profile dist --target "$target" \
    -p overlay-examples --bin overlay-bridge >&2
echo "${CARGO_TARGET_DIR:-$PWD/target}/$target/dist/overlay-bridge"
