#!/usr/bin/env python3
"""Cut the seed corpus (fuzz/corpus/<target>/seed-*) from the kernel VXLAN fixtures
(overlay-core/tests/fixtures/*.pcap) and a few hand-built Geneve headers.
Run from anywhere: python3 fuzz/make_seeds.py"""
import struct, os, sys
HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, '..', 'overlay-core', 'tests', 'fixtures')
OUT = os.path.join(HERE, 'corpus')

def frames(path):
    b = open(path, 'rb').read()
    assert b[:4] == bytes.fromhex('d4c3b2a1'), b[:4]
    at, out = 24, []
    while at < len(b):
        cap = struct.unpack('<I', b[at+8:at+12])[0]
        out.append(b[at+16:at+16+cap]); at += 16 + cap
    return out

def csum(data):
    if len(data) % 2: data += b'\0'
    s = sum(struct.unpack('!%dH' % (len(data)//2), data))
    while s > 0xffff: s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff

def put(target, name, data):
    d = os.path.join(OUT, target); os.makedirs(d, exist_ok=True)
    open(os.path.join(d, 'seed-' + name), 'wb').write(data)

v4 = frames(FIX + '/vxlan-ipv4.pcap')[0]
v4c = frames(FIX + '/vxlan-ipv4-udpcsum.pcap')[0]
gbp = frames(FIX + '/vxlan-gbp.pcap')[0]
v6 = frames(FIX + '/vxlan-ipv6.pcap')[0]
v6z = frames(FIX + '/vxlan-ipv6-zerocsum.pcap')[0]

# ethernet: whole kernel frames, and one with an 802.1Q tag inserted.
put('ethernet', 'kernel-vxlan-ipv4', v4)
put('ethernet', 'kernel-vxlan-ipv6', v6)
put('ethernet', 'vlan-tagged', v4[:12] + bytes.fromhex('8100a00a') + v4[12:])
# ipv4: the outer and the inner IPv4 packet.
put('ipv4', 'kernel-outer', v4[14:])
put('ipv4', 'kernel-inner', v4[14+20+8+8+14:])
# ipv6: the outer IPv6 packet, outer and inner.
put('ipv6', 'kernel-outer', v6[14:])
put('ipv6', 'kernel-inner', v6[14+40+8+8+14:])
# udp: selector byte (even: IPv4, odd: IPv6), the addresses, the datagram.
put('udp', 'kernel-ipv4-checksum', b'\0' + v4c[26:34] + v4c[34:])
put('udp', 'kernel-ipv4-zero', b'\0' + v4[26:34] + v4[34:])
put('udp', 'kernel-ipv6-checksum', b'\1' + v6[22:54] + v6[54:])
put('udp', 'kernel-ipv6-zero', b'\1' + v6z[22:54] + v6z[54:])
# vxlan: the UDP payload (VXLAN header and inner frame).
put('vxlan', 'kernel-plain', v4[42:])
put('vxlan', 'kernel-gbp-d-a', gbp[42:])
# geneve: header with options (a registered class, an experimental critical
# one, an empty one) and the same inner frame.
opts = (struct.pack('!HBB', 0x0102, 0x01, 1) + bytes.fromhex('deadbeef')
        + struct.pack('!HBB', 0xfff0, 0x85, 2) + bytes(range(1, 9))
        + struct.pack('!HBB', 0xfff1, 0x07, 0))
inner = v4[50:]
geneve = struct.pack('!BBH', len(opts) // 4, 0x40, 0x6558) + struct.pack('!I', 0x123456 << 8) + opts
put('geneve', 'options', geneve + inner)
put('geneve', 'no-options', struct.pack('!BBHI', 0, 0, 0x6558, 1 << 8) + inner)

def outer_v4(template, payload, dport):
    udp = struct.pack('!HHHH', 49320, dport, 8 + len(payload), 0) + payload
    ip = bytearray(template[14:34]); ip[2:4] = struct.pack('!H', 20 + len(udp)); ip[10:12] = b'\0\0'
    ip[10:12] = struct.pack('!H', csum(bytes(ip)))
    return template[:14] + bytes(ip) + udp

# vxlan_decap: whole kernel frames; geneve_decap: the Geneve headers above in
# the outer headers of the IPv4 kernel frame, UDP port 6081.
for name, f in [('kernel-ipv4', v4), ('kernel-ipv4-udpcsum', v4c), ('kernel-gbp', gbp),
                ('kernel-ipv6', v6), ('kernel-ipv6-zerocsum', v6z)]:
    put('vxlan_decap', name, f)
put('geneve_decap', 'ipv4-options', outer_v4(v4, geneve + inner, 6081))
put('geneve_decap', 'ipv4-no-options', outer_v4(v4, struct.pack('!BBHI', 0, 0, 0x6558, 1 << 8) + inner, 6081))
# The boundary of the inner Ethernet header: 13 bytes of inner frame are
# refused (shorter than an Ethernet header), 14 accepted; on the fast path
# (IPv4, zero UDP checksum) for VXLAN, and for Geneve carrying Ethernet.
put('vxlan_decap', 'ipv4-inner-13', outer_v4(v4, v4[42:50] + inner[:13], 4789))
put('vxlan_decap', 'ipv4-inner-14', outer_v4(v4, v4[42:50] + inner[:14], 4789))
put('geneve_decap', 'ipv4-inner-13',
    outer_v4(v4, struct.pack('!BBHI', 0, 0, 0x6558, 1 << 8) + inner[:13], 6081))
