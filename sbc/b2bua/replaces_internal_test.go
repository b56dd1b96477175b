package b2bua

import (
	"net/url"
	"testing"

	"github.com/sipwall/sipwall/sbc"
)

func TestParseReplaces(t *testing.T) {
	tests := []struct {
		in            string
		ok            bool
		cid, to, from string
		out           string // String(); "" = in
		mapped        string // with("N", "T", "F")
	}{
		{in: "abc@h;to-tag=x;from-tag=y", ok: true, cid: "abc@h", to: "x", from: "y", mapped: "N;to-tag=T;from-tag=F"},
		{in: "abc;from-tag=y;to-tag=x", ok: true, cid: "abc", to: "x", from: "y", mapped: "N;from-tag=F;to-tag=T"},
		{in: "abc;to-tag=x;from-tag=y;early-only", ok: true, cid: "abc", to: "x", from: "y", mapped: "N;to-tag=T;from-tag=F;early-only"},
		{in: "abc;early-only;To-Tag=x;FROM-TAG=y;ext=1", ok: true, cid: "abc", to: "x", from: "y", mapped: "N;early-only;To-Tag=T;FROM-TAG=F;ext=1"},
		{in: " abc ; to-tag = x ; from-tag = y ", ok: true, cid: "abc", to: "x", from: "y", out: "abc;to-tag=x;from-tag=y"},
		{in: `abc;to-tag="x";from-tag=y`, ok: true, cid: "abc", to: "x", from: "y", mapped: `N;to-tag="T";from-tag=F`},
		{in: "abc;to-tag=0;from-tag=0", ok: true, cid: "abc", to: "0", from: "0"},
		{in: "abc;to-tag=x"},
		{in: "abc;from-tag=y"},
		{in: ";to-tag=x;from-tag=y"},
		{in: "abc;to-tag=x;from-tag=y;to-tag=z"},
		{in: "abc;to-tag=;from-tag=y"},
		{in: "abc;to-tag;from-tag=y"},
		{in: "a b;to-tag=x;from-tag=y"},
		{in: "abc;to-tag=x\r\nX-Evil: 1;from-tag=y"},
		{in: "abc;to-tag=x\x00;from-tag=y"},
		{in: `abc;to-tag="x;from-tag=y`},
		{in: "abc;to-tag=x;from-tag=y;a;b;c;d;e;f;g;h;i;j;k;l;m;n;o"}, // too many parameters
	}
	for _, tt := range tests {
		rp, err := parseReplaces(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("parseReplaces(%q) error %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if !tt.ok {
			continue
		}
		if rp.callID != tt.cid || rp.toTag() != tt.to || rp.fromTag() != tt.from {
			t.Errorf("parseReplaces(%q) = %q to %q from %q", tt.in, rp.callID, rp.toTag(), rp.fromTag())
		}
		want := tt.out
		if want == "" {
			want = tt.in
		}
		if got := rp.String(); got != want {
			t.Errorf("parseReplaces(%q).String() = %q, want %q", tt.in, got, want)
		}
		if tt.mapped != "" {
			if got := rp.with("N", "T", "F").String(); got != tt.mapped {
				t.Errorf("mapped %q = %q, want %q", tt.in, got, tt.mapped)
			}
			if rp.String() != want {
				t.Errorf("with() changed the original: %q", rp.String())
			}
		}
	}
}

func TestReferToReplaces(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		found   bool
		err     bool
		val     string
		set     string // the Refer-To with Replaces set to "N;to-tag=T;from-tag=F"
		wantSet string
	}{
		{name: "encoded", in: "<sip:bob@h?Replaces=abc%40h%3Bto-tag%3Dx%3Bfrom-tag%3Dy>", found: true, val: "abc@h;to-tag=x;from-tag=y",
			wantSet: "<sip:bob@h?Replaces=N%3Bto-tag%3DT%3Bfrom-tag%3DF>"},
		{name: "lower-case escapes and name", in: "<sip:bob@h?replaces=abc%3bto-tag%3dx%3bfrom-tag%3dy>", found: true, val: "abc;to-tag=x;from-tag=y",
			wantSet: "<sip:bob@h?replaces=N%3Bto-tag%3DT%3Bfrom-tag%3DF>"},
		{name: "other URI headers kept", in: "<sip:bob@h;transport=tcp?Require=replaces&Replaces=a%3Bfrom-tag%3Dy%3Bto-tag%3Dx&X=1>;method=INVITE", found: true, val: "a;from-tag=y;to-tag=x",
			wantSet: "<sip:bob@h;transport=tcp?Require=replaces&Replaces=N%3Bto-tag%3DT%3Bfrom-tag%3DF&X=1>;method=INVITE"},
		{name: "quoted display name with brackets", in: `"Bob <b@x> \"q\"" <sip:bob@h?Replaces=a%3Bto-tag%3Dx%3Bfrom-tag%3Dy>`, found: true, val: "a;to-tag=x;from-tag=y",
			wantSet: `"Bob <b@x> \"q\"" <sip:bob@h?Replaces=N%3Bto-tag%3DT%3Bfrom-tag%3DF>`},
		{name: "blind transfer", in: "<sip:bob@h>"},
		{name: "other headers only", in: "<sip:bob@h?Subject=hi>"},
		{name: "no brackets", in: "sip:bob@h"},
		{name: "broken escape", in: "<sip:bob@h?Replaces=a%3Bto-tag%3Dx%3Bfrom-tag%3Dy%4>", err: true},
		{name: "bad hex", in: "<sip:bob@h?Replaces=a%ZZ>", err: true},
		{name: "two Replaces", in: "<sip:bob@h?Replaces=a&Replaces=b>", err: true},
		{name: "unclosed", in: "<sip:bob@h?Replaces=a", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			val, found, err := referToReplaces(tt.in)
			if (err != nil) != tt.err || found != tt.found || val != tt.val {
				t.Fatalf("referToReplaces = %q, %v, %v; want %q, %v, err %v", val, found, err, tt.val, tt.found, tt.err)
			}
			if !found {
				return
			}
			got, err := setReferToReplaces(tt.in, "N;to-tag=T;from-tag=F")
			if err != nil || got != tt.wantSet {
				t.Errorf("setReferToReplaces = %q, %v; want %q", got, err, tt.wantSet)
			}
		})
	}
}

func TestEscape(t *testing.T) {
	in := "a1-_.!~*'()[]/?:+$;=@% &\"<>\r\n"
	want := "a1-_.!~*'()[]/?:+$%3B%3D%40%25%20%26%22%3C%3E%0D%0A"
	if got := escape(in); got != want {
		t.Errorf("escape = %q, want %q", got, want)
	}
	if back, err := url.PathUnescape(want); err != nil || back != in {
		t.Errorf("unescape = %q, %v; want %q", back, err, in)
	}
}

// TestReplacementSides: toward the inside an unmapped value passes as it
// came; toward the outside only a mapped one goes.
func TestReplacementSides(t *testing.T) {
	orig, err := parseReplaces("abc;to-tag=x;from-tag=y")
	if err != nil {
		t.Fatal(err)
	}
	none := &replacement{orig: orig}
	if v, ok := none.valueFor(sbc.Internal); !ok || v.String() != orig.String() {
		t.Errorf("inward unmapped = %q, %v; want as it came", v.String(), ok)
	}
	if _, ok := none.valueFor(sbc.External); ok {
		t.Error("outward unmapped allowed")
	}
	in := orig.with("inside", "a", "b")
	out := orig.with("outside", "c", "d")
	both := &replacement{orig: orig, mapped: []mappedReplaces{{value: in, side: sbc.Internal}, {value: out, side: sbc.External}}}
	if v, _ := both.valueFor(sbc.External); v.callID != "outside" {
		t.Errorf("outward = %q, want the outside leg", v.String())
	}
	if v, _ := both.valueFor(sbc.Internal); v.callID != "inside" {
		t.Errorf("inward = %q, want the inside leg", v.String())
	}
	if !both.reaches(sbc.External, sbc.Internal) || none.reaches(sbc.External) || !(*replacement)(nil).reaches(sbc.External) {
		t.Error("reaches wrong")
	}
}

// FuzzReplaces: reading, writing and re-reading a Refer-To's Replaces
// never panics, and what is written reads back the same and carries no
// line break.
func FuzzReplaces(f *testing.F) {
	for _, s := range []string{
		"<sip:bob@h?Replaces=abc%40h%3Bto-tag%3Dx%3Bfrom-tag%3Dy>",
		`"a<b" <sip:bob@h?X=1&Replaces=a%3Bfrom-tag%3D%22y%22%3Bto-tag%3Dx%3Bearly-only>;p=1`,
		"<sip:bob@h?Replaces=a%0D%0A%3Bto-tag%3Dx%3Bfrom-tag%3Dy>",
		"<sip:bob@h?Replaces=%",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		raw, found, err := referToReplaces(v)
		if err != nil || !found {
			return
		}
		rp, err := parseReplaces(raw)
		if err != nil {
			return
		}
		m := rp.with("n@h", "t", "f")
		nv, err := setReferToReplaces(v, m.String())
		if err != nil {
			t.Fatalf("setReferToReplaces(%q): %v", v, err)
		}
		raw2, found2, err := referToReplaces(nv)
		if err != nil || !found2 || raw2 != m.String() {
			t.Fatalf("re-read %q = %q, %v, %v; want %q", nv, raw2, found2, err, m.String())
		}
		for i := 0; i < len(m.String()); i++ {
			if c := m.String()[i]; c == '\r' || c == '\n' || c == 0 {
				t.Fatalf("mapped value %q has a control character", m.String())
			}
		}
	})
}
