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
	"strconv"
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

	// KeepReasons are status codes whose reason phrase from the inside
	// crosses as it came, unless it names the inside or a product. Every
	// other response toward the outside carries the RFC phrase of its
	// code. Empty: none.
	KeepReasons []int
	// Text is the policy per free-text header toward the outside, by
	// lower-case name: reason, warning, subject, organization. Missing:
	// TextScrub.
	Text map[string]string
	// DisplayNames of identities that come from the inside, toward the
	// outside: DisplayScrub (default) or DisplayDrop.
	DisplayNames string
	// SDPAttributes is the allow-list of SDP attribute names toward the
	// outside (case-insensitive; a trailing "*" matches a prefix). Empty:
	// DefaultSDPAttributes.
	SDPAttributes []string
	// ProductWords are words (case-insensitive substrings) that name a
	// product: a display name, a URI user, a kept reason phrase or a
	// scrubbed Subject holding one does not cross. Nil or empty:
	// DefaultProductWords; ["none"]: none.
	ProductWords []string
	// Report hears of everything rewritten, removed or found (the leak
	// report). Nil: nothing counted.
	Report *Report
}

// Free-text header policies (Config.Text).
const (
	TextKeep  = "keep"  // as it came, unless it names the inside
	TextScrub = "scrub" // Reason and Warning: codes only; others: kept unless they name the inside or a product
	TextDrop  = "drop"  // never crosses toward the outside
)

// Display name policies (Config.DisplayNames).
const (
	DisplayScrub = "scrub" // dropped when it names the inside or a product
	DisplayDrop  = "drop"  // always dropped
)

// TextHeaders are the headers Config.Text has a policy for.
var TextHeaders = []string{"reason", "warning", "subject", "organization"}

// DefaultSDPAttributes are the SDP attributes that cross toward the
// outside: what negotiates codecs, direction, RTCP, keys and ICE
// (RFC 8866, 3264, 3605, 5761, 4585, 4568, 8122, 4145, 8839, 5888, 8843,
// 8285, 5576, 4796, 4583, 8841, T.38). Left out, among others: tool
// (product and version), ssrc and ssrc-group (their cname is user@host),
// label, cat, keywds, charset and anything vendor-specific (x-...).
var DefaultSDPAttributes = []string{
	"rtpmap", "fmtp", "ptime", "maxptime", "sendrecv", "sendonly", "recvonly", "inactive",
	"rtcp", "rtcp-mux", "rtcp-rsize", "rtcp-fb", "rtcp-xr", "crypto", "fingerprint", "setup",
	"connection", "tls-id", "ice-*", "candidate", "remote-candidates", "end-of-candidates",
	"mid", "group", "msid", "msid-semantic", "extmap", "extmap-allow-mixed", "rid", "simulcast",
	"framerate", "imageattr", "content", "silencesupp", "sctp-port", "max-message-size",
	"floorctrl", "confid", "userid", "floorid",
	"t38faxversion", "t38maxbitrate", "t38faxfillbitremoval", "t38faxtranscodingmmr",
	"t38faxtranscodingjbig", "t38faxratemanagement", "t38faxmaxbuffer", "t38faxmaxdatagram",
	"t38faxudpec", "t38faxmaxifp", "t38faxudpecdepth", "t38faxudpfecmaxspan", "t38modemtype",
}

// DefaultProductWords name common PBX, proxy and gateway products. The
// list cannot be complete: it catches what structure does not (display
// names, URI users such as "asterisk" in a qualify OPTIONS).
var DefaultProductWords = []string{
	"asterisk", "freepbx", "freeswitch", "mod_sofia", "3cx", "yate", "kamailio", "opensips",
	"sipxecs", "elastix", "issabel", "fusionpbx", "wazo", "xivo", "vitalpbx", "grandstream",
	"yeastar", "avaya", "cisco", "mitel", "sangoma", "broadsoft", "audiocodes", "ribbon",
}

// Policy applies a Config. It is immutable and safe for concurrent use.
type Policy struct {
	cfg        Config
	allow      [2]map[string]bool // by Direction, lower-case names
	names      []string           // lower-case
	isInternal func(netip.Addr) bool
	keep       map[int]bool      // KeepReasons
	text       map[string]string // lower-case header -> TextKeep/TextScrub/TextDrop
	attrs      map[string]bool   // lower-case SDP attribute names
	attrPrefix []string          // lower-case prefixes ("ice-")
	products   []string          // lower-case
	report     *Report
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
	if err := p.sanitisers(cfg); err != nil {
		return nil, err
	}
	return p, nil
}

// sanitisers reads the Config of the sanitisers toward the outside.
func (p *Policy) sanitisers(cfg Config) error {
	p.report = cfg.Report
	p.keep = map[int]bool{}
	for _, c := range cfg.KeepReasons {
		if c < 100 || c > 699 {
			return fmt.Errorf("%w: keep reason %d is not a status code", ErrConfig, c)
		}
		p.keep[c] = true
	}
	p.text = map[string]string{}
	for _, h := range TextHeaders {
		p.text[h] = TextScrub
	}
	for h, mode := range cfg.Text {
		h = strings.ToLower(h)
		if !slices.Contains(TextHeaders, h) {
			return fmt.Errorf("%w: no text policy for header %q", ErrConfig, h)
		}
		switch mode {
		case "":
		case TextKeep, TextScrub, TextDrop:
			p.text[h] = mode
		default:
			return fmt.Errorf("%w: text policy %q for %s", ErrConfig, mode, h)
		}
	}
	switch cfg.DisplayNames {
	case "":
		p.cfg.DisplayNames = DisplayScrub
	case DisplayScrub, DisplayDrop:
	default:
		return fmt.Errorf("%w: display names %q", ErrConfig, cfg.DisplayNames)
	}
	attrs := cfg.SDPAttributes
	if len(attrs) == 0 {
		attrs = DefaultSDPAttributes
	}
	p.attrs = map[string]bool{}
	for _, a := range attrs {
		a = strings.ToLower(strings.TrimSpace(a))
		if a == "" || a == "*" {
			return fmt.Errorf("%w: SDP attribute %q", ErrConfig, a)
		}
		if pre, ok := strings.CutSuffix(a, "*"); ok {
			p.attrPrefix = append(p.attrPrefix, pre)
			continue
		}
		p.attrs[a] = true
	}
	words := cfg.ProductWords
	if len(words) == 0 {
		words = DefaultProductWords
	}
	if !(len(words) == 1 && strings.EqualFold(words[0], "none")) {
		for _, w := range words {
			w = strings.ToLower(strings.TrimSpace(w))
			if w == "" || strings.ContainsAny(w, "\r\n\x00") {
				return fmt.Errorf("%w: product word %q", ErrConfig, w)
			}
			p.products = append(p.products, w)
		}
	}
	return nil
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
// host is inside gets self (the SBC's advertised host and port) instead;
// it loses maddr, received and ob and every parameter naming the inside,
// a user naming the inside or a product becomes "anonymous", and its URI
// headers go (but a Reason, scrubbed, and Require and Privacy). Toward
// the inside it is unchanged.
func (p *Policy) URI(dir Direction, u sip.Uri, selfHost string, selfPort int) sip.Uri {
	if dir != ToOutside {
		return u
	}
	return p.outsideURI(u, selfHost, selfPort, false)
}

// CopyHeaders copies the headers allowed in dir from one message to
// another and writes the neutral User-Agent (requests) or Server
// (responses) toward the outside. Toward the outside every header is
// sanitised on the way (sanitise.go): URIs, display names and parameters
// of identity and transfer headers, free text by Config.Text,
// In-Reply-To dropped, and any value still naming the inside dropped.
// selfHost/selfPort is the SBC's advertised address on the destination
// leg.
func (p *Policy) CopyHeaders(dir Direction, from, to sip.Message, selfHost string, selfPort int) {
	allow := p.allow[dir]
	hs, ok := from.(interface{ Headers() []sip.Header })
	if !ok {
		return
	}
	referTos := 0
	for _, h := range hs.Headers() {
		if strings.EqualFold(h.Name(), "Refer-To") {
			referTos++
		}
	}
	for _, h := range hs.Headers() {
		name := strings.ToLower(h.Name())
		if !allow[name] {
			continue
		}
		v := h.Value()
		if dir == ToOutside {
			if name == "refer-to" && referTos > 1 {
				// RFC 3515 allows one; the B2BUA maps the Replaces of
				// exactly one, so more must not cross unmapped.
				p.note(HeaderItem(h.Name()), Removed, v)
				continue
			}
			nv, ok := p.outsideHeader(name, v, selfHost, selfPort)
			if !ok {
				continue
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

// Body returns what of a body may cross in dir. Toward the outside a
// message/sipfrag body (NOTIFY for REFER) keeps only its status line,
// with the RFC phrase of its code, since the rest is the inside's
// headers; SDP keeps only the allowed attributes (sdp.go), after the
// media relay rewrote its addresses. Other bodies are returned unchanged.
func (p *Policy) Body(dir Direction, contentType string, body []byte) []byte {
	ct := strings.ToLower(strings.TrimSpace(contentType))
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	if dir != ToOutside {
		return body
	}
	switch ct {
	case "application/sdp":
		return p.outsideSDP(body)
	case "message/sipfrag":
	default:
		return body
	}
	line := body
	if i := strings.IndexAny(string(body), "\r\n"); i >= 0 {
		line = body[:i]
	}
	if !isStatusLine(string(line)) {
		p.note(ItemSipfrag, Rewritten, string(line))
		return []byte("SIP/2.0 500 Server Internal Error\r\n")
	}
	code, _ := strconv.Atoi(string(line[8:11]))
	out := "SIP/2.0 " + string(line[8:11]) + " " + Phrase(code)
	if len(body) != len(line)+2 || out != string(line) {
		p.note(ItemSipfrag, Rewritten, string(body))
	}
	return []byte(out + "\r\n")
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
	if s[8] < '1' || s[8] > '6' || len(s) > 11 && s[11] != ' ' {
		return false
	}
	for i := 11; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}
