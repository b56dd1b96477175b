package main

import (
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/sipwall/sipwall/sbc/config"
)

// The list commands say so in words when there is nothing to list, and
// list what there is as a table.
func TestAdminListsEmptyAndFull(t *testing.T) {
	tokenFile := writeTokenFile(t, opsToken)
	for _, mode := range []string{"relay", "off"} {
		a, _ := startDemo(t, func(c *config.Config) {
			c.Admin.TokenFile = tokenFile
			c.Registrar.Mode = mode
		})
		admin := a.admin.Addr()
		for cmd, want := range map[string]string{
			"calls":         "no calls in progress\n",
			"registrations": "no registrations\n",
			"locks":         "no user locks\n",
			"bans":          "no bans in force\n",
			"blocks":        "no blocked accounts\n",
		} {
			code, out, errOut := cli(cmd, "-admin", admin, "-token-file", tokenFile)
			if code != 0 || out != want {
				t.Errorf("registrar %s: sipwall %s: exit %d, stdout %q, stderr %q; want %q", mode, cmd, code, out, errOut, want)
			}
		}
		if mode != "relay" {
			continue
		}
		if _, raw := apiCall(t, a, http.MethodGet, "/api/calls", opsToken, nil); strings.TrimSpace(string(raw)) != "[]" {
			t.Errorf("/api/calls with no call: %s, want []", raw)
		}
		// A user locked after failed logins from many addresses.
		for i := range 20 {
			a.sec.bans.Failure(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), "mallory", "bad-digest")
		}
		code, out, errOut := cli("locks", "-admin", admin, "-token-file", tokenFile)
		if code != 0 || !strings.HasPrefix(out, "USER") || !regexp.MustCompile(`(?m)^mallory +\S+ +\S+ +20 failed digests`).MatchString(out) {
			t.Errorf("sipwall locks: exit %d, stdout %q, stderr %q; want mallory's lock", code, out, errOut)
		}
	}
}
