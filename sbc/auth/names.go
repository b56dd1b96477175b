package auth

import "strings"

// ValidUserName reports whether name is acceptable as a user of a users
// file: 1 to 128 bytes, no quote or backslash (which could only serve to
// inject into a header or a log line) and no control character (which the
// credentials parser refuses, so such a user could never log in).
// ParseUsers applies the same rule.
func ValidUserName(name string) bool {
	if name == "" || len(name) > 128 || strings.ContainsAny(name, "\"\\") {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] < 0x20 || name[i] == 0x7f {
			return false
		}
	}
	return true
}
