// Package hep encodes SIP messages as HEP v3 (Homer Encapsulation Protocol,
// also called EEP) packets and exports them to a capture server such as
// Homer / heplify-server.
//
// Wire format (HEP3 Network Protocol Specification, github.com/sipcapture/HEP,
// docs/HEP3_Network_Protocol_Specification_REV_*.pdf; the generic chunk table
// was cross-checked against the field list of the docs.rs "hep" crate and the
// HEP3 packing macros of Kamailio's sipcapture module):
//
//	"HEP3" | total length (uint16, whole packet) | chunk...
//	chunk = vendor id (uint16, 0 = generic) | type id (uint16) |
//	        length (uint16, including this 6-byte header) | payload
//
// All integers are big-endian. Only the facts of the layout are taken from
// those sources; the code here is our own.
package hep

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Generic chunk type ids (vendor id 0).
const (
	chunkIPFamily   = 0x0001 // uint8: 2 = IPv4, 10 = IPv6
	chunkIPProto    = 0x0002 // uint8: IP protocol number (17 UDP, 6 TCP, 132 SCTP)
	chunkIPv4Src    = 0x0003 // 4 bytes
	chunkIPv4Dst    = 0x0004 // 4 bytes
	chunkIPv6Src    = 0x0005 // 16 bytes
	chunkIPv6Dst    = 0x0006 // 16 bytes
	chunkSrcPort    = 0x0007 // uint16
	chunkDstPort    = 0x0008 // uint16
	chunkTimeSec    = 0x0009 // uint32, seconds since the Unix epoch
	chunkTimeUsec   = 0x000a // uint32, microseconds added to chunkTimeSec
	chunkProtoType  = 0x000b // uint8: 1 = SIP
	chunkAgentID    = 0x000c // uint32, capture agent id
	chunkAuthKey    = 0x000e // string, authentication key (password)
	chunkPayload    = 0x000f // captured packet payload
	chunkCorrelator = 0x0011 // string, internal correlation id
)

// Values carried in the chunks above.
const (
	familyIPv4 = 2
	familyIPv6 = 10

	protoTCP  = 6
	protoUDP  = 17
	protoSCTP = 132

	// ProtoSIP is the HEP protocol type of SIP payloads (chunk 0x000b).
	ProtoSIP = 1
)

const (
	headerLen      = 6      // "HEP3" + total length
	chunkHeaderLen = 6      // vendor + type + length
	maxPacket      = 0xffff // the total length field is 16 bits
)

var magic = [4]byte{'H', 'E', 'P', '3'}

// Message is one SIP message seen on the wire.
type Message struct {
	Time     time.Time
	Src, Dst netip.AddrPort
	// Transport is "udp", "tcp", "tls", "ws", "wss" or "sctp". TLS and
	// WebSocket transports are sent as TCP (IP protocol 6); "" means "udp".
	// Decode reports "udp", "tcp" or "sctp".
	Transport string
	Payload   []byte
	// CorrelationID is optional (e.g. the Call-ID); "" omits the chunk.
	CorrelationID string
}

// Decoded is the result of Decode.
type Decoded struct {
	Message
	AgentID   uint32
	Password  string // the authentication key chunk, "" when absent
	ProtoType uint8  // HEP protocol type; ProtoSIP for what Encode writes, 0 when absent
}

// Errors returned by Encode and Decode. Decode wraps them with detail; test
// with errors.Is.
var (
	ErrTooBig        = errors.New("hep: packet larger than 65535 bytes")
	ErrAddress       = errors.New("hep: invalid address")
	ErrTime          = errors.New("hep: time outside the 32-bit epoch range")
	ErrTransport     = errors.New("hep: unknown transport")
	ErrMagic         = errors.New("hep: not a HEP3 packet")
	ErrTruncated     = errors.New("hep: truncated packet")
	ErrLength        = errors.New("hep: bad length")
	ErrMissingChunk  = errors.New("hep: required chunk missing")
	ErrBadChunkValue = errors.New("hep: bad chunk value")
)

// ipProto maps a Message transport to the IP protocol number.
func ipProto(transport string) (uint8, bool) {
	switch transport {
	case "", "udp", "UDP":
		return protoUDP, true
	case "tcp", "tls", "ws", "wss", "TCP", "TLS", "WS", "WSS":
		return protoTCP, true
	case "sctp", "SCTP":
		return protoSCTP, true
	}
	return 0, false
}

// encodedLen is the size of the packet Encode writes, without validation.
func encodedLen(m *Message, v6 bool, password string) int {
	n := headerLen +
		2*(chunkHeaderLen+1) + // family, IP proto
		2*(chunkHeaderLen+2) + // ports
		2*(chunkHeaderLen+4) + // time sec, usec
		(chunkHeaderLen + 1) + // proto type
		(chunkHeaderLen + 4) + // agent id
		chunkHeaderLen + len(m.Payload)
	if v6 {
		n += 2 * (chunkHeaderLen + 16)
	} else {
		n += 2 * (chunkHeaderLen + 4)
	}
	if password != "" {
		n += chunkHeaderLen + len(password)
	}
	if m.CorrelationID != "" {
		n += chunkHeaderLen + len(m.CorrelationID)
	}
	return n
}

// Encode appends the HEP v3 packet for m to dst. IPv4-mapped IPv6 addresses
// are sent as IPv4. On error dst is returned unchanged. Encode does not
// allocate when dst has enough spare capacity.
func Encode(dst []byte, m Message, agentID uint32, password string) ([]byte, error) {
	src, dstAP := m.Src, m.Dst
	if !src.IsValid() || !dstAP.IsValid() {
		return dst, fmt.Errorf("%w: source %v, destination %v", ErrAddress, src, dstAP)
	}
	sa, da := src.Addr().Unmap().WithZone(""), dstAP.Addr().Unmap().WithZone("")
	if sa.Is4() != da.Is4() {
		return dst, fmt.Errorf("%w: mixed address families %v and %v", ErrAddress, sa, da)
	}
	proto, ok := ipProto(m.Transport)
	if !ok {
		return dst, fmt.Errorf("%w %q", ErrTransport, m.Transport)
	}
	sec := m.Time.Unix()
	if sec < 0 || sec > 0xffffffff {
		return dst, fmt.Errorf("%w: %v", ErrTime, m.Time)
	}
	usec := uint32(m.Time.Nanosecond() / 1000)
	v6 := !sa.Is4()
	n := encodedLen(&m, v6, password)
	if n > maxPacket {
		return dst, fmt.Errorf("%w (%d)", ErrTooBig, n)
	}

	b := dst
	b = append(b, magic[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	if v6 {
		b = appendU8(b, chunkIPFamily, familyIPv6)
	} else {
		b = appendU8(b, chunkIPFamily, familyIPv4)
	}
	b = appendU8(b, chunkIPProto, proto)
	if v6 {
		s, d := sa.As16(), da.As16()
		b = appendBytes(b, chunkIPv6Src, s[:])
		b = appendBytes(b, chunkIPv6Dst, d[:])
	} else {
		s, d := sa.As4(), da.As4()
		b = appendBytes(b, chunkIPv4Src, s[:])
		b = appendBytes(b, chunkIPv4Dst, d[:])
	}
	b = appendU16(b, chunkSrcPort, src.Port())
	b = appendU16(b, chunkDstPort, dstAP.Port())
	b = appendU32(b, chunkTimeSec, uint32(sec))
	b = appendU32(b, chunkTimeUsec, usec)
	b = appendU8(b, chunkProtoType, ProtoSIP)
	b = appendU32(b, chunkAgentID, agentID)
	if password != "" {
		b = appendString(b, chunkAuthKey, password)
	}
	if m.CorrelationID != "" {
		b = appendString(b, chunkCorrelator, m.CorrelationID)
	}
	b = appendBytes(b, chunkPayload, m.Payload)
	return b, nil
}

func appendChunkHeader(b []byte, typ uint16, payloadLen int) []byte {
	b = binary.BigEndian.AppendUint16(b, 0) // generic vendor
	b = binary.BigEndian.AppendUint16(b, typ)
	return binary.BigEndian.AppendUint16(b, uint16(chunkHeaderLen+payloadLen))
}

func appendU8(b []byte, typ uint16, v uint8) []byte {
	return append(appendChunkHeader(b, typ, 1), v)
}

func appendU16(b []byte, typ uint16, v uint16) []byte {
	return binary.BigEndian.AppendUint16(appendChunkHeader(b, typ, 2), v)
}

func appendU32(b []byte, typ uint16, v uint32) []byte {
	return binary.BigEndian.AppendUint32(appendChunkHeader(b, typ, 4), v)
}

func appendBytes(b []byte, typ uint16, v []byte) []byte {
	return append(appendChunkHeader(b, typ, len(v)), v...)
}

func appendString(b []byte, typ uint16, v string) []byte {
	return append(appendChunkHeader(b, typ, len(v)), v...)
}

// PacketLen reports the total length of the HEP3 packet that starts at b,
// which must hold at least the 6-byte header. It is what a reader of a TCP
// stream (packets back to back) needs to split it.
func PacketLen(b []byte) (int, error) {
	if len(b) < headerLen {
		return 0, fmt.Errorf("%w: %d bytes, header needs %d", ErrTruncated, len(b), headerLen)
	}
	if [4]byte(b[:4]) != magic {
		return 0, ErrMagic
	}
	n := int(binary.BigEndian.Uint16(b[4:6]))
	if n < headerLen {
		return 0, fmt.Errorf("%w: total length %d", ErrLength, n)
	}
	return n, nil
}

// Decode parses one HEP v3 packet; b must hold exactly that packet. Chunks
// of other vendors and unknown generic chunks are skipped; a repeated chunk
// replaces the earlier one. The address family, IP protocol, both addresses,
// both ports, the timestamp seconds and the payload are required. The
// returned Payload aliases b.
func Decode(b []byte) (Decoded, error) {
	var d Decoded
	n, err := PacketLen(b)
	if err != nil {
		return d, err
	}
	if n != len(b) {
		if n > len(b) {
			return d, fmt.Errorf("%w: total length %d, have %d bytes", ErrTruncated, n, len(b))
		}
		return d, fmt.Errorf("%w: total length %d, have %d bytes", ErrLength, n, len(b))
	}

	var (
		family, proto uint8
		have          uint32 // bit per chunk type < 32
		src4, dst4    [4]byte
		src6, dst6    [16]byte
		sport, dport  uint16
		sec, usec     uint32
	)
	for p := b[headerLen:]; len(p) > 0; {
		if len(p) < chunkHeaderLen {
			return d, fmt.Errorf("%w: chunk header at offset %d", ErrTruncated, len(b)-len(p))
		}
		vendor := binary.BigEndian.Uint16(p[0:2])
		typ := binary.BigEndian.Uint16(p[2:4])
		clen := int(binary.BigEndian.Uint16(p[4:6]))
		if clen < chunkHeaderLen {
			return d, fmt.Errorf("%w: chunk 0x%04x length %d", ErrLength, typ, clen)
		}
		if clen > len(p) {
			return d, fmt.Errorf("%w: chunk 0x%04x length %d, %d bytes left", ErrTruncated, typ, clen, len(p))
		}
		v := p[chunkHeaderLen:clen]
		p = p[clen:]
		if vendor != 0 {
			continue
		}
		want := -1 // required payload size of fixed-size chunks
		switch typ {
		case chunkIPFamily, chunkIPProto, chunkProtoType:
			want = 1
		case chunkSrcPort, chunkDstPort:
			want = 2
		case chunkIPv4Src, chunkIPv4Dst, chunkTimeSec, chunkTimeUsec, chunkAgentID:
			want = 4
		case chunkIPv6Src, chunkIPv6Dst:
			want = 16
		}
		if want >= 0 && len(v) != want {
			return d, fmt.Errorf("%w: chunk 0x%04x length %d, want %d", ErrLength, typ, clen, chunkHeaderLen+want)
		}
		switch typ {
		case chunkIPFamily:
			family = v[0]
		case chunkIPProto:
			proto = v[0]
		case chunkIPv4Src:
			src4 = [4]byte(v)
		case chunkIPv4Dst:
			dst4 = [4]byte(v)
		case chunkIPv6Src:
			src6 = [16]byte(v)
		case chunkIPv6Dst:
			dst6 = [16]byte(v)
		case chunkSrcPort:
			sport = binary.BigEndian.Uint16(v)
		case chunkDstPort:
			dport = binary.BigEndian.Uint16(v)
		case chunkTimeSec:
			sec = binary.BigEndian.Uint32(v)
		case chunkTimeUsec:
			usec = binary.BigEndian.Uint32(v)
		case chunkProtoType:
			d.ProtoType = v[0]
		case chunkAgentID:
			d.AgentID = binary.BigEndian.Uint32(v)
		case chunkAuthKey:
			d.Password = string(v)
		case chunkCorrelator:
			d.CorrelationID = string(v)
		case chunkPayload:
			d.Payload = v
		default:
			continue
		}
		have |= 1 << typ
	}

	need := func(typs ...uint16) error {
		for _, t := range typs {
			if have&(1<<t) == 0 {
				return fmt.Errorf("%w: 0x%04x", ErrMissingChunk, t)
			}
		}
		return nil
	}
	if err := need(chunkIPFamily, chunkIPProto, chunkSrcPort, chunkDstPort, chunkTimeSec, chunkPayload); err != nil {
		return d, err
	}
	var sa, da netip.Addr
	switch family {
	case familyIPv4:
		if err := need(chunkIPv4Src, chunkIPv4Dst); err != nil {
			return d, err
		}
		sa, da = netip.AddrFrom4(src4), netip.AddrFrom4(dst4)
	case familyIPv6:
		if err := need(chunkIPv6Src, chunkIPv6Dst); err != nil {
			return d, err
		}
		sa, da = netip.AddrFrom16(src6), netip.AddrFrom16(dst6)
	default:
		return d, fmt.Errorf("%w: address family %d", ErrBadChunkValue, family)
	}
	switch proto {
	case protoUDP:
		d.Transport = "udp"
	case protoTCP:
		d.Transport = "tcp"
	case protoSCTP:
		d.Transport = "sctp"
	default:
		return d, fmt.Errorf("%w: IP protocol %d", ErrBadChunkValue, proto)
	}
	if usec >= 1_000_000 {
		return d, fmt.Errorf("%w: microseconds %d", ErrBadChunkValue, usec)
	}
	d.Src = netip.AddrPortFrom(sa, sport)
	d.Dst = netip.AddrPortFrom(da, dport)
	d.Time = time.Unix(int64(sec), int64(usec)*1000).UTC()
	return d, nil
}
