//! Fuzz overlay-netlink's dump reader (the overlay's byte-level reader of
//! neighbour, FDB, route, link and address messages) on whole datagrams:
//! it never panics, and wherever `netlink-packet-route` also parses a
//! message, both read the same fields. See
//! `overlay_netlink::fuzzing::dump_reader`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    overlay_netlink::fuzzing::dump_reader(data);
});
