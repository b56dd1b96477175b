// Package siptest is a scripted raw-UDP SIP peer for tests: it sends exactly
// the bytes a test writes and hands back what it receives, parsed with
// sipgo's parser. It has no transaction layer, so nothing is sent, answered
// or retransmitted behind the test's back. See README.md.
package siptest

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
)

const crlf = "\r\n"

// Msg builds a SIP message from lines joined with CRLF. The first empty line
// ends the header section and the lines after it are the body. Without an
// empty line the message has no body. A Content-Length header is added when
// the header lines have none; a given one is kept as written, so tests can
// send a wrong value on purpose.
func Msg(lines ...string) []byte {
	head, body := lines, []string(nil)
	for i, l := range lines {
		if l == "" {
			head, body = lines[:i], lines[i+1:]
			break
		}
	}
	b := strings.Join(body, crlf)
	var sb strings.Builder
	hasCL := false
	for i, l := range head {
		sb.WriteString(l)
		sb.WriteString(crlf)
		if i > 0 && isHeader(l, "Content-Length", "l") {
			hasCL = true
		}
	}
	if !hasCL {
		sb.WriteString("Content-Length: " + strconv.Itoa(len(b)) + crlf)
	}
	sb.WriteString(crlf)
	sb.WriteString(b)
	return []byte(sb.String())
}

// Build builds a message from a start line, header lines ("Name: value")
// and a body. Content-Length is always computed from the body and replaces
// any Content-Length among headers.
func Build(startLine string, headers []string, body string) []byte {
	var sb strings.Builder
	sb.WriteString(startLine)
	sb.WriteString(crlf)
	for _, h := range headers {
		if isHeader(h, "Content-Length", "l") {
			continue
		}
		sb.WriteString(h)
		sb.WriteString(crlf)
	}
	sb.WriteString("Content-Length: " + strconv.Itoa(len(body)) + crlf + crlf)
	sb.WriteString(body)
	return []byte(sb.String())
}

// headerName returns the name of a "Name: value" line, or "".
func headerName(line string) string {
	i := strings.IndexByte(line, ':')
	if i <= 0 {
		return ""
	}
	return strings.TrimSpace(line[:i])
}

// isHeader tells whether line is a header with one of the given names
// (compact forms included by the caller), case-insensitively.
func isHeader(line string, names ...string) bool {
	n := headerName(line)
	for _, want := range names {
		if strings.EqualFold(n, want) {
			return true
		}
	}
	return false
}

// compact maps long header names to their RFC 3261 7.3.3 compact forms, so
// an override given in either form replaces the default.
var compact = map[string]string{
	"call-id": "i", "contact": "m", "content-encoding": "e", "content-length": "l",
	"content-type": "c", "from": "f", "subject": "s", "supported": "k", "to": "t", "via": "v",
}

func sameHeader(a, b string) bool {
	a, b = strings.ToLower(a), strings.ToLower(b)
	if a == b {
		return true
	}
	return compact[a] == b || compact[b] == a
}

// merge returns defaults with every header also named in extra replaced by
// extra's lines (at the first default's place), then the remaining extras.
func merge(defaults, extra []string) []string {
	used := make([]bool, len(extra))
	out := make([]string, 0, len(defaults)+len(extra))
	for _, d := range defaults {
		dn := headerName(d)
		if !hasHeader(extra, dn) {
			out = append(out, d)
			continue
		}
		for j, e := range extra {
			if !used[j] && sameHeader(headerName(e), dn) {
				out = append(out, e)
				used[j] = true
			}
		}
	}
	for i, e := range extra {
		if !used[i] {
			out = append(out, e)
		}
	}
	return out
}

func hasHeader(lines []string, name string) bool {
	for _, l := range lines {
		if sameHeader(headerName(l), name) {
			return true
		}
	}
	return false
}

// randHex returns n random bytes as hex.
func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewBranch returns a fresh RFC 3261 branch parameter value.
func NewBranch() string { return "z9hG4bK-" + randHex(8) }
