package siptest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// maxSkipped bounds how many ignorable messages (retransmissions, 100
// Trying) one Expect call reads past before it gives up.
const maxSkipped = 1000

// Peer is a raw-UDP SIP endpoint driven by one test goroutine. It never
// answers or retransmits on its own.
type Peer struct {
	// User is the user part of the URIs the peer puts in From and Contact.
	User string
	// Quiet turns off the log line per message sent and received.
	Quiet bool

	t      testing.TB
	conn   *net.UDPConn
	addr   netip.AddrPort
	parser *sip.Parser
	buf    []byte

	mu   sync.Mutex
	tags map[string]string // dialog (Call-ID, From tag) -> our To tag
	seen map[string]bool   // keys of messages received, to spot retransmissions
	// unanswered is the last request sent (not an ACK) while no response
	// has come since: ExpectResponse retransmits it as a UDP client does
	// (RFC 3261 17.1.1.2), up to maxResends times. An unauthenticated
	// source's first small request may be left unanswered by the SBC (it
	// never sends more bytes than a source sent); its retransmission is.
	unanswered   []byte
	unansweredTo netip.AddrPort
	resends      int
}

// resendAfter and maxResends shape the retransmissions of ExpectResponse.
const (
	resendAfter = 500 * time.Millisecond
	maxResends  = 4
)

// NewPeer binds a UDP socket on addr (e.g. "127.0.0.5:0") and closes it
// when the test ends.
func NewPeer(t testing.TB, addr string) *Peer {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatalf("siptest: resolve %q: %v", addr, err)
	}
	if ip, ok := netip.AddrFromSlice(ua.IP); ok && !ip.Unmap().IsLoopback() {
		// Test traffic must stay on the machine.
		t.Fatalf("siptest: %s is not a loopback address", addr)
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		t.Fatalf("siptest: listen %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	bound := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	return &Peer{
		User:   "peer",
		t:      t,
		conn:   conn,
		addr:   netip.AddrPortFrom(bound.Addr().Unmap(), bound.Port()),
		parser: sip.NewParser(),
		buf:    make([]byte, 65535),
		tags:   map[string]string{},
		seen:   map[string]bool{},
	}
}

// Addr is the bound address.
func (p *Peer) Addr() netip.AddrPort { return p.addr }

// URI is the peer's own SIP URI, "sip:<User>@<ip>:<port>".
func (p *Peer) URI() string { return "sip:" + p.User + "@" + p.addr.String() }

// Contact is the Contact header line the peer uses.
func (p *Peer) Contact() string { return "Contact: <" + p.URI() + ">" }

// Via returns a Via header line for a new request with the given branch.
func (p *Peer) Via(branch string) string {
	return "Via: SIP/2.0/UDP " + p.addr.String() + ";branch=" + branch + ";rport"
}

func (p *Peer) String() string { return "peer " + p.addr.String() }

func (p *Peer) logf(format string, args ...any) {
	if !p.Quiet {
		p.t.Helper()
		p.t.Logf(format, args...)
	}
}

// Send sends Msg(lines...) to to.
func (p *Peer) Send(to netip.AddrPort, lines ...string) {
	p.t.Helper()
	p.SendRaw(to, Msg(lines...))
}

// SendMsg sends Build(startLine, headers, body) to to: Content-Length is
// computed from body.
func (p *Peer) SendMsg(to netip.AddrPort, startLine string, headers []string, body string) {
	p.t.Helper()
	p.SendRaw(to, Build(startLine, headers, body))
}

// SendRaw sends data as one datagram, byte for byte.
func (p *Peer) SendRaw(to netip.AddrPort, data []byte) {
	p.t.Helper()
	if !to.Addr().Unmap().IsLoopback() {
		p.t.Fatalf("siptest: refusing to send to non-loopback %s", to)
	}
	if _, err := p.conn.WriteToUDPAddrPort(data, to); err != nil {
		p.t.Fatalf("siptest: %s: send to %s: %v", p, to, err)
	}
	p.logf("%s -> %s: %s", p, to, firstLine(data))
	if line := firstLine(data); !strings.HasPrefix(line, "SIP/") && !strings.HasPrefix(line, "ACK ") {
		p.mu.Lock()
		p.unanswered, p.unansweredTo, p.resends = data, to, 0
		p.mu.Unlock()
	}
}

func firstLine(data []byte) string {
	s := string(data)
	if i := strings.Index(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

// Recv returns the next message received within timeout, whatever it is.
// The message's Source is the datagram's sender and its transport UDP.
// A timeout error satisfies errors.Is(err, os.ErrDeadlineExceeded).
func (p *Peer) Recv(timeout time.Duration) (sip.Message, error) {
	p.t.Helper()
	msg, _, err := p.recv(timeout)
	return msg, err
}

// recv also reports whether the message repeats one received before.
func (p *Peer) recv(timeout time.Duration) (sip.Message, bool, error) {
	p.t.Helper()
	if timeout <= 0 {
		timeout = time.Millisecond
	}
	if err := p.conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, false, err
	}
	n, from, err := p.conn.ReadFromUDPAddrPort(p.buf)
	if err != nil {
		return nil, false, err
	}
	data := append([]byte(nil), p.buf[:n]...)
	msg, err := p.parser.ParseSIP(data)
	if err != nil {
		return nil, false, fmt.Errorf("siptest: %s: unparsable message from %s: %w\n%s", p, from, err, data)
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	msg.SetSource(from.String())
	msg.SetTransport("UDP")
	key := msgKey(msg)
	p.mu.Lock()
	dup := p.seen[key]
	p.seen[key] = true
	if _, ok := msg.(*sip.Response); ok {
		p.unanswered = nil
	}
	p.mu.Unlock()
	if dup {
		p.logf("%s <- %s: %s (retransmission)", p, from, Describe(msg))
	} else {
		p.logf("%s <- %s: %s", p, from, Describe(msg))
	}
	return msg, dup, nil
}

// msgKey identifies a message for retransmission detection: the same
// transaction (top Via branch, CSeq) and, for responses, the same status
// and To tag.
func msgKey(msg sip.Message) string {
	var b strings.Builder
	switch m := msg.(type) {
	case *sip.Request:
		b.WriteString(string(m.Method))
	case *sip.Response:
		b.WriteString(strconv.Itoa(m.StatusCode))
		if to := m.To(); to != nil {
			tag, _ := to.Params.Get("tag")
			b.WriteString("|" + tag)
		}
	}
	if v := msg.Via(); v != nil {
		br, _ := v.Params.Get("branch")
		b.WriteString("|" + br)
	}
	if c := msg.CSeq(); c != nil {
		b.WriteString("|" + c.Value())
	}
	if c := msg.CallID(); c != nil {
		b.WriteString("|" + c.Value())
	}
	return b.String()
}

// Describe is a one-line summary of a message for logs and failures.
func Describe(msg sip.Message) string {
	if msg == nil {
		return "<nil>"
	}
	var s string
	switch m := msg.(type) {
	case *sip.Request:
		s = m.StartLine()
	case *sip.Response:
		s = m.StartLine()
	}
	if c := msg.CSeq(); c != nil {
		s += " [CSeq " + c.Value() + "]"
	}
	return s
}

// ignorable tells Expect calls what to read past: retransmissions of
// messages already received (except ACKs, each of which answers a distinct
// 2xx or final response) and 100 Trying, which is hop-by-hop noise.
func ignorable(msg sip.Message, dup bool, want100 bool) bool {
	if r, ok := msg.(*sip.Response); ok && r.StatusCode == 100 && !want100 {
		return true
	}
	if r, ok := msg.(*sip.Request); ok && r.IsAck() {
		return false
	}
	return dup
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// expect reads until a message that is not ignorable arrives and returns it.
func (p *Peer) expect(what string, timeout time.Duration, want100 bool) sip.Message {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	resend := strings.HasSuffix(what, " response")
	for range maxSkipped {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		wait := left
		if resend {
			wait = min(left, resendAfter)
		}
		msg, dup, err := p.recv(wait)
		if isTimeout(err) && wait < left && p.resend() {
			continue
		}
		if isTimeout(err) {
			if time.Until(deadline) > 0 {
				continue
			}
			break
		}
		if err != nil {
			p.t.Fatalf("%s: waiting for %s: %v", p, what, err)
		}
		if ignorable(msg, dup, want100) {
			continue
		}
		return msg
	}
	p.t.Fatalf("%s: no %s within %v", p, what, timeout)
	return nil
}

// Resend retransmits the last request sent if no response has come since
// (at most 4 times), as a UDP client does after T1: for tests that read
// with Recv themselves.
func (p *Peer) Resend() { p.resend() }

// resend retransmits the request still unanswered, if any and if it may.
func (p *Peer) resend() bool {
	p.mu.Lock()
	data, to := p.unanswered, p.unansweredTo
	ok := data != nil && p.resends < maxResends
	if ok {
		p.resends++
	}
	p.mu.Unlock()
	if !ok {
		return true // keep waiting until the deadline
	}
	if _, err := p.conn.WriteToUDPAddrPort(data, to); err == nil {
		p.logf("%s -> %s: %s (retransmission)", p, to, firstLine(data))
	}
	return true
}

// ExpectRequest fails the test unless the next message (skipping
// retransmissions and 100 Trying) is a request with the given method.
func (p *Peer) ExpectRequest(method string, timeout time.Duration) *sip.Request {
	p.t.Helper()
	msg := p.expect(method, timeout, false)
	req, ok := msg.(*sip.Request)
	if !ok || !strings.EqualFold(string(req.Method), method) {
		p.t.Fatalf("%s: expected %s, got %s\n%s", p, method, Describe(msg), msg)
	}
	return req
}

// ExpectResponse fails the test unless the next message (skipping
// retransmissions, and 100 Trying unless code is 100) is a response with
// the given status code.
func (p *Peer) ExpectResponse(code int, timeout time.Duration) *sip.Response {
	p.t.Helper()
	what := strconv.Itoa(code) + " response"
	msg := p.expect(what, timeout, code == 100)
	res, ok := msg.(*sip.Response)
	if !ok || res.StatusCode != code {
		p.t.Fatalf("%s: expected %s, got %s\n%s", p, what, Describe(msg), msg)
	}
	return res
}

// NoMessage fails the test if a message other than a retransmission of one
// already received or a 100 Trying arrives within the given time.
func (p *Peer) NoMessage(within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for range maxSkipped {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		msg, dup, err := p.recv(left)
		if isTimeout(err) {
			return
		}
		if err != nil {
			p.t.Fatalf("%s: %v", p, err)
		}
		if !ignorable(msg, dup, false) {
			p.t.Fatalf("%s: expected silence, got %s\n%s", p, Describe(msg), msg)
		}
	}
}

// Drain reads and discards whatever arrives within the given time and
// returns how many messages that was.
func (p *Peer) Drain(within time.Duration) int {
	p.t.Helper()
	deadline := time.Now().Add(within)
	n := 0
	for range maxSkipped {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		if _, _, err := p.recv(left); err != nil {
			break
		}
		n++
	}
	return n
}

// ToTag is the To tag the peer uses in responses to req's dialog: one per
// (Call-ID, From tag), so all responses of a dialog carry the same one.
// A tag already in req's To is returned as it is.
func (p *Peer) ToTag(req *sip.Request) string {
	if to := req.To(); to != nil {
		if tag, ok := to.Params.Get("tag"); ok && tag != "" {
			return tag
		}
	}
	fromTag := ""
	if f := req.From(); f != nil {
		fromTag, _ = f.Params.Get("tag")
	}
	callID := ""
	if c := req.CallID(); c != nil {
		callID = c.Value()
	}
	k := callID + "\x00" + fromTag
	p.mu.Lock()
	defer p.mu.Unlock()
	tag, ok := p.tags[k]
	if !ok {
		tag = "peer-" + randHex(6)
		p.tags[k] = tag
	}
	return tag
}

// Reply answers req with no body. Extra header lines are added; one named
// like a default (Contact, To, ...) replaces it.
func (p *Peer) Reply(req *sip.Request, code int, reason string, extra ...string) *sip.Response {
	p.t.Helper()
	return p.ReplyBody(req, code, reason, "", extra...)
}

// ReplyBody answers req, sent to the request's source address. Via, From,
// To, Call-ID and CSeq are copied from req; the To gets the peer's tag for
// the dialog (except in 100 Trying). 1xx and 2xx to INVITE carry the peer's
// Contact. A body without a Content-Type gets application/sdp. It returns
// the response as sent.
func (p *Peer) ReplyBody(req *sip.Request, code int, reason, body string, extra ...string) *sip.Response {
	p.t.Helper()
	var hs []string
	for _, v := range req.GetHeaders("Via") {
		hs = append(hs, "Via: "+v.Value())
	}
	if f := req.From(); f != nil {
		hs = append(hs, "From: "+f.Value())
	}
	if to := req.To(); to != nil {
		line := "To: " + to.Value()
		if code != 100 && !to.Params.Has("tag") {
			line += ";tag=" + p.ToTag(req)
		}
		hs = append(hs, line)
	}
	if c := req.CallID(); c != nil {
		hs = append(hs, "Call-ID: "+c.Value())
	}
	if c := req.CSeq(); c != nil {
		hs = append(hs, "CSeq: "+c.Value())
	}
	if req.IsInvite() && code > 100 && code < 300 {
		hs = append(hs, p.Contact())
	}
	if body != "" {
		hs = append(hs, "Content-Type: application/sdp")
	}
	hs = merge(hs, extra)
	data := Build("SIP/2.0 "+strconv.Itoa(code)+" "+reason, hs, body)
	dst, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		p.t.Fatalf("%s: reply to %s: request has no usable source %q", p, Describe(req), req.Source())
	}
	p.SendRaw(dst, data)
	res, err := p.parser.ParseSIP(data)
	if err != nil {
		p.t.Fatalf("%s: built an unparsable response: %v\n%s", p, err, data)
	}
	return res.(*sip.Response)
}
