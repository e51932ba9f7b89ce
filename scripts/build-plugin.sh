#!/usr/bin/env bash
# Build the overlay-bridge CNI plugin (or others, see below) as it ships:
# the `dist` profile (LTO, one codegen unit, stripped), a static
# executable, so that the binary can be copied into /opt/cni/bin of any
# node, like the reference plugins, and skips the dynamic loader at every
# pod operation.
#
#   scripts/build-plugin.sh            # prints the path of the binary
#   install -m 0755 "$(scripts/build-plugin.sh)" /opt/cni/bin/overlay-bridge
#   scripts/build-plugin.sh overlay overlay-bridge   # one path a line
#
# The arguments name the plugin binaries of overlay-examples to build
# (default: overlay-bridge); their paths are printed in that order.
#
# It links against musl (the `<arch>-unknown-linux-musl` target, added with
# rustup when missing): a static glibc spends about 0.3 ms of every plugin
# process in start-up (its CPU feature and cache probing executes CPUID
# dozens of times, each a trap to the hypervisor in a VM), a third of the
# process's own time in a pod ADD. musl's allocator maps and unmaps memory
# for most blocks, which the plugin avoids with its arena
# (overlay_plugin::alloc). Without the musl target (no rustup, offline) it
# falls back to a static glibc build (needs libc6-dev) and says so.
#
# CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo="${CARGO:-cargo}"
arch="$(uname -m)"
target="$arch-unknown-linux-musl"
has_target() {
    [ -d "$(rustc --print sysroot)/lib/rustlib/$1/lib" ]
}
if ! has_target "$target"; then
    echo "installing the $target target (rustup target add $target)" >&2
    if ! rustup target add "$target" >&2 || ! has_target "$target"; then
        echo "warning: no $target target; building against a static glibc," \
            "which starts about 0.3 ms slower" >&2
        target="$arch-unknown-linux-gnu"
    fi
fi
# An explicit --target keeps the flag off build scripts and proc macros,
# which must stay dynamic. (musl targets link statically by default.)
bins=("$@")
((${#bins[@]})) || bins=(overlay-bridge)
bin_args=()
for bin in "${bins[@]}"; do
    bin_args+=(--bin "$bin")
done
# No default features: those are the node agent's (tokio's signal driver,
# which every plugin command would otherwise set up for nothing).
CARGO_ENCODED_RUSTFLAGS="-Ctarget-feature=+crt-static" \
    "$cargo" build --quiet --profile dist --target "$target" \
    -p overlay-examples --no-default-features "${bin_args[@]}" >&2
for bin in "${bins[@]}"; do
    echo "${CARGO_TARGET_DIR:-$PWD/target}/$target/dist/$bin"
done
