package sanity

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/sanity/wire"
)

// torturePath is the project's copy of the RFC 4475 messages.
const torturePath = "../../testdata/rfc4475"

// result is what the receive path did with some bytes.
type result struct {
	stage   string // who decided: "pre:<reason>", "parse", "validate[:<rule>]", "response"
	verdict string // "accept", "drop", "reply NNN", "keepalive", "incomplete"
	msgs    int    // messages the parser produced
	req     *sip.Request
	problem Problem
}

// receive runs bytes through the path the server gives them.
//   - Datagram (udp): PreParse, sipgo's parser on Result.Data, then
//     Validate or ValidateResponse.
//   - Stream (tcp): sipgo's stream parser on the bytes (the read filter
//     sees arbitrary segments there, so PreParse does not apply), then
//     Validate on the first message.
func receive(t testing.TB, transport string, data []byte) result {
	t.Helper()
	if wire.IsStream(transport) {
		return receiveStream(transport, data)
	}
	pre := wire.PreParse(transport, data, 0)
	switch pre.Action {
	case wire.Keepalive:
		return result{stage: "pre", verdict: "keepalive"}
	case wire.Drop:
		return result{stage: "pre:" + pre.Reason.String(), verdict: "drop"}
	}
	msg, err := sip.NewParser().ParseSIP(pre.Data)
	if err != nil {
		return result{stage: "parse", verdict: "drop"}
	}
	return judge(transport, msg, 1)
}

func receiveStream(transport string, data []byte) result {
	ps := sip.NewParser().NewSIPStream()
	defer ps.Close()
	var msgs []sip.Message
	err := ps.ParseSIPStream(data, func(m sip.Message) { msgs = append(msgs, m) })
	if len(msgs) == 0 {
		if errors.Is(err, sip.ErrParseSipPartial) {
			return result{stage: "parse", verdict: "incomplete"}
		}
		return result{stage: "parse", verdict: "drop"}
	}
	return judge(transport, msgs[0], len(msgs))
}

func judge(transport string, msg sip.Message, n int) result {
	switch m := msg.(type) {
	case *sip.Response:
		if ValidateResponse(m) {
			return result{stage: "response", verdict: "accept", msgs: n}
		}
		return result{stage: "response", verdict: "drop", msgs: n}
	case *sip.Request:
		m.SetTransport(strings.ToUpper(transport))
		p := Validate(m, transport)
		r := result{stage: "validate", msgs: n, req: m, problem: p}
		switch {
		case p.OK():
			r.verdict = "accept"
		case p.Silent:
			r.stage, r.verdict = "validate:"+p.Rule.String(), "drop"
		default:
			r.stage, r.verdict = "validate:"+p.Rule.String(), fmt.Sprintf("reply %d", p.Status)
		}
		return r
	}
	return result{stage: "parse", verdict: "drop", msgs: n}
}

func readTorture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(torturePath, name+".dat"))
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return data
}

// recorder is an sbc.ResponseWriter that keeps what was sent.
type recorder struct {
	sent []*sip.Response
	err  error
}

func (r *recorder) Respond(res *sip.Response) error {
	r.sent = append(r.sent, res)
	return r.err
}
func (r *recorder) Tx() sip.ServerTransaction { return nil }
func (r *recorder) Written() int {
	for _, res := range r.sent {
		if res.StatusCode >= 200 {
			return res.StatusCode
		}
	}
	return 0
}

var _ sbc.ResponseWriter = (*recorder)(nil)

// A typical INVITE, the base the rule tests edit.
var (
	inviteLine = "INVITE sip:bob@example.com SIP/2.0"
	baseHdrs   = []string{
		"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport",
		"Max-Forwards: 70",
		"To: Bob <sip:bob@example.com>",
		"From: \"Alice\" <sip:alice@example.org>;tag=1928301774",
		"Call-ID: a84b4c76e66710@pc33.example.org",
		"CSeq: 314159 INVITE",
		"Contact: <sip:alice@192.0.2.10:5060>",
		"Content-Type: application/sdp",
	}
	sdpBody = "v=0\r\no=- 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\n" +
		"c=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n"
)

// build joins a start line, header lines and a body with CRLF. A
// Content-Length is added unless a header named Content-Length or l is
// among hdrs (then the test sets it itself).
func build(start string, hdrs []string, body string) []byte {
	var b strings.Builder
	b.WriteString(start + "\r\n")
	hasCL := false
	for _, h := range hdrs {
		if n := headerName(h); strings.EqualFold(n, "content-length") || strings.EqualFold(n, "l") {
			hasCL = true
		}
		b.WriteString(h + "\r\n")
	}
	if !hasCL {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	return []byte(b.String())
}

func headerName(line string) string {
	n, _, _ := strings.Cut(line, ":")
	return strings.TrimSpace(n)
}

// edit returns hdrs with every header named name (any case) replaced by
// repl, in place of the first one; no repl removes it.
func edit(hdrs []string, name string, repl ...string) []string {
	var out []string
	done := false
	for _, h := range hdrs {
		if strings.EqualFold(headerName(h), name) {
			if !done {
				out = append(out, repl...)
				done = true
			}
			continue
		}
		out = append(out, h)
	}
	if !done {
		out = append(out, repl...)
	}
	return out
}

func plus(hdrs []string, more ...string) []string {
	return append(append([]string(nil), hdrs...), more...)
}
