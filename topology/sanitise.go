package topology

import (
	"net/url"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// The sanitisers run on every crossing toward the outside, on the parts
// of a message the B2BUA copies from the inside, so that the guard is the
// last net and almost never fires. Each change is reported (Report).

// note reports an event when there is a Report.
func (p *Policy) note(item string, a Action, detail string) {
	p.report.Note(item, a, detail)
}

// leaks tells whether s, decoded (percent escapes, quoted pairs), names
// an inside address or name.
func (p *Policy) leaks(s string) bool {
	_, found := p.Scan([]byte(s))
	return found
}

// product tells whether s names a product (Config.ProductWords).
func (p *Policy) product(s string) bool {
	if len(p.products) == 0 || s == "" {
		return false
	}
	b := []byte(s)
	if strings.ContainsAny(s, "%\\") {
		b = decodeAll(b)
	}
	for _, w := range p.products {
		if indexFold(b, w) >= 0 {
			return true
		}
	}
	return false
}

// Reason is the reason phrase a response with this code may carry in
// dir: toward the outside the RFC phrase of the code, unless the code is
// in Config.KeepReasons and the inside's phrase names neither the inside
// nor a product.
func (p *Policy) Reason(dir Direction, code int, phrase string) string {
	if dir != ToOutside {
		return phrase
	}
	want := Phrase(code)
	if phrase == want || want == "" {
		return phrase
	}
	if p.keep[code] && printable(phrase) && !p.leaks(phrase) && !p.product(phrase) {
		return phrase
	}
	p.note(ItemReasonPhrase, Rewritten, strconv.Itoa(code)+" "+phrase)
	return want
}

// DisplayName is the display name of an identity from the inside as it
// may be shown in dir: toward the outside, dropped with DisplayDrop, and
// with DisplayScrub when it names the inside or a product.
func (p *Policy) DisplayName(dir Direction, name string) string {
	if dir != ToOutside || name == "" {
		return name
	}
	if p.cfg.DisplayNames == DisplayDrop || p.leaks(name) || p.product(name) || !printable(name) {
		p.note(ItemDisplayName, Removed, name)
		return ""
	}
	return name
}

// outsideHeader sanitises one allowed header value for the outside; false
// drops the header.
func (p *Policy) outsideHeader(name, v, selfHost string, selfPort int) (string, bool) {
	item := HeaderItem(name)
	switch name {
	case "in-reply-to":
		// Call-IDs of the inside's dialogs: nothing the outside can use.
		p.note(item, Removed, v)
		return "", false
	case "retry-after":
		// RFC 3261 20.33: delta-seconds, a free-text comment, parameters;
		// only the seconds and their duration cross.
		nv, ok := scrubRetryAfter(v)
		if !ok {
			p.note(item, Removed, v)
			return "", false
		}
		if nv != v {
			p.note(item, Rewritten, v)
		}
		return nv, true
	case "refer-to", "referred-by", "p-asserted-identity", "diversion", "history-info":
		nv, ok := p.rewriteAddrs(v, selfHost, selfPort, name == "refer-to")
		if !ok {
			p.note(item, Removed, v)
			return "", false
		}
		return nv, true
	}
	if mode, ok := p.text[name]; ok {
		nv, keep := p.freeText(name, mode, v, selfHost, selfPort)
		if !keep {
			p.note(item, Removed, v)
			return "", false
		}
		if nv != v {
			p.note(item, Rewritten, v)
		}
		v = nv
	}
	if p.leaks(v) {
		p.note(item, Removed, v)
		return "", false
	}
	return v, true
}

// freeText applies a Config.Text policy to a header value.
func (p *Policy) freeText(name, mode, v, selfHost string, selfPort int) (string, bool) {
	switch mode {
	case TextDrop:
		return "", false
	case TextKeep:
		return v, !p.leaks(v)
	}
	switch name {
	case "reason":
		return scrubReason(v)
	case "warning":
		return scrubWarning(v, selfHost, selfPort)
	}
	return v, printable(v) && !p.leaks(v) && !p.product(v)
}

// scrubReason keeps the protocol and cause of each Reason value (RFC
// 3326) and drops the text and every other parameter.
func scrubReason(v string) (string, bool) {
	var out []string
	for _, part := range splitTopLevel(v) {
		params := splitParams(part)
		proto := strings.TrimSpace(params[0])
		if !isToken(proto) {
			continue
		}
		val := proto
		for _, prm := range params[1:] {
			k, pv, _ := strings.Cut(prm, "=")
			if strings.EqualFold(strings.TrimSpace(k), "cause") && isDigits(strings.TrimSpace(pv)) {
				val += ";cause=" + strings.TrimSpace(pv)
				break
			}
		}
		out = append(out, val)
	}
	return strings.Join(out, ", "), len(out) > 0
}

// scrubRetryAfter keeps the delta-seconds of a Retry-After and its
// duration parameter: the comment is free text.
func scrubRetryAfter(v string) (string, bool) {
	v = strings.TrimSpace(v)
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	secs := v[:end]
	if !isDigits(secs) {
		return "", false
	}
	for _, prm := range splitParams(v[end:])[1:] {
		k, pv, _ := strings.Cut(prm, "=")
		if strings.EqualFold(strings.TrimSpace(k), "duration") && isDigits(strings.TrimSpace(pv)) {
			return secs + ";duration=" + strings.TrimSpace(pv), true
		}
	}
	return secs, true
}

// scrubWarning keeps the code of each warning: the SBC becomes the agent
// and the RFC text of the code the text.
func scrubWarning(v, selfHost string, selfPort int) (string, bool) {
	if selfHost == "" {
		return "", false
	}
	agent := selfHost
	if selfPort > 0 {
		agent += ":" + strconv.Itoa(selfPort)
	}
	var out []string
	for _, part := range splitTopLevel(v) {
		code, _, _ := strings.Cut(strings.TrimSpace(part), " ")
		n, err := strconv.Atoi(code)
		if err != nil || len(code) != 3 || n < 300 || n > 399 {
			continue
		}
		text, ok := warningTexts[n]
		if !ok {
			text = warningTexts[399]
		}
		out = append(out, code+" "+agent+` "`+text+`"`)
	}
	return strings.Join(out, ", "), len(out) > 0
}

// rewriteAddrs sanitises each comma-separated name-addr of a header value
// for the outside: the URI (outsideURI), the display name (DisplayName)
// and the header parameters (dropped when they name the inside). Replaces
// may stay in the URI of a Refer-To (referTo): the B2BUA maps it to the
// outside leg's dialog. false: the value cannot be read, or still names
// the inside.
func (p *Policy) rewriteAddrs(v, selfHost string, selfPort int, referTo bool) (string, bool) {
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
		nu := p.outsideURI(u, selfHost, selfPort, referTo)
		ns := nu.String()
		// What goes out must read back as an outside URI; anything the
		// parser saw differently the first time is dropped.
		var back sip.Uri
		if sip.ParseUri(ns, &back) != nil || p.InternalHost(back.Host) {
			return "", false
		}
		head, tail := part[:start], part[end:]
		if start > 0 {
			head = p.displayPrefix(head)
		}
		tail = p.headerParams(tail)
		nv := head + ns + tail
		// The Replaces is the B2BUA's to map; anything else naming the
		// inside is not sent.
		check := nv
		if referTo && back.Headers != nil {
			if rp, ok := back.Headers.Get(replacesKey(back.Headers)); ok {
				check = strings.Replace(nv, rp, "", 1)
			}
		}
		if p.leaks(check) {
			return "", false
		}
		parts[i] = nv
	}
	return strings.Join(parts, ", "), true
}

// replacesKey is the spelling of the Replaces URI header in hs ("" when
// there is none).
func replacesKey(hs sip.HeaderParams) string {
	for _, kv := range hs {
		if strings.EqualFold(kv.K, "replaces") {
			return kv.K
		}
	}
	return ""
}

// displayPrefix sanitises what comes before the '<' of a name-addr: the
// display name, quoted or not.
func (p *Policy) displayPrefix(head string) string {
	name := strings.TrimSpace(strings.TrimSuffix(head, "<"))
	if name == "" {
		return head
	}
	plain := name
	if len(plain) >= 2 && plain[0] == '"' && plain[len(plain)-1] == '"' {
		plain = plain[1 : len(plain)-1]
	}
	if p.DisplayName(ToOutside, plain) == "" {
		return "<"
	}
	return head
}

// headerParams drops the parameters after a name-addr's '>' (or an
// addr-spec) that name the inside.
func (p *Policy) headerParams(tail string) string {
	rest, gt := tail, ""
	if strings.HasPrefix(rest, ">") {
		rest, gt = rest[1:], ">"
	}
	if strings.TrimSpace(rest) == "" || !strings.Contains(rest, ";") {
		return tail
	}
	params := splitParams(rest)
	out := strings.TrimSpace(params[0]) // what precedes the first ';' (nothing, normally)
	for _, prm := range params[1:] {
		if p.leaks(prm) {
			p.note(ItemHeaderParam, Removed, prm)
			continue
		}
		out += ";" + strings.TrimSpace(prm)
	}
	return gt + out
}

// outsideURI is URI toward the outside; referTo keeps a Replaces header.
func (p *Policy) outsideURI(u sip.Uri, selfHost string, selfPort int, referTo bool) sip.Uri {
	out := *u.Clone()
	if p.InternalHost(out.Host) {
		out.Host, out.Port = selfHost, selfPort
	}
	if out.User != "" && (p.leaks(out.User) || p.product(out.User)) {
		p.note(ItemURIUser, Rewritten, out.User)
		out.User, out.Password = "anonymous", ""
	}
	if out.Password != "" {
		p.note(ItemURIUser, Removed, "password")
		out.Password = ""
	}
	if out.UriParams != nil {
		kept := sip.NewParams()
		for _, kv := range out.UriParams {
			switch k := strings.ToLower(kv.K); {
			case k == "maddr" || k == "received" || k == "ob":
				// Transport-level: where the inside reaches itself.
			case p.leaks(kv.K) || p.leaks(kv.V):
				p.note(ItemURIParam, Removed, kv.K+"="+kv.V)
			default:
				kept = append(kept, kv)
				continue
			}
		}
		out.UriParams = kept
	}
	if out.Headers != nil {
		kept := sip.NewParams()
		for _, kv := range out.Headers {
			if v, ok := p.uriHeader(kv.K, kv.V, referTo); ok {
				kept = append(kept, sip.HeaderKV{K: kv.K, V: v})
				continue
			}
			p.note(ItemURIHeader, Removed, kv.K+"="+kv.V)
		}
		out.Headers = kept
	}
	return out
}

// uriHeader decides one header of a URI (RFC 3261 19.1.1: name=value,
// percent-encoded), decoded, sanitised and encoded again.
func (p *Policy) uriHeader(name, raw string, referTo bool) (string, bool) {
	v, err := url.PathUnescape(raw)
	if err != nil {
		return "", false
	}
	switch strings.ToLower(name) {
	case "replaces":
		// Mapped to the outside leg's dialog by the B2BUA, which refuses
		// the REFER if it cannot.
		return raw, referTo
	case "require", "privacy":
		return escape(v), isTokenList(v)
	case "reason":
		nv, keep := p.freeText("reason", p.text["reason"], v, "", 0)
		return escape(nv), keep && !p.leaks(nv)
	}
	return "", false
}

// splitParams splits on ';' outside quotes.
func splitParams(v string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == ';' && !quoted:
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0) {
			return false
		}
	}
	return true
}

func isTokenList(s string) bool {
	for t := range strings.SplitSeq(s, ",") {
		if !isToken(strings.TrimSpace(t)) {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	if s == "" || len(s) > 9 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// printable: no control characters (tab aside).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 && s[i] != '\t' || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// escape percent-encodes a URI header value (RFC 3261 hvalue).
func escape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.!~*'()[]/?:+$", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func lower(s string) string { return strings.ToLower(s) }
