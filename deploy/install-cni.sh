#!/bin/sh
# The DaemonSet's init container: install the overlay CNI plugin and its
# conflist on the host, atomically (a kubelet reading the directory never
# sees a half-written file), and the chained reference plugins when the host
# has none.
#
#   CNI_BIN_DIR  host plugin directory, mounted (default /host/opt/cni/bin)
#   CNI_NET_DIR  host config directory, mounted (default /host/etc/cni/net.d)
#   CNI_CONFIG   the conflist to install (default /etc/overlay/cni/10-overlay.conflist)
#   OVERLAY_BIN  the plugin executable (default /usr/local/bin/overlay)
#   REFERENCE_PLUGIN_DIR  where portmap and bandwidth are (default /usr/lib/cni)
set -eu

bin_dir=${CNI_BIN_DIR:-/host/opt/cni/bin}
net_dir=${CNI_NET_DIR:-/host/etc/cni/net.d}
config=${CNI_CONFIG:-/etc/overlay/cni/10-overlay.conflist}
overlay_bin=${OVERLAY_BIN:-/usr/local/bin/overlay}
reference_dir=${REFERENCE_PLUGIN_DIR:-/usr/lib/cni}

install_atomic() { # source destination mode
    tmp="$2.overlay-tmp.$$"
    cp "$1" "$tmp"
    chmod "$3" "$tmp"
    mv -f "$tmp" "$2"
}

mkdir -p "$bin_dir" "$net_dir"
install_atomic "$overlay_bin" "$bin_dir/overlay" 0755
# portmap and bandwidth are chained after overlay; keep the host's own copies.
for plugin in portmap bandwidth; do
    if [ ! -e "$bin_dir/$plugin" ] && [ -e "$reference_dir/$plugin" ]; then
        install_atomic "$reference_dir/$plugin" "$bin_dir/$plugin" 0755
    fi
done
install_atomic "$config" "$net_dir/10-overlay.conflist" 0644
echo "overlay: installed $bin_dir/overlay and $net_dir/10-overlay.conflist"
