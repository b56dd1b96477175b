package topology

import (
	"bytes"
	"net/netip"
)

// Scan looks through a serialized message (or any bytes about to leave
// toward the outside) for an inside address or name: every IPv4 and IPv6
// literal is parsed and checked against InternalAddr, and every
// InternalName is searched case-insensitively. It returns the first leak
// found. It allocates only when it finds one.
func (p *Policy) Scan(b []byte) (string, bool) {
	for i := 0; i < len(b); {
		c := b[i]
		if !isAddrByte(c) {
			i++
			continue
		}
		j := i
		for j < len(b) && isAddrByte(b[j]) && j-i < 64 {
			j++
		}
		tok := b[i:j]
		i = j
		if len(tok) < 2 {
			continue
		}
		if a, ok := parseToken(tok); ok && p.InternalAddr(a) {
			return a.String(), true
		}
	}
	for _, n := range p.names {
		if i := indexFold(b, n); i >= 0 {
			return n, true
		}
	}
	return "", false
}

// isAddrByte: the bytes an IP literal is made of (v6 with embedded v4).
func isAddrByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '.' || c == ':'
}

// parseToken finds an address in a run of address bytes: the run itself,
// or, for "host:port" forms, the part before the last colon; a leading
// or trailing dot or colon is trimmed.
func parseToken(tok []byte) (netip.Addr, bool) {
	tok = bytes.Trim(tok, ".:")
	if bytes.IndexByte(tok, '.') < 0 && bytes.Count(tok, []byte(":")) < 2 {
		return netip.Addr{}, false // neither dotted quad nor IPv6
	}
	var buf [64]byte
	s := buf[:copy(buf[:], tok)]
	if a, err := netip.ParseAddr(string(s)); err == nil {
		return a.Unmap(), true
	}
	if k := bytes.LastIndexByte(s, ':'); k > 0 {
		if a, err := netip.ParseAddr(string(s[:k])); err == nil {
			return a.Unmap(), true
		}
	}
	// A dotted quad glued to something: find its digits-and-dots core.
	if k := bytes.LastIndexByte(s, ':'); k >= 0 && bytes.IndexByte(s[k:], '.') > 0 {
		if a, err := netip.ParseAddr(string(s[k+1:])); err == nil && a.Is4() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// indexFold is a case-insensitive bytes.Index for an ASCII lower-case
// needle.
func indexFold(b []byte, lower string) int {
	n := len(lower)
	for i := 0; i+n <= len(b); i++ {
		match := true
		for k := 0; k < n; k++ {
			c := b[i+k]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != lower[k] {
				match = false
				break
			}
		}
		if match {
			return i
		}
	}
	return -1
}
