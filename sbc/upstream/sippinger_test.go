package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/sanity"
)

// pbxIP is the upstream's address in these tests; the SBC listens on
// 127.0.0.1.
const pbxIP = "127.0.0.3"

// seenRequest is what a test PBX copies out of a received OPTIONS.
type seenRequest struct {
	src                                                     netip.AddrPort
	method, ruri, from, fromUser, fromHost, fromTag, toHost string
	via, callID, cseq, maxFwd, contentLength, transport     string
}

func describe(req *sip.Request) seenRequest {
	s := seenRequest{method: string(req.Method), ruri: req.Recipient.String(), transport: req.Transport()}
	if h := req.From(); h != nil {
		s.from, s.fromUser, s.fromHost = h.Value(), h.Address.User, h.Address.Host
		s.fromTag, _ = h.Params.Get("tag")
	}
	if h := req.To(); h != nil {
		s.toHost = h.Address.Host
	}
	if h := req.Via(); h != nil {
		s.via = h.Value()
	}
	if h := req.CallID(); h != nil {
		s.callID = h.Value()
	}
	if h := req.CSeq(); h != nil {
		s.cseq = h.Value()
	}
	if h := req.MaxForwards(); h != nil {
		s.maxFwd = h.Value()
	}
	if h := req.ContentLength(); h != nil {
		s.contentLength = h.Value()
	}
	return s
}

// udpPBX is a plain PBX over UDP on pbxIP: it answers every request with
// status, echoing the request's Via, From, To, Call-ID and CSeq lines as
// they came. With toVia it sends the answer to the host and port of the
// top Via (a PBX that ignores rport), else to the datagram's source.
func udpPBX(t *testing.T, status int, toVia bool) (netip.AddrPort, <-chan seenRequest) {
	t.Helper()
	c, err := net.ListenPacket("udp", pbxIP+":0")
	if err != nil {
		t.Fatalf("listen udp: %v", err)
	}
	seen := make(chan seenRequest, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 8192)
		for range 10000 { // ends when the socket is closed at cleanup
			n, src, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			data := string(buf[:n])
			msg, err := sip.ParseMessage([]byte(data))
			req, ok := msg.(*sip.Request)
			if err != nil || !ok {
				continue
			}
			s := describe(req)
			s.src = src.(*net.UDPAddr).AddrPort()
			select {
			case seen <- s:
			default:
			}
			dst := src
			if toVia {
				v := req.Via()
				if dst, err = net.ResolveUDPAddr("udp", net.JoinHostPort(v.Host, strconv.Itoa(v.Port))); err != nil {
					continue
				}
			}
			_, _ = c.WriteTo([]byte(echoResponse(data, status)), dst)
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return c.LocalAddr().(*net.UDPAddr).AddrPort(), seen
}

// echoResponse answers a request text the way a plain PBX (or a sipp
// scenario with [last_Via:]) does: the header lines copied, a To tag added.
func echoResponse(req string, status int) string {
	lines := []string{fmt.Sprintf("SIP/2.0 %d Test", status)}
	head, _, _ := strings.Cut(req, "\r\n\r\n")
	for _, l := range strings.Split(head, "\r\n")[1:] {
		name, _, _ := strings.Cut(l, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "via", "from", "call-id", "cseq":
			lines = append(lines, l)
		case "to":
			lines = append(lines, l+";tag=pbx1")
		}
	}
	return strings.Join(append(lines, "Content-Length: 0", "", ""), "\r\n")
}

// tcpPBX runs a sipgo server on pbxIP over TCP that answers OPTIONS with
// status and reports each request.
func tcpPBX(t *testing.T, status int) (netip.AddrPort, <-chan seenRequest) {
	t.Helper()
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatalf("new server ua: %v", err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	ch := make(chan seenRequest, 16)
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		s := describe(req)
		s.src, _ = netip.ParseAddrPort(req.Source())
		select {
		case ch <- s:
		default:
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, status, "Test", nil))
	})
	ln, err := net.Listen("tcp", pbxIP+":0")
	if err != nil {
		t.Fatalf("listen tcp: %v", err)
	}
	served := make(chan struct{})
	go func() { _ = srv.ServeTCP(ln); close(served) }()
	t.Cleanup(func() {
		// Closing the UA does not close listeners handed to Serve*, and
		// Serve only returns once its listener is closed.
		_ = ua.Close()
		_ = ln.Close()
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Error("server did not stop")
		}
	})
	return ln.Addr().(*net.TCPAddr).AddrPort(), ch
}

// startSBC runs an sbc.Server with the given listeners (default: UDP and
// TCP on 127.0.0.1) and the production response filter: the pinger sends
// through it as cmd/sipwall wires it.
func startSBC(t *testing.T, specs ...sbc.ListenerSpec) (*sbc.Server, *sanity.Sanity) {
	t.Helper()
	if len(specs) == 0 {
		specs = []sbc.ListenerSpec{
			{Transport: "udp", Addr: "127.0.0.1:0", Side: sbc.Internal},
			{Transport: "tcp", Addr: "127.0.0.1:0", Side: sbc.Internal},
		}
	}
	san := sanity.New(sanity.Options{})
	s, err := sbc.NewServer(sbc.Options{
		Listeners:      specs,
		ResponseFilter: san.AllowResponse,
		DialAllowed:    func(ap netip.AddrPort) bool { return ap.Addr().String() == pbxIP },
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); s.Close() })
	return s, san
}

func listener(t *testing.T, s *sbc.Server, transport string, side sbc.Side) *sbc.Listener {
	t.Helper()
	for _, l := range s.Listeners() {
		if l.Spec.Transport == transport && l.Spec.Side == side {
			return l
		}
	}
	t.Fatalf("no %s listener on side %s", transport, side)
	return nil
}

func receive(t *testing.T, seen <-chan seenRequest) seenRequest {
	t.Helper()
	select {
	case r := <-seen:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("the PBX saw no request")
	}
	return seenRequest{}
}

func ping(t *testing.T, p *SIPPinger, target Target) (int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.Ping(ctx, target)
}

// The OPTIONS leaves from the listener (over UDP its very socket) with a Via
// naming the listener's address; a PBX that echoes the Via and answers to
// it reaches the listener, and the response filter lets the answer through.
func TestSIPPingerSendsFromListener(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			srv, san := startSBC(t)
			var addr netip.AddrPort
			var seen <-chan seenRequest
			if network == "udp" {
				addr, seen = udpPBX(t, 200, true)
			} else {
				addr, seen = tcpPBX(t, 200)
			}
			target := mustTarget(t, "pbx", fmt.Sprintf("sip:pbx@%s;transport=%s", addr, network), 1, 1)
			status, err := ping(t, NewSIPPinger(srv.Client(), srv), target)
			if err != nil || status != 200 {
				t.Fatalf("Ping() = %d, %v; want 200", status, err)
			}

			l := listener(t, srv, network, sbc.Internal)
			r := receive(t, seen)
			wantVia := fmt.Sprintf("SIP/2.0/%s 127.0.0.1:%d;", strings.ToUpper(network), l.Bound.Port())
			if !strings.HasPrefix(r.via, wantVia) || !strings.Contains(r.via, ";rport") || !strings.Contains(r.via, "branch=z9hG4bK") {
				t.Errorf("Via %q, want %s... with rport and branch", r.via, wantVia)
			}
			if network == "udp" && r.src != l.Bound {
				t.Errorf("sent from %s, want the listener's socket %s", r.src, l.Bound)
			}
			if r.method != "OPTIONS" || r.ruri != target.URI.String() {
				t.Errorf("request line %s %s, want OPTIONS %s", r.method, r.ruri, target.URI.String())
			}
			if r.fromUser != "sipwall" || r.fromHost != "127.0.0.1" || r.fromTag == "" {
				t.Errorf("From %q, want sip:sipwall@127.0.0.1 with a tag", r.from)
			}
			if r.toHost != pbxIP {
				t.Errorf("To host %q, want %s", r.toHost, pbxIP)
			}
			if r.callID == "" || r.cseq != "1 OPTIONS" || r.maxFwd != "70" || r.contentLength != "0" {
				t.Errorf("Call-ID %q CSeq %q Max-Forwards %q Content-Length %q", r.callID, r.cseq, r.maxFwd, r.contentLength)
			}
			if !strings.EqualFold(r.transport, network) {
				t.Errorf("arrived over %s, want %s", r.transport, network)
			}
			if network == "udp" {
				if st := san.Stats(); st.Responses != 1 || st.BadResponses != 0 {
					t.Errorf("response filter saw %d responses, refused %d; want 1 and 0", st.Responses, st.BadResponses)
				}
			}
		})
	}
}

// A configured advertise address is what the Via names, while the datagram
// still leaves from the bound socket.
func TestSIPPingerAdvertisedAddress(t *testing.T) {
	srv, _ := startSBC(t, sbc.ListenerSpec{Transport: "udp", Addr: "127.0.0.1:0", Side: sbc.Internal, Advertise: "127.0.0.9:5999"})
	addr, seen := udpPBX(t, 200, false)
	status, err := ping(t, NewSIPPinger(srv.Client(), srv), mustTarget(t, "pbx", "sip:"+addr.String(), 1, 1))
	if err != nil || status != 200 {
		t.Fatalf("Ping() = %d, %v; want 200", status, err)
	}
	r := receive(t, seen)
	if !strings.HasPrefix(r.via, "SIP/2.0/UDP 127.0.0.9:5999;") || r.fromHost != "127.0.0.9" {
		t.Errorf("Via %q, From host %q; want the advertised 127.0.0.9:5999", r.via, r.fromHost)
	}
	if l := listener(t, srv, "udp", sbc.Internal); r.src != l.Bound {
		t.Errorf("sent from %s, want the listener's socket %s", r.src, l.Bound)
	}
}

// Upstreams are checked from the inside listener, a target marked External
// from the outside one.
func TestSIPPingerListenerOfTheSide(t *testing.T) {
	srv, _ := startSBC(t,
		sbc.ListenerSpec{Transport: "udp", Addr: "127.0.0.1:0", Side: sbc.External},
		sbc.ListenerSpec{Transport: "udp", Addr: "127.0.0.1:0", Side: sbc.Internal})
	addr, seen := udpPBX(t, 200, true)
	p := NewSIPPinger(srv.Client(), srv)
	for _, side := range []sbc.Side{sbc.Internal, sbc.External} {
		target := mustTarget(t, "pbx", "sip:"+addr.String(), 1, 1)
		target.External = side == sbc.External
		if status, err := ping(t, p, target); err != nil || status != 200 {
			t.Fatalf("%s: Ping() = %d, %v; want 200", side, status, err)
		}
		l := listener(t, srv, "udp", side)
		if r := receive(t, seen); r.src != l.Bound || !strings.Contains(r.via, fmt.Sprintf(" 127.0.0.1:%d;", l.Bound.Port())) {
			t.Errorf("%s target: sent from %s with Via %q, want the %s listener %s", side, r.src, r.via, side, l.Bound)
		}
	}
}

// fixedEndpoint hands out one listener, or none.
type fixedEndpoint struct{ l *sbc.Listener }

func (e fixedEndpoint) Local(string, sbc.Side) (*sbc.Listener, bool) { return e.l, e.l != nil }

// The Via's sent-by is the listener's advertised address and never a
// wildcard: a PBX echoes it, and the response filter drops answers whose
// Via names 0.0.0.0 or ::.
func TestSIPPingerVia(t *testing.T) {
	bound := netip.MustParseAddrPort("0.0.0.0:5070")
	tests := []struct {
		name    string
		adv     sip.Addr
		want    string // Via prefix
		wantErr error
	}{
		{"ipv4", sip.Addr{IP: net.ParseIP("192.0.2.10"), Port: 5070}, "SIP/2.0/UDP 192.0.2.10:5070;", nil},
		{"ipv6", sip.Addr{IP: net.ParseIP("2001:db8::10"), Port: 5070}, "SIP/2.0/UDP [2001:db8::10]:5070;", nil},
		{"v4-mapped", sip.Addr{IP: net.ParseIP("::ffff:192.0.2.10"), Port: 5070}, "SIP/2.0/UDP 192.0.2.10:5070;", nil},
		{"host name", sip.Addr{Hostname: "sbc.inside.test", Port: 5080}, "SIP/2.0/UDP sbc.inside.test:5080;", nil},
		{"unspecified v4", sip.Addr{IP: net.IPv4zero, Port: 5070}, "", ErrUnspecifiedVia},
		{"unspecified v6", sip.Addr{IP: net.IPv6unspecified, Port: 5070}, "", ErrUnspecifiedVia},
		{"unspecified v4-mapped", sip.Addr{IP: net.ParseIP("::ffff:0.0.0.0"), Port: 5070}, "", ErrUnspecifiedVia},
		{"no host", sip.Addr{Port: 5070}, "", ErrUnspecifiedVia},
		{"no port", sip.Addr{IP: net.ParseIP("192.0.2.10")}, "", ErrUnspecifiedVia},
	}
	target := mustTarget(t, "pbx", "sip:192.0.2.20:5060", 1, 1)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &SIPPinger{Endpoint: fixedEndpoint{&sbc.Listener{Bound: bound, Advertise: tc.adv}}}
			req, err := p.newOptions(target)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("newOptions() error %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			via := req.Via().Value()
			if !strings.HasPrefix(via, tc.want) || strings.Contains(via, "0.0.0.0") {
				t.Errorf("Via %q, want %s...", via, tc.want)
			}
			if req.Laddr.String() != bound.String() {
				t.Errorf("sent from %s, want the listener's socket %s", req.Laddr.String(), bound)
			}
		})
	}
}

// Without a listener of the upstream's transport nothing is sent, and the
// check fails naming why.
func TestSIPPingerNoListener(t *testing.T) {
	srv, _ := startSBC(t, sbc.ListenerSpec{Transport: "udp", Addr: "127.0.0.1:0", Side: sbc.Internal})
	_, err := ping(t, NewSIPPinger(srv.Client(), srv), mustTarget(t, "pbx", "sip:"+pbxIP+":5060;transport=tcp", 1, 1))
	if !errors.Is(err, ErrNoListener) || !strings.Contains(err.Error(), "tcp") {
		t.Errorf("Ping() error %v, want ErrNoListener naming tcp", err)
	}
	_, err = ping(t, NewSIPPinger(srv.Client(), fixedEndpoint{}), mustTarget(t, "pbx", "sip:"+pbxIP+":5060", 1, 1))
	if !errors.Is(err, ErrNoListener) {
		t.Errorf("Ping() error %v, want ErrNoListener", err)
	}
}

// TestSIPPingerDrivesPool checks the pool's verdicts on real responses:
// 404 keeps the target up, 503 takes it down.
func TestSIPPingerDrivesPool(t *testing.T) {
	srv, _ := startSBC(t)
	aliveAddr, _ := udpPBX(t, 404, true)
	busyAddr, _ := udpPBX(t, 503, true)
	p := New([]Target{
		mustTarget(t, "alive", "sip:"+aliveAddr.String(), 1, 1),
		mustTarget(t, "busy", "sip:"+busyAddr.String(), 1, 1),
	}, Options{HealthInterval: time.Second, HealthTimeout: 5 * time.Second, Failures: 1,
		Pinger: NewSIPPinger(srv.Client(), srv), Logger: quietLogger()})

	ctx := context.Background()
	p.checkOnce(ctx, p.byName["alive"])
	p.checkOnce(ctx, p.byName["busy"])
	st := p.Status()
	if !st[0].Up || st[0].LastError != "" {
		t.Errorf("alive: %+v, want up (404 to OPTIONS is alive)", st[0])
	}
	if st[1].Up || st[1].LastError != "status 503" {
		t.Errorf("busy: %+v, want down by status 503", st[1])
	}
	if got := names(p.Candidates()); len(got) != 1 || got[0] != "alive" {
		t.Errorf("Candidates() = %v, want [alive]", got)
	}
	if ok, why := p.Ready(); !ok || why != "upstream alive up" {
		t.Errorf("Ready() = %v %q, want ready by upstream alive", ok, why)
	}
}

func TestSIPPingerTimeout(t *testing.T) {
	srv, _ := startSBC(t)
	// A socket nobody reads: requests vanish like packets to a dead PBX.
	silent, err := net.ListenPacket("udp", pbxIP+":0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer silent.Close()
	target := mustTarget(t, "dead", "sip:"+silent.LocalAddr().String(), 1, 1)
	pinger := NewSIPPinger(srv.Client(), srv)

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	status, err := pinger.Ping(ctx, target)
	if err == nil {
		t.Fatalf("Ping() = %d, nil; want an error", status)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ping() error %v, want it to wrap context.DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "dead") {
		t.Errorf("Ping() error %q does not name the target", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Ping() took %v, want about the ctx timeout", d)
	}
}

func TestSIPPingerNoClient(t *testing.T) {
	var p *SIPPinger
	if _, err := p.Ping(context.Background(), Target{}); err == nil {
		t.Error("nil pinger: no error")
	}
	if _, err := (&SIPPinger{}).Ping(context.Background(), Target{}); err == nil {
		t.Error("pinger without client: no error")
	}
}
