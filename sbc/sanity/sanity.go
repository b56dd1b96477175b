// Package sanity is the first layer of the chain: RFC 3261 validation that
// is stricter than sipgo's parser, so that nothing the parser tolerates
// reaches a later layer or, through the B2BUA, the PBX.
//
// Two stages:
//   - PreParse (package wire, re-exported here) on the raw bytes of a
//     datagram, before sipgo parses it: what parsing loses or mis-reads.
//   - Validate on the parsed request, as the chain layer Sanity: mandatory
//     and single-value headers, versions, schemes, extensions, methods,
//     limits.
//
// A request that is syntactically broken is dropped silently; one that is
// well-formed but unacceptable gets a reply (see Rule.Silent). See README.md.
package sanity

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/sanity/wire"
)

// Re-exports of the pre-parse stage; the server must import package wire
// itself (package sbc cannot import sanity, which imports sbc).
type (
	Result = wire.Result
	Action = wire.Action
	Reason = wire.Reason
)

// Actions of PreParse.
const (
	Accept    = wire.Accept
	Drop      = wire.Drop
	Keepalive = wire.Keepalive
)

// PreParse checks one whole message before parsing; see wire.PreParse.
func PreParse(transport string, data []byte, maxSize int) Result {
	return wire.PreParse(transport, data, maxSize)
}

// DefaultSupported are the option tags accepted in Require and
// Proxy-Require: those the B2BUA implements per leg (100rel: RFC 3262,
// timer: RFC 4028, replaces: RFC 3891, norefersub: RFC 4488).
var DefaultSupported = []string{"100rel", "timer", "replaces", "norefersub"}

// Defaults of Options.
const (
	DefaultMaxHeaders   = 100
	DefaultMaxHeaderLen = 8 << 10
	DefaultMaxURILen    = 4 << 10
	DefaultMaxBody      = 32 << 10
)

// Options configure the layer. Zero values take the defaults.
type Options struct {
	// Methods is the allow-list (405 + Allow otherwise); default
	// sbc.AllowedMethods. Compared case-sensitively, as RFC 3261 7.1 says.
	Methods []string
	// Supported option tags; default DefaultSupported. Compared ignoring
	// case.
	Supported []string
	// SessionTypes are the body types accepted in INVITE, UPDATE, PRACK and
	// ACK (415 otherwise), and looked for in an INVITE's Accept (406);
	// default application/sdp, the only body the B2BUA rewrites.
	SessionTypes []string
	// MaxHeaders (400), MaxHeaderLen (513), MaxURILen (414), MaxBody (413).
	MaxHeaders, MaxHeaderLen, MaxURILen, MaxBody int
	// QuietExternal drops every failing request from the external side
	// instead of replying (no 4xx/5xx at all toward the internet), for
	// when replies themselves are a burden.
	QuietExternal bool
	// RefuseTel answers a tel: Request-URI with 416 like any scheme other
	// than sip and sips (dialplan.tel_uri: refuse).
	RefuseTel bool
}

// Sanity is the chain layer. Safe for concurrent use.
type Sanity struct {
	opts    Options
	methods map[string]bool
	allow   string // Allow header value
	accept  string // Accept header value

	checked, passed, rejected, dropped atomic.Int64
	byRule                             [numRules]atomic.Int64
	responses, badResponses            atomic.Int64
}

var _ sbc.Handler = (*Sanity)(nil)

// defaultSanity backs the package-level Validate.
var defaultSanity = New(Options{})

// New builds the layer.
func New(opts Options) *Sanity {
	if len(opts.Methods) == 0 {
		opts.Methods = sbc.AllowedMethods
	}
	if len(opts.Supported) == 0 {
		opts.Supported = DefaultSupported
	}
	if len(opts.SessionTypes) == 0 {
		opts.SessionTypes = []string{"application/sdp"}
	}
	if opts.MaxHeaders <= 0 {
		opts.MaxHeaders = DefaultMaxHeaders
	}
	if opts.MaxHeaderLen <= 0 {
		opts.MaxHeaderLen = DefaultMaxHeaderLen
	}
	if opts.MaxURILen <= 0 {
		opts.MaxURILen = DefaultMaxURILen
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	// Copies, so later changes by the caller do not race with requests.
	opts.Methods = append([]string(nil), opts.Methods...)
	opts.Supported = append([]string(nil), opts.Supported...)
	opts.SessionTypes = append([]string(nil), opts.SessionTypes...)
	s := &Sanity{
		opts:    opts,
		methods: make(map[string]bool, len(opts.Methods)),
		allow:   strings.Join(opts.Methods, ", "),
		accept:  strings.Join(opts.SessionTypes, ", "),
	}
	for _, m := range opts.Methods {
		s.methods[m] = true
	}
	return s
}

// Name implements sbc.Handler.
func (s *Sanity) Name() string { return "sanity" }

// ServeSIP implements sbc.Handler: Continue for a valid request, Rejected
// after a reply, Dropped when silent (see Rule.Silent, ACK,
// Options.QuietExternal).
func (s *Sanity) ServeSIP(_ context.Context, w sbc.ResponseWriter, r *sbc.Request) (sbc.Verdict, error) {
	s.checked.Add(1)
	if r == nil || r.Request == nil {
		s.count(RuleNil)
		s.dropped.Add(1)
		return sbc.Dropped, nil
	}
	p := s.Validate(r.Request, r.Transport)
	if p.OK() {
		s.passed.Add(1)
		return sbc.Continue, nil
	}
	s.count(p.Rule)
	r.Why = p.Rule.String()
	if p.Silent || (s.opts.QuietExternal && r.Side == sbc.External) {
		s.dropped.Add(1)
		return sbc.Dropped, nil
	}
	s.rejected.Add(1)
	res := sip.NewResponseFromRequest(r.Request, p.Status, p.Reason, nil)
	// sipgo copies the request's version; a 505 must still speak 2.0.
	res.SipVersion = "SIP/2.0"
	for _, h := range p.Extra {
		res.AppendHeader(h)
	}
	if err := w.Respond(res); err != nil {
		return sbc.Rejected, fmt.Errorf("sanity: send %d: %w", p.Status, err)
	}
	return sbc.Rejected, nil
}

func (s *Sanity) count(r Rule) {
	if r < numRules {
		s.byRule[r].Add(1)
	}
}

// AllowResponse is ValidateResponse with counting, for the code that
// receives responses (client transactions, the unhandled-response hook).
func (s *Sanity) AllowResponse(res *sip.Response) bool {
	s.responses.Add(1)
	if ValidateResponse(res) {
		return true
	}
	s.badResponses.Add(1)
	return false
}

// Stats is a snapshot of the counters.
type Stats struct {
	// Requests seen, passed on, answered with an error, dropped silently.
	Checked, Passed, Rejected, Dropped int64
	// ByRule counts failures per Rule.String(); rules never hit are absent.
	ByRule map[string]int64
	// Responses checked by AllowResponse, and those refused.
	Responses, BadResponses int64
}

// Stats returns the counters.
func (s *Sanity) Stats() Stats {
	st := Stats{
		Checked:      s.checked.Load(),
		Passed:       s.passed.Load(),
		Rejected:     s.rejected.Load(),
		Dropped:      s.dropped.Load(),
		Responses:    s.responses.Load(),
		BadResponses: s.badResponses.Load(),
		ByRule:       map[string]int64{},
	}
	for r := RuleNone + 1; r < numRules; r++ {
		if n := s.byRule[r].Load(); n > 0 {
			st.ByRule[r.String()] = n
		}
	}
	return st
}

// ValidateResponse tells whether a parsed response may be processed;
// invalid responses are dropped, never answered. It checks the status code
// (100..699), SIP/2.0, the headers every response carries (Via at least
// once; From, To, Call-ID, CSeq exactly once), CSeq, Content-Length,
// control characters, header names, and that no Via names a broadcast,
// multicast or unspecified address (RFC 4475 bcast).
func ValidateResponse(res *sip.Response) bool {
	if res == nil || res.StatusCode < 100 || res.StatusCode > 699 || !strings.EqualFold(res.SipVersion, "SIP/2.0") {
		return false
	}
	var t tally
	t.walk(res.Headers())
	t.text(res.Reason)
	if t.bad != RuleNone {
		return false
	}
	if t.count[kVia] == 0 || t.count[kFrom] != 1 || t.count[kTo] != 1 || t.count[kCallID] != 1 || t.count[kCSeq] != 1 {
		return false
	}
	if t.count[kContentLength] > 1 || (t.cl != nil && int64(*t.cl) != int64(len(res.Body()))) {
		return false
	}
	if t.cseq.SeqNo > 1<<31-1 || !isToken(string(t.cseq.MethodName)) || !isCallID(string(*t.callID)) {
		return false
	}
	if !viaRoutable(t.via) {
		return false
	}
	for _, h := range res.Headers() {
		if v, ok := h.(*sip.ViaHeader); ok && viaBadAddr(v) {
			return false
		}
	}
	return true
}
