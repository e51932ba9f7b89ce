#!/usr/bin/env bash
# Short, bounded fuzz run of every cargo-fuzz target in fuzz/ (see fuzz/README.md).
#
# Each target starts from its checked-in seed corpus (fuzz/corpus/<target>/)
# and runs for FUZZ_SECONDS (default 12) with AddressSanitizer; any crash,
# panic, leak or timeout fails the suite and leaves the input in
# fuzz/artifacts/<target>/. New inputs go to a temporary directory, so the
# checked-in corpus stays as it is.
#
# Only the stable toolchain is assumed: cargo-fuzz passes nightly-only flags
# (-Zsanitizer=address, sanitizer coverage), which RUSTC_BOOTSTRAP=1 allows on
# stable. FUZZ_SANITIZER=none runs without ASan where its runtime is missing.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
SECONDS_PER_TARGET=${FUZZ_SECONDS:-12}
SANITIZER=${FUZZ_SANITIZER:-address}
export RUSTC_BOOTSTRAP=1
# The fuzz crate is not a workspace member: give it its own target directory
# unless the caller chose one.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/fuzz/target}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi

cd "$ROOT/fuzz"
# The fuzz crate is outside the workspace; its lints (a copy of the
# workspace's, checked by 50-publish.sh) are enforced here.
echo "cargo clippy --all-targets -- -D warnings (fuzz crate)"
cargo clippy --all-targets -q -- -D warnings
targets=$(cargo fuzz list)
[[ -n "$targets" ]] || { echo "20-fuzz.sh: no fuzz targets found" >&2; exit 1; }

echo "building fuzz targets (sanitizer: $SANITIZER)"
cargo fuzz build --sanitizer "$SANITIZER"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in $targets; do
    seeds="corpus/$target"
    [[ -d "$seeds" ]] && [[ -n "$(ls -A "$seeds")" ]] ||
        { echo "20-fuzz.sh: target $target has no seed corpus in fuzz/$seeds" >&2; exit 1; }
    mkdir -p "$scratch/$target"
    echo "fuzzing $target for ${SECONDS_PER_TARGET}s"
    if ! cargo fuzz run --sanitizer "$SANITIZER" "$target" "$scratch/$target" "$seeds" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$scratch/$target.log" 2>&1; then
        tail -n 60 "$scratch/$target.log" >&2
        echo "20-fuzz.sh: target $target failed; the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E '^Done [0-9]+ runs' "$scratch/$target.log" || true
done
echo "all fuzz targets ran without a crash"
