package b2bua

import (
	"strconv"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// resp is a response to the INVITE with the given branch.
func resp(t *testing.T, code int, branch string) *sip.Response {
	t.Helper()
	raw := "SIP/2.0 " + strconv.Itoa(code) + " X\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=" + branch + "\r\n" +
		"From: <sip:a@127.0.0.1>;tag=f\r\nTo: <sip:b@127.0.0.1>;tag=t\r\n" +
		"Call-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Response)
}

func statuses(rs []*sip.Response) string {
	s := ""
	for _, r := range rs {
		s += strconv.Itoa(r.StatusCode) + " "
	}
	return s
}

// TestReadOrder drives readOrder the way the two sources interleave: the
// wire (OnResponse, in read order) and the transaction (upTo, in the
// order sipgo's goroutines reached it). Each response must come out once,
// in read order.
func TestReadOrder(t *testing.T) {
	const br = "z9hG4bK-order"
	type step struct {
		wire int // index of a response seen by OnResponse, or -1
		tx   int // index delivered by the transaction, or -1
		want string
	}
	tests := []struct {
		name  string
		codes []int
		steps []step
	}{
		{name: "in order, wire first", codes: []int{180, 200}, steps: []step{
			{0, -1, ""}, {-1, 0, "180 "}, {1, -1, ""}, {-1, 1, ""}}},
		{name: "in order, transaction first", codes: []int{180, 200}, steps: []step{
			{-1, 0, "180 "}, {0, -1, ""}, {1, -1, ""}, {-1, 1, ""}}},
		{name: "final overtakes the 180", codes: []int{180, 200}, steps: []step{
			{0, -1, ""}, {1, -1, ""}, {-1, 1, "180 "}}},
		{name: "183 overtakes 180, then 180 delivered", codes: []int{180, 183, 200}, steps: []step{
			{0, -1, ""}, {1, -1, ""}, {-1, 1, "180 183 "}, {-1, 0, ""}, {2, -1, ""}, {-1, 2, ""}}},
		{name: "error overtakes two", codes: []int{180, 183, 486}, steps: []step{
			{0, -1, ""}, {1, -1, ""}, {2, -1, ""}, {-1, 2, "180 183 "}}},
		{name: "later provisional stays queued", codes: []int{180, 183, 200}, steps: []step{
			{0, -1, ""}, {1, -1, ""}, {-1, 0, "180 "}, {-1, 1, "183 "}, {2, -1, ""}, {-1, 2, ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(Config{})
			o, untrack := b.trackOrder(br)
			rs := make([]*sip.Response, len(tt.codes))
			for i, c := range tt.codes {
				rs[i] = resp(t, c, br)
			}
			for i, s := range tt.steps {
				if s.wire >= 0 {
					b.OnResponse(rs[s.wire])
				}
				got := ""
				if s.tx >= 0 {
					got = statuses(o.upTo(rs[s.tx]))
				}
				if got != s.want {
					t.Errorf("step %d: relayed %q, want %q", i, got, s.want)
				}
			}
			untrack()
			if _, ok := b.orders.Load(br); ok {
				t.Error("order still tracked after untrack")
			}
		})
	}
}

// TestReadOrderBounded: a callee flooding provisionals cannot grow the
// queue past its bound, and responses to other branches are not kept.
func TestReadOrderBounded(t *testing.T) {
	b := New(Config{})
	o, untrack := b.trackOrder("z9hG4bK-mine")
	defer untrack()
	for range 10 * maxEarlyQueued {
		b.OnResponse(resp(t, 180, "z9hG4bK-mine"))
		b.OnResponse(resp(t, 180, "z9hG4bK-other"))
	}
	if n := len(o.read); n != maxEarlyQueued {
		t.Fatalf("%d provisionals kept, want the bound %d", n, maxEarlyQueued)
	}
	if got := len(o.upTo(resp(t, 200, "z9hG4bK-mine"))); got != maxEarlyQueued {
		t.Errorf("final released %d provisionals, want %d", got, maxEarlyQueued)
	}
	if n := len(o.relayed); n > maxEarlyQueued {
		t.Errorf("%d relayed entries, above the bound %d", n, maxEarlyQueued)
	}
}
