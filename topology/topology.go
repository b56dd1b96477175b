// Package topology hides the inside of the network from the outside: which
// headers cross between the legs of a call in each direction, how URIs that
// name inside hosts are rewritten, what is left of sipfrag bodies, and a
// last-line guard that scans every byte sent outside for inside addresses
// and names. See README.md.
package topology

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Direction is where a message built by the B2BUA goes.
type Direction uint8

const (
	// ToInside: toward an upstream (the PBX).
	ToInside Direction = iota
	// ToOutside: toward a phone, a carrier or anyone else outside.
	ToOutside
)

func (d Direction) String() string {
	if d == ToOutside {
		return "to-outside"
	}
	return "to-inside"
}

// Guard modes.
const (
	GuardBlock = "block" // leaking messages are not sent
	GuardLog   = "log"   // leaking messages are counted and logged, then sent
	GuardOff   = "off"
)

// Config is the policy. The zero value hides with the defaults.
type Config struct {
	// UserAgent is written as User-Agent (requests) and Server (responses)
	// on messages toward the outside. Empty: no such header.
	UserAgent string
	// ToOutside and ToInside name extra headers (case-insensitive) to copy
	// in that direction on top of the defaults.
	ToOutside, ToInside []string
	// InternalNets are inside networks: URIs naming them are rewritten
	// toward the outside and the guard looks for them. The upstreams'
	// addresses are added through Options.IsInternal.
	InternalNets []netip.Prefix
	// InternalNames are inside host names (e.g. "pbx.corp.local"); matched
	// case-insensitively as whole names or suffixes after a dot.
	InternalNames []string
	// Guard is block (default), log or off.
	Guard string
}

// Policy applies a Config. It is immutable and safe for concurrent use.
type Policy struct {
	cfg        Config
	allow      [2]map[string]bool // by Direction, lower-case names
	names      []string           // lower-case
	isInternal func(netip.Addr) bool
}

// Headers every direction copies: they carry the session, not the network.
var baseHeaders = []string{
	"Content-Type", "Allow", "Supported", "Accept", "Subject", "Priority",
	"Event", "Subscription-State", "Refer-To", "Referred-By", "Replaces",
	"Info-Package", "Recv-Info", "Allow-Events", "Session-Expires", "Min-SE",
	"Expires", "Reason", "Content-Disposition", "Content-Encoding", "Content-Language",
	"Accept-Language", "Accept-Encoding", "Date", "In-Reply-To", "Unsupported",
	"Retry-After", "Min-Expires",
}

// Identity headers copied toward the inside (the PBX wants to know who
// diverted a call) with their hosts left alone, and toward the outside
// only with inside hosts rewritten. P-Asserted-Identity is trusted from
// the inside only: from outside it is dropped (auth asserts its own).
var identityHeaders = []string{"Diversion", "History-Info"}

// uriHeaders hold name-addr values whose hosts are rewritten toward the
// outside.
var uriHeaders = []string{"Refer-To", "Referred-By", "P-Asserted-Identity", "Diversion", "History-Info"}

// ErrConfig reports an unusable policy.
var ErrConfig = errors.New("topology: bad config")

// New builds a Policy. isInternal reports inside addresses beyond
// InternalNets (the upstreams); it may be nil.
func New(cfg Config, isInternal func(netip.Addr) bool) (*Policy, error) {
	if cfg.Guard == "" {
		cfg.Guard = GuardBlock
	}
	if cfg.Guard != GuardBlock && cfg.Guard != GuardLog && cfg.Guard != GuardOff {
		return nil, fmt.Errorf("%w: guard %q", ErrConfig, cfg.Guard)
	}
	if strings.ContainsAny(cfg.UserAgent, "\r\n\x00") {
		return nil, fmt.Errorf("%w: user agent has control characters", ErrConfig)
	}
	p := &Policy{cfg: cfg, isInternal: isInternal}
	for d := range p.allow {
		p.allow[d] = map[string]bool{}
		for _, h := range baseHeaders {
			p.allow[d][strings.ToLower(h)] = true
		}
		for _, h := range identityHeaders {
			p.allow[d][strings.ToLower(h)] = true
		}
	}
	// The inside asserts identities to the outside; the outside does not.
	p.allow[ToOutside]["p-asserted-identity"] = true
	for _, h := range cfg.ToOutside {
		p.allow[ToOutside][strings.ToLower(h)] = true
	}
	for _, h := range cfg.ToInside {
		p.allow[ToInside][strings.ToLower(h)] = true
	}
	for _, n := range cfg.InternalNames {
		n = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(n), "."))
		if n == "" {
			return nil, fmt.Errorf("%w: empty internal name", ErrConfig)
		}
		p.names = append(p.names, n)
	}
	return p, nil
}

// GuardMode is the configured guard mode.
func (p *Policy) GuardMode() string { return p.cfg.Guard }

// InternalAddr reports whether a is inside.
func (p *Policy) InternalAddr(a netip.Addr) bool {
	a = a.Unmap()
	for _, n := range p.cfg.InternalNets {
		if n.Contains(a) {
			return true
		}
	}
	return p.isInternal != nil && p.isInternal(a)
}

// InternalHost reports whether a URI host (IP literal, bracketed IPv6 or
// name) is inside.
func (p *Policy) InternalHost(host string) bool {
	h := strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if a, err := netip.ParseAddr(h); err == nil {
		return p.InternalAddr(a)
	}
	h = strings.ToLower(h)
	for _, n := range p.names {
		if h == n || strings.HasSuffix(h, "."+n) {
			return true
		}
	}
	return false
}

// URI returns u as it may be shown in dir: toward the outside, a URI whose
// host is inside gets self (the SBC's advertised host and port) instead,
// and loses maddr and transport-level parameters that could name the
// inside. Toward the inside it is unchanged.
func (p *Policy) URI(dir Direction, u sip.Uri, selfHost string, selfPort int) sip.Uri {
	if dir != ToOutside {
		return u
	}
	out := *u.Clone()
	if p.InternalHost(out.Host) {
		out.Host, out.Port = selfHost, selfPort
	}
	if out.UriParams != nil {
		for _, k := range []string{"maddr", "received", "ob"} {
			out.UriParams.Remove(k)
		}
	}
	return out
}

// CopyHeaders copies the headers allowed in dir from one message to
// another, rewriting the URIs in identity and transfer headers, and writes
// the neutral User-Agent (requests) or Server (responses) toward the
// outside. selfHost/selfPort is the SBC's advertised address on the
// destination leg.
func (p *Policy) CopyHeaders(dir Direction, from, to sip.Message, selfHost string, selfPort int) {
	allow := p.allow[dir]
	hs, ok := from.(interface{ Headers() []sip.Header })
	if !ok {
		return
	}
	for _, h := range hs.Headers() {
		name := strings.ToLower(h.Name())
		if !allow[name] {
			continue
		}
		v := h.Value()
		if dir == ToOutside && slices.ContainsFunc(uriHeaders, func(s string) bool { return strings.EqualFold(s, name) }) {
			nv, ok := p.rewriteAddrs(v, selfHost, selfPort)
			if !ok {
				continue // unparsable: drop rather than leak
			}
			v = nv
		}
		to.AppendHeader(sip.NewHeader(h.Name(), v))
	}
	if dir == ToOutside && p.cfg.UserAgent != "" {
		name := "User-Agent"
		if _, isRes := to.(*sip.Response); isRes {
			name = "Server"
		}
		to.AppendHeader(sip.NewHeader(name, p.cfg.UserAgent))
	}
}

// rewriteAddrs rewrites each comma-separated name-addr of a header value.
func (p *Policy) rewriteAddrs(v, selfHost string, selfPort int) (string, bool) {
	parts := splitTopLevel(v)
	for i, part := range parts {
		var u sip.Uri
		start, end, ok := uriSpan(part)
		if !ok {
			return "", false
		}
		if err := sip.ParseUri(part[start:end], &u); err != nil {
			return "", false
		}
		nu := p.URI(ToOutside, u, selfHost, selfPort)
		ns := nu.String()
		// What goes out must read back as an outside URI; anything the
		// parser saw differently the first time is dropped.
		var back sip.Uri
		if sip.ParseUri(ns, &back) != nil || p.InternalHost(back.Host) {
			return "", false
		}
		parts[i] = part[:start] + ns + part[end:]
	}
	return strings.Join(parts, ", "), true
}

// uriSpan finds the URI of a name-addr ("<...>") or addr-spec value.
func uriSpan(s string) (int, int, bool) {
	if i := strings.IndexByte(s, '<'); i >= 0 {
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			return 0, 0, false
		}
		return i + 1, i + j, true
	}
	t := strings.TrimSpace(s)
	off := strings.Index(s, t)
	end := len(t)
	if k := strings.IndexByte(t, ';'); k >= 0 {
		end = k // addr-spec parameters belong to the header
	}
	return off, off + end, t != ""
}

// splitTopLevel splits on commas outside quotes and angle brackets.
func splitTopLevel(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '<':
			depth++
		case c == '>':
			if depth > 0 {
				depth--
			}
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(v[start:i]))
			start = i + 1
		}
	}
	return append(out, strings.TrimSpace(v[start:]))
}

// Body returns what of a body may cross in dir: toward the outside a
// message/sipfrag body (NOTIFY for REFER) keeps only its status line, since
// the rest is the inside's headers. Other bodies are returned unchanged
// (SDP is the media relay's).
func (p *Policy) Body(dir Direction, contentType string, body []byte) []byte {
	ct := strings.ToLower(strings.TrimSpace(contentType))
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	if dir != ToOutside || ct != "message/sipfrag" {
		return body
	}
	line := body
	if i := strings.IndexAny(string(body), "\r\n"); i >= 0 {
		line = body[:i]
	}
	if !isStatusLine(string(line)) {
		return []byte("SIP/2.0 500 Server Internal Error\r\n")
	}
	return append(append([]byte(nil), line...), '\r', '\n')
}

// isStatusLine accepts "SIP/2.0 NNN reason" with a printable reason.
func isStatusLine(s string) bool {
	if len(s) < 11 || len(s) > 256 || !strings.HasPrefix(s, "SIP/2.0 ") {
		return false
	}
	for i := 8; i < 11; i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	for i := 11; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}
