#!/usr/bin/env bash
# The README's main job must work: run the demo and check it cleaned up, also
# when it is interrupted mid-run by Ctrl-C (SIGINT to its process group) or by
# SIGTERM to scripts/demo.sh. examples/tests/demo_signals.rs checks the same
# on the binary in more detail (overlayd and its other child processes, its
# namespaces' links).
set -euo pipefail
cd "$(dirname "$0")/../.."

# The demo's namespaces that exist now ("ovd-<pid>-<role>").
demo_netns() { ls /run/netns 2>/dev/null | grep '^ovd-' || true; }
before=$(demo_netns)
left_behind() { comm -13 <(echo "$before" | sort) <(demo_netns | sort) | grep . ; }

# The default demo, then the smallest: its ping matrix is over in well under
# a second, and the capture must still hold a packet to decode.
for args in "" "--nodes 2 --pods 1"; do
    # shellcheck disable=SC2086 # the arguments are words
    out=$(bash scripts/demo.sh $args 2>&1) || { echo "$out"; echo "demo $args failed" >&2; exit 1; }
    echo "$out"
    grep -Eq "all [0-9]+ pairs answered" <<<"$out" || { echo "demo $args: pods did not reach each other" >&2; exit 1; }
    grep -q "decoded by overlay-core" <<<"$out" || { echo "demo $args: no packet decoded" >&2; exit 1; }
    if left_behind; then
        echo "demo $args left namespaces behind" >&2
        exit 1
    fi
done

# Interrupt scripts/demo.sh while the pods ping each other, and check it
# cleans up.
# Job control puts the background job in a process group of its own that
# receives SIGINT as a terminal's Ctrl-C would (without it, bash starts
# background jobs with SIGINT ignored). A shell that was itself started
# with SIGINT ignored (this suite run as a background job of a
# non-interactive shell) cannot undo that, so `env --default-signal` starts
# the demo with SIGINT and SIGQUIT at their default, as from a terminal.
set -m
log=$(mktemp)
trap 'rm -f "$log"' EXIT
interrupt() {
    local sig=$1 target=$2
    # Ten echoes per pair keep the ping matrix running for seconds.
    env --default-signal=INT,QUIT bash scripts/demo.sh --pings 10 >"$log" 2>&1 &
    local pid=$!
    # The binaries are built already, so the demo reaches the ping matrix
    # in seconds.
    local deadline=$((SECONDS + 90))
    until grep -q "ping matrix:" "$log"; do
        if ((SECONDS >= deadline)) || ! kill -0 "$pid" 2>/dev/null; then
            cat "$log"; kill -KILL "$pid" 2>/dev/null || true
            echo "demo ($sig): never reached the ping matrix" >&2; exit 1
        fi
        sleep 0.1
    done
    if [[ $target == group ]]; then kill "-$sig" -- "-$pid"; else kill "-$sig" "$pid"; fi
    local rc=0
    wait "$pid" || rc=$?
    cat "$log"
    local want=$((128 + $(kill -l "$sig")))
    if ((rc != want)); then
        echo "demo interrupted by $sig exited with $rc, expected $want" >&2; exit 1
    fi
    if left_behind; then
        echo "demo interrupted by $sig left namespaces behind" >&2; exit 1
    fi
    echo "demo interrupted by $sig ($target): exit $rc, nothing left behind"
}
interrupt INT group
interrupt TERM process
