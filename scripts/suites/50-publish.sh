#!/usr/bin/env bash
# Every publishable crate of the workspace can be published, and its tests
# build from what is published.
#
# 1. The publishable crates (`publish` not false in `cargo metadata`, so a
#    new crate is covered without editing this file) carry complete registry
#    metadata, and each package lists both licence files.
# 2. `cargo publish --dry-run --workspace` packages them in dependency order
#    and verifies each: it builds the library from its .crate against the
#    other packaged crates, never against the source tree.
# 3. Each package's tests, benches and examples compile (`cargo test
#    --no-run`) from its extracted .crate, outside the repository, with the
#    sibling overlay crates patched in from their extracted .crates: a test
#    that reads a file left out of the package, or a dev-dependency that only
#    resolves inside the workspace, fails here.
# 4. The fuzz crate (outside the workspace) uses the workspace's lints.
#
# PUBLISH_TESTS=0 skips step 3.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
fail() { echo "50-publish.sh: $*" >&2; exit 1; }

if ! command -v jq >/dev/null; then
    echo "50-publish.sh: installing jq"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends jq >/dev/null
fi

# --- 1. Metadata and licence files -------------------------------------------
meta=$(cargo metadata --format-version 1 --no-deps --locked)
# `publish` is null when publishing anywhere is allowed, [] when it is not.
publishable='.packages[] | select(.publish == null or (.publish | length) > 0)'
mapfile -t crates < <(jq -r "$publishable | .name" <<<"$meta" | sort)
((${#crates[@]})) || fail "no publishable crate found"
echo "publishable crates: ${crates[*]}"

problems=$(jq -r "$publishable | . as \$p
    | ([\"description\", \"license\", \"repository\", \"homepage\", \"readme\", \"rust_version\"][]
        | select(\$p[.] == null or \$p[.] == \"\") | \"\(\$p.name): no \(.)\"),
      (select((\$p.keywords | length) == 0 or (\$p.keywords | length) > 5)
        | \"\(\$p.name): \(\$p.keywords | length) keywords (1 to 5)\"),
      (select((\$p.categories | length) == 0) | \"\(\$p.name): no categories\"),
      (select(\$p.metadata.docs.rs == null) | \"\(\$p.name): no [package.metadata.docs.rs]\"),
      (\$p.dependencies[] | select(.path != null and .req == \"*\")
        | \"\(\$p.name): dependency \(.name) has a path but no version\")" <<<"$meta")
[[ -z "$problems" ]] || fail "incomplete package metadata:"$'\n'"$problems"

for crate in "${crates[@]}"; do
    files=$(cargo package --list --locked --allow-dirty -p "$crate")
    for f in LICENSE-MIT LICENSE-APACHE README.md; do
        grep -qx "$f" <<<"$files" || fail "$crate: the package has no $f"
    done
done
echo "metadata complete; every package has LICENSE-MIT, LICENSE-APACHE and README.md"

# --- 2. Package and verify, in dependency order -------------------------------
# The dry run builds in a target directory of its own. Cargo takes a registry
# crate's source as immutable: a library built from an earlier run's
# overlay-core 0.1.0 (same temporary registry, same name and version) counts
# as up to date, and a package would be verified against the old API. So
# every overlay artifact there goes; the third-party ones stay cached.
VERIFY=$TARGET/package-verify
rm -rf "$VERIFY/package" "$VERIFY"/debug/.fingerprint/overlay-* \
    "$VERIFY"/debug/build/overlay-* "$VERIFY"/debug/deps/*overlay_*
# Cargo verifies against a temporary registry of the fresh .crates, but it
# extracts them under $CARGO_HOME/registry/src/-<hash of the registry's
# path>/ and does not extract a name-version again that is already there: a
# second run from the same checkout would verify against the first run's
# sources. Those unnamed (path-hashed) registries are only such temporary
# ones, so their overlay crates can go.
CARGO_HOME_DIR=${CARGO_HOME:-$HOME/.cargo}
rm -rf "$CARGO_HOME_DIR"/registry/src/-*/overlay-* "$CARGO_HOME_DIR"/registry/cache/-*/overlay-*
# --allow-dirty: CI checks out a clean tree; a developer's edits are what
# they want checked.
CARGO_TARGET_DIR=$VERIFY cargo publish --dry-run --workspace --locked --allow-dirty

# --- 3. Tests build from the packages ----------------------------------------
if [[ "${PUBLISH_TESTS:-1}" != 0 ]]; then
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    patches=()
    for crate in "${crates[@]}"; do
        version=$(jq -r --arg n "$crate" '.packages[] | select(.name == $n) | .version' <<<"$meta")
        # A dry run leaves the .crate files in package/tmp-crate/.
        file=$VERIFY/package/tmp-crate/$crate-$version.crate
        [[ -e "$file" ]] || file=$VERIFY/package/$crate-$version.crate
        tar -xzf "$file" -C "$scratch"
        patches+=(--config "patch.crates-io.$crate.path=\"$scratch/$crate-$version\"")
    done
    for crate in "${crates[@]}"; do
        version=$(jq -r --arg n "$crate" '.packages[] | select(.name == $n) | .version' <<<"$meta")
        echo "compiling the tests of $crate $version from its .crate"
        # The workspace's lockfile pins the same third-party versions that CI
        # tests; cargo drops what this package does not use.
        cp Cargo.lock "$scratch/$crate-$version/Cargo.lock"
        (cd "$scratch/$crate-$version" &&
            CARGO_TARGET_DIR="$TARGET/package-tests" \
                cargo "${patches[@]}" test --all-targets --no-run --quiet) ||
            fail "the tests of $crate do not build from its package"
    done
    echo "every package's tests build from the packaged crates"
fi

# --- 4. The fuzz crate's lints are the workspace's ----------------------------
# Body of a TOML table: its lines up to the next table, without comments.
table() { awk -v h="[$2]" '$0 == h {on = 1; next} /^\[/ {on = 0} on && NF && !/^#/' "$1"; }
for tool in rust clippy; do
    diff <(table Cargo.toml "workspace.lints.$tool") <(table fuzz/Cargo.toml "lints.$tool") ||
        fail "fuzz/Cargo.toml [lints.$tool] differs from [workspace.lints.$tool] in Cargo.toml"
done
echo "fuzz/Cargo.toml has the workspace's lints"
