package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/media/sdp"
)

func TestNewConfig(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.1")
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", Config{External: v4, Internal: intIP}, ""},
		{"no external", Config{Internal: intIP}, "external bind address is required"},
		{"no internal", Config{External: v4}, "internal bind address is required"},
		{"wildcard without advertise", Config{External: netip.IPv4Unspecified(), Internal: intIP}, "set its advertised address"},
		{"wildcard with advertise", Config{External: netip.IPv4Unspecified(), AdvertiseExternal: v4, Internal: intIP}, ""},
		{"advertise family", Config{External: v4, AdvertiseExternal: netip.MustParseAddr("2001:db8::1"), Internal: intIP}, "differ in family"},
		{"advertise unspecified", Config{External: v4, AdvertiseExternal: netip.IPv4Unspecified(), Internal: intIP}, "cannot be reached"},
		{"reversed range", Config{External: v4, Internal: intIP, PortMin: 50000, PortMax: 40000}, "bad port range"},
		{"range above 65535", Config{External: v4, Internal: intIP, PortMin: 65000, PortMax: 70000}, "bad port range"},
		{"no pair", Config{External: v4, Internal: intIP, PortMin: 40001, PortMax: 40001}, "no even/odd pair"},
		{"one pair", Config{External: v4, Internal: intIP, PortMin: 40001, PortMax: 40003}, ""},
		{"negative sessions", Config{External: v4, Internal: intIP, MaxSessions: -1}, "negative MaxSessions"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				m.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("New: %v, want %q", err, tc.wantErr)
			}
		})
	}
	m, err := New(Config{External: v4, Internal: intIP})
	if err != nil {
		t.Fatal(err)
	}
	if c := m.cfg; c.PortMin != DefaultPortMin || c.PortMax != DefaultPortMax || c.Inactivity != 0 ||
		c.MaxSessions != DefaultMaxSessions || c.AdvertiseExternal != v4 || c.AdvertiseInternal != intIP {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func TestRewriteOfferAnswer(t *testing.T) {
	m := newTestManager(t, nil)
	phone := netip.MustParseAddrPort("198.51.100.7:49170")
	pbx := netip.MustParseAddrPort("10.1.2.3:16384")

	offer := rewrite(t, m, "call-1", sbc.Internal, avSDP("alice", phone, 51372))
	s := mustParse(t, offer)
	if bytes.Contains(offer, []byte(phone.Addr().String())) {
		t.Errorf("offer toward the inside still names the phone:\n%s", offer)
	}
	if bytes.Contains(offer, []byte("ice-")) || bytes.Contains(offer, []byte("candidate")) {
		t.Errorf("ICE lines survived:\n%s", offer)
	}
	if o := s.Origin(); o.Addr != intIP || o.User != originUser || o.Version != "1" {
		t.Errorf("origin toward inside = %+v", o)
	}
	offered := s.Media()
	if len(offered) != 2 {
		t.Fatalf("%d streams after rewrite, want 2", len(offered))
	}
	for i, md := range offered {
		if md.Addr != intIP || md.Port < m.cfg.PortMin || md.Port > m.cfg.PortMax || md.Port%2 != 0 {
			t.Errorf("stream %d toward inside at %s:%d, want %s and an even port in range", i, md.Addr, md.Port, intIP)
		}
	}

	ans := rewrite(t, m, "call-1", sbc.External, avSDP("pbx", pbx, 16390))
	s = mustParse(t, ans)
	if bytes.Contains(ans, []byte(pbx.Addr().String())) {
		t.Errorf("answer toward the outside still names the PBX:\n%s", ans)
	}
	if o := s.Origin(); o.Addr != extIP {
		t.Errorf("origin toward outside = %+v", o)
	}
	answered := s.Media()
	if len(answered) != 2 {
		t.Fatalf("%d streams in the answer, want 2", len(answered))
	}
	for i, md := range answered {
		if md.Addr != extIP || md.Port < m.cfg.PortMin || md.Port > m.cfg.PortMax || md.Port%2 != 0 {
			t.Errorf("stream %d toward outside at %s:%d", i, md.Addr, md.Port)
		}
	}
	if mustParse(t, offer).Origin().SessID == s.Origin().SessID {
		t.Error("both directions share one o= session id")
	}
	st := m.Stats()
	if st.Sessions != 1 || st.Streams != 2 || st.PortsInUse != 2*2*2 {
		t.Errorf("stats = %+v, want 1 session, 2 streams, 8 ports", st)
	}
}

func TestRelayBothWays(t *testing.T) {
	m := newTestManager(t, nil)
	c := setupCall(t, m, "call-1")

	for i := range 5 {
		p := rtpPacket(uint16(i), 172)
		c.phone.send(c.toExt, p)
		got, from := c.pbx.recv()
		if !bytes.Equal(got, p) {
			t.Fatalf("packet %d changed on its way in", i)
		}
		if from != c.toInt {
			t.Fatalf("PBX got a packet from %s, want the relay's %s", from, c.toInt)
		}
		p = rtpPacket(uint16(1000+i), 172)
		c.pbx.send(c.toInt, p)
		got, from = c.phone.recv()
		if !bytes.Equal(got, p) {
			t.Fatalf("packet %d changed on its way out", i)
		}
		if from != c.toExt {
			t.Fatalf("phone got a packet from %s, want the relay's %s", from, c.toExt)
		}
	}

	// RTCP: the odd port above RTP, both ways, from the odd relay port.
	rtcpExt := relayAddr(t, c.ans, 0, true)
	rtcpInt := relayAddr(t, c.offer, 0, true)
	if rtcpExt.Port() != c.toExt.Port()+1 || rtcpInt.Port() != c.toInt.Port()+1 {
		t.Fatalf("RTCP relay ports %s %s, want RTP+1", rtcpExt, rtcpInt)
	}
	sr := []byte{0x80, 200, 0, 6, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24}
	c.phoneC.send(rtcpExt, sr)
	if got, from := c.pbxC.recv(); !bytes.Equal(got, sr) || from != rtcpInt {
		t.Fatalf("RTCP in: %x from %s", got, from)
	}
	c.pbxC.send(rtcpInt, sr)
	if got, from := c.phoneC.recv(); !bytes.Equal(got, sr) || from != rtcpExt {
		t.Fatalf("RTCP out: %x from %s", got, from)
	}
	st := waitStat(t, m, "12 packets", func(s Stats) bool { return s.Packets == 12 })
	if st.Bytes != 10*172+2*uint64(len(sr)) {
		t.Errorf("Bytes = %d", st.Bytes)
	}
}

func TestLatching(t *testing.T) {
	m := newTestManager(t, nil)
	phoneSDP := newEndpoint(t, phoneIP) // the address the phone's SDP names
	natted := newEndpoint(t, phoneIP)   // where its packets really come from
	stranger := newEndpoint(t, strangerIP)
	pbx := newEndpoint(t, pbxIP)

	offer := rewrite(t, m, "k", sbc.Internal, audioSDP("alice", 1, phoneSDP.addr()))
	ans := rewrite(t, m, "k", sbc.External, audioSDP("pbx", 1, pbx.addr()))
	toExt, toInt := relayAddr(t, ans, 0, false), relayAddr(t, offer, 0, false)

	// Before any packet from the phone: PBX media goes to the SDP address.
	pbx.send(toInt, []byte("before-latch"))
	if got, _ := phoneSDP.recv(); string(got) != "before-latch" {
		t.Fatalf("got %q", got)
	}

	// The first source wins, whatever the SDP said (NAT).
	natted.send(toExt, []byte("hello"))
	if got, _ := pbx.recv(); string(got) != "hello" {
		t.Fatalf("got %q", got)
	}
	pbx.send(toInt, []byte("to-latched"))
	if got, _ := natted.recv(); string(got) != "to-latched" {
		t.Fatalf("got %q", got)
	}
	phoneSDP.expectNothing(50 * time.Millisecond)

	// After latching, other sources are dropped and counted.
	before := m.Stats().Dropped[DropUnlatched]
	stranger.send(toExt, []byte("inject"))
	phoneSDP.send(toExt, []byte("inject"))
	waitStat(t, m, "2 unlatched drops", func(s Stats) bool { return s.Dropped[DropUnlatched] == before+2 })
	natted.send(toExt, []byte("still-me"))
	if got, _ := pbx.recv(); string(got) != "still-me" {
		t.Fatalf("PBX got %q: an unlatched packet went through", got)
	}

	// A re-INVITE with the same address keeps the latch.
	rewrite(t, m, "k", sbc.Internal, audioSDP("alice", 2, phoneSDP.addr(), "a=sendonly"))
	pbx.send(toInt, []byte("same-sdp"))
	if got, _ := natted.recv(); string(got) != "same-sdp" {
		t.Fatalf("got %q", got)
	}

	// A re-INVITE with a new address re-arms: media goes there until the
	// first packet, which latches again.
	moved := newEndpoint(t, phoneIP)
	rewrite(t, m, "k", sbc.Internal, audioSDP("alice", 3, moved.addr()))
	pbx.send(toInt, []byte("re-armed"))
	if got, _ := moved.recv(); string(got) != "re-armed" {
		t.Fatalf("got %q", got)
	}
	moved.send(toExt, []byte("from-moved"))
	if got, _ := pbx.recv(); string(got) != "from-moved" {
		t.Fatalf("got %q", got)
	}
	before = m.Stats().Dropped[DropUnlatched]
	natted.send(toExt, []byte("old-address"))
	waitStat(t, m, "old address dropped", func(s Stats) bool { return s.Dropped[DropUnlatched] == before+1 })
	pbx.expectNothing(50 * time.Millisecond)
}

func TestLatchingInternalSide(t *testing.T) {
	// The inside latches too: a PBX whose media comes from another address
	// than its SDP names (a media server behind it).
	m := newTestManager(t, nil)
	c := setupCall(t, m, "k")
	media := newEndpoint(t, pbxIP)
	media.send(c.toInt, []byte("from-media-server"))
	if got, _ := c.phone.recv(); string(got) != "from-media-server" {
		t.Fatalf("got %q", got)
	}
	c.phone.send(c.toExt, []byte("reply"))
	if got, _ := media.recv(); string(got) != "reply" {
		t.Fatalf("got %q", got)
	}
	c.pbx.expectNothing(50 * time.Millisecond)
}

func TestRTCPAttribute(t *testing.T) {
	// a=rtcp names a port that is not RTP+1, on another address.
	m := newTestManager(t, nil)
	phone := newEndpoint(t, phoneIP)
	phoneRTCP := newEndpoint(t, strangerIP)
	pbx, pbxRTCP := rtpPair(t, pbxIP)
	offer := rewrite(t, m, "k", sbc.Internal, audioSDP("alice", 1, phone.addr(),
		fmt.Sprintf("a=rtcp:%d IN IP4 %s", phoneRTCP.addr().Port(), phoneRTCP.addr().Addr())))
	if bytes.Contains(offer, []byte(strangerIP.String())) {
		t.Fatalf("a=rtcp address leaked:\n%s", offer)
	}
	rtcpInt := relayAddr(t, offer, 0, true)
	if rtcpInt.Addr() != intIP || rtcpInt.Port() != relayAddr(t, offer, 0, false).Port()+1 {
		t.Fatalf("a=rtcp toward inside = %s", rtcpInt)
	}
	rewrite(t, m, "k", sbc.External, audioSDP("pbx", 1, pbx.addr()))
	rr := []byte{0x80, 201, 0, 1, 0xde, 0xad, 0xbe, 0xef} // RTCP toward the outside must be RTCP
	pbxRTCP.send(rtcpInt, rr)
	if got, _ := phoneRTCP.recv(); !bytes.Equal(got, rr) {
		t.Fatalf("got %x", got)
	}
}

func TestRTCPMux(t *testing.T) {
	m := newTestManager(t, nil)
	phone := newEndpoint(t, phoneIP)
	pbx := newEndpoint(t, pbxIP)
	offer := rewrite(t, m, "k", sbc.Internal, audioSDP("alice", 1, phone.addr(), "a=rtcp-mux"))
	ans := rewrite(t, m, "k", sbc.External, audioSDP("pbx", 1, pbx.addr(), "a=rtcp-mux"))
	if !mustParse(t, offer).Media()[0].RTCPMux || !mustParse(t, ans).Media()[0].RTCPMux {
		t.Fatal("a=rtcp-mux lost")
	}
	toExt, toInt := relayAddr(t, ans, 0, false), relayAddr(t, offer, 0, false)
	rtpP := rtpPacket(1, 100)
	rtcpP := []byte{0x80, 201, 0, 1, 0xde, 0xad, 0xbe, 0xef}
	for _, p := range [][]byte{rtpP, rtcpP} {
		phone.send(toExt, p)
		if got, from := pbx.recv(); !bytes.Equal(got, p) || from != toInt {
			t.Fatalf("in: %x from %s", got, from)
		}
		pbx.send(toInt, p)
		if got, from := phone.recv(); !bytes.Equal(got, p) || from != toExt {
			t.Fatalf("out: %x from %s", got, from)
		}
	}
	if st := m.Stats(); st.PortsInUse != 4 {
		t.Errorf("PortsInUse = %d: the RTCP pair is reserved even under mux", st.PortsInUse)
	}
}

func TestPortZero(t *testing.T) {
	m := newTestManager(t, nil)
	phone := newEndpoint(t, phoneIP)
	pbx := newEndpoint(t, pbxIP)

	// A video stream declined in the offer: stays 0, costs no ports.
	offer := rewrite(t, m, "k", sbc.Internal, avSDP("alice", phone.addr(), 0))
	md := mustParse(t, offer).Media()
	if md[0].Port == 0 || md[1].Port != 0 {
		t.Fatalf("ports toward inside: %d %d, want relay, 0", md[0].Port, md[1].Port)
	}
	if st := m.Stats(); st.Streams != 1 || st.PortsInUse != 4 {
		t.Fatalf("stats %+v: want 1 stream", st)
	}

	// The PBX rejects the audio stream: port 0 out, relay stopped.
	ans := rewrite(t, m, "k", sbc.External, avSDP("pbx", netip.AddrPortFrom(pbxIP, 0), 0))
	ansAddr := relayAddr(t, offer, 0, false) // still reserved
	md = mustParse(t, ans).Media()
	if md[0].Port != 0 || md[1].Port != 0 {
		t.Fatalf("answer ports %d %d, want 0 0", md[0].Port, md[1].Port)
	}
	pbx.send(ansAddr, []byte("x"))
	waitStat(t, m, "stopped drop", func(s Stats) bool { return s.Dropped[DropStopped] == 1 })
	phone.expectNothing(50 * time.Millisecond)

	// A new offer enables it again (same ports), the answer accepts.
	offer2 := rewrite(t, m, "k", sbc.Internal, avSDP("alice", phone.addr(), 0))
	if relayAddr(t, offer2, 0, false) != ansAddr {
		t.Fatal("re-offer moved the stream")
	}
	ans2 := rewrite(t, m, "k", sbc.External, audioSDP("pbx", 2, pbx.addr()))
	// The answer has one m= line for two offered: the second keeps its state.
	pbx.send(ansAddr, []byte("y"))
	if got, _ := phone.recv(); string(got) != "y" {
		t.Fatalf("got %q", got)
	}
	phone.send(relayAddr(t, ans2, 0, false), []byte("z"))
	if got, _ := pbx.recv(); string(got) != "z" {
		t.Fatalf("got %q", got)
	}
}

func TestTCPStreamNotRelayed(t *testing.T) {
	m := newTestManager(t, nil)
	phone := newEndpoint(t, phoneIP)
	offer := rewrite(t, m, "k", sbc.Internal, body(
		"v=0",
		"o=alice 1 1 IN IP4 "+phone.addr().Addr().String(),
		"s=-",
		"c=IN IP4 "+phone.addr().Addr().String(),
		"t=0 0",
		fmt.Sprintf("m=application %d TCP/BFCP *", phone.addr().Port()),
		"a=setup:actpass",
	))
	if bytes.Contains(offer, []byte(phone.addr().Addr().String())) {
		t.Fatalf("the TCP stream leaks the phone:\n%s", offer)
	}
	pbx := newEndpoint(t, pbxIP)
	pbx.send(relayAddr(t, offer, 0, false), []byte("x"))
	waitStat(t, m, "stopped drop", func(s Stats) bool { return s.Dropped[DropStopped] == 1 })
	phone.expectNothing(50 * time.Millisecond)
}

func TestReinviteKeepsPortsAndVersion(t *testing.T) {
	m := newTestManager(t, nil)
	phone := netip.MustParseAddrPort("198.51.100.7:49170")
	first := rewrite(t, m, "k", sbc.Internal, audioSDP("alice", 1, phone))
	// The same media in a refresh (its own o= version bumped): the body
	// we send is unchanged, so our version is too.
	again := rewrite(t, m, "k", sbc.Internal, audioSDP("alice", 2, phone))
	if !bytes.Equal(first, again) {
		t.Fatalf("unchanged re-offer rewritten differently:\n%s\n%s", first, again)
	}
	// Hold: the body changes, ports stay, version goes up by one.
	hold := rewrite(t, m, "k", sbc.Internal, audioSDP("alice", 3, phone, "a=sendonly"))
	o1, o2 := mustParse(t, first).Origin(), mustParse(t, hold).Origin()
	if o1.SessID != o2.SessID || o1.Version != "1" || o2.Version != "2" {
		t.Fatalf("origins %+v then %+v", o1, o2)
	}
	if relayAddr(t, first, 0, false) != relayAddr(t, hold, 0, false) {
		t.Fatal("re-INVITE moved the relay port")
	}
	// An address change is a change too.
	moved := rewrite(t, m, "k", sbc.Internal, audioSDP("alice", 4, netip.MustParseAddrPort("198.51.100.8:4000"), "a=sendonly"))
	if v := mustParse(t, moved).Origin().Version; v != "2" {
		// The phone's address is not in what we send: same body.
		t.Fatalf("version %s after an address change invisible to the receiver", v)
	}
	resume := rewrite(t, m, "k", sbc.Internal, audioSDP("alice", 5, phone))
	if v := mustParse(t, resume).Origin().Version; v != "3" {
		t.Fatalf("version %s after resume, want 3", v)
	}
	// The other direction has its own origin.
	ans := rewrite(t, m, "k", sbc.External, audioSDP("pbx", 9, netip.MustParseAddrPort("10.0.0.9:3000")))
	if o := mustParse(t, ans).Origin(); o.Version != "1" || o.SessID == o1.SessID {
		t.Fatalf("origin toward outside %+v", o)
	}
	if st := m.Stats(); st.Streams != 1 || st.PortsInUse != 4 {
		t.Fatalf("re-INVITEs allocated more: %+v", st)
	}
}

func TestHoldAddress(t *testing.T) {
	// RFC 2543 hold (c=0.0.0.0): the address is kept in the body and no
	// packet is sent to it.
	m := newTestManager(t, nil)
	c := setupCall(t, m, "k")
	held := rewrite(t, m, "k", sbc.Internal, audioSDP("alice", 2, netip.AddrPortFrom(netip.IPv4Unspecified(), c.phone.addr().Port())))
	if md := mustParse(t, held).Media()[0]; !md.Hold() {
		t.Fatalf("hold address lost:\n%s", held)
	}
	c.pbx.send(c.toInt, []byte("moh"))
	waitStat(t, m, "no-peer drop", func(s Stats) bool { return s.Dropped[DropNoPeer] == 1 })
	c.phone.expectNothing(50 * time.Millisecond)
	// Resume re-arms toward the real address.
	rewrite(t, m, "k", sbc.Internal, audioSDP("alice", 3, c.phone.addr()))
	c.pbx.send(c.toInt, []byte("back"))
	if got, _ := c.phone.recv(); string(got) != "back" {
		t.Fatalf("got %q", got)
	}
}

func TestNoPeerYet(t *testing.T) {
	m := newTestManager(t, nil)
	phone := newEndpoint(t, phoneIP)
	offer := rewrite(t, m, "k", sbc.Internal, audioSDP("alice", 1, phone.addr()))
	// Before the answer, the phone's packets have nowhere to go (the
	// external port is not in any body yet: ask the session).
	m.mu.Lock()
	toExt := netip.AddrPortFrom(extIP, uint16(m.sessions["k"].streams[0].port[0]))
	m.mu.Unlock()
	phone.send(toExt, []byte("x"))
	waitStat(t, m, "no-peer drop", func(s Stats) bool { return s.Dropped[DropNoPeer] == 1 })
	// Early media from the inside reaches the phone's SDP address.
	pbx := newEndpoint(t, pbxIP)
	pbx.send(relayAddr(t, offer, 0, false), []byte("early"))
	if got, _ := phone.recv(); string(got) != "early" {
		t.Fatalf("got %q", got)
	}
}

func TestRefusedPeers(t *testing.T) {
	m := newTestManager(t, nil)
	c := setupCall(t, m, "k")
	// An SDP naming one of our relay ports is not a destination: a loop
	// between two relay sockets would spin forever.
	own := netip.AddrPortFrom(extIP, c.toExt.Port()+2)
	rewrite(t, m, "k", sbc.Internal, audioSDP("alice", 2, own))
	c.pbx.send(c.toInt, []byte("x"))
	waitStat(t, m, "no-peer drop", func(s Stats) bool { return s.Dropped[DropNoPeer] == 1 })

	// The source of a datagram is refused only when it is a relay socket
	// of ours; a peer on our address whose port is in the range but not
	// ours (an ephemeral port of a browser beside sipwall) latches.
	if m.sourceAllowed(0, c.toExt) || m.sourceAllowed(0, netip.AddrPortFrom(extIP, c.toExt.Port()+1)) {
		t.Error("a relay socket of ours allowed as the source of a peer")
	}
	free := netip.AddrPortFrom(m.pools[0].addr, uint16(m.cfg.PortMax))
	if m.pools[0].held(m.cfg.PortMax) {
		t.Fatal("the last port of the range is held: the test needs it free")
	}
	if !m.sourceAllowed(0, free) {
		t.Error("a source on our address at a port of the range we do not hold refused")
	}
	if m.allowed(0, free) {
		t.Error("an SDP address on our address in the relay range allowed")
	}

	// Loopback peers are refused when the side is not bound to loopback.
	m2 := newTestManager(t, func(c *Config) {
		c.External = netip.IPv4Unspecified()
		c.AdvertiseExternal = netip.MustParseAddr("192.0.2.1")
	})
	if m2.allowed(0, netip.MustParseAddrPort("127.0.0.1:5000")) {
		t.Error("loopback allowed as an outside peer of a wildcard bind")
	}
	if m2.allowed(0, netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(m2.cfg.PortMin+2))) {
		t.Error("our advertised address on a relay port allowed as a peer")
	}
	if !m2.allowed(0, netip.MustParseAddrPort("192.0.2.1:5000")) {
		t.Error("our address outside the relay range refused")
	}
	for _, ap := range []string{"0.0.0.0:5000", "224.0.0.1:5000", "198.51.100.1:0", "[2001:db8::1]:5000"} {
		if m2.allowed(0, netip.MustParseAddrPort(ap)) {
			t.Errorf("%s allowed as a peer", ap)
		}
	}
}

func TestTooLarge(t *testing.T) {
	m := newTestManager(t, nil)
	c := setupCall(t, m, "k")
	c.phone.send(c.toExt, make([]byte, MaxDatagram+1))
	waitStat(t, m, "too-large drop", func(s Stats) bool { return s.Dropped[DropTooLarge] == 1 })
	c.phone.send(c.toExt, make([]byte, MaxDatagram))
	if got, _ := c.pbx.recv(); len(got) != MaxDatagram {
		t.Fatalf("got %d bytes", len(got))
	}
}

func TestMalformed(t *testing.T) {
	m := newTestManager(t, nil)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"not sdp":   []byte("hello world\r\n"),
		"bad port":  body("v=0", "o=a 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "m=audio 99999 RTP/AVP 0"),
		"no origin": body("v=0", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "m=audio 4000 RTP/AVP 0"),
		"too many media": body(append([]string{"v=0", "o=a 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0"},
			strings.Split(strings.Repeat("m=audio 4000 RTP/AVP 0\n", sdp.MaxMedia+1), "\n")[:sdp.MaxMedia+1]...)...),
	} {
		out, err := m.Rewrite("k", sbc.Internal, b)
		if !errors.Is(err, sdp.ErrMalformed) || out != nil {
			t.Errorf("%s: %v, want sdp.ErrMalformed", name, err)
		}
	}
	if st := m.Stats(); st.Sessions != 0 || st.PortsInUse != 0 {
		t.Errorf("malformed bodies left state: %+v", st)
	}
	if _, err := m.Rewrite("k", sbc.Side(7), audioSDP("a", 1, netip.MustParseAddrPort("192.0.2.1:4000"))); err == nil {
		t.Error("bad side accepted")
	}
}

func TestFullAndNoPorts(t *testing.T) {
	phone := netip.MustParseAddrPort("198.51.100.7:49170")
	m := newTestManager(t, func(c *Config) { c.MaxSessions = 1 })
	rewrite(t, m, "a", sbc.Internal, audioSDP("alice", 1, phone))
	if _, err := m.Rewrite("b", sbc.Internal, audioSDP("bob", 1, phone)); !errors.Is(err, ErrFull) {
		t.Fatalf("second session: %v, want ErrFull", err)
	}
	rewrite(t, m, "a", sbc.Internal, audioSDP("alice", 2, phone, "a=sendonly")) // known call still works
	if st := m.Stats(); st.Full != 1 || st.Sessions != 1 {
		t.Errorf("stats %+v", st)
	}

	// Two pairs per side: two streams, then ErrNoPorts.
	m = newTestManager(t, withPairs(t, 2))
	rewrite(t, m, "a", sbc.Internal, audioSDP("alice", 1, phone))
	// Two more streams do not fit: nothing of the attempt is kept.
	if _, err := m.Rewrite("b", sbc.Internal, avSDP("bob", phone, 4000)); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("two streams in one pair: %v, want ErrNoPorts", err)
	}
	if st := m.Stats(); st.Sessions != 1 || st.PortsInUse != 4 || st.NoPorts != 1 {
		t.Fatalf("after a failed allocation: %+v", st)
	}
	rewrite(t, m, "b", sbc.Internal, audioSDP("bob", 1, phone))
	if _, err := m.Rewrite("c", sbc.Internal, audioSDP("carol", 1, phone)); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("third stream: %v, want ErrNoPorts", err)
	}
	// Release makes the pair allocatable again.
	m.Release("a")
	m.Release("a") // idempotent
	rewrite(t, m, "c", sbc.Internal, audioSDP("carol", 1, phone))
	if st := m.Stats(); st.Sessions != 2 || st.PortsInUse != 8 {
		t.Fatalf("after reuse: %+v", st)
	}
}

func TestSharedBindAddress(t *testing.T) {
	// External and Internal on one address share one range.
	phone := netip.MustParseAddrPort("198.51.100.7:49170")
	m := newTestManager(t, func(c *Config) { withPairs(t, 4)(c); c.Internal = extIP })
	offer := rewrite(t, m, "a", sbc.Internal, audioSDP("alice", 1, phone))
	ans := rewrite(t, m, "a", sbc.External, audioSDP("pbx", 1, netip.MustParseAddrPort("10.0.0.1:3000")))
	if relayAddr(t, offer, 0, false) == relayAddr(t, ans, 0, false) {
		t.Fatal("both sides got the same socket")
	}
	rewrite(t, m, "b", sbc.Internal, audioSDP("bob", 1, phone))
	if _, err := m.Rewrite("c", sbc.Internal, audioSDP("carol", 1, phone)); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("%v, want ErrNoPorts: 4 pairs hold 2 streams", err)
	}
}

func TestBindFailureSkipped(t *testing.T) {
	// Another process holds the first RTCP port: that pair is skipped.
	m := newTestManager(t, withPairs(t, 2))
	newEndpointPort(t, extIP, uint16(m.cfg.PortMin+1))
	ans := rewrite(t, m, "a", sbc.External, audioSDP("pbx", 1, netip.MustParseAddrPort("10.0.0.1:3000")))
	if p := int(relayAddr(t, ans, 0, false).Port()); p != m.cfg.PortMin+2 {
		t.Fatalf("external port %d, want %d", p, m.cfg.PortMin+2)
	}
	if st := m.Stats(); st.BindFailures == 0 {
		t.Error("bind failure not counted")
	}
	if _, err := m.Rewrite("b", sbc.External, audioSDP("pbx", 1, netip.MustParseAddrPort("10.0.0.1:3000"))); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("%v, want ErrNoPorts", err)
	}
}

func TestReleaseGoroutinesAndPorts(t *testing.T) {
	m := newTestManager(t, withPairs(t, 10))
	base := settledGoroutines()
	var calls []*call
	for i := range 5 {
		c := setupCall(t, m, fmt.Sprint("call-", i))
		c.phone.send(c.toExt, rtpPacket(1, 172))
		c.pbx.recv()
		calls = append(calls, c)
	}
	// A poller's workers (Linux), or a reader per socket.
	if n, want := runtime.NumGoroutine(), base+relayGoroutines(m, 5); n != want {
		t.Errorf("%d goroutines for 5 streams, want %d", n, want)
	}
	for _, c := range calls {
		m.Release(c.key)
	}
	// Release waited for the relay goroutines; the relay's are the only
	// ones started since the baseline.
	checkGoroutines(t, "after Release", base+relayGoroutines(m, 0))
	st := m.Stats()
	if st.Sessions != 0 || st.Streams != 0 || st.PortsInUse != 0 || st.Packets != 5 {
		t.Errorf("after Release: %+v", st)
	}
	if canDrain && st.PortsWarm != 5*2*2 {
		t.Errorf("after Release: %d warm ports, want 20: %+v", st.PortsWarm, st)
	}
	// The range holds 10 calls: 5 on fresh pairs (the released ones rest
	// in their quarantine), then 5 on the released pairs, warm or not.
	for i := range 10 {
		c := setupCall(t, m, fmt.Sprint("again-", i))
		c.phone.send(c.toExt, rtpPacket(1, 172))
		c.pbx.recv()
	}
	if _, err := m.Rewrite("x", sbc.Internal, audioSDP("a", 1, netip.MustParseAddrPort("192.0.2.1:4000"))); !errors.Is(err, ErrNoPorts) {
		t.Errorf("11th call: %v, want ErrNoPorts", err)
	}
	st = m.Stats()
	if st.PortsInUse != 40 || st.PortsWarm != 0 || st.Binds+st.Reused != 30 || canDrain && st.Reused != 10 {
		t.Errorf("range full: %+v", st)
	}
	for _, reason := range []string{DropError, DropUnlatched} {
		if st.Dropped[reason] != 0 {
			t.Errorf("%d dropped (%s)", st.Dropped[reason], reason)
		}
	}
	m.Close()
	m.Close()
	checkGoroutines(t, "after Close", base)
	if st := m.Stats(); st.PortsInUse != 0 || st.PortsWarm != 0 || !rangeFree(m.cfg.PortMin, m.cfg.PortMax) {
		t.Errorf("after Close: sockets left, %+v", st)
	}
	if _, err := m.Rewrite("x", sbc.Internal, audioSDP("a", 1, netip.MustParseAddrPort("192.0.2.1:4000"))); !errors.Is(err, ErrClosed) {
		t.Errorf("Rewrite after Close: %v", err)
	}
}

// fakeClock is an injected clock for the inactivity logic.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

func TestInactivity(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	m := newTestManager(t, func(c *Config) { c.Now = clk.Now; c.Inactivity = 30 * time.Second })
	busy := setupCall(t, m, "busy")
	setupCall(t, m, "idle")

	step := func(d time.Duration) []string {
		clk.now = clk.now.Add(d)
		return m.inactive(clk.now)
	}
	if got := step(10 * time.Second); len(got) != 0 {
		t.Fatalf("reported after 10s: %v", got)
	}
	busy.phone.send(busy.toExt, []byte("x"))
	busy.pbx.recv()
	waitStat(t, m, "packet counted", func(s Stats) bool { return s.Packets == 1 })
	if got := step(10 * time.Second); len(got) != 0 { // 20s idle; busy sampled active
		t.Fatalf("reported after 20s: %v", got)
	}
	if got := step(10 * time.Second); len(got) != 1 || got[0] != "idle" { // idle 30s, busy 10s
		t.Fatalf("at 30s: %v, want [idle]", got)
	}
	if got := step(5 * time.Second); len(got) != 0 {
		t.Fatalf("reported twice: %v", got)
	}
	if got := step(15 * time.Second); len(got) != 1 || got[0] != "busy" {
		t.Fatalf("at 50s: %v, want [busy]", got)
	}
	// A re-INVITE (Rewrite) counts as activity and re-arms the report.
	rewrite(t, m, "idle", sbc.Internal, audioSDP("alice", 2, netip.MustParseAddrPort("198.51.100.7:4000")))
	if got := step(29 * time.Second); len(got) != 0 {
		t.Fatalf("reported 29s after a Rewrite: %v", got)
	}
	if got := step(time.Second); len(got) != 1 || got[0] != "idle" {
		t.Fatalf("30s after a Rewrite: %v, want [idle]", got)
	}
}

func TestRunReports(t *testing.T) {
	var ticks atomic.Int64
	m := newTestManager(t, func(c *Config) {
		// Every reading of the clock is an hour after the previous one.
		c.Now = func() time.Time { return time.Unix(1_700_000_000+3600*ticks.Add(1), 0) }
		c.Inactivity = time.Minute
	})
	m.tick = 5 * time.Millisecond
	setupCall(t, m, "k")
	reported := make(chan string, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		m.Run(ctx, func(key string) {
			reported <- key
			m.Release(key) // allowed from the callback
		})
		close(done)
	}()
	select {
	case k := <-reported:
		if k != "k" {
			t.Fatalf("reported %q", k)
		}
	case <-time.After(waitFor):
		t.Fatal("no report")
	}
	waitStat(t, m, "released", func(s Stats) bool { return s.Sessions == 0 })
	cancel()
	select {
	case <-done:
	case <-time.After(waitFor):
		t.Fatal("Run did not return after cancel")
	}

	// Disabled, Run still returns on Close.
	m2 := newTestManager(t, nil) // Inactivity 0: off
	done2 := make(chan struct{})
	go func() { m2.Run(context.Background(), func(string) { t.Error("report while disabled") }); close(done2) }()
	m2.Close()
	select {
	case <-done2:
	case <-time.After(waitFor):
		t.Fatal("Run did not return after Close")
	}
}

func TestSRTPUntouched(t *testing.T) {
	m := newTestManager(t, nil)
	phone := newEndpoint(t, phoneIP)
	pbx := newEndpoint(t, pbxIP)
	crypto := "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32"
	savp := func(user string, ap netip.AddrPort) []byte {
		return bytes.Replace(audioSDP(user, 1, ap, crypto), []byte("RTP/AVP"), []byte("RTP/SAVP"), 1)
	}
	offer := rewrite(t, m, "k", sbc.Internal, savp("alice", phone.addr()))
	if !bytes.Contains(offer, []byte(crypto)) || !mustParse(t, offer).Media()[0].Crypto {
		t.Fatalf("a=crypto not passed:\n%s", offer)
	}
	ans := rewrite(t, m, "k", sbc.External, savp("pbx", pbx.addr()))
	p := make([]byte, 182)
	for i := range p {
		p[i] = byte(i * 7)
	}
	phone.send(relayAddr(t, ans, 0, false), p)
	if got, _ := pbx.recv(); !bytes.Equal(got, p) {
		t.Fatal("SRTP packet altered")
	}
}

// settledGoroutines is the goroutine count once those of earlier tests
// (closing sockets, returning Run loops) have wound down: stable for 20ms,
// or after a bounded wait.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for stable, tries := 0, 0; stable < 4 && tries < 200; tries++ {
		time.Sleep(5 * time.Millisecond) // polling interval
		if m := runtime.NumGoroutine(); m == n {
			stable++
		} else {
			n, stable = m, 0
		}
	}
	return n
}

func checkGoroutines(t *testing.T, when string, base int) {
	t.Helper()
	// Release waits for the readers' WaitGroup; a reader that has called
	// Done may still be on its way out, so allow it a moment to finish.
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(2 * time.Second); n != base && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(5 * time.Millisecond)
	}
	if n != base {
		var sb strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&sb, 1)
		t.Errorf("%d goroutines %s, baseline %d\n%s", n, when, base, sb.String())
	}
}
