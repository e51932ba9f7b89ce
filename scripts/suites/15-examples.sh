#!/usr/bin/env bash
# Run every example of every publishable library crate (`<crate>/examples/`),
# as a user who copies the `cargo run` line from a crate's README would.
#
# An example checks its own outcome and exits non-zero when it does not hold,
# so a failing example fails the suite. The examples that need root (they
# create a network namespace of their own and delete it) run too: the test
# command runs as root. The crates and their examples come from
# `cargo metadata`, so a new example is covered without editing this file.
set -euo pipefail

cd "$(dirname "$0")/../.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

if ! command -v jq >/dev/null; then
    echo "15-examples.sh: installing jq"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends jq >/dev/null
fi

# "crate example" pairs of the publishable crates (publish null: any registry).
mapfile -t pairs < <(cargo metadata --format-version 1 --no-deps --locked |
    jq -r '.packages[]
        | select(.publish == null or (.publish | length) > 0)
        | .name as $crate
        | .targets[] | select(.kind | index("example")) | "\($crate) \(.name)"' | sort)
((${#pairs[@]})) || { echo "15-examples.sh: no example found" >&2; exit 1; }

packages=()
for pair in "${pairs[@]}"; do packages+=(-p "${pair%% *}"); done
echo "building ${#pairs[@]} examples"
cargo build --locked -q "${packages[@]}" --examples

failed=()
for pair in "${pairs[@]}"; do
    crate=${pair%% *} example=${pair#* }
    printf '\n--- cargo run -p %s --example %s\n' "$crate" "$example"
    if ! timeout 120 cargo run --locked -q -p "$crate" --example "$example"; then
        failed+=("$crate/$example")
    fi
done
if ((${#failed[@]})); then
    echo "examples that failed: ${failed[*]}" >&2
    exit 1
fi
echo "all ${#pairs[@]} examples ran and passed their own checks"
