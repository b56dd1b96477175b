package decision

import (
	"net/netip"
	"strconv"
	"testing"
)

// The cost the chain pays per recorded decision: a new entry, and a repeat
// coalesced into the newest entry of its kind (a flood).
func BenchmarkAddNew(b *testing.B) {
	l := New(10000)
	users := make([]string, 1024)
	for i := range users {
		users[i] = "user" + strconv.Itoa(i)
	}
	src := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Add(Entry{Layer: "auth", Verdict: "rejected", Status: 407, Why: "bad-password", Method: "INVITE",
			Source: src, User: users[i%len(users)], To: "1000"})
		i++
	}
}

func BenchmarkAddCoalesced(b *testing.B) {
	l := New(10000)
	src := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		l.Add(Entry{Layer: "ban", Verdict: "dropped", Why: "banned (scanner)", Method: "OPTIONS", Source: src, User: "100"})
	}
}

func BenchmarkSearchFull(b *testing.B) {
	l := New(10000)
	for i := range 10000 {
		l.Add(Entry{Layer: "auth", Verdict: "rejected", User: "user" + strconv.Itoa(i), To: "1000"})
	}
	b.ReportAllocs()
	for b.Loop() {
		l.Search(Query{Text: "user9999"})
	}
}
