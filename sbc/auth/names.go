package auth

import "strings"

// ValidUserName reports whether name is acceptable as a user of a users
// file: not empty, and without quote, backslash, CR or LF, which could only
// serve to inject into a header or a log line. ParseUsers applies the same
// rule.
func ValidUserName(name string) bool {
	return name != "" && !strings.ContainsAny(name, "\"\\\r\n")
}
