package bpf

import (
	"encoding/binary"
	"net/netip"
)

// frame describes a test frame; build turns it into bytes. Zero values
// give a well-formed IPv4/UDP frame to port 5060 from 192.0.2.10.
type frame struct {
	src, dst netip.Addr
	vlans    int
	ethType  uint16 // overrides the IP ethertype when set
	proto    uint8  // 0: UDP
	dport    uint16 // 0: 5060
	payload  string
	// IPv4 header oddities.
	ihl    int // 0: 5
	totLen int // 0: computed; -1: leave as computed minus 1, etc. (set exact when >0)
	frag   uint16
	// IPv6 extension headers before the transport header (types).
	ext      []uint8
	fragOff6 uint16 // with an ext of 44: offset<<3 | M
	udpLen   int    // 0: computed; set exact when >0 (or -1 for 4)
	tcpFlags uint8
	cut      int // bytes cut from the end of the frame
}

var (
	v4Src = netip.MustParseAddr("192.0.2.10")
	v4Dst = netip.MustParseAddr("198.51.100.1")
	v6Src = netip.MustParseAddr("2001:db8:1:2::10")
	v6Dst = netip.MustParseAddr("2001:db8:ffff::1")
)

const sipOptions = "OPTIONS sip:100@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bK1\r\n\r\n"

func (f frame) build() []byte {
	src, dst := f.src, f.dst
	if !src.IsValid() {
		src = v4Src
	}
	if !dst.IsValid() {
		if src.Is4() {
			dst = v4Dst
		} else {
			dst = v6Dst
		}
	}
	proto := f.proto
	if proto == 0 {
		proto = ipProtoUDP
	}
	dport := f.dport
	if dport == 0 {
		dport = 5060
	}
	// Transport header and payload.
	var l4 []byte
	switch proto {
	case ipProtoUDP:
		l4 = make([]byte, 8, 8+len(f.payload))
		binary.BigEndian.PutUint16(l4[0:], 40000)
		binary.BigEndian.PutUint16(l4[2:], dport)
		ulen := 8 + len(f.payload)
		switch {
		case f.udpLen > 0:
			ulen = f.udpLen
		case f.udpLen < 0:
			ulen = 4
		}
		binary.BigEndian.PutUint16(l4[4:], uint16(ulen))
		l4 = append(l4, f.payload...)
	case ipProtoTCP:
		l4 = make([]byte, 20, 20+len(f.payload))
		binary.BigEndian.PutUint16(l4[0:], 40000)
		binary.BigEndian.PutUint16(l4[2:], dport)
		l4[12] = 5 << 4
		l4[13] = f.tcpFlags
		l4 = append(l4, f.payload...)
	default:
		l4 = []byte(f.payload)
	}
	var l3 []byte
	ethType := uint16(ethIPv4)
	if src.Is4() {
		ihl := f.ihl
		if ihl == 0 {
			ihl = 5
		}
		hl := max(ihl*4, 20)
		h := make([]byte, hl)
		h[0] = 0x40 | byte(ihl&0x0f)
		tot := hl + len(l4)
		if f.totLen > 0 {
			tot = f.totLen
		}
		binary.BigEndian.PutUint16(h[2:], uint16(tot))
		binary.BigEndian.PutUint16(h[6:], f.frag)
		h[8] = 64
		h[9] = proto
		s, d := src.As4(), dst.As4()
		copy(h[12:], s[:])
		copy(h[16:], d[:])
		l3 = append(h, l4...)
	} else {
		ethType = ethIPv6
		var exts []byte
		next := proto
		for i := len(f.ext) - 1; i >= 0; i-- {
			e := make([]byte, 8)
			e[0] = next
			if f.ext[i] == ipv6Frag {
				binary.BigEndian.PutUint16(e[2:], f.fragOff6)
			}
			exts = append(e, exts...)
			next = f.ext[i]
		}
		h := make([]byte, 40)
		h[0] = 0x60
		binary.BigEndian.PutUint16(h[4:], uint16(len(exts)+len(l4)))
		h[6] = next
		h[7] = 64
		s, d := src.As16(), dst.As16()
		copy(h[8:], s[:])
		copy(h[24:], d[:])
		l3 = append(append(h, exts...), l4...)
	}
	if f.ethType != 0 {
		ethType = f.ethType
	}
	eth := make([]byte, 12, 14+4*f.vlans+len(l3))
	copy(eth, []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2})
	for i := range f.vlans {
		tpid := uint16(eth8021Q)
		if i == 0 && f.vlans > 1 {
			tpid = eth8021AD
		}
		eth = binary.BigEndian.AppendUint16(eth, tpid)
		eth = binary.BigEndian.AppendUint16(eth, uint16(100+i))
	}
	eth = binary.BigEndian.AppendUint16(eth, ethType)
	out := append(eth, l3...)
	return out[:len(out)-min(f.cut, len(out))]
}
