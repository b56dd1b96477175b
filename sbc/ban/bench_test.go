package ban

import (
	"net/netip"
	"testing"
	"time"
)

// benchManager holds 10000 IPv4 host bans, 10000 IPv6 host bans and
// 10000 IPv6 /64 bans.
func benchManager(tb testing.TB) *Manager {
	tb.Helper()
	m := newManager(tb, Options{})
	for i := range 10000 {
		for _, p := range []netip.Prefix{
			netip.PrefixFrom(nthV4(i), 32),
			netip.PrefixFrom(nthV6(i, false), 128),
			netip.PrefixFrom(nthV6(i, true), 64),
		} {
			if _, err := m.Ban(p, time.Hour, "", ""); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return m
}

func TestBannedAllocs(t *testing.T) {
	m := benchManager(t)
	for _, tc := range []struct {
		name string
		ip   netip.Addr
		hit  bool
	}{
		{"miss v4", addr("192.0.2.1"), false},
		{"miss v6", addr("2001:db9::1"), false},
		{"miss mapped", addr("::ffff:192.0.2.1"), false},
		{"hit v4", nthV4(77), true},
		{"hit v6 /64", addr("2001:db8:0:4d::99"), true},
	} {
		var ok bool
		allocs := testing.AllocsPerRun(1000, func() { _, ok = m.Banned(tc.ip) })
		if ok != tc.hit || allocs != 0 {
			t.Errorf("%s: banned %v, %v allocs per call", tc.name, ok, allocs)
		}
	}
}

func BenchmarkBanned(b *testing.B) {
	m := benchManager(b)
	for _, bc := range []struct {
		name string
		ip   netip.Addr
		want bool
	}{
		{"hit-v4", nthV4(1234), true},
		{"hit-v6-64", addr("2001:db8:0:4d2::7"), true},
		{"miss-v4", addr("192.0.2.1"), false},
		{"miss-v6", addr("2001:db9::1"), false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := m.Banned(bc.ip); ok != bc.want {
					b.Fatal("wrong answer")
				}
			}
		})
		b.Run(bc.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, ok := m.Banned(bc.ip); ok != bc.want {
						b.Error("wrong answer")
						return
					}
				}
			})
		})
	}
}
