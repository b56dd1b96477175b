package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc"
)

// RTCP packets for the tests, built field by field (RFC 3550 6.4-6.6).

func rtcpHeader(count int, pt byte, bodyLen int, padded bool) []byte {
	b0 := byte(0x80 | count)
	if padded {
		b0 |= 0x20
	}
	h := []byte{b0, pt, 0, 0}
	binary.BigEndian.PutUint16(h[2:], uint16(bodyLen/4))
	return h
}

// sr is a sender report with n report blocks.
func sr(ssrc uint32, n int) []byte {
	body := binary.BigEndian.AppendUint32(nil, ssrc)
	body = append(body, bytes.Repeat([]byte{0x11}, 20)...)
	body = append(body, bytes.Repeat([]byte{0x22}, 24*n)...)
	return append(rtcpHeader(n, rtcpSR, len(body), false), body...)
}

func rr(ssrc uint32) []byte {
	return append(rtcpHeader(0, rtcpRR, 4, false), binary.BigEndian.AppendUint32(nil, ssrc)...)
}

type sdesItem struct {
	typ  byte
	text string
}

type sdesChunk struct {
	ssrc  uint32
	items []sdesItem
}

func sdes(chunks ...sdesChunk) []byte {
	var body []byte
	for _, c := range chunks {
		body = binary.BigEndian.AppendUint32(body, c.ssrc)
		for _, it := range c.items {
			body = append(append(body, it.typ, byte(len(it.text))), it.text...)
		}
		body = append(body, 0)
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
	}
	return append(rtcpHeader(len(chunks), rtcpSDES, len(body), false), body...)
}

func bye(reason string, ssrcs ...uint32) []byte {
	var body []byte
	for _, s := range ssrcs {
		body = binary.BigEndian.AppendUint32(body, s)
	}
	if reason != "" {
		body = append(append(body, byte(len(reason))), reason...)
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
	}
	return append(rtcpHeader(len(ssrcs), rtcpBYE, len(body), false), body...)
}

func app(name string) []byte {
	body := append(binary.BigEndian.AppendUint32(nil, 7), name...)
	body = append(body, "Asterisk PBX 18.2.1 "...)
	return append(rtcpHeader(0, rtcpAPP, len(body), false), body...)
}

// pad sets the padding bit of the packet and adds n bytes of padding.
func pad(pkt []byte, n int) []byte {
	out := append([]byte(nil), pkt...)
	out[0] |= 0x20
	out = append(out, make([]byte, n-1)...)
	out = append(out, byte(n))
	binary.BigEndian.PutUint16(out[2:], uint16(len(out)/4-1))
	return out
}

func compound(pkts ...[]byte) []byte { return bytes.Join(pkts, nil) }

// leakyCNAME and the others are what the PBX says about itself.
var (
	leakyCNAME = sdesItem{sdesCNAME, "asterisk@10.20.0.5"}
	leakyTool  = sdesItem{6, "Asterisk PBX 18.2.1"}
	leakyName  = sdesItem{2, "Reception"}
	leakyEmail = sdesItem{3, "pbx@corp.local"}
	leakyPhone = sdesItem{4, "+15551230000"}
	leakyLoc   = sdesItem{5, "rack 4, 10.20.0.5"}
	leakyNote  = sdesItem{7, "on a call"}
	leakyPriv  = sdesItem{8, "\x03x-yinside"}
	leakyMID   = sdesItem{15, "audio"}
)

// checkCompound verifies what hideRTCP may let out: valid compound RTCP
// (version 2, lengths in words adding up to the datagram, padding only on
// the last packet), SDES with no item but a CNAME equal to cname, BYE
// without reason, no APP or unknown type. It returns the packet types.
func checkCompound(b, cname []byte) ([]byte, error) {
	var types []byte
	for off := 0; off < len(b); {
		if len(b)-off < 4 {
			return nil, errors.New("trailing bytes")
		}
		if b[off]>>6 != 2 {
			return nil, fmt.Errorf("version %d", b[off]>>6)
		}
		count, pt := int(b[off]&0x1f), b[off+1]
		size := (int(binary.BigEndian.Uint16(b[off+2:])) + 1) * 4
		if off+size > len(b) {
			return nil, fmt.Errorf("packet of %d bytes at %d in %d", size, off, len(b))
		}
		body := b[off+4 : off+size]
		if b[off]&0x20 != 0 {
			if off+size != len(b) {
				return nil, errors.New("padding before the last packet")
			}
			if p := int(body[len(body)-1]); p == 0 || p > len(body) {
				return nil, fmt.Errorf("padding count %d", p)
			}
		}
		switch pt {
		case rtcpSDES:
			r := 0
			for range count {
				if len(body)-r < 8 {
					return nil, errors.New("short SDES chunk")
				}
				r += 4
				if body[r] == sdesCNAME {
					n := int(body[r+1])
					if !bytes.Equal(body[r+2:r+2+n], cname) {
						return nil, fmt.Errorf("CNAME %q, want %q", body[r+2:r+2+n], cname)
					}
					r += 2 + n
				}
				if r >= len(body) || body[r] != 0 {
					return nil, fmt.Errorf("SDES item %d other than CNAME", body[r])
				}
				for r < len(body) && body[r] == 0 {
					r++
					if r%4 == 0 {
						break
					}
				}
				if r%4 != 0 {
					return nil, errors.New("chunk not on a 32-bit boundary")
				}
			}
			if r != len(body) {
				return nil, fmt.Errorf("SDES of %d bytes holds %d", len(body), r)
			}
		case rtcpBYE:
			if len(body) != 4*count {
				return nil, fmt.Errorf("BYE of %d bytes for %d SSRCs: a reason", len(body), count)
			}
		case rtcpSR, rtcpRR, rtcpRTPFB, rtcpPSFB, rtcpXR, rtcpIJ:
		default:
			return nil, fmt.Errorf("packet type %d crossed", pt)
		}
		types = append(types, pt)
		off += size
	}
	if len(types) == 0 {
		return nil, errors.New("empty")
	}
	return types, nil
}

func TestHideRTCP(t *testing.T) {
	cname := []byte("0123456789abcdef")
	long := strings.Repeat("x", 200)
	for _, tc := range []struct {
		name  string
		in    []byte
		ok    bool
		types []byte
		items map[int]uint32
	}{
		{"SR and a leaky SDES", compound(sr(1, 1), sdes(sdesChunk{1, []sdesItem{leakyCNAME, leakyTool, leakyName, leakyEmail}})),
			true, []byte{rtcpSR, rtcpSDES}, map[int]uint32{rtcpItemCNAME: 1, rtcpItemTool: 1, rtcpItemName: 1, rtcpItemEmail: 1}},
		{"every SDES item", compound(rr(1), sdes(sdesChunk{1, []sdesItem{leakyPhone, leakyLoc, leakyCNAME, leakyNote, leakyPriv, leakyMID}})),
			true, []byte{rtcpRR, rtcpSDES}, map[int]uint32{rtcpItemCNAME: 1, rtcpItemPhone: 1, rtcpItemLoc: 1, rtcpItemNote: 1, rtcpItemPriv: 1, rtcpItemSDESOther: 1}},
		{"two chunks, one without CNAME", compound(rr(1), sdes(sdesChunk{1, []sdesItem{leakyCNAME}}, sdesChunk{2, []sdesItem{leakyTool}})),
			true, []byte{rtcpRR, rtcpSDES}, map[int]uint32{rtcpItemCNAME: 1, rtcpItemTool: 1}},
		{"a short CNAME grows", compound(rr(1), sdes(sdesChunk{1, []sdesItem{{sdesCNAME, "a"}}})), true, []byte{rtcpRR, rtcpSDES}, map[int]uint32{rtcpItemCNAME: 1}},
		{"a long CNAME shrinks", compound(rr(1), sdes(sdesChunk{1, []sdesItem{{sdesCNAME, long}}})), true, []byte{rtcpRR, rtcpSDES}, map[int]uint32{rtcpItemCNAME: 1}},
		{"BYE loses its reason", compound(rr(1), sdes(sdesChunk{1, []sdesItem{leakyCNAME}}), bye("Asterisk hung up", 1, 2)),
			true, []byte{rtcpRR, rtcpSDES, rtcpBYE}, map[int]uint32{rtcpItemCNAME: 1, rtcpItemByeReason: 1}},
		{"BYE without reason", compound(rr(1), bye("", 1)), true, []byte{rtcpRR, rtcpBYE}, nil},
		{"APP and unknown types go", compound(sr(1, 0), app("PBX1"), rtcpHeader(0, 210, 0, false)),
			true, []byte{rtcpSR}, map[int]uint32{rtcpItemApp: 1, rtcpItemOther: 1}},
		{"feedback and XR cross", compound(rr(1), append(rtcpHeader(1, rtcpRTPFB, 8, false), make([]byte, 8)...),
			append(rtcpHeader(1, rtcpPSFB, 8, false), make([]byte, 8)...), append(rtcpHeader(0, rtcpXR, 4, false), 0, 0, 0, 1)),
			true, []byte{rtcpRR, rtcpRTPFB, rtcpPSFB, rtcpXR}, nil},
		{"padding on the last packet", compound(rr(1), pad(sdes(sdesChunk{1, []sdesItem{leakyCNAME, leakyTool}}), 8)),
			true, []byte{rtcpRR, rtcpSDES}, map[int]uint32{rtcpItemCNAME: 1, rtcpItemTool: 1}},
		{"padded SR kept as it is", compound(pad(sr(1, 0), 4)), true, []byte{rtcpSR}, nil},
		{"padding before the last packet", compound(pad(rr(1), 4), sdes(sdesChunk{1, []sdesItem{leakyCNAME}})), false, nil, map[int]uint32{rtcpItemMalformed: 1}},
		{"nothing but APP", app("PBX1"), false, nil, map[int]uint32{rtcpItemApp: 1}},
		{"length beyond the datagram", rtcpHeader(0, rtcpRR, 40, false), false, nil, map[int]uint32{rtcpItemMalformed: 1}},
		{"not version 2", []byte{0x40, rtcpRR, 0, 1, 0, 0, 0, 1}, false, nil, map[int]uint32{rtcpItemMalformed: 1}},
		{"SR too short for its blocks", append(rtcpHeader(2, rtcpSR, 24, false), make([]byte, 24)...), false, nil, map[int]uint32{rtcpItemMalformed: 1}},
		{"SDES without end item", append(rtcpHeader(1, rtcpSDES, 8, false), 0, 0, 0, 1, 1, 2, 'a', 'b'), false, nil, map[int]uint32{rtcpItemMalformed: 1, rtcpItemCNAME: 1}},
		{"not RTCP at all", []byte("rr"), false, nil, map[int]uint32{rtcpItemMalformed: 1}},
		{"trailing bytes", append(rr(1), 0x80), false, nil, map[int]uint32{rtcpItemMalformed: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen [nRTCPItems]uint32
			dst := make([]byte, 2*MaxDatagram)
			n, ok := hideRTCP(dst, tc.in, cname, &seen)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			for i := range seen {
				if seen[i] != tc.items[i] {
					t.Errorf("%s counted %d, want %d", RTCPItems[i], seen[i], tc.items[i])
				}
			}
			if !ok {
				return
			}
			types, err := checkCompound(dst[:n], cname)
			if err != nil {
				t.Fatalf("output %x: %v", dst[:n], err)
			}
			if !bytes.Equal(types, tc.types) {
				t.Errorf("packet types %v, want %v", types, tc.types)
			}
			for _, leak := range []string{"10.20.0.5", "Asterisk", "Reception", "corp.local", "+1555", "rack", "x-y", "audio", "hung up", "PBX1"} {
				if bytes.Contains(dst[:n], []byte(leak)) {
					t.Errorf("output holds %q", leak)
				}
			}
			if tc.types[0] == rtcpSR && !bytes.Equal(dst[:len(sr(1, 0))], tc.in[:len(sr(1, 0))]) && tc.in[0]&0x20 == 0 {
				t.Errorf("SR changed")
			}
		})
	}
	// A result that does not fit is not sent.
	many := make([]sdesChunk, 31)
	for i := range many {
		many[i] = sdesChunk{uint32(i), []sdesItem{{sdesCNAME, ""}}}
	}
	var seen [nRTCPItems]uint32
	if _, ok := hideRTCP(make([]byte, 64), compound(rr(1), sdes(many...)), cname, &seen); ok {
		t.Error("a result larger than dst was written")
	}
}

func TestCNAMERandom(t *testing.T) {
	a, b := newCNAME(), newCNAME()
	if len(a) != CNAMELen || bytes.Equal(a, b) {
		t.Fatalf("CNAMEs %q %q", a, b)
	}
}

func FuzzHideRTCP(f *testing.F) {
	f.Add(compound(sr(1, 1), sdes(sdesChunk{1, []sdesItem{leakyCNAME, leakyTool}}), bye("bye", 1)))
	f.Add(compound(rr(1), pad(sdes(sdesChunk{1, []sdesItem{leakyCNAME}}, sdesChunk{2, nil}), 12)))
	f.Add(compound(rr(1), app("ABCD"), append(rtcpHeader(1, rtcpPSFB, 8, false), make([]byte, 8)...)))
	f.Add([]byte{0x80, 202, 0, 0})
	cname := newCNAME()
	f.Fuzz(func(t *testing.T, in []byte) {
		var seen [nRTCPItems]uint32
		dst := make([]byte, 2*MaxDatagram)
		n, ok := hideRTCP(dst, in, cname, &seen)
		if !ok {
			if n != 0 {
				t.Fatalf("refused, yet %d bytes written", n)
			}
			return
		}
		if _, err := checkCompound(dst[:n], cname); err != nil {
			t.Fatalf("%x became %x: %v", in, dst[:n], err)
		}
	})
}

// rtcpCall is a call through the relay with RTCP endpoints.
func rtcpCall(t *testing.T, m *Manager, key string, phoneExtra, pbxExtra []string, proto string) *call {
	t.Helper()
	c := &call{key: key}
	c.phone, c.phoneC = rtpPair(t, phoneIP)
	c.pbx, c.pbxC = rtpPair(t, pbxIP)
	sdpOf := func(user string, ap netip.AddrPort, extra []string) []byte {
		b := audioSDP(user, 1, ap, extra...)
		return bytes.Replace(b, []byte("RTP/AVP"), []byte(proto), 1)
	}
	c.offer = rewrite(t, m, key, sbc.Internal, sdpOf("alice", c.phone.addr(), phoneExtra))
	c.ans = rewrite(t, m, key, sbc.External, sdpOf("pbx", c.pbx.addr(), pbxExtra))
	c.toInt = relayAddr(t, c.offer, 0, false)
	c.toExt = relayAddr(t, c.ans, 0, false)
	return c
}

func TestRTCPHiddenThroughTheRelay(t *testing.T) {
	var mu sync.Mutex
	heard := map[string]int{}
	guarded := 0
	m := newTestManager(t, func(c *Config) {
		c.OnRTCP = func(item string, n int) { mu.Lock(); heard[item] += n; mu.Unlock() }
		c.GuardRTCP = func(pkt []byte) bool {
			mu.Lock()
			guarded++
			mu.Unlock()
			return !bytes.Contains(pkt, []byte("\xde\xad\xbe\xef")) // stands for a leak found by the guard
		}
	})
	c := rtcpCall(t, m, "k", nil, nil, "RTP/AVP")
	rtcpExt := relayAddr(t, c.ans, 0, true)
	rtcpInt := relayAddr(t, c.offer, 0, true)

	// Outside to inside: untouched.
	phoneRTCP := compound(sr(9, 0), sdes(sdesChunk{9, []sdesItem{{sdesCNAME, "alice@198.51.100.7"}, leakyTool}}))
	c.phoneC.send(rtcpExt, phoneRTCP)
	if got, _ := c.pbxC.recv(); !bytes.Equal(got, phoneRTCP) {
		t.Fatalf("RTCP toward the inside changed: %x", got)
	}

	// Inside to outside: rewritten, twice with the same CNAME.
	var cname []byte
	for i := range 2 {
		c.pbxC.send(rtcpInt, compound(sr(1, 1), sdes(sdesChunk{1, []sdesItem{leakyCNAME, leakyTool, leakyNote}}), bye("Asterisk says goodbye", 1)))
		got, from := c.phoneC.recv()
		if from != rtcpExt {
			t.Fatalf("RTCP from %s, want %s", from, rtcpExt)
		}
		cn := cnameOf(t, got)
		if i == 1 && !bytes.Equal(cn, cname) {
			t.Errorf("CNAME changed within a call: %q then %q", cname, cn)
		}
		cname = cn
		if _, err := checkCompound(got, cname); err != nil {
			t.Fatalf("RTCP toward the outside %x: %v", got, err)
		}
		for _, leak := range []string{"10.20.0.5", "asterisk", "Asterisk", "on a call", "goodbye"} {
			if bytes.Contains(got, []byte(leak)) {
				t.Errorf("RTCP toward the outside holds %q", leak)
			}
		}
	}

	// Another call has another CNAME.
	c2 := rtcpCall(t, m, "k2", nil, nil, "RTP/AVP")
	c2.pbxC.send(relayAddr(t, c2.offer, 0, true), compound(rr(1), sdes(sdesChunk{1, []sdesItem{leakyCNAME}})))
	got, _ := c2.phoneC.recv()
	if bytes.Equal(cnameOf(t, got), cname) {
		t.Errorf("two calls share the CNAME %q", cname)
	}

	// Not RTCP, and what the guard refuses, does not cross.
	c.pbxC.send(rtcpInt, []byte("Asterisk PBX 18.2.1 at 10.20.0.5"))
	c.pbxC.send(rtcpInt, rr(0xdeadbeef))
	c.phoneC.expectNothing(100 * time.Millisecond)
	st := waitStat(t, m, "two RTCP drops", func(s Stats) bool { return s.Dropped[DropRTCP] == 2 })
	if st.RTCP["rtcp:cname"] != 3 || st.RTCP["rtcp:tool"] != 2 || st.RTCP["rtcp:note"] != 2 || st.RTCP["rtcp:bye-reason"] != 2 || st.RTCP["rtcp:malformed"] != 1 {
		t.Errorf("Stats.RTCP = %v", st.RTCP)
	}
	mu.Lock()
	defer mu.Unlock()
	if heard["rtcp:cname"] != 3 || heard["rtcp:tool"] != 2 || heard["rtcp:malformed"] != 1 {
		t.Errorf("OnRTCP heard %v", heard)
	}
	if guarded != 4 {
		t.Errorf("GuardRTCP saw %d packets, want 4", guarded)
	}
}

// cnameOf returns the CNAME of the first SDES chunk of a compound packet.
func cnameOf(t *testing.T, b []byte) []byte {
	t.Helper()
	for off := 0; off+4 <= len(b); {
		size := (int(binary.BigEndian.Uint16(b[off+2:])) + 1) * 4
		if b[off+1] == rtcpSDES && off+10 <= len(b) && b[off+8] == sdesCNAME {
			n := int(b[off+9])
			return b[off+10 : off+10+n]
		}
		off += size
	}
	t.Fatalf("no CNAME in %x", b)
	return nil
}

func TestRTCPMuxHidden(t *testing.T) {
	m := newTestManager(t, nil)
	c := rtcpCall(t, m, "k", []string{"a=rtcp-mux"}, []string{"a=rtcp-mux"}, "RTP/AVP")
	// RTP crosses as it is, RTCP on the RTP port is rewritten.
	p := rtpPacket(1, 100)
	c.pbx.send(c.toInt, p)
	if got, _ := c.phone.recv(); !bytes.Equal(got, p) {
		t.Fatal("RTP changed")
	}
	c.pbx.send(c.toInt, compound(rr(1), sdes(sdesChunk{1, []sdesItem{leakyCNAME, leakyTool}})))
	got, _ := c.phone.recv()
	if bytes.Contains(got, []byte("Asterisk")) || bytes.Contains(got, []byte("10.20.0.5")) {
		t.Errorf("muxed RTCP not rewritten: %q", got)
	}
	if _, err := checkCompound(got, cnameOf(t, got)); err != nil {
		t.Error(err)
	}
}

// SRTCP is encrypted: it crosses untouched, whatever it looks like.
func TestSRTCPUntouched(t *testing.T) {
	for _, tc := range []struct {
		name, proto string
		extra       []string
	}{
		{"SDES-SRTP", "RTP/SAVP", []string{"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"}},
		{"DTLS-SRTP", "UDP/TLS/RTP/SAVP", []string{"a=fingerprint:sha-256 7B:8B:F0:65", "a=setup:actpass"}},
		{"crypto on RTP/AVP", "RTP/AVP", []string{"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestManager(t, nil)
			c := rtcpCall(t, m, "k", tc.extra, tc.extra, tc.proto)
			// An SRTCP packet: the first 8 bytes in clear, the rest
			// encrypted, then E-flag and index and a 10-byte tag.
			srtcp := append(sr(1, 0)[:8], bytes.Repeat([]byte{0xa5}, 30)...)
			c.pbxC.send(relayAddr(t, c.offer, 0, true), srtcp)
			if got, _ := c.phoneC.recv(); !bytes.Equal(got, srtcp) {
				t.Fatalf("SRTCP changed: %x", got)
			}
		})
	}
}

// TestRTCPNoAlloc: rewriting RTCP allocates nothing per packet (the
// reader's buffer once, on the first).
func TestRTCPNoAlloc(t *testing.T) {
	m := newTestManager(t, nil)
	c := setupCall(t, m, "k")
	rtcpExt := relayAddr(t, c.ans, 0, true)
	rtcpInt := relayAddr(t, c.offer, 0, true)
	pkt := compound(sr(1, 1), sdes(sdesChunk{1, []sdesItem{leakyCNAME, leakyTool}}))
	buf := make([]byte, 2048)
	c.phoneC.conn.SetReadDeadline(time.Now().Add(10 * waitFor))
	roundTrip := func() {
		if _, err := c.pbxC.conn.WriteToUDPAddrPort(pkt, rtcpInt); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.phoneC.conn.ReadFromUDPAddrPort(buf); err != nil {
			t.Fatal(err)
		}
	}
	c.phoneC.send(rtcpExt, rr(9)) // latch the outside
	c.pbxC.recv()
	roundTrip()
	if n := testing.AllocsPerRun(200, roundTrip); n != 0 {
		t.Fatalf("%.2f allocations per RTCP packet, want 0", n)
	}
}
