package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// seenRequest is what the test server copies out of a received OPTIONS,
// since sipgo may reuse the request after the handler returns.
type seenRequest struct {
	method, ruri, from, fromUser, fromHost, fromTag, toHost string
	via, callID, cseq, maxFwd, contentLength, transport     string
}

// startOptionsServer runs a sipgo server on 127.0.0.1 that answers OPTIONS
// with status and reports each request. network is "udp" or "tcp".
func startOptionsServer(t *testing.T, network string, status int) (addr string, seen <-chan seenRequest) {
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
		select {
		case ch <- s:
		default:
		}
		_ = tx.Respond(sip.NewResponseFromRequest(req, status, "Test", nil))
	})

	served := make(chan struct{})
	var closeListener func() error
	switch network {
	case "udp":
		conn, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen udp: %v", err)
		}
		addr = conn.LocalAddr().String()
		closeListener = conn.Close
		go func() { _ = srv.ServeUDP(conn); close(served) }()
	case "tcp":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen tcp: %v", err)
		}
		addr = ln.Addr().String()
		closeListener = ln.Close
		go func() { _ = srv.ServeTCP(ln); close(served) }()
	}
	t.Cleanup(func() {
		// Closing the UA does not close listeners handed to Serve*, and
		// Serve only returns once its listener is closed.
		_ = ua.Close()
		_ = closeListener()
		select {
		case <-served:
		case <-time.After(5 * time.Second):
			t.Error("server did not stop")
		}
	})
	return addr, ch
}

func newTestClient(t *testing.T) *sipgo.Client {
	t.Helper()
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatalf("new client ua: %v", err)
	}
	t.Cleanup(func() { _ = ua.Close() })
	c, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	return c
}

func TestSIPPingerOptions(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			addr, seen := startOptionsServer(t, network, 200)
			target := mustTarget(t, "pbx", fmt.Sprintf("sip:pbx@%s;transport=%s", addr, network), 1, 1)
			pinger := NewSIPPinger(newTestClient(t))

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			status, err := pinger.Ping(ctx, target)
			if err != nil || status != 200 {
				t.Fatalf("Ping() = %d, %v; want 200", status, err)
			}

			var r seenRequest
			select {
			case r = <-seen:
			case <-time.After(5 * time.Second):
				t.Fatal("server saw no request")
			}
			if r.method != "OPTIONS" || r.ruri != target.URI.String() {
				t.Errorf("request line %s %s, want OPTIONS %s", r.method, r.ruri, target.URI.String())
			}
			if r.fromUser != "sipwall" || r.fromHost != "127.0.0.1" || r.fromTag == "" {
				t.Errorf("From %q, want sip:sipwall@127.0.0.1 with a tag", r.from)
			}
			if r.toHost != "127.0.0.1" {
				t.Errorf("To host %q, want 127.0.0.1", r.toHost)
			}
			if !strings.HasPrefix(r.via, "SIP/2.0/"+strings.ToUpper(network)+" ") ||
				!strings.Contains(r.via, ";rport") || !strings.Contains(r.via, "branch=z9hG4bK") {
				t.Errorf("Via %q, want %s transport with rport and branch", r.via, network)
			}
			if r.callID == "" || r.cseq != "1 OPTIONS" || r.maxFwd != "70" || r.contentLength != "0" {
				t.Errorf("Call-ID %q CSeq %q Max-Forwards %q Content-Length %q", r.callID, r.cseq, r.maxFwd, r.contentLength)
			}
			if !strings.EqualFold(r.transport, network) {
				t.Errorf("arrived over %s, want %s", r.transport, network)
			}
		})
	}
}

// TestSIPPingerDrivesPool checks the pool's verdicts on real responses:
// 404 keeps the target up, 503 takes it down.
func TestSIPPingerDrivesPool(t *testing.T) {
	aliveAddr, _ := startOptionsServer(t, "udp", 404)
	busyAddr, _ := startOptionsServer(t, "udp", 503)
	p := New([]Target{
		mustTarget(t, "alive", "sip:"+aliveAddr, 1, 1),
		mustTarget(t, "busy", "sip:"+busyAddr, 1, 1),
	}, Options{HealthInterval: time.Second, HealthTimeout: 5 * time.Second, Failures: 1,
		Pinger: NewSIPPinger(newTestClient(t)), Logger: quietLogger()})

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
}

func TestSIPPingerTimeout(t *testing.T) {
	// A socket nobody reads: requests vanish like packets to a dead PBX.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer silent.Close()
	target := mustTarget(t, "dead", "sip:"+silent.LocalAddr().String(), 1, 1)
	pinger := NewSIPPinger(newTestClient(t))

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
