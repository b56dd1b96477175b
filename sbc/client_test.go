package sbc

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// A response to a transaction started with Send reaches it parsed once
// (Stats.Delivered), after the response filter, which still keeps a
// refused response from it; a transaction started with sipgo directly
// gets its response the old way.
func TestSendDeliversResponsesParsedOnce(t *testing.T) {
	s := startTestServer(t, Options{ResponseFilter: func(r *sip.Response) bool { return r.GetHeader("X-Refuse") == nil }})
	udp, _ := s.Local("udp", External)
	// The peer answers every request twice: first a response the filter
	// refuses (a 486), then the 200 the transaction must see. It waits a
	// little first: a response read before Send has registered the
	// transaction takes sipgo's way (correct, but not what is counted).
	peer := answeringPeer(t, func(req *sip.Request) []*sip.Response {
		time.Sleep(20 * time.Millisecond)
		refused := sip.NewResponseFromRequest(req, 486, "Busy", nil)
		refused.AppendHeader(sip.NewHeader("X-Refuse", "1"))
		return []*sip.Response{refused, sip.NewResponseFromRequest(req, 200, "OK", nil)}
	})
	newReq := func(tag string) *sip.Request { return clientRequest(sip.OPTIONS, tag, udp.Bound, peer) }
	final := func(tx sip.ClientTransaction) int {
		defer tx.Terminate()
		deadline := time.After(2 * time.Second)
		for {
			select {
			case res := <-tx.Responses():
				if res.GetHeader("X-Refuse") != nil {
					t.Fatalf("a refused response reached the transaction: %s", res.StartLine())
				}
				if res.StatusCode >= 200 {
					if src := res.Source(); src != peer.LocalAddr().String() {
						t.Errorf("response source %q, want %q", src, peer.LocalAddr())
					}
					return res.StatusCode
				}
			case <-deadline:
				return 0
			}
		}
	}
	for i := range 3 {
		tx, err := Send(context.Background(), s.Client(), newReq(fmt.Sprintf("send-%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if code := final(tx); code != 200 {
			t.Fatalf("call %d: final %d, want 200", i, code)
		}
	}
	if got := s.Stats.Delivered.Load(); got != 3 {
		t.Errorf("Delivered = %d, want 3 (one 200 per transaction)", got)
	}
	tx, err := s.Client().TransactionRequest(context.Background(), newReq("direct"), NoBuild)
	if err != nil {
		t.Fatal(err)
	}
	if code := final(tx); code != 200 {
		t.Fatalf("sipgo's own transaction: final %d, want 200", code)
	}
	if got := s.Stats.Delivered.Load(); got != 3 {
		t.Errorf("Delivered = %d after a transaction Send did not start, want 3", got)
	}
	if got := s.Stats.PreParseDrops[0].Load(); got != 4 {
		t.Errorf("refused responses dropped = %d, want 4", got)
	}
	// Ended transactions leave the registry.
	time.Sleep(100 * time.Millisecond)
	n := 0
	pending.Range(func(_, v any) bool {
		if v.(pendingTx).c == s.client {
			n++
		}
		return true
	})
	if n != 0 {
		t.Errorf("%d transactions still registered after they ended", n)
	}
}

// An INVITE client transaction terminated once its 2xx arrived lets go of
// the request and the 2xx within Timer M (T1 here, client.go), not 64×T1
// later: the sent INVITE becomes garbage within seconds.
func TestInviteTransactionLetGoAfter2xx(t *testing.T) {
	if sip.Timer_M != sip.T1 {
		t.Fatalf("Timer M = %v, want T1 (%v)", sip.Timer_M, sip.T1)
	}
	s := startTestServer(t, Options{})
	udp, _ := s.Local("udp", External)
	peer := answeringPeer(t, func(req *sip.Request) []*sip.Response {
		if !req.IsInvite() {
			return nil
		}
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		res.To().Params.Add("tag", "uas")
		return []*sip.Response{res}
	})
	freed := make(chan struct{})
	func() {
		req := clientRequest(sip.INVITE, "letgo", udp.Bound, peer)
		runtime.AddCleanup(req, func(ch chan struct{}) { close(ch) }, freed)
		tx, err := Send(context.Background(), s.Client(), req)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Terminate() // as the B2BUA does on the 2xx
		select {
		case res := <-tx.Responses():
			if res.StatusCode != 200 {
				t.Fatalf("final %d, want 200", res.StatusCode)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no 200")
		}
	}()
	deadline := time.After(10 * time.Second)
	for {
		runtime.GC()
		select {
		case <-freed:
			return
		case <-deadline:
			t.Fatal("the INVITE was still held 10 s after its transaction ended (Timer M at 64×T1 keeps it 32 s)")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// clientRequest is a request of the given method from the server's UDP
// listener at from to peer, its tag and Call-ID tag.
func clientRequest(method sip.RequestMethod, tag string, from netip.AddrPort, peer *net.UDPConn) *sip.Request {
	req := sip.NewRequest(method, sip.Uri{Scheme: "sip", User: "b", Host: "127.0.0.1", Port: peer.LocalAddr().(*net.UDPAddr).Port})
	req.SetTransport("UDP")
	req.SetDestination(peer.LocalAddr().String())
	req.Laddr = sip.Addr{IP: net.IP(from.Addr().AsSlice()), Port: int(from.Port())}
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP",
		Host: from.Addr().String(), Port: int(from.Port()), Params: sip.NewParams()}
	via.Params.Add("branch", sip.GenerateBranchN(16))
	req.AppendHeader(via)
	for _, h := range []string{"From: <sip:a@127.0.0.1>;tag=" + tag, "To: <sip:b@127.0.0.1>", "Call-ID: " + tag, "CSeq: 1 " + string(method), "Max-Forwards: 70"} {
		name, value, _ := strings.Cut(h, ": ")
		req.AppendHeader(sip.NewHeader(name, value))
	}
	req.AppendHeader(sip.NewHeader("Content-Length", "0"))
	return req
}

// answeringPeer is a UDP socket on 127.0.0.1 that sends, for every request
// it reads, the responses answer makes of it, in order.
func answeringPeer(t *testing.T, answer func(*sip.Request) []*sip.Response) *net.UDPConn {
	t.Helper()
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := peer.ReadFrom(buf)
			if err != nil {
				return
			}
			msg, err := sip.ParseMessage(buf[:n])
			if err != nil {
				continue
			}
			if req, ok := msg.(*sip.Request); ok {
				for _, res := range answer(req) {
					_, _ = peer.WriteTo(Marshal(res), from)
				}
			}
		}
	}()
	return peer
}
