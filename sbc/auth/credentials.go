package auth

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Parser bounds. Real clients send well under these; anything larger is an
// attempt to make us hash or store attacker-sized input.
const (
	maxCredentialsLen = 4096
	maxParams         = 16
	maxValueLen       = 1024
	maxCnonceLen      = 256
)

// ErrMalformed wraps every parse failure of a credentials header.
var ErrMalformed = errors.New("malformed credentials")

// Credentials is a parsed Digest credentials value (Authorization or
// Proxy-Authorization). Params holds every parameter by lowercase name,
// unquoted; each name occurs once.
type Credentials struct {
	Params map[string]string
	// Quoted records which parameters were given as quoted-strings.
	Quoted map[string]bool
}

// Get returns a parameter by lowercase name.
func (c *Credentials) Get(name string) string { return c.Params[name] }

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// isTokenChar reports RFC 3261 25.1 token characters.
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-.!%*_+`'~", c) >= 0
}

func isWS(c byte) bool { return c == ' ' || c == '\t' }

// ParseCredentials parses `Digest name=value, ...` strictly: the scheme must
// be Digest, names are tokens, values are tokens or quoted-strings (with
// quoted-pair escapes), no name twice, and sizes are bounded. It never
// panics on any input.
func ParseCredentials(s string) (*Credentials, error) {
	if len(s) > maxCredentialsLen {
		return nil, malformed("header longer than %d bytes", maxCredentialsLen)
	}
	if !utf8.ValidString(s) {
		return nil, malformed("not utf-8")
	}
	i := 0
	for i < len(s) && isWS(s[i]) {
		i++
	}
	start := i
	for i < len(s) && isTokenChar(s[i]) {
		i++
	}
	if !strings.EqualFold(s[start:i], "digest") {
		return nil, malformed("scheme is not digest")
	}
	if i >= len(s) || !isWS(s[i]) {
		return nil, malformed("no parameters")
	}
	c := &Credentials{Params: map[string]string{}, Quoted: map[string]bool{}}
	for {
		for i < len(s) && isWS(s[i]) {
			i++
		}
		// name
		start = i
		for i < len(s) && isTokenChar(s[i]) {
			i++
		}
		if i == start {
			return nil, malformed("parameter name expected at %d", i)
		}
		name := strings.ToLower(s[start:i])
		if _, dup := c.Params[name]; dup {
			return nil, malformed("parameter %q twice", name)
		}
		if len(c.Params) >= maxParams {
			return nil, malformed("more than %d parameters", maxParams)
		}
		for i < len(s) && isWS(s[i]) {
			i++
		}
		if i >= len(s) || s[i] != '=' {
			return nil, malformed("parameter %q without value", name)
		}
		i++
		for i < len(s) && isWS(s[i]) {
			i++
		}
		// value
		var val string
		if i < len(s) && s[i] == '"' {
			v, n, err := parseQuoted(s[i:])
			if err != nil {
				return nil, fmt.Errorf("parameter %q: %w", name, err)
			}
			val, i = v, i+n
			c.Quoted[name] = true
		} else {
			start = i
			for i < len(s) && isTokenChar(s[i]) {
				i++
			}
			if i == start {
				return nil, malformed("parameter %q has an empty value", name)
			}
			val = s[start:i]
		}
		if len(val) > maxValueLen {
			return nil, malformed("parameter %q longer than %d bytes", name, maxValueLen)
		}
		c.Params[name] = val
		for i < len(s) && isWS(s[i]) {
			i++
		}
		if i == len(s) {
			return c, nil
		}
		if s[i] != ',' {
			return nil, malformed("comma expected at %d", i)
		}
		i++
	}
}

// parseQuoted reads a quoted-string at the start of s and returns its
// unescaped content and the number of bytes consumed. Control characters
// are refused, also escaped ones: no legitimate digest value has them.
func parseQuoted(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return b.String(), i + 1, nil
		case c == '\\':
			i++
			if i >= len(s) {
				return "", 0, malformed("unterminated quoted-string")
			}
			if s[i] < 0x20 || s[i] == 0x7f {
				return "", 0, malformed("control character in quoted-string")
			}
			b.WriteByte(s[i])
		case c < 0x20 && c != '\t', c == 0x7f:
			return "", 0, malformed("control character in quoted-string")
		default:
			b.WriteByte(c)
		}
		if b.Len() > maxValueLen {
			return "", 0, malformed("quoted-string longer than %d bytes", maxValueLen)
		}
	}
	return "", 0, malformed("unterminated quoted-string")
}
