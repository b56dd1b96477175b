package registrar

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc/config"
)

func TestParseDelta(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"0": 0, " 60 ": time.Minute, "4294967295": maxDelta * time.Second,
		"4294967296": maxDelta * time.Second, "99999999999999999999": maxDelta * time.Second,
	} {
		if got, ok := parseDelta(in); !ok || got != want {
			t.Errorf("parseDelta(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5", "1e3", "ten", "123456789012345678901"} {
		if _, ok := parseDelta(in); ok {
			t.Errorf("parseDelta(%q) accepted", in)
		}
	}
}

func TestParseQ(t *testing.T) {
	for in, want := range map[string]int{"1": 1000, "1.0": 1000, "1.000": 1000, "0": 0, "0.5": 500, "0.25": 250, "0.001": 1} {
		if got, ok := parseQ(in); !ok || got != want {
			t.Errorf("parseQ(%q) = %d, %v; want %d", in, got, ok, want)
		}
		if got, _ := parseQ(formatQ(want)); got != want {
			t.Errorf("formatQ(%d) = %q does not read back", want, formatQ(want))
		}
	}
	for _, in := range []string{"", "2", "1.5", "0.1234", ".5", "-0", "0.x"} {
		if _, ok := parseQ(in); ok {
			t.Errorf("parseQ(%q) accepted", in)
		}
	}
}

// TestBindingKey: RFC 3261 19.1.4 comparison where it matters (host and
// scheme case, parameter order) and RFC 5626 instance keys.
func TestBindingKey(t *testing.T) {
	key := func(s, inst, reg string) string {
		var u sip.Uri
		if err := sip.ParseUri(s, &u); err != nil {
			t.Fatal(err)
		}
		return bindingKey(u, inst, reg)
	}
	if key("sip:alice@HOST.example;transport=tcp;ob", "", "") != key("sip:alice@host.example;ob;transport=tcp", "", "") {
		t.Error("host case or parameter order makes another binding")
	}
	if key("sip:alice@host", "", "") == key("sip:Alice@host", "", "") {
		t.Error("user parts compare case-sensitively")
	}
	if key("sip:alice@host:5060", "", "") == key("sip:alice@host:5062", "", "") {
		t.Error("ports differ")
	}
	if key("sip:a@1.2.3.4", "<urn:uuid:1>", "1") != key("sip:a@5.6.7.8", "<urn:uuid:1>", "1") {
		t.Error("the same instance and reg-id is one binding")
	}
	if key("sip:a@1.2.3.4", "<urn:uuid:1>", "1") == key("sip:a@1.2.3.4", "<urn:uuid:1>", "2") {
		t.Error("another reg-id is another flow")
	}
}

func TestTokens(t *testing.T) {
	tok := newToken()
	if !isToken(tok) || tok == newToken() {
		t.Errorf("token %q", tok)
	}
	for _, s := range []string{"", "alice", "sw-", "sw-zzzzzzzzzzzzzzzzzzzzzzzz", tok + "0"} {
		if isToken(s) {
			t.Errorf("isToken(%q)", s)
		}
	}
}

func TestFromConfig(t *testing.T) {
	c := config.Default().Registrar
	c.WhenFull = config.WhenFullReplaceOldest
	c.Domains = []string{"example.com"}
	got := FromConfig(c)
	if got.Mode != ModeRelay || !got.ReplaceOldest || got.PhoneExpires != time.Minute || got.UpstreamExpires != time.Hour ||
		got.RefreshPercent != 50 || got.MaxBindings != 5 || got.MaxAORs != 100000 || got.OtherDomainStatus != 403 || len(got.Domains) != 1 {
		t.Errorf("FromConfig = %+v", got)
	}
	c.Domains[0] = "changed"
	if got.Domains[0] != "example.com" {
		t.Error("FromConfig shares the Domains slice")
	}
}
