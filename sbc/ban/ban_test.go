package ban

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestThresholdWindow(t *testing.T) {
	type ev struct {
		at   time.Duration // since t0
		ip   string
		user string
	}
	burst := func(ip string, n int, at time.Duration) []ev {
		var out []ev
		for range n {
			out = append(out, ev{at, ip, "1000"})
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		opt       Options
		events    []ev
		banned    []string // addresses that must be banned
		notBanned []string
		evidence  string // of the first banned address
	}{
		{
			name:     "five in a burst ban",
			events:   burst("192.0.2.1", 5, 0),
			banned:   []string{"192.0.2.1"},
			evidence: `5 failed digests in 60s, last user "1000"`,
		},
		{
			name:      "four do not",
			events:    burst("192.0.2.1", 4, 0),
			notBanned: []string{"192.0.2.1"},
		},
		{
			name: "spread over more than the window",
			events: append(burst("192.0.2.1", 4, 0),
				ev{130 * time.Second, "192.0.2.1", "1000"}),
			notBanned: []string{"192.0.2.1"},
		},
		{
			// A fixed window would miss these: 0 | 50 55 58 | 61 62 has
			// five failures within the 60s before 62, across the edge.
			name: "burst across the window edge",
			events: []ev{
				{0, "192.0.2.1", "a"}, {50 * time.Second, "192.0.2.1", "a"},
				{55 * time.Second, "192.0.2.1", "a"}, {58 * time.Second, "192.0.2.1", "a"},
				{61 * time.Second, "192.0.2.1", "a"}, {62 * time.Second, "192.0.2.1", "b"},
			},
			banned:   []string{"192.0.2.1"},
			evidence: `5 failed digests in 60s, last user "b"`,
		},
		{
			name: "four within the last window across the edge",
			events: []ev{
				{0, "192.0.2.1", "a"}, {50 * time.Second, "192.0.2.1", "a"},
				{55 * time.Second, "192.0.2.1", "a"}, {58 * time.Second, "192.0.2.1", "a"},
				{61 * time.Second, "192.0.2.1", "a"},
			},
			notBanned: []string{"192.0.2.1"},
		},
		{
			name: "addresses are counted apart",
			events: slices.Concat(burst("192.0.2.1", 4, 0), burst("192.0.2.2", 4, 0),
				burst("192.0.2.3", 4, 0)),
			notBanned: []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"},
		},
		{
			name:     "v4-mapped counts as v4",
			events:   burst("::ffff:192.0.2.7", 5, 0),
			banned:   []string{"192.0.2.7", "::ffff:192.0.2.7"},
			evidence: `5 failed digests in 60s, last user "1000"`,
		},
		{
			name:      "custom threshold and window",
			opt:       Options{Threshold: 3, Window: 10 * time.Second},
			events:    []ev{{0, "192.0.2.2", ""}, {0, "192.0.2.1", ""}, {0, "192.0.2.1", ""}, {9 * time.Second, "192.0.2.1", ""}},
			banned:    []string{"192.0.2.1"},
			notBanned: []string{"192.0.2.2"},
			evidence:  `3 failed digests in 10s`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			opt := tc.opt
			opt.Now = c.Now
			m := newManager(t, opt)
			for _, e := range tc.events {
				c.Set(t0.Add(e.at))
				m.Failure(addr(e.ip), e.user, "bad-password")
			}
			for i, ip := range tc.banned {
				e := mustBanned(t, m, ip)
				if e.Reason != ReasonAuthFailures || e.Level != 0 || !e.Until.Equal(c.Now().Add(time.Hour)) {
					t.Errorf("%s: entry %v", ip, e)
				}
				if i == 0 && e.Evidence != tc.evidence {
					t.Errorf("evidence %q, want %q", e.Evidence, tc.evidence)
				}
			}
			for _, ip := range tc.notBanned {
				mustNotBanned(t, m, ip)
			}
			st := m.Stats()
			if st.Failures != uint64(len(tc.events)) {
				t.Errorf("Failures %d, want %d", st.Failures, len(tc.events))
			}
			wantBans := 0
			if len(tc.banned) > 0 {
				wantBans = 1
			}
			if st.Bans[ReasonAuthFailures] != uint64(wantBans) || st.Active != wantBans {
				t.Errorf("stats %+v, want %d ban", st, wantBans)
			}
		})
	}
}

func TestEvidenceQuotesAttackerText(t *testing.T) {
	m := newManager(t, Options{Now: newClock().Now})
	user := "a\"b\r\nINVITE " + strings.Repeat("x", 200)
	fail(m, addr("192.0.2.1"), user, 5)
	e := mustBanned(t, m, "192.0.2.1")
	if strings.ContainsAny(e.Evidence, "\r\n") || !strings.Contains(e.Evidence, `last user "a\"b\r\nINVITE xxx`) ||
		!strings.HasSuffix(e.Evidence, `xxx"...`) || len(e.Evidence) > 140 {
		t.Fatalf("evidence %q", e.Evidence)
	}
}

func TestNoRebanWhileBanned(t *testing.T) {
	c := newClock()
	sink := newSink()
	m := newManager(t, Options{Now: c.Now, Sink: sink})
	fail(m, addr("192.0.2.1"), "1000", 5)
	first := mustBanned(t, m, "192.0.2.1")
	c.Add(time.Minute)
	fail(m, addr("192.0.2.1"), "1000", 50)
	if got := mustBanned(t, m, "192.0.2.1"); got != first {
		t.Fatalf("entry changed: %v -> %v", first, got)
	}
	if calls := sink.Calls(); !slices.Equal(calls, []string{"ban 192.0.2.1/32"}) {
		t.Fatalf("sink calls %v", calls)
	}
	st := m.Stats()
	if st.Failures != 5 || st.Ignored != 50 || st.Bans[ReasonAuthFailures] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestEscalation(t *testing.T) {
	// Each step: how long after the end of the previous ban the next one
	// is earned, and the duration and level it must get.
	type step struct {
		gap   time.Duration
		want  time.Duration
		level int
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"doubles up to the cap", []step{
			{0, time.Hour, 0}, {time.Second, 2 * time.Hour, 1}, {time.Second, 4 * time.Hour, 2},
			{time.Second, 5 * time.Hour, 3}, {time.Second, 5 * time.Hour, 3},
		}},
		{"remembered until Forget", []step{
			{0, time.Hour, 0}, {24*time.Hour - time.Second, 2 * time.Hour, 1},
		}},
		{"forgotten after Forget", []step{
			{0, time.Hour, 0}, {time.Second, 2 * time.Hour, 1}, {24 * time.Hour, time.Hour, 0},
			{time.Minute, 2 * time.Hour, 1},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			s := openStore(t, c)
			m := newManager(t, Options{Now: c.Now, Store: s, MaxBanTime: 5 * time.Hour})
			ip := addr("192.0.2.1")
			for i, st := range tc.steps {
				if i > 0 {
					prev := m.Bans()[0]
					c.Set(prev.Until.Add(st.gap))
					m.Sweep()
					mustNotBanned(t, m, "192.0.2.1")
				}
				fail(m, ip, "1000", 5)
				e := mustBanned(t, m, "192.0.2.1")
				if d := e.Until.Sub(e.Since); d != st.want || e.Level != st.level {
					t.Fatalf("step %d: %s level %d, want %s level %d", i, d, e.Level, st.want, st.level)
				}
				lv, ok, err := levelBucket(t, s).Get("192.0.2.1/32")
				if err != nil || !ok || lv.Level != st.level || !lv.Until.Equal(e.Until) {
					t.Fatalf("step %d: stored level %+v %v %v", i, lv, ok, err)
				}
			}
		})
	}
}

func TestPrefix64(t *testing.T) {
	c := newClock()
	sink := newSink()
	m := newManager(t, Options{Now: c.Now, Sink: sink})
	// 20 addresses of one /64, one failure each: no address reaches 5.
	for i := range 19 {
		m.Failure(nthV6(i+1, false), "u", "bad-password")
	}
	mustNotBanned(t, m, "2001:db8::1")
	m.Failure(addr("2001:db8::abcd"), "last", "bad-password")
	e := mustBanned(t, m, "2001:db8::ffff:1")
	want := `20 failed digests from the /64 in 60s, last from 2001:db8::abcd, last user "last"`
	if e.Prefix != prefix("2001:db8::/64") || e.Reason != ReasonPrefixFailures || e.Evidence != want {
		t.Fatalf("entry %v", e)
	}
	mustNotBanned(t, m, "2001:db8:0:1::1")
	if got := sink.prefixes(); !slices.Equal(got, []string{"2001:db8::/64"}) {
		t.Fatalf("sink %v", got)
	}
	// Failures from inside a banned /64 are not counted any more.
	fail(m, addr("2001:db8::77"), "u", 10)
	if st := m.Stats(); st.Ignored != 10 || st.Active != 1 {
		t.Fatalf("stats %+v", st)
	}

	// IPv4 has no aggregation: 20 addresses of a /24 stay free.
	for i := range 20 {
		m.Failure(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), "u", "bad-password")
	}
	if len(m.Bans()) != 1 {
		t.Fatalf("bans %v", m.Bans())
	}
}

func TestBannedExactBeforeNetwork(t *testing.T) {
	c := newClock()
	m := newManager(t, Options{Now: c.Now})
	if _, err := m.Ban(prefix("2001:db8::/64"), time.Hour, "manual", "net"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Ban(prefix("2001:db8::5/128"), 2*time.Hour, "policy", "host"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Ban(prefix("203.0.113.0/24"), time.Hour, "", "office"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ ip, want string }{
		{"2001:db8::5", "2001:db8::5/128"},
		{"2001:db8::6", "2001:db8::/64"},
		{"fe80::1%eth0", ""},
		{"203.0.113.200", "203.0.113.0/24"},
		{"::ffff:203.0.113.9", "203.0.113.0/24"},
		{"203.0.114.1", ""},
	} {
		e, ok := m.Banned(addr(tc.ip))
		if got := ""; ok {
			got = e.Prefix.String()
			if got != tc.want {
				t.Errorf("%s: %s, want %s", tc.ip, got, tc.want)
			}
		} else if tc.want != "" {
			t.Errorf("%s: not banned, want %s", tc.ip, tc.want)
		}
	}
	// When the host ban ends, the network ban still covers the address.
	c.Add(90 * time.Minute)
	mustNotBanned(t, m, "2001:db8::6")
	if e := mustBanned(t, m, "2001:db8::5"); e.Prefix.Bits() != 128 {
		t.Fatalf("entry %v", e)
	}
	if ok, _ := m.Unban(prefix("2001:db8::5/128")); !ok {
		t.Fatal("unban of a ban in force reported false")
	}
	mustNotBanned(t, m, "2001:db8::5")
}

func TestUserLock(t *testing.T) {
	c := newClock()
	m := newManager(t, Options{Now: c.Now})
	phone := addr("192.0.2.10")
	m.Success(phone, "1000")
	// A cracker spread over many addresses, each below Threshold.
	for i := range 19 {
		m.Failure(nthV4(i), "1000", "bad-password")
	}
	if m.UserLocked("1000", nthV4(100)) {
		t.Fatal("locked after 19 failures")
	}
	// Unknown users are not counted against the name.
	for i := range 30 {
		m.Failure(nthV4(200+i), "1000", ReasonUnknownUser)
	}
	if m.UserLocked("1000", nthV4(100)) {
		t.Fatal("unknown-user failures locked the user")
	}
	m.Failure(nthV4(19), "1000", "bad-password")
	for _, tc := range []struct {
		user string
		ip   netip.Addr
		want bool
	}{
		{"1000", nthV4(100), true},
		{"1000", nthV4(3), true},
		{"1000", phone, false},
		{"1000", addr("::ffff:192.0.2.10"), false},
		{"1001", nthV4(100), false},
		{"", nthV4(100), false},
	} {
		if got := m.UserLocked(tc.user, tc.ip); got != tc.want {
			t.Errorf("UserLocked(%q, %s) = %v, want %v", tc.user, tc.ip, got, tc.want)
		}
	}
	locks := m.LockedUsers()
	if len(locks) != 1 || locks[0].User != "1000" || !locks[0].Until.Equal(c.Now().Add(time.Hour)) ||
		locks[0].Evidence != "20 failed digests in 60s, last from 100.0.0.19" {
		t.Fatalf("locks %+v", locks)
	}
	if st := m.Stats(); st.UserLocks != 1 || st.Locked != 1 || len(m.Bans()) != 0 {
		t.Fatalf("stats %+v, bans %v", st, m.Bans())
	}
	c.Add(time.Hour)
	if m.UserLocked("1000", nthV4(100)) || len(m.LockedUsers()) != 0 {
		t.Fatal("lock outlived UserLockTime")
	}
}

func TestKnownGoodKeepsEight(t *testing.T) {
	c := newClock()
	m := newManager(t, Options{Now: c.Now, UserThreshold: 1, UserLockTime: time.Minute})
	for i := range 9 {
		m.Success(nthV4(i), "alice")
	}
	m.Success(nthV4(1), "alice") // refreshed: now the newest
	m.Success(nthV4(9), "alice") // pushes out the oldest, 2
	m.Failure(addr("203.0.113.1"), "alice", "bad-password")
	for i, want := range []bool{true, false, true, false, false, false, false, false, false, false} {
		if got := m.UserLocked("alice", nthV4(i)); got != want {
			t.Errorf("address %d: locked %v, want %v", i, got, want)
		}
	}
}

func TestTrustedNeverBannedOrCounted(t *testing.T) {
	c := newClock()
	sink := newSink()
	trusted := func(ip netip.Addr) (string, bool) {
		return "pbx", prefix("10.0.0.0/8").Contains(ip)
	}
	m := newManager(t, Options{Now: c.Now, Sink: sink, Trusted: trusted, UserThreshold: 1})
	fail(m, addr("10.1.1.1"), "1000", 100)
	fail(m, addr("::ffff:10.1.1.2"), "1000", 100)
	mustNotBanned(t, m, "10.1.1.1")
	if a, n, u, _, _, _, _ := m.tableLens(); a+n+u != 0 {
		t.Fatalf("trusted failures were counted: %d %d %d", a, n, u)
	}
	if st := m.Stats(); st.Failures != 0 || st.Ignored != 200 || len(m.LockedUsers()) != 0 {
		t.Fatalf("stats %+v", st)
	}
	for _, tc := range []struct {
		p   string
		err error
	}{
		{"10.1.1.1/32", ErrTrusted},
		{"10.0.0.0/16", ErrTrusted},
		{"10.255.0.0/16", ErrTrusted},
		{"::ffff:10.9.9.9/128", ErrTrusted},
		{"9.255.0.0/15", ErrBadPrefix},
	} {
		if _, err := m.Ban(prefix(tc.p), 0, "manual", ""); !errors.Is(err, tc.err) {
			t.Errorf("Ban(%s): %v, want %v", tc.p, err, tc.err)
		}
	}
	if _, err := m.Ban(prefix("9.255.0.0/16"), 0, "manual", ""); err != nil {
		t.Fatalf("ban next to the trusted range: %v", err)
	}
	if len(sink.Calls()) != 1 {
		t.Fatalf("sink calls %v", sink.Calls())
	}
	// A locked user is never locked for a trusted address.
	m.Failure(addr("192.0.2.1"), "1000", "bad-password")
	if !m.UserLocked("1000", addr("192.0.2.2")) || m.UserLocked("1000", addr("10.0.0.1")) {
		t.Fatal("user lock vs trusted address")
	}
}

func TestManualBan(t *testing.T) {
	c := newClock()
	sink := newSink()
	m := newManager(t, Options{Now: c.Now, Sink: sink})
	for _, tc := range []struct {
		name     string
		p        string
		d        time.Duration
		reason   string
		evidence string
		err      error
		want     Entry
	}{
		{name: "explicit duration", p: "192.0.2.1/32", d: 10 * time.Minute, reason: "policy", evidence: "ev",
			want: Entry{Prefix: prefix("192.0.2.1/32"), Reason: "policy", Evidence: "ev", Since: t0, Until: t0.Add(10 * time.Minute)}},
		{name: "again: level rises, d still rules", p: "192.0.2.1/32", d: 5 * time.Minute,
			want: Entry{Prefix: prefix("192.0.2.1/32"), Reason: "manual", Since: t0, Until: t0.Add(5 * time.Minute), Level: 1}},
		{name: "default duration escalates", p: "192.0.2.1/32",
			want: Entry{Prefix: prefix("192.0.2.1/32"), Reason: "manual", Since: t0, Until: t0.Add(4 * time.Hour), Level: 2}},
		{name: "mapped prefix unmapped and masked", p: "::ffff:198.51.100.77/120", d: time.Hour,
			want: Entry{Prefix: prefix("198.51.100.0/24"), Reason: "manual", Since: t0, Until: t0.Add(time.Hour)}},
		{name: "long evidence cut", p: "198.51.101.1/32", d: time.Hour, evidence: strings.Repeat("e", 1000),
			want: Entry{Prefix: prefix("198.51.101.1/32"), Reason: "manual", Evidence: strings.Repeat("e", MaxEvidenceLen), Since: t0, Until: t0.Add(time.Hour)}},
		{name: "too wide v4", p: "10.0.0.0/8", err: ErrBadPrefix},
		{name: "too wide v6", p: "2001:db8::/16", err: ErrBadPrefix},
		{name: "mapped too wide", p: "::ffff:0.0.0.0/90", err: ErrBadPrefix},
		{name: "invalid", err: ErrBadPrefix},
		{name: "bad reason", p: "192.0.2.9/32", reason: "Bad Reason\n", err: ErrBadReason},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p netip.Prefix
			if tc.p != "" {
				p = prefix(tc.p)
			}
			e, err := m.Ban(p, tc.d, tc.reason, tc.evidence)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e != tc.want {
				t.Fatalf("entry\n %v\nwant\n %v", e, tc.want)
			}
			if got, ok := m.Banned(tc.want.Prefix.Addr()); !ok || got != e {
				t.Fatalf("Banned: %v %v", got, ok)
			}
		})
	}
	if st := m.Stats(); st.Bans[ReasonManual] != 4 || st.Bans[ReasonPolicy] != 1 || st.Active != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestExpiry(t *testing.T) {
	c := newClock()
	s := openStore(t, c)
	sink := newSink()
	m := newManager(t, Options{Now: c.Now, Store: s, Sink: sink, Forget: time.Hour})
	fail(m, addr("192.0.2.1"), "1000", 5)
	m.Failure(addr("192.0.2.2"), "1000", "bad-password")
	e := mustBanned(t, m, "192.0.2.1")

	c.Set(e.Until.Add(-time.Nanosecond))
	mustBanned(t, m, "192.0.2.1")
	c.Set(e.Until)
	mustNotBanned(t, m, "192.0.2.1")
	if len(m.Bans()) != 0 || m.Stats().Active != 0 {
		t.Fatalf("ended ban listed: %v", m.Bans())
	}
	if _, ok, _ := bansBucket(t, s).Get("192.0.2.1/32"); ok {
		t.Fatal("ended ban still readable in the store")
	}
	if n := m.Sweep(); n != 1 {
		t.Fatalf("Sweep lifted %d, want 1", n)
	}
	if got := sink.Calls(); !slices.Equal(got, []string{"ban 192.0.2.1/32", "unban 192.0.2.1/32"}) {
		t.Fatalf("sink calls %v", got)
	}
	if n, _ := bansBucket(t, s).Len(); n != 0 {
		t.Fatalf("store holds %d bans", n)
	}
	// Idle counters went with the sweep (two windows passed); the level
	// stays until Forget after the end of the ban.
	a, _, u, _, lv, b, _ := m.tableLens()
	if a != 0 || u != 0 || lv != 1 || b != 0 {
		t.Fatalf("tables addrs %d users %d levels %d bans %d", a, u, lv, b)
	}
	c.Add(time.Hour)
	m.Sweep()
	if _, _, _, _, lv, _, _ := m.tableLens(); lv != 0 {
		t.Fatalf("level outlived Forget")
	}
	if m.Sweep() != 0 || len(sink.Calls()) != 2 {
		t.Fatalf("second sweep did more: %v", sink.Calls())
	}
}

func TestUnbanKeepsLevel(t *testing.T) {
	c := newClock()
	s := openStore(t, c)
	sink := newSink()
	m := newManager(t, Options{Now: c.Now, Store: s, Sink: sink})
	fail(m, addr("192.0.2.1"), "1000", 5)
	mustBanned(t, m, "192.0.2.1")

	ok, err := m.Unban(prefix("::ffff:192.0.2.1/128"))
	if !ok || err != nil {
		t.Fatalf("Unban: %v %v", ok, err)
	}
	mustNotBanned(t, m, "192.0.2.1")
	if _, ok, _ := bansBucket(t, s).Get("192.0.2.1/32"); ok {
		t.Fatal("unbanned entry still in the store")
	}
	if got := sink.prefixes(); len(got) != 0 {
		t.Fatalf("sink still holds %v", got)
	}
	if ok, err := m.Unban(prefix("192.0.2.1/32")); ok || err != nil {
		t.Fatalf("second Unban: %v %v", ok, err)
	}
	if _, err := m.Unban(netip.Prefix{}); !errors.Is(err, ErrBadPrefix) {
		t.Fatalf("Unban(invalid): %v", err)
	}
	// The next ban of a repeat offender is not short.
	fail(m, addr("192.0.2.1"), "1000", 5)
	if e := mustBanned(t, m, "192.0.2.1"); e.Level != 1 || e.Until.Sub(e.Since) != 2*time.Hour {
		t.Fatalf("entry after unban %v", e)
	}
}

func TestSinkErrorsAreNotFatal(t *testing.T) {
	c := newClock()
	sink := newSink()
	sink.fail = true
	m := newManager(t, Options{Now: c.Now, Sink: sink})
	fail(m, addr("192.0.2.1"), "1000", 5)
	mustBanned(t, m, "192.0.2.1")
	if _, err := m.Ban(prefix("192.0.2.2/32"), 0, "", ""); err != nil {
		t.Fatalf("Ban with a failing sink: %v", err)
	}
	if ok, err := m.Unban(prefix("192.0.2.2/32")); !ok || err != nil {
		t.Fatalf("Unban with a failing sink: %v %v", ok, err)
	}
	if st := m.Stats(); st.SinkErrors != 3 || st.Active != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestStoreErrorsAreReturnedNotFatal(t *testing.T) {
	c := newClock()
	s := openStore(t, c)
	m := newManager(t, Options{Now: c.Now, Store: s})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := m.Ban(prefix("192.0.2.2/32"), 0, "", "")
	if err == nil {
		t.Fatal("Ban on a closed store reported no error")
	}
	mustBanned(t, m, "192.0.2.2")
	fail(m, addr("192.0.2.1"), "1000", 5)
	mustBanned(t, m, "192.0.2.1")
	if st := m.Stats(); st.StoreErrors != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  Options
		ok   bool
	}{
		{"defaults", Options{}, true},
		{"negative threshold", Options{Threshold: -1}, false},
		{"negative window", Options{Window: -time.Second}, false},
		{"cap below first ban", Options{BanTime: 2 * time.Hour, MaxBanTime: time.Hour}, false},
		{"empty agent matches all", Options{ScannerAgents: []string{"sipvicious", ""}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.opt)
			if (err == nil) != tc.ok {
				t.Fatalf("err %v", err)
			}
			if !tc.ok {
				return
			}
			o := m.opt
			if o.Threshold != 5 || o.Window != time.Minute || o.BanTime != time.Hour ||
				o.MaxBanTime != 7*24*time.Hour || o.Forget != 24*time.Hour || o.Prefix6Threshold != 20 ||
				o.UserThreshold != 20 || o.UserLockTime != time.Hour || o.MaxTracked != 100000 ||
				len(m.agents) != len(DefaultScannerAgents) || m.maxLevel != 8 {
				t.Fatalf("defaults %+v, maxLevel %d", o, m.maxLevel)
			}
		})
	}
}

// OnEvent hears of every ban, unban and lock, local or remote.
func TestOnEventReportsBansUnbansAndLocks(t *testing.T) {
	var mu sync.Mutex
	var got []string
	c := newClock()
	m := newManager(t, Options{Now: c.Now, UserThreshold: 2, OnEvent: func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		switch ev.Kind {
		case EventLock:
			got = append(got, ev.Kind+" "+ev.Lock.User)
		default:
			got = append(got, fmt.Sprintf("%s %s %s remote=%v", ev.Kind, ev.Entry.Prefix, ev.Entry.Reason, ev.Remote))
		}
	}})
	p := netip.MustParsePrefix("192.0.2.1/32")
	if _, err := m.Ban(p, time.Hour, ReasonManual, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Unban(p); err != nil {
		t.Fatal(err)
	}
	q := netip.MustParsePrefix("192.0.2.2/32")
	if err := m.ApplyRemote(Entry{Prefix: q, Reason: ReasonScanner, Until: c.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.RemoveRemote(q); err != nil {
		t.Fatal(err)
	}
	m.Failure(netip.MustParseAddr("192.0.2.3"), "dave", "bad_password")
	m.Failure(netip.MustParseAddr("192.0.2.4"), "dave", "bad_password")
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"banned 192.0.2.1/32 manual remote=false",
		"unbanned 192.0.2.1/32  remote=false",
		"banned 192.0.2.2/32 scanner remote=true",
		"unbanned 192.0.2.2/32  remote=true",
		"locked dave",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
