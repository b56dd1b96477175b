package topology

import (
	"bytes"
	"strings"
)

// outsideSDP keeps of an SDP body toward the outside what the endpoints
// need to negotiate media, after the media relay wrote its addresses:
//   - a= lines whose attribute is not in Config.SDPAttributes go (a=tool
//     names the product and its version), and so do allowed ones whose
//     value names the inside;
//   - i=, u=, e= and p= lines go (free text, URIs, e-mail addresses and
//     phone numbers), at every level;
//   - s= becomes "s=-" and the o= user "-";
//   - a line that is not "<type>=<value>" with a type letter of RFC 8866
//     goes (a receiver would ignore it or refuse the whole body, and it
//     may carry anything), and so does any other line but c= and o= whose
//     value names the inside (those two are the media relay's to write).
//
// Lines are otherwise kept byte for byte; the result ends lines in CRLF.
// A body without any change is returned as it came.
func (p *Policy) outsideSDP(body []byte) []byte {
	var out []byte
	changed := false
	rest := body
	for n := 0; len(rest) > 0 && n < 4096; n++ {
		line := rest
		next := []byte(nil)
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, next = rest[:i], rest[i+1:]
		}
		rest = next
		line = bytes.TrimSuffix(line, []byte("\r"))
		keep, nl := p.sdpLine(string(line))
		if !keep || nl != string(line) {
			changed = true
		}
		if keep {
			out = append(append(out, nl...), '\r', '\n')
		}
	}
	if len(rest) > 0 {
		changed = true // beyond any SDP limit: the rest does not cross
	}
	if !changed {
		return body
	}
	return out
}

// sdpLine decides one line: kept (possibly rewritten) or dropped.
func (p *Policy) sdpLine(line string) (bool, string) {
	if len(line) < 2 || line[1] != '=' || !strings.ContainsRune(sdpTypes, rune(line[0])) {
		p.note(ItemSDPOther, Removed, line)
		return false, ""
	}
	val := line[2:]
	item := line[:1]
	switch line[0] {
	case 'i', 'u', 'e', 'p':
		p.note(SDPItem(line[:1]), Removed, line)
		return false, ""
	case 's':
		if val != "-" {
			p.note(SDPItem("s"), Rewritten, line)
		}
		return true, "s=-"
	case 'o':
		user, rest, ok := strings.Cut(val, " ")
		if ok && user != "-" {
			p.note(SDPItem("o"), Rewritten, user)
			return true, "o=- " + rest
		}
		return true, line
	case 'c':
		return true, line
	case 'a':
		name, _, _ := strings.Cut(val, ":")
		if !p.sdpAllowed(name) {
			p.note(SDPItem(name), Removed, line)
			return false, ""
		}
		item = name
	}
	if p.leaks(val) {
		p.note(SDPItem(item), Removed, line)
		return false, ""
	}
	return true, line
}

// sdpTypes are the line types of RFC 8866 (k= included: obsolete, but
// still met).
const sdpTypes = "vosiuepcbtrzkam"

// sdpAllowed tells whether an attribute name is in the allow-list.
func (p *Policy) sdpAllowed(name string) bool {
	n := strings.ToLower(name)
	if p.attrs[n] {
		return true
	}
	for _, pre := range p.attrPrefix {
		if strings.HasPrefix(n, pre) {
			return true
		}
	}
	return false
}
