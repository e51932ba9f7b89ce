#!/usr/bin/env bash
# The README's main job must work: run the demo and check it cleaned up.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(bash scripts/demo.sh 2>&1) || { echo "$out"; echo "demo failed" >&2; exit 1; }
echo "$out"
grep -q "0% packet loss" <<<"$out" || { echo "demo: pods did not reach each other" >&2; exit 1; }
grep -q "decoded by overlay-core" <<<"$out" || { echo "demo: no packet decoded" >&2; exit 1; }
if ip netns list | awk '{print $1}' | grep -q '^ovd-'; then
    echo "demo left namespaces behind" >&2
    exit 1
fi
