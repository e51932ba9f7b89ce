//! Fuzz overlay-netlink's message splitter (a datagram into netlink
//! messages, used by the socket transport and the notification mirror): it
//! never panics and splits exactly as `netlink-packet-core`'s
//! `NetlinkBuffer` walk does. See `overlay_netlink::fuzzing::split_messages`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    overlay_netlink::fuzzing::split_messages(data);
});
