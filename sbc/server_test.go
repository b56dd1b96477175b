package sbc

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sipwall/sipwall/bpf"
)

func startTestServer(t *testing.T, opts Options) *Server {
	t.Helper()
	opts.Listeners = []ListenerSpec{{Transport: "udp", Addr: "127.0.0.1:0"}, {Transport: "tcp", Addr: "127.0.0.1:0"}}
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := BuildChain(map[string]Handler{"local": Local{}})
	if err != nil {
		t.Fatal(err)
	}
	s.SetChain(chain)
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Close() })
	return s
}

func tcpAddr(t *testing.T, s *Server) string {
	l, ok := s.Local("tcp", External)
	if !ok {
		t.Fatal("no tcp listener")
	}
	return l.Bound.String()
}

func options(tag string) string {
	return strings.Join([]string{
		"OPTIONS sip:127.0.0.1 SIP/2.0",
		"Via: SIP/2.0/TCP 127.0.0.1:5999;rport;branch=z9hG4bK-" + tag,
		"Max-Forwards: 70",
		"From: <sip:probe@127.0.0.1>;tag=" + tag,
		"To: <sip:127.0.0.1>",
		"Call-ID: " + tag,
		"CSeq: 1 OPTIONS",
		"Content-Length: 0",
		"", "",
	}, "\r\n")
}

// A client trickling one message byte by byte is cut off after
// MessageTimeout even though each byte renews the idle deadline, while a
// normal client on another connection is answered meanwhile.
func TestSlowLorisClosed(t *testing.T) {
	s := startTestServer(t, Options{IdleTimeout: 5 * time.Second, MessageTimeout: 300 * time.Millisecond})
	addr := tcpAddr(t, s)

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	msg := options("slow")
	closed := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		buf := make([]byte, 64)
		for {
			if _, err := slow.Read(buf); err != nil {
				closed <- time.Since(start)
				return
			}
		}
	}()
	go func() {
		for i := 0; i < len(msg)-4; i++ { // never completes the message
			if _, err := slow.Write([]byte{msg[i]}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()

	fast, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	if _, err := io.WriteString(fast, options("fast")); err != nil {
		t.Fatal(err)
	}
	_ = fast.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(fast).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "SIP/2.0 200") {
		t.Fatalf("normal client: %q, %v", line, err)
	}

	select {
	case d := <-closed:
		if d > 4*time.Second {
			t.Fatalf("slow connection closed only after %s", d)
		}
	case <-time.After(6 * time.Second):
		t.Fatal("slow connection never closed")
	}
	if s.Stats.SlowMessages.Load() == 0 {
		t.Error("SlowMessages counter did not move")
	}
}

// Connections beyond the per-source cap are closed before any read.
func TestConnectionCapPerSource(t *testing.T) {
	s := startTestServer(t, Options{MaxConnsPerSource: 2, IdleTimeout: 5 * time.Second})
	addr := tcpAddr(t, s)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	_ = conns[2].SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := conns[2].Read(make([]byte, 1)); err == nil {
		t.Fatal("third connection from one source was not closed")
	}
	// The first two still work.
	if _, err := io.WriteString(conns[0], options("ok")); err != nil {
		t.Fatal(err)
	}
	_ = conns[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(conns[0]).ReadString('\n'); err != nil || !strings.HasPrefix(line, "SIP/2.0 200") {
		t.Fatalf("allowed connection: %q, %v", line, err)
	}
	if got := s.Stats.ConnsRefused.Load(); got != 1 {
		t.Fatalf("ConnsRefused = %d, want 1", got)
	}
}

func TestFramer(t *testing.T) {
	cases := []struct {
		name   string
		chunks []string
		want   []bool // in progress after each chunk
	}{
		{"keepalive only", []string{"\r\n\r\n"}, []bool{false}},
		{"whole message", []string{options("a")}, []bool{false}},
		{"split headers", []string{"OPTIONS sip:x SIP/2.0\r\nVia: x\r\n", "Content-Length: 0\r\n\r\n"}, []bool{true, false}},
		{"body pending", []string{"MESSAGE sip:x SIP/2.0\r\nl: 5\r\n\r\nab", "cde"}, []bool{true, false}},
		{"two messages then partial", []string{"A sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\nB sip:x SIP/2.0\r\nContent-Length: 1\r\n\r\nxC"}, []bool{true}},
		{"bare LF", []string{"A sip:x SIP/2.0\ncontent-length: 2\n\nzz"}, []bool{false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var f framer
			for i, ch := range tc.chunks {
				if got := f.feed([]byte(ch)); got != tc.want[i] {
					t.Fatalf("chunk %d: in progress %v, want %v", i, got, tc.want[i])
				}
			}
		})
	}
}

func TestBuildChainRejectsUnknownLayer(t *testing.T) {
	if _, err := BuildChain(map[string]Handler{"bogus": Local{}}); err == nil {
		t.Fatal("a layer outside Order was accepted")
	}
	chain, err := BuildChain(map[string]Handler{"b2bua": HandlerFunc{N: "b2bua"}, "local": Local{}})
	if err != nil || len(chain) != 2 || chain[0].Name() != "local" {
		t.Fatalf("chain order wrong: %v %v", chain, err)
	}
}

// A layer that panics costs one request, not the process: the panic is
// counted and the next request is served.
func TestPanicInLayerRecovered(t *testing.T) {
	opts := Options{Listeners: []ListenerSpec{{Transport: "udp", Addr: "127.0.0.1:0"}}}
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	boom := HandlerFunc{N: "b2bua", F: func(ctx context.Context, w ResponseWriter, r *Request) (Verdict, error) {
		panic("boom")
	}}
	chain, _ := BuildChain(map[string]Handler{"local": Local{}, "b2bua": boom})
	s.SetChain(chain)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, _ := s.Local("udp", External)
	c, err := net.Dial("udp", l.Bound.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := strings.Replace(options("p1"), "OPTIONS sip:127.0.0.1", "OPTIONS sip:alice@127.0.0.1", 1)
	msg = strings.ReplaceAll(msg, "SIP/2.0/TCP", "SIP/2.0/UDP")
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats.Panics.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.Stats.Panics.Load() != 1 {
		t.Fatalf("panics = %d, want 1", s.Stats.Panics.Load())
	}
	if _, err := io.WriteString(c, strings.ReplaceAll(options("p2"), "SIP/2.0/TCP", "SIP/2.0/UDP")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
		t.Fatalf("after the panic: %q, %v", buf[:n], err)
	}
}

// Listeners bind IPv6 as well as IPv4; the peer is the v6 transport address.
func TestIPv6Listener(t *testing.T) {
	if c, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback on this machine: %v", err)
	} else {
		c.Close()
	}
	peers := make(chan string, 2)
	seen := HandlerFunc{N: "b2bua", F: func(ctx context.Context, w ResponseWriter, r *Request) (Verdict, error) {
		peers <- r.Peer.String()
		return Rejected, Respond(w, r, 486, "Busy Here")
	}}
	s, err := NewServer(Options{Listeners: []ListenerSpec{{Transport: "udp", Addr: "[::1]:0"}, {Transport: "tcp", Addr: "[::1]:0"}}})
	if err != nil {
		t.Fatal(err)
	}
	chain, _ := BuildChain(map[string]Handler{"local": Local{}, "b2bua": seen})
	s.SetChain(chain)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tr := range []string{"udp", "tcp"} {
		l, ok := s.Local(tr, External)
		if !ok || !l.Bound.Addr().Is6() {
			t.Fatalf("%s listener not on IPv6: %+v", tr, l)
		}
		c, err := net.Dial(tr, l.Bound.String())
		if err != nil {
			t.Fatal(err)
		}
		msg := strings.ReplaceAll(options("v6"+tr), "127.0.0.1", "[::1]")
		msg = strings.Replace(msg, "OPTIONS sip:[::1]", "OPTIONS sip:bob@[::1]", 1)
		msg = strings.Replace(msg, "SIP/2.0/TCP", "SIP/2.0/"+strings.ToUpper(tr), 1)
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 2048)
		n, err := c.Read(buf)
		c.Close()
		if err != nil || !strings.HasPrefix(string(buf[:n]), "SIP/2.0 486") {
			t.Fatalf("%s: %q, %v", tr, buf[:n], err)
		}
		if peer := <-peers; !strings.HasPrefix(peer, "[::1]:") {
			t.Fatalf("%s: peer %q, want the v6 transport address", tr, peer)
		}
	}
}

// A request on a stream whose connection is gone must not make the SBC
// connect to the address in its Via (an attacker's choice): the dial is
// refused and counted, and nothing reaches that address.
func TestNoDialToViaAddress(t *testing.T) {
	trap, err := net.Listen("tcp", "127.0.0.9:0")
	if err != nil {
		t.Skipf("cannot bind 127.0.0.9: %v", err)
	}
	defer trap.Close()
	reached := make(chan struct{}, 1)
	go func() {
		if c, err := trap.Accept(); err == nil {
			reached <- struct{}{}
			c.Close()
		}
	}()
	s := startTestServer(t, Options{IdleTimeout: 5 * time.Second})
	addr := tcpAddr(t, s)
	trapAddr := trap.Addr().String()
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		msg := strings.Replace(options("gone"+strconv.Itoa(i)), "127.0.0.1:5999;rport", trapAddr, 1)
		msg = strings.Replace(msg, "OPTIONS sip:127.0.0.1", "OPTIONS sip:bob@127.0.0.1", 1)
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // reset: the connection is gone at once
		}
		c.Close()
	}
	select {
	case <-reached:
		t.Fatal("the SBC connected to the address named in a Via")
	case <-time.After(2 * time.Second):
	}
}

// A source that Blocked names gets nothing: its datagrams are dropped
// before parsing and its connections closed at accept, while another
// source is answered.
func TestBlockedSourceDropped(t *testing.T) {
	blocked := netip.MustParseAddr("127.0.0.2")
	s := startTestServer(t, Options{Blocked: func(a netip.Addr) bool { return a == blocked }})
	udp, ok := s.Local("udp", External)
	if !ok {
		t.Fatal("no udp listener")
	}
	ask := func(src string) bool {
		t.Helper()
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src)}, net.UDPAddrFromAddrPort(udp.Bound))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(strings.ReplaceAll(options("blk-"+src), "TCP", "UDP"))); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		buf := make([]byte, 2048)
		n, err := c.Read(buf)
		return err == nil && strings.HasPrefix(string(buf[:n]), "SIP/2.0 200")
	}
	if ask("127.0.0.2") {
		t.Error("blocked source was answered over UDP")
	}
	if !ask("127.0.0.3") {
		t.Error("other source not answered over UDP")
	}
	if got := s.Stats.Blocked.Load(); got != 1 {
		t.Errorf("Stats.Blocked = %d after one blocked datagram, want 1", got)
	}

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: time.Second}
	c, err := d.Dial("tcp", tcpAddr(t, s))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte(options("blk-tcp")))
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(make([]byte, 512)); err == nil {
		t.Errorf("blocked TCP source read %d bytes, want the connection closed", n)
	}
	if got := s.Stats.Blocked.Load(); got != 2 {
		t.Errorf("Stats.Blocked = %d after a blocked connection, want 2", got)
	}
}

// The Outbound filter sees every message toward a non-internal peer and can
// stop it or send other bytes instead, over UDP and TCP alike.
func TestOutboundFilter(t *testing.T) {
	var seen atomic.Int64
	s := startTestServer(t, Options{Outbound: func(dst netip.AddrPort, msg []byte) ([]byte, bool) {
		seen.Add(1)
		switch {
		case strings.Contains(string(msg), "Call-ID: stop-"):
			return nil, false
		case strings.Contains(string(msg), "Call-ID: swap-"):
			return []byte(strings.Replace(string(msg), "SIP/2.0 200 OK", "SIP/2.0 299 Swapped", 1)), true
		}
		return msg, true
	}})
	udp, _ := s.Local("udp", External)
	ask := func(tag string) string {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(udp.Bound))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte(strings.ReplaceAll(options(tag), "TCP", "UDP")))
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		buf := make([]byte, 2048)
		n, _ := c.Read(buf)
		return string(buf[:n])
	}
	if got := ask("pass-1"); !strings.HasPrefix(got, "SIP/2.0 200 OK\r\n") {
		t.Errorf("allowed response not delivered: %q", got)
	}
	if got := ask("stop-1"); got != "" {
		t.Errorf("stopped response delivered over UDP: %q", got)
	}
	if got := ask("swap-1"); !strings.HasPrefix(got, "SIP/2.0 299 Swapped\r\n") {
		t.Errorf("UDP: got %q, want the filter's bytes", got)
	}
	tcpAsk := func(tag string) string {
		c, err := net.Dial("tcp", tcpAddr(t, s))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte(options(tag)))
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 2048)
		n, _ := c.Read(buf)
		return string(buf[:n])
	}
	if got := tcpAsk("stop-2"); got != "" {
		t.Errorf("stopped response delivered over TCP: %q", got)
	}
	if got := tcpAsk("swap-2"); !strings.HasPrefix(got, "SIP/2.0 299 Swapped\r\n") {
		t.Errorf("TCP: got %q, want the filter's bytes", got)
	}
	if got, changed := s.Stats.OutboundBlocked.Load(), s.Stats.OutboundChanged.Load(); got != 2 || changed != 2 || seen.Load() < 5 {
		t.Errorf("OutboundBlocked = %d, OutboundChanged = %d, filter saw %d; want 2, 2 and at least 5", got, changed, seen.Load())
	}
}

// Admit is the userspace prefilter: with the bpf package's model behind it,
// a source over its request budget gets no answer and a source over its
// connection budget has the connection closed at accept, both counted.
func TestAdmitPrefilter(t *testing.T) {
	cfg := bpf.Config{}
	cfg.Source[bpf.ClassRequest] = bpf.Limit{Rate: 0.001, Burst: 2}
	cfg.Source[bpf.ClassSyn] = bpf.Limit{Rate: 0.001, Burst: 1}
	m, err := bpf.NewModel(cfg)
	if err != nil {
		t.Fatal(err)
	}
	admit := func(src netip.Addr, data []byte) bool {
		c := bpf.ClassSyn
		if data != nil {
			c = bpf.Classify(data)
		}
		ok, _ := m.Admit(src, c, bpf.MonoNow())
		return ok
	}
	s := startTestServer(t, Options{Admit: admit})
	udp, _ := s.Local("udp", External)
	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.5")}, net.UDPAddrFromAddrPort(udp.Bound))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, want := range []bool{true, true, false} {
		if _, err := c.Write([]byte(strings.ReplaceAll(options("adm-"+strconv.Itoa(i)), "TCP", "UDP"))); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Read(make([]byte, 2048))
		if got := err == nil && n > 0; got != want {
			t.Fatalf("request %d answered=%v, want %v", i, got, want)
		}
	}
	if got := s.Stats.Prefiltered.Load(); got != 1 {
		t.Errorf("Stats.Prefiltered = %d, want 1", got)
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.5")}, Timeout: time.Second}
	for i, want := range []bool{true, false} {
		conn, err := d.Dial("tcp", tcpAddr(t, s))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write([]byte(options("adm-tcp-" + strconv.Itoa(i))))
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := conn.Read(make([]byte, 512))
		conn.Close()
		if got := err == nil && n > 0; got != want {
			t.Fatalf("connection %d answered=%v, want %v", i, got, want)
		}
	}
	if got := s.Stats.Prefiltered.Load(); got != 2 {
		t.Errorf("Stats.Prefiltered = %d after a refused connection, want 2", got)
	}
}

// Capture sees each message both ways, whole: a UDP request and its
// answer, and on TCP two requests in one write and one split over two
// writes, each cut at its own boundary.
func TestCaptureMessages(t *testing.T) {
	type seen struct {
		src, dst  netip.AddrPort
		transport string
		first     string
	}
	var mu sync.Mutex
	var got []seen
	s := startTestServer(t, Options{Capture: func(src, dst netip.AddrPort, tr string, data []byte) {
		line, _, _ := strings.Cut(string(data), "\r\n")
		mu.Lock()
		got = append(got, seen{src, dst, tr, line})
		mu.Unlock()
	}})
	wait := func(n int) []seen {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			mu.Lock()
			g := append([]seen(nil), got...)
			mu.Unlock()
			if len(g) >= n || time.Now().After(deadline) {
				return g
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	udp, _ := s.Local("udp", External)
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(udp.Bound))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(strings.ReplaceAll(options("cap-udp"), "TCP", "UDP")))
	g := wait(2)
	if len(g) != 2 || g[0].first != "OPTIONS sip:127.0.0.1 SIP/2.0" || !strings.HasPrefix(g[1].first, "SIP/2.0 200") ||
		g[0].transport != "udp" || g[0].dst != udp.Bound || g[1].src != udp.Bound || g[1].dst != g[0].src {
		t.Fatalf("UDP capture: %+v", g)
	}

	tc, err := net.Dial("tcp", tcpAddr(t, s))
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	two := options("cap-t1") + options("cap-t2")
	third := options("cap-t3")
	tc.Write([]byte(two + third[:20]))
	time.Sleep(100 * time.Millisecond)
	tc.Write([]byte(third[20:]))
	g = wait(8)
	var requests, responses int
	for _, m := range g[2:] {
		switch {
		case m.transport != "tcp":
			t.Fatalf("TCP capture transport %q", m.transport)
		case m.first == "OPTIONS sip:127.0.0.1 SIP/2.0":
			requests++
		case strings.HasPrefix(m.first, "SIP/2.0 200"):
			responses++
		default:
			t.Fatalf("TCP capture cut a message badly: %q", m.first)
		}
	}
	if requests != 3 || responses != 3 {
		t.Fatalf("TCP capture: %d requests and %d responses, want 3 and 3: %+v", requests, responses, g[2:])
	}
}

// Over WebSocket the filter judges the frame's payload, and a changed
// message goes out in a frame of its own.
func TestOutboundFilterWebSocket(t *testing.T) {
	l := &limitListener{transport: "wss", outbound: func(_ netip.AddrPort, msg []byte) ([]byte, bool) {
		switch {
		case strings.HasPrefix(string(msg), "SIP/2.0 486"):
			return nil, false
		case strings.HasPrefix(string(msg), "SIP/2.0 200"):
			return []byte("SIP/2.0 500 Server Internal Error\r\n\r\n"), true
		}
		return msg, true
	}}
	c := &limitConn{l: l}
	for _, tc := range []struct {
		in, want string
		send     bool
	}{
		{"SIP/2.0 180 Ringing\r\n\r\n", "SIP/2.0 180 Ringing\r\n\r\n", true},
		{"SIP/2.0 486 Busy Here\r\n\r\n", "", false},
		{"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", "SIP/2.0 500 Server Internal Error\r\n\r\n", true},
		{strings.Repeat("x", 300), strings.Repeat("x", 300), true}, // a 16-bit length
	} {
		frame := wsFrame([]byte(tc.in))
		out, send := c.outbound(frame)
		if send != tc.send {
			t.Errorf("%.20q: send %v, want %v", tc.in, send, tc.send)
			continue
		}
		if !send {
			continue
		}
		payload, ok := wsPayload(out)
		if !ok || string(payload) != tc.want {
			t.Errorf("%.20q: sent frame %q (ok %v), want the payload %q", tc.in, out, ok, tc.want)
		}
		if tc.want == tc.in && !sameBytes(out, frame) {
			t.Errorf("%.20q: an unchanged message was framed again", tc.in)
		}
	}
}
