package media

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/media/sdp"
	"github.com/sipwall/sipwall/sbc/siptest"
)

// Loopback only: the relay binds 127.0.0.1 (outside) and 127.0.0.2
// (inside); the phone, the PBX and strangers are further addresses.
var (
	extIP      = netip.MustParseAddr("127.0.0.1")
	intIP      = netip.MustParseAddr("127.0.0.2")
	phoneIP    = netip.MustParseAddr("127.0.0.3")
	pbxIP      = netip.MustParseAddr("127.0.0.4")
	strangerIP = netip.MustParseAddr("127.0.0.5")
)

// Relay ports in tests come from below Linux's ephemeral range (32768-),
// so the tests' own sockets never take one, at a random free spot: another
// test binary (go test ./... runs packages at once) may hold some.
const (
	testPortLow  = 20000
	testPortHigh = 32000
)

// freeRange returns an even first port and the last port of pairs
// even/odd pairs that are free on both relay addresses right now.
func freeRange(t testing.TB, pairs int) (first, last int) {
	t.Helper()
	for range 100 {
		first = testPortLow + 2*rand.IntN((testPortHigh-testPortLow-2*pairs)/2)
		last = first + 2*pairs - 1
		if rangeFree(first, last) {
			return first, last
		}
	}
	t.Fatalf("no free range of %d port pairs", pairs)
	return 0, 0
}

func rangeFree(first, last int) bool {
	var held []*net.UDPConn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for _, ip := range []netip.Addr{extIP, intIP} {
		for p := first; p <= last; p++ {
			c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(p))))
			if err != nil {
				return false
			}
			held = append(held, c)
		}
	}
	return true
}

// waitFor bounds every blocking read in the tests.
const waitFor = 2 * time.Second

// withPairs gives the Manager a range of n free port pairs.
func withPairs(t testing.TB, n int) func(*Config) {
	t.Helper()
	first, last := freeRange(t, n)
	return func(c *Config) { c.PortMin, c.PortMax = first, last }
}

func newTestManager(t testing.TB, mod func(*Config)) *Manager {
	t.Helper()
	first, last := freeRange(t, 64)
	cfg := Config{
		PortMin:  first,
		PortMax:  last,
		External: extIP,
		Internal: intIP,
		Logger:   siptest.Logger(),
	}
	if mod != nil {
		mod(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// body builds an SDP body from lines joined by CRLF.
func body(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n")
}

// audioSDP is a G.711 offer or answer with one audio stream at ap, plus
// extra lines appended to the media section.
func audioSDP(user string, version int, ap netip.AddrPort, extra ...string) []byte {
	lines := []string{
		"v=0",
		fmt.Sprintf("o=%s 2890844526 %d IN IP4 %s", user, version, ap.Addr()),
		"s=call",
		fmt.Sprintf("c=IN IP4 %s", ap.Addr()),
		"t=0 0",
		fmt.Sprintf("m=audio %d RTP/AVP 0 8 101", ap.Port()),
		"a=rtpmap:0 PCMU/8000",
		"a=rtpmap:8 PCMA/8000",
		"a=rtpmap:101 telephone-event/8000",
		"a=fmtp:101 0-16",
	}
	return body(append(lines, extra...)...)
}

// avSDP has an audio and a video stream on the same address.
func avSDP(user string, ap netip.AddrPort, videoPort int) []byte {
	return body(
		"v=0",
		fmt.Sprintf("o=%s 53655765 2353687637 IN IP4 %s", user, ap.Addr()),
		"s=-",
		fmt.Sprintf("c=IN IP4 %s", ap.Addr()),
		"t=0 0",
		fmt.Sprintf("m=audio %d RTP/AVP 0", ap.Port()),
		"a=rtpmap:0 PCMU/8000",
		fmt.Sprintf("m=video %d RTP/AVP 96", videoPort),
		"a=rtpmap:96 H264/90000",
		"a=ice-ufrag:F7gI",
		"a=ice-pwd:x9cml/YzichV2+XlhiMu8g",
		fmt.Sprintf("a=candidate:1 1 UDP 2130706431 %s %d typ host", ap.Addr(), videoPort),
	)
}

func mustParse(t testing.TB, b []byte) *sdp.Session {
	t.Helper()
	s, err := sdp.Parse(b)
	if err != nil {
		t.Fatalf("rewritten body does not parse: %v\n%s", err, b)
	}
	return s
}

func rewrite(t testing.TB, m *Manager, key string, toward sbc.Side, b []byte) []byte {
	t.Helper()
	out, err := m.Rewrite(key, toward, b)
	if err != nil {
		t.Fatalf("Rewrite(%s, %s): %v", key, toward, err)
	}
	return out
}

// relayAddr is where the rewritten body tells its receiver to send stream
// i's RTP (rtcp false) or RTCP.
func relayAddr(t testing.TB, out []byte, i int, rtcp bool) netip.AddrPort {
	t.Helper()
	md := mustParse(t, out).Media()[i]
	port := md.Port
	if rtcp {
		port = md.Port + 1
		if md.RTCPPort != 0 {
			port = md.RTCPPort
		}
	}
	return netip.AddrPortFrom(md.Addr, uint16(port))
}

// endpoint is a UDP socket standing for a phone, a PBX or an attacker.
type endpoint struct {
	t    testing.TB
	conn *net.UDPConn
	buf  []byte
}

func newEndpoint(t testing.TB, ip netip.Addr) *endpoint {
	t.Helper()
	return newEndpointPort(t, ip, 0)
}

func newEndpointPort(t testing.TB, ip netip.Addr, port uint16) *endpoint {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &endpoint{t: t, conn: c, buf: make([]byte, 4096)}
}

// rtpPair binds an even port and the odd one above it, for a peer whose
// RTCP follows the RFC 3550 rule.
func rtpPair(t testing.TB, ip netip.Addr) (rtpEP, rtcpEP *endpoint) {
	t.Helper()
	for port := uint16(30000); port < 30400; port += 2 {
		a, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, port)))
		if err != nil {
			continue
		}
		b, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, port+1)))
		if err != nil {
			a.Close()
			continue
		}
		t.Cleanup(func() { a.Close(); b.Close() })
		return &endpoint{t: t, conn: a, buf: make([]byte, 4096)}, &endpoint{t: t, conn: b, buf: make([]byte, 4096)}
	}
	t.Fatal("no free even/odd port pair for a test peer")
	return nil, nil
}

func (e *endpoint) addr() netip.AddrPort {
	return e.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (e *endpoint) send(to netip.AddrPort, payload []byte) {
	e.t.Helper()
	if _, err := e.conn.WriteToUDPAddrPort(payload, to); err != nil {
		e.t.Fatal(err)
	}
}

// recv returns the next datagram, failing the test after waitFor.
func (e *endpoint) recv() ([]byte, netip.AddrPort) {
	e.t.Helper()
	p, from, err := e.tryRecv(waitFor)
	if err != nil {
		e.t.Fatalf("%s: no datagram: %v", e.addr(), err)
	}
	return p, from
}

func (e *endpoint) tryRecv(d time.Duration) ([]byte, netip.AddrPort, error) {
	e.conn.SetReadDeadline(time.Now().Add(d))
	n, from, err := e.conn.ReadFromUDPAddrPort(e.buf)
	if err != nil {
		return nil, from, err
	}
	return append([]byte(nil), e.buf[:n]...), from, nil
}

// expectNothing checks that nothing arrives within d.
func (e *endpoint) expectNothing(d time.Duration) {
	e.t.Helper()
	if p, from, err := e.tryRecv(d); err == nil {
		e.t.Fatalf("%s: unexpected datagram of %d bytes from %s", e.addr(), len(p), from)
	} else if !errors.Is(err, os.ErrDeadlineExceeded) {
		e.t.Fatal(err)
	}
}

// rtpPacket is a minimal RTP packet: header and a marked payload.
func rtpPacket(seq uint16, size int) []byte {
	p := make([]byte, size)
	p[0] = 0x80
	p[2], p[3] = byte(seq>>8), byte(seq)
	for i := 12; i < size; i++ {
		p[i] = byte(i + int(seq))
	}
	return p
}

// waitStat polls Stats until cond holds, bounded by waitFor: counters are
// bumped by the relay goroutines after the datagram has left.
func waitStat(t testing.TB, m *Manager, what string, cond func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		s := m.Stats()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: stats %+v", what, s)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
}

// call sets up one audio call: phone offers (from outside), PBX answers.
// It returns where the phone and the PBX must send to.
type call struct {
	key          string
	phone, pbx   *endpoint // RTP
	phoneC, pbxC *endpoint // RTCP
	toExt, toInt netip.AddrPort
	offer, ans   []byte // as rewritten
}

func setupCall(t testing.TB, m *Manager, key string) *call {
	t.Helper()
	c := &call{key: key}
	c.phone, c.phoneC = rtpPair(t, phoneIP)
	c.pbx, c.pbxC = rtpPair(t, pbxIP)
	c.offer = rewrite(t, m, key, sbc.Internal, audioSDP("alice", 1, c.phone.addr()))
	c.ans = rewrite(t, m, key, sbc.External, audioSDP("pbx", 1, c.pbx.addr()))
	c.toInt = relayAddr(t, c.offer, 0, false)
	c.toExt = relayAddr(t, c.ans, 0, false)
	return c
}
