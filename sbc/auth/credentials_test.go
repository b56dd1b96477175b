package auth

import (
	"strings"
	"testing"
)

func TestParseCredentials(t *testing.T) {
	c, err := ParseCredentials(`Digest  username="a\"b\\c" ,realm = "r", nc=00000001,qop=auth`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Get("username") != `a"b\c` || c.Get("realm") != "r" || c.Get("nc") != "00000001" || c.Get("qop") != "auth" || !c.Quoted["username"] || c.Quoted["qop"] {
		t.Fatalf("%+v", c)
	}
	for _, bad := range []string{
		"", "Digest", "Digest ", "Basic a=b", "Digestx a=b", `Digest a="x`, `Digest a="x\`,
		"Digest a=b,", "Digest a=b c=d", "Digest =b", "Digest a", "Digest a=b, A=c",
		`Digest cnonce="` + strings.Repeat("x", 64<<10) + `"`,
		`Digest cnonce="` + strings.Repeat("x", 2000) + `"`,
		"Digest a=\"\x00\"", "Digest a=\"\\\x01\"", "Digest a=\xff",
		"Digest a=b" + strings.Repeat(", x=1", 16),
	} {
		if _, err := ParseCredentials(bad); err == nil {
			t.Errorf("accepted %.60q", bad)
		}
	}
}

func FuzzCredentials(f *testing.F) {
	for _, s := range []string{
		`Digest username="alice", realm="r", nonce="n", uri="sip:b@r", response="00", qop=auth, nc=00000001, cnonce="c"`,
		`Digest a="x\"y", b=z`, `Digest a=`, `digest A=1,B="2"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCredentials(s)
		if err != nil {
			return
		}
		if len(c.Params) == 0 || len(c.Params) > maxParams {
			t.Fatalf("%d params", len(c.Params))
		}
		for k, v := range c.Params {
			if k != strings.ToLower(k) || len(v) > maxValueLen {
				t.Fatalf("param %q=%q", k, v)
			}
		}
	})
}
