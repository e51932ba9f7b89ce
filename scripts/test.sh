#!/usr/bin/env bash
# The one test command of the overlay workspace (see README.md, "Quick start").
#
# Run it as root on a fresh Debian machine. It installs what it needs when it is
# missing, then runs every gate and every suite; privileged tests are mandatory
# here (OVERLAY_REQUIRE_PRIVILEGED=1), so nothing skips silently.
#
#   scripts/test.sh            everything
#   scripts/test.sh --quick    the cargo gates and tests only (no extra suites)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=0
[[ "${1:-}" == "--quick" ]] && QUICK=1

# Each step's heading says how long the run has taken so far (minutes:seconds),
# so a slow step shows in the log.
step() { printf '\n==> [%d:%02d] %s\n' $((SECONDS / 60)) $((SECONDS % 60)) "$*"; }

if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/test.sh: run as root (privileged tests create network namespaces)" >&2
    exit 1
fi

# --- System packages -------------------------------------------------------
# iproute2: ip/bridge for fixtures and cross-checks; iputils-ping: traffic;
# tshark/tcpdump: dissector cross-checks and kernel captures;
# containernetworking-plugins, golang-go, golang-github-appc-cni-dev: the CNI
# reference plugins and libcni for the conformance suite; iptables/nftables:
# what the reference plugins program; libc6-dev (static glibc) and binutils
# (readelf): the statically linked plugin build and its check.
PACKAGES=(iproute2 iputils-ping tcpdump tshark containernetworking-plugins golang-go
          golang-github-appc-cni-dev iptables nftables kmod libc6-dev binutils)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    step "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # tshark asks whether non-root users may capture; answer for it.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Test namespaces that exist before the run (a killed earlier run, or another
# run in progress on a developer machine) are not this run's leaks.
list_test_netns() { ip netns list | awk '{print $1}' | grep -E '^ov[td]-' | sort || true; }
BASELINE=$(list_test_netns)

export OVERLAY_REQUIRE_PRIVILEGED=1
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo doc --workspace --no-deps (RUSTDOCFLAGS=-Dwarnings)"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps

step "cargo test --workspace (privileged tests mandatory)"
cargo test --workspace

if ((QUICK == 0)); then
    # Further suites (fuzz smoke runs, conformance, benches in test mode).
    for suite in scripts/suites/*.sh; do
        [[ -e "$suite" ]] || continue
        step "suite $(basename "$suite")"
        bash "$suite"
    done
fi

step "no test namespace left behind"
left=$(comm -13 <(echo "$BASELINE") <(list_test_netns) | grep . || true)
if [[ -n "$left" ]]; then
    echo "namespaces left behind by tests:" >&2
    echo "$left" >&2
    exit 1
fi
echo "none left"
step "all tests passed"
