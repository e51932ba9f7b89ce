#!/usr/bin/env bash
# deploy/: the Kubernetes manifests validate against a current Kubernetes
# schema (the `kubernetes-validate` Python package, --strict: unknown fields
# are errors), the conflist in the ConfigMap is deploy/10-overlay.conflist,
# and the init container's installer installs what it should.
#
# The validator is installed from PyPI into a virtual environment under
# target/ (python3-venv from Debian when missing), pinned to the version whose
# schemas it ships.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
KV_VERSION=1.37.0
VENV=$ROOT/target/kubernetes-validate-$KV_VERSION

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "60-manifests.sh: installing python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi
if [[ ! -x $VENV/bin/kubernetes-validate ]]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
fi

echo "validating deploy/*.yaml against Kubernetes $KV_VERSION (strict)"
"$VENV/bin/kubernetes-validate" --strict --kubernetes-version "$KV_VERSION" deploy/*.yaml

# A manifest with a wrong type and an unknown field must fail, or the check
# above proves nothing.
bad=$(mktemp)
trap 'rm -rf "$bad" "${scratch:-}"' EXIT
sed 's/containerPort: 6783/containerPort: "gossip"/' deploy/overlay-daemonset.yaml >"$bad"
if "$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$KV_VERSION" "$bad" >/dev/null 2>&1; then
    echo "60-manifests.sh: the validator accepted a manifest with a string containerPort" >&2
    exit 1
fi

echo "the ConfigMap's conflist is deploy/10-overlay.conflist"
"$VENV/bin/python" - <<'PY'
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open("deploy/overlay-daemonset.yaml")) if d]
cm = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "overlay-cni-config"]
assert len(cm) == 1, "one overlay-cni-config ConfigMap"
embedded = json.loads(cm[0]["data"]["10-overlay.conflist"])
on_disk = json.load(open("deploy/10-overlay.conflist"))
if embedded != on_disk:
    sys.exit("deploy/10-overlay.conflist and the ConfigMap differ")
ds = [d for d in docs if d["kind"] == "DaemonSet"][0]
spec = ds["spec"]["template"]["spec"]
assert spec["hostNetwork"] is True
assert spec["containers"][0]["securityContext"]["privileged"] is True
assert spec["initContainers"][0]["command"] == ["/usr/local/bin/overlay-install-cni"]
print("ok")
PY

echo "deploy/install-cni.sh installs the plugin, the chained plugins and the conflist"
scratch=$(mktemp -d)
mkdir -p "$scratch/ref" "$scratch/host-bin"
printf '#!/bin/sh\necho overlay\n' >"$scratch/overlay"
printf 'portmap\n' >"$scratch/ref/portmap"
printf 'bandwidth\n' >"$scratch/ref/bandwidth"
printf 'host bandwidth\n' >"$scratch/host-bin/bandwidth"
CNI_BIN_DIR=$scratch/host-bin CNI_NET_DIR=$scratch/host-net CNI_CONFIG=deploy/10-overlay.conflist \
    OVERLAY_BIN=$scratch/overlay REFERENCE_PLUGIN_DIR=$scratch/ref sh deploy/install-cni.sh
[[ -x $scratch/host-bin/overlay ]]
cmp -s deploy/10-overlay.conflist "$scratch/host-net/10-overlay.conflist"
[[ $(stat -c %a "$scratch/host-net/10-overlay.conflist") == 644 ]]
# portmap was missing on the host: installed; bandwidth was there: kept.
cmp -s "$scratch/ref/portmap" "$scratch/host-bin/portmap"
[[ $(cat "$scratch/host-bin/bandwidth") == "host bandwidth" ]]
# No temporary file is left behind.
if ls "$scratch"/host-*/*.overlay-tmp.* >/dev/null 2>&1; then
    echo "60-manifests.sh: install-cni.sh left a temporary file" >&2
    exit 1
fi
echo "manifests ok"
