package sanity

import (
	"runtime"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc/sanity/wire"
)

// Content-Length bombs: values that would make a naive receiver allocate
// gigabytes or wait forever. Each must be decided without allocating more
// than 64 KiB, over UDP (PreParse first) and over TCP (sipgo's stream
// parser, then Validate). Timing is a benchmark, not an asserted wall time.
var bombs = []struct {
	name     string
	hdrs     []string
	body     string
	udp, tcp string // verdicts
}{
	{"4294967295", plus(baseHdrs, "Content-Length: 4294967295"), sdpBody, "drop", "drop"},
	{"2147483648", plus(baseHdrs, "l: 2147483648"), sdpBody, "drop", "drop"},
	{"99999999999999999999", plus(baseHdrs, "Content-Length: 99999999999999999999"), sdpBody, "drop", "drop"},
	{"leading zeros", plus(edit(baseHdrs, "Content-Type", "Content-Type: application/sdp"), "Content-Length: 000000010"), "v=0\r\no=- 1", "accept", "accept"},
	{"leading zeros short", plus(baseHdrs, "Content-Length: 000000010"), "v=0", "drop", "incomplete"},
	{"two headers", plus(baseHdrs, "Content-Length: 0", "l: 5"), "", "drop", "incomplete"},
	{"two equal headers", plus(baseHdrs, "Content-Length: 0", "Content-Length: 0"), "", "drop", "drop"},
	// sipgo's stream parser allocates the declared body (the last
	// Content-Length) before reading it, up to sip.ParseMaxMessageLength:
	// a short header section costs that much per connection until it
	// times out. Over UDP PreParse drops it first.
	{"declared 65000 sent 0", plus(baseHdrs, "Content-Length: 0", "l: 65000"), "", "drop", "incomplete"},
}

const bombBudget = 64 << 10

// budget for a bomb: 64 KiB, except where sipgo's stream parser allocates
// the declared body itself (see above); then its cap and a little.
func budget(name, transport string) uint64 {
	if transport == "tcp" && strings.HasPrefix(name, "declared") {
		return uint64(sip.ParseMaxMessageLength) + 4<<10
	}
	return bombBudget
}

func TestContentLengthBombs(t *testing.T) {
	for _, b := range bombs {
		data := build(inviteLine, b.hdrs, b.body)
		for _, tr := range []string{"udp", "tcp"} {
			want := b.udp
			if tr == "tcp" {
				want = b.tcp
			}
			t.Run(b.name+"/"+tr, func(t *testing.T) {
				if got := receive(t, tr, data).verdict; got != want {
					t.Fatalf("%s, want %s", got, want)
				}
				if per, max := allocBytes(func() { receive(t, tr, data) }), budget(b.name, tr); per > max {
					t.Fatalf("%d bytes allocated per message, budget %d", per, max)
				}
			})
		}
	}
}

// allocBytes is the heap allocated per call of f, averaged over runs.
func allocBytes(f func()) uint64 {
	const runs = 50
	f() // warm up pools and lazy initialisation
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < runs; i++ {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / runs
}

func BenchmarkContentLengthBomb(b *testing.B) {
	for _, bomb := range bombs {
		data := build(inviteLine, bomb.hdrs, bomb.body)
		for _, tr := range []string{"udp", "tcp"} {
			b.Run(strings.ReplaceAll(bomb.name, " ", "_")+"/"+tr, func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					receive(b, tr, data)
				}
			})
		}
	}
}

// The cost on every message: a typical INVITE through PreParse, sipgo's
// parser and Validate, and the two checks alone.
func BenchmarkPreParseValidate(b *testing.B) {
	data := build(inviteLine, baseHdrs, sdpBody)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		pre := wire.PreParse("udp", data, 0)
		msg, err := sip.ParseMessage(pre.Data)
		if err != nil {
			b.Fatal(err)
		}
		if p := Validate(msg.(*sip.Request), "udp"); !p.OK() {
			b.Fatal(p)
		}
	}
}

func BenchmarkPreParse(b *testing.B) {
	data := build(inviteLine, baseHdrs, sdpBody)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		if wire.PreParse("udp", data, 0).Action != wire.Accept {
			b.Fatal("dropped")
		}
	}
}

func BenchmarkValidate(b *testing.B) {
	msg, err := sip.ParseMessage(build(inviteLine, baseHdrs, sdpBody))
	if err != nil {
		b.Fatal(err)
	}
	req := msg.(*sip.Request)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if p := Validate(req, "udp"); !p.OK() {
			b.Fatal(p)
		}
	}
}

func BenchmarkParseOnly(b *testing.B) {
	data := build(inviteLine, baseHdrs, sdpBody)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := sip.ParseMessage(data); err != nil {
			b.Fatal(err)
		}
	}
}

// Validate must not allocate for a valid request: it runs on every one.
func TestValidateDoesNotAllocate(t *testing.T) {
	msg, err := sip.ParseMessage(build(inviteLine, plus(baseHdrs, "Require: timer", "Date: Sat, 13 Nov 2010 23:29:00 GMT", "Subject: hi"), sdpBody))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	if p := Validate(req, "udp"); !p.OK() {
		t.Fatal(p)
	}
	if n := testing.AllocsPerRun(100, func() { Validate(req, "udp") }); n > 0 {
		t.Errorf("%v allocations per Validate", n)
	}
}
