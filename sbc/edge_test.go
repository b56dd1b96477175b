package sbc

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// edgeServer starts a server whose chain is the given layers (by name in
// Order) over UDP and TCP on 127.0.0.1.
func edgeServer(t *testing.T, layers map[string]Handler, mut func(*Options)) *Server {
	t.Helper()
	opts := Options{Listeners: []ListenerSpec{{Transport: "udp", Addr: "127.0.0.1:0"}, {Transport: "tcp", Addr: "127.0.0.1:0"}}}
	if mut != nil {
		mut(&opts)
	}
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := BuildChain(layers)
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

// udpPeer is a raw UDP socket on a loopback address of its own.
type udpPeer struct {
	t *testing.T
	c *net.UDPConn
	s *net.UDPAddr
	// in counts bytes sent, out bytes received.
	in, out int
}

func newUDPPeer(t *testing.T, ip string, s *Server) *udpPeer {
	t.Helper()
	l, _ := s.Local("udp", External)
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatalf("bind %s: %v", ip, err)
	}
	t.Cleanup(func() { c.Close() })
	return &udpPeer{t: t, c: c, s: net.UDPAddrFromAddrPort(l.Bound)}
}

func (p *udpPeer) port() int { return p.c.LocalAddr().(*net.UDPAddr).Port }

func (p *udpPeer) send(msg string) {
	p.t.Helper()
	if _, err := p.c.WriteToUDP([]byte(msg), p.s); err != nil {
		p.t.Fatal(err)
	}
	p.in += len(msg)
}

// recv returns the messages that arrive within d.
func (p *udpPeer) recv(d time.Duration) []string {
	var got []string
	buf := make([]byte, 65536)
	deadline := time.Now().Add(d)
	for range 1000 {
		_ = p.c.SetReadDeadline(deadline)
		n, _, err := p.c.ReadFromUDP(buf)
		if err != nil {
			break
		}
		p.out += n
		got = append(got, string(buf[:n]))
	}
	return got
}

// request builds a request from a peer with the given branch, Call-ID and
// CSeq number.
func request(method, viaHost string, viaPort int, branch, callID string, cseq int, extra ...string) string {
	lines := []string{
		method + " sip:1000@127.0.0.1 SIP/2.0",
		"Via: SIP/2.0/UDP " + viaHost + ":" + itoa(viaPort) + ";rport;branch=" + branch,
		"Max-Forwards: 70",
		"From: <sip:alice@example.com>;tag=ft-" + callID,
		"To: <sip:1000@127.0.0.1>",
		"Call-ID: " + callID,
		"CSeq: " + itoa(cseq) + " " + method,
		"Contact: <sip:alice@" + viaHost + ":" + itoa(viaPort) + ";transport=udp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000000000001>\"",
		"User-Agent: edge-test/1.0 (what an ordinary phone sends)",
		"Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, NOTIFY, REFER, MESSAGE, INFO, UPDATE",
		"Supported: replaces, 100rel, timer, path",
	}
	lines = append(lines, extra...)
	return strings.Join(lines, "\r\n") + "\r\nContent-Length: 0\r\n\r\n"
}

// challenger answers every request like the digest layer does when there
// are no credentials: 407 with two challenges.
var challenger = HandlerFunc{N: "auth", F: func(_ context.Context, w ResponseWriter, r *Request) (Verdict, error) {
	if r.IsAck() {
		return Dropped, nil
	}
	h1 := sip.NewHeader("Proxy-Authenticate", `Digest realm="sipwall", nonce="`+strings.Repeat("n", 66)+`", algorithm=SHA-256, qop="auth"`)
	h2 := sip.NewHeader("Proxy-Authenticate", `Digest realm="sipwall", nonce="`+strings.Repeat("n", 66)+`", algorithm=MD5, qop="auth"`)
	return Rejected, Respond(w, r, 407, "Proxy Authentication Required", h1, h2)
}}

// An unauthenticated INVITE over UDP that is never ACKed is challenged
// once: no retransmission, no transaction left, and never more bytes out
// than in — also for the other methods a flood would use.
func TestEdgeStatelessChallenge(t *testing.T) {
	s := edgeServer(t, map[string]Handler{"auth": challenger}, nil)
	p := newUDPPeer(t, "127.0.0.2", s)
	// One at a time, as the source's byte budget is shared by its
	// requests: each answer must fit what came before it.
	var got []string
	for i, m := range []string{"INVITE", "REGISTER", "OPTIONS", "SUBSCRIBE", "MESSAGE"} {
		p.send(request(m, "127.0.0.2", p.port(), "z9hG4bK-c"+itoa(i), "call-c"+itoa(i), 1))
		got = append(got, p.recv(300*time.Millisecond)...)
	}
	// Timer G would bring copies of a 407 at 0.5, 1.5 and 3.5 s.
	got = append(got, p.recv(3500*time.Millisecond)...)
	if len(got) != 5 {
		t.Fatalf("%d responses to 5 requests, want 5 (one each): %q", len(got), got)
	}
	for _, m := range got {
		if !strings.HasPrefix(m, "SIP/2.0 407") {
			t.Errorf("answer %q", firstLine(m))
		}
	}
	if p.out > p.in {
		t.Fatalf("amplification: %d bytes out for %d in", p.out, p.in)
	}
	st := s.EdgeStats()
	if st.Transactions != 0 || st.Retransmits != 0 || st.Stateless != 5 {
		t.Fatalf("edge stats %+v", st)
	}
	t.Logf("bytes out per byte in: %.2f (%d/%d)", float64(p.out)/float64(p.in), p.out, p.in)
}

// A request too small for its answer gets none; its retransmission adds
// to what the source has sent, and gets the answer: a source is never sent
// more bytes than it sent.
func TestEdgeNoAnswerLargerThanSent(t *testing.T) {
	s := edgeServer(t, map[string]Handler{"auth": challenger}, nil)
	p := newUDPPeer(t, "127.0.0.2", s)
	bare := "OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:" + itoa(p.port()) + ";branch=z9hG4bK-t\r\nMax-Forwards: 70\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:x>\r\nCall-ID: t\r\nCSeq: 1 OPTIONS\r\n\r\n"
	p.send(bare)
	if got := p.recv(time.Second); len(got) != 0 {
		t.Fatalf("a %d-byte request got %d bytes back: %q", p.in, p.out, got)
	}
	if s.EdgeStats().Amplification != 1 {
		t.Fatalf("stats %+v", s.EdgeStats())
	}
	var got []string
	sends := 1
	for ; sends < 6 && len(got) == 0; sends++ {
		p.send(bare) // as a client retransmits
		got = p.recv(700 * time.Millisecond)
	}
	if len(got) != 1 || !strings.HasPrefix(got[0], "SIP/2.0 407") {
		t.Fatalf("after %d retransmissions: %q", sends, got)
	}
	t.Logf("answered after %d sends of %d bytes", sends, len(bare))
	if p.out > p.in {
		t.Fatalf("%d bytes out for %d in", p.out, p.in)
	}
	// A flood of them from one (possibly forged) source: never more out
	// than in.
	for i := range 50 {
		p.send(strings.Replace(bare, "branch=z9hG4bK-t", "branch=z9hG4bK-f"+itoa(i), 1))
	}
	p.recv(time.Second)
	if p.out > p.in {
		t.Fatalf("flood: %d bytes out for %d in", p.out, p.in)
	}
	t.Logf("flood of bare requests: %d bytes out for %d in", p.out, p.in)
}

// ringing is a b2bua stand-in that keeps INVITEs pending until cancelled
// (or 3 s), answers matched CANCELs through the edge, and records what it
// saw.
type ringing struct {
	mu        sync.Mutex
	invites   int
	cancelled atomic.Int32
}

func (rg *ringing) handler() HandlerFunc {
	return HandlerFunc{N: "b2bua", F: func(_ context.Context, w ResponseWriter, r *Request) (Verdict, error) {
		switch r.Method {
		case sip.INVITE:
			rg.mu.Lock()
			rg.invites++
			rg.mu.Unlock()
			done := make(chan struct{})
			w.Tx().OnCancel(func(*sip.Request) { rg.cancelled.Add(1); close(done) })
			_ = Respond(w, r, 180, "Ringing")
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				_ = Respond(w, r, 486, "Busy Here")
			}
			return Forwarded, nil
		case sip.CANCEL:
			if MatchCancel(w) {
				return Answered, nil
			}
			return Rejected, Respond(w, r, 481, "Call/Transaction Does Not Exist")
		}
		return Dropped, nil
	}}
}

// vouch marks every request authenticated, as the digest layer would.
var vouch = HandlerFunc{N: "auth", F: func(_ context.Context, _ ResponseWriter, r *Request) (Verdict, error) {
	r.Identity = &Identity{User: "alice"}
	return Continue, nil
}}

// A CANCEL is applied only from the flow of its INVITE and with the
// INVITE's Call-ID, tags and CSeq: a copy of the caller's Via from
// another address, or a wrong CSeq, gets 481 and the call rings on.
func TestEdgeCancelOnlyFromItsFlow(t *testing.T) {
	rg := &ringing{}
	s := edgeServer(t, map[string]Handler{"auth": vouch, "b2bua": rg.handler()}, nil)
	caller := newUDPPeer(t, "127.0.0.2", s)
	thief := newUDPPeer(t, "127.0.0.3", s)
	inv := request("INVITE", "127.0.0.2", caller.port(), "z9hG4bK-inv1", "call-1", 7)
	caller.send(inv)
	if got := caller.recv(500 * time.Millisecond); len(got) == 0 || !strings.HasPrefix(got[len(got)-1], "SIP/2.0 180") {
		t.Fatalf("caller got %q", got)
	}
	cancel := func(cseq int) string {
		return request("CANCEL", "127.0.0.2", caller.port(), "z9hG4bK-inv1", "call-1", cseq)
	}
	// The thief copies the caller's Via, branch, Call-ID and tags.
	thief.send(cancel(7))
	if got := thief.recv(500 * time.Millisecond); len(got) != 1 || !strings.HasPrefix(got[0], "SIP/2.0 481") {
		t.Fatalf("thief's CANCEL: %q", got)
	}
	if rg.cancelled.Load() != 0 {
		t.Fatal("the call was cancelled by a CANCEL that does not match")
	}
	// The real one: 200 for the CANCEL, 487 for the INVITE.
	caller.send(cancel(7))
	got := caller.recv(700 * time.Millisecond)
	var codes []string
	for _, m := range got {
		codes = append(codes, firstLine(m))
	}
	if len(got) < 2 || !strings.HasPrefix(got[0], "SIP/2.0 200") || !strings.HasPrefix(got[1], "SIP/2.0 487") || rg.cancelled.Load() != 1 {
		t.Fatalf("caller's CANCEL: %q, cancelled %d", codes, rg.cancelled.Load())
	}
	// The caller's own CANCEL naming another CSeq of a second call does
	// not match it either.
	caller.send(request("INVITE", "127.0.0.2", caller.port(), "z9hG4bK-inv2", "call-5", 3))
	_ = caller.recv(400 * time.Millisecond)
	caller.send(request("CANCEL", "127.0.0.2", caller.port(), "z9hG4bK-inv2", "call-5", 4))
	var call5 []string // call-1's 487 is still retransmitted: it was never ACKed
	for _, m := range caller.recv(500 * time.Millisecond) {
		if strings.Contains(m, "Call-ID: call-5\r\n") {
			call5 = append(call5, firstLine(m))
		}
	}
	if len(call5) != 1 || call5[0] != "SIP/2.0 481 Call/Transaction Does Not Exist" {
		t.Fatalf("CANCEL with another CSeq: %q", call5)
	}
	if rg.cancelled.Load() != 1 {
		t.Fatal("a CANCEL with another CSeq cancelled the call")
	}
}

// A request from another source that reuses a branch in progress is a
// request of its own, not a retransmission: it reaches the chain, and the
// first source's answer is never sent to it (nor again to the first).
func TestEdgeBranchReuseFromAnotherSource(t *testing.T) {
	rg := &ringing{}
	s := edgeServer(t, map[string]Handler{"auth": vouch, "b2bua": rg.handler()}, nil)
	a := newUDPPeer(t, "127.0.0.2", s)
	b := newUDPPeer(t, "127.0.0.3", s)
	inv := request("INVITE", "127.0.0.2", a.port(), "z9hG4bK-shared", "call-2", 1)
	a.send(inv)
	if got := a.recv(400 * time.Millisecond); len(got) != 1 {
		t.Fatalf("a got %q", got)
	}
	// The same bytes, from b: a new transaction, its own 180.
	b.send(inv)
	if got := b.recv(400 * time.Millisecond); len(got) != 1 || !strings.HasPrefix(got[0], "SIP/2.0 180") {
		t.Fatalf("b got %q", got)
	}
	if got := a.recv(300 * time.Millisecond); len(got) != 0 {
		t.Fatalf("a was sent %q because of b's request", got)
	}
	// a's own retransmission is absorbed and answered with the last 180.
	a.send(inv)
	if got := a.recv(400 * time.Millisecond); len(got) != 1 || !strings.HasPrefix(got[0], "SIP/2.0 180") {
		t.Fatalf("a's retransmission: %q", got)
	}
	rg.mu.Lock()
	n := rg.invites
	rg.mu.Unlock()
	if n != 2 {
		t.Fatalf("chain saw %d INVITEs, want 2 (a and b)", n)
	}
}

// The final non-2xx of an authenticated INVITE is retransmitted over UDP
// until its ACK, which only its own flow can send.
func TestEdgeNon2xxRetransmittedUntilACK(t *testing.T) {
	busy := HandlerFunc{N: "b2bua", F: func(_ context.Context, w ResponseWriter, r *Request) (Verdict, error) {
		if r.IsAck() {
			return Dropped, nil
		}
		return Rejected, Respond(w, r, 486, "Busy Here")
	}}
	s := edgeServer(t, map[string]Handler{"auth": vouch, "b2bua": busy}, nil)
	a := newUDPPeer(t, "127.0.0.2", s)
	b := newUDPPeer(t, "127.0.0.3", s)
	a.send(request("INVITE", "127.0.0.2", a.port(), "z9hG4bK-busy", "call-3", 1))
	got := a.recv(1200 * time.Millisecond) // at 0, 0.5 s (T1)
	if len(got) < 2 || !strings.HasPrefix(got[0], "SIP/2.0 486") {
		t.Fatalf("got %d: %q", len(got), got)
	}
	toTag := strings.SplitN(strings.SplitN(got[0], "To: ", 2)[1], "\r\n", 2)[0]
	ack := strings.Replace(request("ACK", "127.0.0.2", a.port(), "z9hG4bK-busy", "call-3", 1), "To: <sip:1000@127.0.0.1>", "To: "+toTag, 1)
	// An ACK from elsewhere does not stop it...
	b.send(ack)
	if got := a.recv(1200 * time.Millisecond); len(got) == 0 {
		t.Fatal("another source's ACK stopped the retransmissions")
	}
	// ...the caller's does.
	a.send(ack)
	_ = a.recv(300 * time.Millisecond)
	if got := a.recv(2500 * time.Millisecond); len(got) != 0 {
		t.Fatalf("retransmitted after the ACK: %d", len(got))
	}
}

// Over TCP, the answer to a request already read is written before the
// connection is closed for a broken message that follows it.
func TestEdgeStreamAnswersBeforeClose(t *testing.T) {
	slow := HandlerFunc{N: "b2bua", F: func(_ context.Context, w ResponseWriter, r *Request) (Verdict, error) {
		time.Sleep(300 * time.Millisecond) // the broken message arrives meanwhile
		return Rejected, Respond(w, r, 486, "Busy Here")
	}}
	s := edgeServer(t, map[string]Handler{"auth": vouch, "b2bua": slow}, nil)
	c, err := net.DialTCP("tcp", &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, net.TCPAddrFromAddrPort(mustLocal(t, s, "tcp")))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := c.LocalAddr().(*net.TCPAddr).Port
	good := strings.ReplaceAll(request("INVITE", "127.0.0.2", port, "z9hG4bK-tcp1", "call-4", 1), "SIP/2.0/UDP", "SIP/2.0/TCP")
	broken := "INVITE sip:x SIP/2.0\r\nVia: nonsense\r\nContent-Length: 0\r\n\r\n"
	if _, err := io.WriteString(c, good+broken); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	rd := bufio.NewReader(c)
	var seen []string
	for range 100 {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("connection ended before the answer (saw %q): %v", seen, err)
		}
		if strings.HasPrefix(line, "SIP/2.0 ") {
			seen = append(seen, strings.TrimSpace(line))
		}
		if strings.HasPrefix(line, "SIP/2.0 486") {
			break
		}
	}
	// Then the connection closes: the broken message ended it.
	if _, err := io.Copy(io.Discard, rd); err != nil {
		t.Fatalf("after the answer: %v", err)
	}
}

func mustLocal(t *testing.T, s *Server, transport string) netip.AddrPort {
	l, ok := s.Local(transport, External)
	if !ok {
		t.Fatalf("no %s listener", transport)
	}
	return l.Bound
}

func firstLine(m string) string {
	line, _, _ := strings.Cut(m, "\r\n")
	return line
}

// An ACK for a final non-2xx that races the end of its transaction (the
// dispatch ending a stateless answer's transaction, Timer H) never revives
// it: ending it twice closed Done twice, a panic on a timer's goroutine
// that took the whole process down. Over a stream Timer I is 0, so a
// revived transaction ends again at once.
func TestEdgeAckRacingTheEnd(t *testing.T) {
	parse := func(m string) *sip.Request {
		msg, err := sip.ParseMessage([]byte(m))
		if err != nil {
			t.Fatal(err)
		}
		return msg.(*sip.Request)
	}
	inv := parse(request("INVITE", "127.0.0.2", 5070, "z9hG4bK-race", "race", 1))
	ack := parse(strings.Replace(request("ACK", "127.0.0.2", 5070, "z9hG4bK-race", "race", 1),
		"To: <sip:1000@127.0.0.1>", "To: <sip:1000@127.0.0.1>;tag=t-race", 1))
	e := newEdge(nil, 0)
	f := &flow{transport: "tcp", write: func([]byte) error { return nil }}
	for range 20000 {
		tx := newEdgeTx(e, txKey{}, inv, f)
		res := sip.NewResponseFromRequest(inv, 407, "Proxy Authentication Required", nil)
		res.To().Params.Add("tag", "t-race")
		if err := tx.respond(res, true); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(2)
		start := make(chan struct{})
		go func() { defer wg.Done(); <-start; tx.terminate(nil) }()
		go func() { defer wg.Done(); <-start; tx.ack(ack) }()
		close(start)
		wg.Wait()
		select {
		case <-tx.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("transaction not ended")
		}
	}
}

// A CANCEL that ends the INVITE before the layer asked for OnCancel is
// still told to it; one that loses against a 2xx runs no callback.
func TestEdgeCancelBeforeOnCancel(t *testing.T) {
	s, err := NewServer(Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := &flow{transport: "udp", peer: netip.MustParseAddrPort("127.0.0.2:5060"), write: func([]byte) error { return nil }}
	inv := parseReq(t, request("INVITE", "127.0.0.2", 5060, "z9hG4bK-cb", "call-cb", 1))
	cancel := parseReq(t, request("CANCEL", "127.0.0.2", 5060, "z9hG4bK-cb", "call-cb", 1))

	tx := newEdgeTx(s.edge, txKey{}, inv, f)
	_ = tx.Respond(sip.NewResponseFromRequest(inv, 180, "Ringing", nil))
	tx.cancel(cancel)
	got := false
	if !tx.OnCancel(func(*sip.Request) { got = true }) || !got {
		t.Fatal("OnCancel after the CANCEL did not run")
	}
	tx.Terminate()

	tx2 := newEdgeTx(s.edge, txKey{}, inv, f)
	ran := false
	tx2.OnCancel(func(*sip.Request) { ran = true })
	_ = tx2.Respond(sip.NewResponseFromRequest(inv, 200, "OK", nil))
	tx2.cancel(cancel)
	if ran {
		t.Fatal("a CANCEL after the 2xx ran the cancel callbacks")
	}
	tx2.Terminate()
}

func parseReq(t *testing.T, raw string) *sip.Request {
	t.Helper()
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Request)
}

// A retransmission of an INVITE whose 2xx was sent is absorbed (RFC 6026
// 7.1): not handed to the chain, not answered by the edge (the TU
// retransmits its 2xx), and the transaction keeps no copy of the 2xx for
// its 64×T1.
func TestEdgeAccepted2xxAbsorbed(t *testing.T) {
	var invites atomic.Int32
	ok := HandlerFunc{N: "b2bua", F: func(_ context.Context, w ResponseWriter, r *Request) (Verdict, error) {
		if r.IsAck() {
			return Dropped, nil
		}
		invites.Add(1)
		res := sip.NewResponseFromRequest(r.Request, 200, "OK", nil)
		res.To().Params.Add("tag", "uas-1")
		return Answered, w.Respond(res)
	}}
	s := edgeServer(t, map[string]Handler{"auth": vouch, "b2bua": ok}, nil)
	a := newUDPPeer(t, "127.0.0.2", s)
	inv := request("INVITE", "127.0.0.2", a.port(), "z9hG4bK-accepted", "call-acc", 1)
	a.send(inv)
	if got := a.recv(400 * time.Millisecond); len(got) != 1 || !strings.HasPrefix(got[0], "SIP/2.0 200") {
		t.Fatalf("got %q, want the 200", got)
	}
	a.send(inv)
	if got := a.recv(400 * time.Millisecond); len(got) != 0 {
		t.Fatalf("the edge answered a retransmission in Accepted: %q", got)
	}
	if n := invites.Load(); n != 1 {
		t.Fatalf("chain saw %d INVITEs, want 1", n)
	}
	e := s.edge
	e.mu.Lock()
	defer e.mu.Unlock()
	found := 0
	for _, tx := range e.txs {
		tx.mu.Lock()
		if tx.invite {
			found++
			if tx.state != txAccepted || tx.last != nil || tx.req != nil {
				t.Errorf("Accepted INVITE transaction: state %d, %d bytes of last response, request kept %v", tx.state, len(tx.last), tx.req != nil)
			}
		}
		tx.mu.Unlock()
	}
	if found != 1 {
		t.Fatalf("%d INVITE transactions held, want 1", found)
	}
}
