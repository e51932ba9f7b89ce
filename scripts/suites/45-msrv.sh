#!/usr/bin/env bash
# The library crates build with the oldest Rust the workspace declares
# (`rust-version` in Cargo.toml, the MSRV), with the checked-in lockfile.
#
# It type-checks each publishable crate's library and its tests (unit and
# integration tests, examples) with that toolchain, installing it with rustup
# when missing, into a target directory of its own so that the stable builds'
# caches stay warm. The crates are the publishable ones in `cargo metadata`,
# so a new library crate is covered without editing this file.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

msrv=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n 1)
[[ -n "$msrv" ]] || { echo "45-msrv.sh: no rust-version in Cargo.toml" >&2; exit 1; }

if ! rustup run "$msrv" rustc --version >/dev/null 2>&1; then
    echo "installing Rust $msrv (rustup toolchain install $msrv --profile minimal)"
    rustup toolchain install "$msrv" --profile minimal
fi
rustup run "$msrv" rustc --version

if ! command -v jq >/dev/null; then
    echo "45-msrv.sh: installing jq"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends jq >/dev/null
fi
# Crates whose `publish` allows a registry (null: any; [] means publish = false).
mapfile -t crates < <(cargo metadata --format-version 1 --no-deps --locked |
    jq -r '.packages[] | select(.publish == null or (.publish | length) > 0) | .name' | sort)
((${#crates[@]})) || { echo "45-msrv.sh: no library crate found" >&2; exit 1; }
echo "checking with Rust $msrv: ${crates[*]}"

packages=()
for crate in "${crates[@]}"; do packages+=(-p "$crate"); done
# --locked: the lockfile CI tests must be one this toolchain accepts (no
# dependency that needs a newer rustc).
cargo "+$msrv" check --locked --target-dir "$ROOT/target/msrv" "${packages[@]}" --lib --tests --examples
echo "the library crates build with Rust $msrv"
