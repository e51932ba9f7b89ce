#!/usr/bin/env bash
# Build the Go side of the CNI conformance suite against the libcni sources
# that Debian installs (golang-github-appc-cni-dev: libcni 1.1.2, in GOPATH
# mode with golang-go):
#
#   <out>/libcni-driver   examples/tests/libcni-driver/main.go: runs one
#                         operation through libcni (see its package docs)
#   <out>/noop            libcni's plugins/test/noop test plugin, which records
#                         the stdin and environment it received
#
#   scripts/build-libcni-tools.sh [OUT_DIR]     (default: target/libcni-tools)
#
# Idempotent and fast when up to date: a stamp file holds a digest of the
# inputs (driver source, this script, Go and libcni versions); nothing is
# rebuilt while it matches. Concurrent callers serialise on a lock file, and
# binaries are renamed into place only once complete.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-$ROOT/target/libcni-tools}
GOSRC=/usr/share/gocode
CNI_PKG=github.com/containernetworking/cni
DRIVER_SRC=$ROOT/examples/tests/libcni-driver/main.go

die() { echo "build-libcni-tools.sh: $*" >&2; exit 1; }

command -v go >/dev/null || die "go not found (install golang-go)"
[[ -d $GOSRC/src/$CNI_PKG/libcni ]] ||
    die "libcni sources not found in $GOSRC (install golang-github-appc-cni-dev)"
[[ -f $DRIVER_SRC ]] || die "missing $DRIVER_SRC"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

exec 9>"$OUT/.lock"
flock 9

libcni_version=$(dpkg-query -W -f='${Version}' golang-github-appc-cni-dev 2>/dev/null || echo unknown)
stamp=$( {
    sha256sum "$DRIVER_SRC" "$0"
    go version
    echo "$libcni_version"
} | sha256sum | cut -d' ' -f1)

if [[ -x $OUT/libcni-driver && -x $OUT/noop && -f $OUT/.stamp && $(cat "$OUT/.stamp") == "$stamp" ]]; then
    exit 0
fi

# A private GOPATH entry first (go wants a writable one), the Debian tree second.
export GO111MODULE=off
export GOPATH=$OUT/gopath:$GOSRC
export GOCACHE=$OUT/gocache
export GOFLAGS=
export CGO_ENABLED=0
mkdir -p "$OUT/gopath"

go build -o "$OUT/libcni-driver.tmp" "$DRIVER_SRC"
go build -o "$OUT/noop.tmp" "$CNI_PKG/plugins/test/noop"
mv -f "$OUT/libcni-driver.tmp" "$OUT/libcni-driver"
mv -f "$OUT/noop.tmp" "$OUT/noop"
echo "$stamp" >"$OUT/.stamp"
echo "build-libcni-tools.sh: built libcni-driver and noop (libcni $libcni_version) in $OUT" >&2
