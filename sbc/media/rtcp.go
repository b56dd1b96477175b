package media

import (
	"crypto/rand"
	"encoding/binary"
)

// RTCP toward the outside (RFC 3550 section 6). The inside's RTCP says
// who and what it is: SDES CNAME is user@host (the PBX's address), TOOL
// its product and version, NAME, EMAIL, PHONE, LOC and NOTE its users,
// BYE may carry a reason text, APP anything. A compound packet leaving
// on the outside is rewritten: SR, RR, RTPFB, PSFB, XR and IJ (numbers
// and SSRCs) cross as they are; in SDES every chunk keeps its SSRC and a
// CNAME, ours (random per call), and nothing else; a BYE keeps its SSRCs
// and loses its reason; APP and unknown packet types go. The result is a
// valid compound packet (version 2, lengths in 32-bit words, padding
// only on the last packet). A packet that is not valid compound RTCP
// does not cross. SRTCP (streams with an SRTP profile, a=crypto or
// a=fingerprint) is encrypted and crosses as it is.

// RTCP packet types.
const (
	rtcpIJ    = 195 // RFC 5450
	rtcpSR    = 200
	rtcpRR    = 201
	rtcpSDES  = 202
	rtcpBYE   = 203
	rtcpAPP   = 204
	rtcpRTPFB = 205 // RFC 4585
	rtcpPSFB  = 206
	rtcpXR    = 207 // RFC 3611
)

// SDES item types.
const (
	sdesEnd   = 0
	sdesCNAME = 1
	sdesPRIV  = 8
)

// RTCP report items, as indexes of the counters; RTCPItems names them.
const (
	rtcpItemCNAME = iota // rewritten
	rtcpItemName
	rtcpItemEmail
	rtcpItemPhone
	rtcpItemLoc
	rtcpItemTool
	rtcpItemNote
	rtcpItemPriv
	rtcpItemSDESOther // H323-CADDR, APSI, MID, RtpStreamId...
	rtcpItemByeReason
	rtcpItemApp
	rtcpItemOther // unknown packet types
	rtcpItemMalformed
	nRTCPItems
)

// RTCPItems are the names of what the RTCP rewriter changes, for
// Config.OnRTCP and the leak report.
var RTCPItems = [nRTCPItems]string{
	"rtcp:cname", "rtcp:name", "rtcp:email", "rtcp:phone", "rtcp:loc", "rtcp:tool",
	"rtcp:note", "rtcp:priv", "rtcp:sdes-other", "rtcp:bye-reason", "rtcp:app",
	"rtcp:other", "rtcp:malformed",
}

// CNAMELen is the length of the CNAME written for a call: 16 characters,
// 96 random bits (RFC 7022 section 4.2).
const CNAMELen = 16

// newCNAME is a random CNAME for one call.
func newCNAME() []byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var raw [12]byte
	_, _ = rand.Read(raw[:])
	out := make([]byte, 0, CNAMELen)
	for i := 0; i < len(raw); i += 3 {
		v := uint32(raw[i])<<16 | uint32(raw[i+1])<<8 | uint32(raw[i+2])
		out = append(out, alphabet[v>>18&63], alphabet[v>>12&63], alphabet[v>>6&63], alphabet[v&63])
	}
	return out
}

// isRTCP tells RTCP from RTP on a muxed port (RFC 5761 section 4):
// version 2 and a second byte in 192-223.
func isRTCP(b []byte) bool {
	return len(b) >= 2 && b[0]>>6 == 2 && b[1] >= 192 && b[1] <= 223
}

// hideRTCP writes src, a compound RTCP packet, into dst as it may leave
// toward the outside, with cname in every SDES chunk, and counts what it
// changed in seen. It returns the length written; ok is false when src
// is not valid compound RTCP, when nothing is left of it, or when the
// result does not fit dst: then nothing may be sent. It does not
// allocate.
func hideRTCP(dst, src, cname []byte, seen *[nRTCPItems]uint32) (n int, ok bool) {
	w := 0
	for off := 0; off < len(src); {
		if len(src)-off < 4 || src[off]>>6 != 2 {
			seen[rtcpItemMalformed]++
			return 0, false
		}
		count, pt := int(src[off]&0x1f), src[off+1]
		size := (int(binary.BigEndian.Uint16(src[off+2:])) + 1) * 4
		if size > len(src)-off {
			seen[rtcpItemMalformed]++
			return 0, false
		}
		pkt := src[off : off+size]
		body := pkt[4:]
		padded := src[off]&0x20 != 0
		if padded {
			// Padding only on the last packet of a compound (RFC 3550 6.4.1).
			pad := int(pkt[size-1])
			if off+size != len(src) || pad == 0 || pad > len(body) {
				seen[rtcpItemMalformed]++
				return 0, false
			}
			body = body[:len(body)-pad]
		}
		off += size
		var ok bool
		switch pt {
		case rtcpSR, rtcpRR:
			min := 4 + count*24
			if pt == rtcpSR {
				min += 20
			}
			if len(body) < min {
				seen[rtcpItemMalformed]++
				return 0, false
			}
			w, ok = copyPacket(dst, w, pkt)
		case rtcpRTPFB, rtcpPSFB:
			if len(body) < 8 {
				seen[rtcpItemMalformed]++
				return 0, false
			}
			w, ok = copyPacket(dst, w, pkt)
		case rtcpXR, rtcpIJ:
			w, ok = copyPacket(dst, w, pkt)
		case rtcpSDES:
			w, ok = writeSDES(dst, w, body, count, cname, seen)
		case rtcpBYE:
			if len(body) < 4*count {
				seen[rtcpItemMalformed]++
				return 0, false
			}
			if len(body) > 4*count {
				seen[rtcpItemByeReason]++
			}
			w, ok = writePacket(dst, w, count, rtcpBYE, body[:4*count])
		case rtcpAPP:
			seen[rtcpItemApp]++
			continue
		default:
			seen[rtcpItemOther]++
			continue
		}
		if !ok {
			seen[rtcpItemMalformed]++
			return 0, false
		}
	}
	return w, w > 0
}

// copyPacket copies one packet as it came (its padding included: it is
// the last one, or has none).
func copyPacket(dst []byte, w int, pkt []byte) (int, bool) {
	if len(dst)-w < len(pkt) {
		return w, false
	}
	return w + copy(dst[w:], pkt), true
}

// writePacket writes a header (version 2, no padding) and a body whose
// length is a multiple of four.
func writePacket(dst []byte, w, count int, pt byte, body []byte) (int, bool) {
	if len(dst)-w < 4+len(body) || len(body)%4 != 0 {
		return w, false
	}
	dst[w] = 0x80 | byte(count)
	dst[w+1] = pt
	binary.BigEndian.PutUint16(dst[w+2:], uint16(len(body)/4))
	copy(dst[w+4:], body)
	return w + 4 + len(body), true
}

// writeSDES writes an SDES packet with count chunks: each chunk's SSRC,
// a CNAME item with cname if the chunk had a CNAME, the end item and
// padding to 32 bits. Every other item is counted and dropped.
func writeSDES(dst []byte, w int, body []byte, count int, cname []byte, seen *[nRTCPItems]uint32) (int, bool) {
	start := w
	w += 4
	r := 0
	for range count {
		if len(body)-r < 4 || len(dst)-w < 4 {
			return start, false
		}
		w += copy(dst[w:], body[r:r+4]) // SSRC
		r += 4
		hasCNAME := false
		for {
			if r >= len(body) {
				return start, false // no end item
			}
			typ := body[r]
			if typ == sdesEnd {
				r++
				break
			}
			if len(body)-r < 2 || len(body)-r-2 < int(body[r+1]) {
				return start, false
			}
			r += 2 + int(body[r+1])
			switch {
			case typ == sdesCNAME:
				if hasCNAME {
					seen[rtcpItemMalformed]++ // a second CNAME: dropped
				}
				hasCNAME = true
				seen[rtcpItemCNAME]++
			case typ <= sdesPRIV:
				seen[rtcpItemName+int(typ)-2]++ // NAME (2) to PRIV (8)
			default:
				seen[rtcpItemSDESOther]++
			}
		}
		r = (r + 3) &^ 3 // the chunk ends on a 32-bit boundary
		chunkStart := w - 4
		if hasCNAME {
			if len(dst)-w < 2+len(cname) {
				return start, false
			}
			dst[w], dst[w+1] = sdesCNAME, byte(len(cname))
			w += 2 + copy(dst[w+2:], cname)
		}
		// The end item, then null octets to the next 32-bit boundary
		// (at least one: the end item itself).
		end := chunkStart + ((w-chunkStart)/4+1)*4
		if end > len(dst) {
			return start, false
		}
		for ; w < end; w++ {
			dst[w] = 0
		}
	}
	if r > len(body) {
		return start, false
	}
	dst[start] = 0x80 | byte(count)
	dst[start+1] = rtcpSDES
	binary.BigEndian.PutUint16(dst[start+2:], uint16((w-start)/4-1))
	return w, true
}
