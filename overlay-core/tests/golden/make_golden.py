#!/usr/bin/env python3
"""Independent generator of the golden packets in tests/golden_packets.rs.

It builds complete encapsulated frames with nothing but `struct` and a
textbook RFC 1071 checksum, without any code from overlay-core, and prints
them as hex. Run it and compare with the constants in golden_packets.rs:

    python3 overlay-core/tests/golden/make_golden.py

The UDP source port is pinned (the tests configure a one-port range), since
the flow hash is ours to choose; every other byte follows from the RFCs.
"""
import ipaddress
import struct


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = 0
    for (w,) in struct.iter_unpack("!H", data):
        s += w
        s = (s & 0xFFFF) + (s >> 16)
    return s


def inner_frame() -> bytes:
    """An inner Ethernet/IPv4/ICMP echo request 10.32.0.1 -> 10.32.0.2."""
    icmp = bytearray(struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + bytes(range(32)))
    struct.pack_into("!H", icmp, 2, ~csum(bytes(icmp)) & 0xFFFF)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0x0101, 0x4000, 64, 1, 0,
                               ipaddress.ip_address("10.32.0.1").packed,
                               ipaddress.ip_address("10.32.0.2").packed))
    struct.pack_into("!H", ip, 10, ~csum(bytes(ip)) & 0xFFFF)
    eth = bytes.fromhex("0a0000000002" "0a0000000001" "0800")
    return eth + bytes(ip) + bytes(icmp)


def outer(tunnel: bytes, inner: bytes, src: str, dst: str, sport: int, dport: int,
          udp_csum: bool, vlan_tci=None) -> bytes:
    payload = tunnel + inner
    udp_len = 8 + len(payload)
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    udp = bytearray(struct.pack("!HHHH", sport, dport, udp_len, 0) + payload)
    if s.version == 4:
        pseudo = s.packed + d.packed + struct.pack("!BBH", 0, 17, udp_len)
    else:
        pseudo = s.packed + d.packed + struct.pack("!IxxxB", udp_len, 17)
    if udp_csum:
        c = ~csum(pseudo + bytes(udp)) & 0xFFFF
        struct.pack_into("!H", udp, 6, c or 0xFFFF)
    if s.version == 4:
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0x4000, 64, 17, 0,
                                   s.packed, d.packed))
        struct.pack_into("!H", ip, 10, ~csum(bytes(ip)) & 0xFFFF)
        ethertype = 0x0800
    else:
        ip = bytearray(struct.pack("!IHBB16s16s", 6 << 28, udp_len, 17, 64, s.packed, d.packed))
        ethertype = 0x86DD
    eth = bytes.fromhex("020000000002" "020000000001")
    if vlan_tci is not None:
        eth += struct.pack("!HH", 0x8100, vlan_tci)
    eth += struct.pack("!H", ethertype)
    return eth + bytes(ip) + bytes(udp)


def show(name: str, frame: bytes) -> None:
    print(f"{name} ({len(frame)} bytes):")
    for i in range(0, len(frame), 32):
        print("    " + frame[i:i + 32].hex())


inner = inner_frame()
show("INNER", inner)
# VXLAN, VNI 5001, over IPv4 with zero UDP checksum (the Linux default).
vxlan = struct.pack("!BBHI", 0x08, 0, 0, 5001 << 8)
show("VXLAN_V4", outer(vxlan, inner, "192.0.2.1", "192.0.2.2", 50000, 4789, False))
# VXLAN-GBP (G, I; D set; group policy 0x0abc), VNI 0xabcdef, over IPv6 with
# the mandatory UDP checksum, outer 802.1Q tag PCP 0 VID 100.
gbp = struct.pack("!BBHI", 0x88, 0x40, 0x0ABC, 0xABCDEF << 8)
show("VXLAN_GBP_V6_VLAN", outer(gbp, inner, "2001:db8::1", "2001:db8::2", 50000, 4789, True, 0x0064))
# Geneve, VNI 100, protocol 0x6558, one critical option (class 0x0102,
# type 0x80, 4 data bytes) and one non-critical (class 0xffff, type 0x01,
# 8 data bytes), over IPv4 with a computed UDP checksum.
opts = (struct.pack("!HBB", 0x0102, 0x80, 1) + bytes.fromhex("deadbeef")
        + struct.pack("!HBB", 0xFFFF, 0x01, 2) + bytes(range(8)))
geneve = struct.pack("!BBHI", len(opts) // 4, 0x40, 0x6558, 100 << 8) + opts
show("GENEVE_V4", outer(geneve, inner, "192.0.2.1", "192.0.2.2", 50000, 6081, True))
