package ban

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc"
)

// TestTablesBounded drives a million distinct addresses, /64s and user
// names through the counters: memory must stay at MaxTracked per table.
func TestTablesBounded(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	const max = 1000
	c := newClock()
	m := newManager(t, Options{Now: c.Now, MaxTracked: max})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range n {
		if i%1000 == 0 {
			c.Add(time.Millisecond)
		}
		m.Failure(nthV6(i, true), fmt.Sprint("user", i), "bad-password")
		m.Success(nthV4(i), fmt.Sprint("good", i))
	}
	a, nets, u, g, lv, bans, locks := m.tableLens()
	if a != max || nets != max || u != max || g != max || lv != 0 || bans != 0 || locks != 0 {
		t.Fatalf("tables: addrs %d nets %d users %d good %d levels %d bans %d locks %d, max %d",
			a, nets, u, g, lv, bans, locks, max)
	}
	if st := m.Stats(); st.Evicted != uint64(4*(n-max)) || st.Failures != uint64(n) {
		t.Fatalf("stats %+v", st)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	// Four tables of 1000 small entries: far below what a million would take.
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 16<<20 {
		t.Fatalf("heap grew by %d bytes", grown)
	}
	// Most recent keys survive: the last address is still counted.
	last := nthV6(n-1, true)
	fail(m, last, "x", 4)
	if _, ok := m.Banned(last); !ok {
		t.Fatal("the most recent counter was evicted")
	}
}

// TestBansBounded: MaxBans caps the ban table; the bans lifted to make
// room leave the sink and the store too.
func TestBansBounded(t *testing.T) {
	c := newClock()
	s := openStore(t, c)
	sink := newSink()
	m := newManager(t, Options{Now: c.Now, Store: s, Sink: sink, Threshold: 1, MaxBans: 10, MaxTracked: 20})
	for i := range 60 {
		c.Add(time.Second) // later bans end later
		m.Failure(nthV4(i), "u", ReasonUnknownUser)
	}
	_, _, _, _, lv, bans, _ := m.tableLens()
	if bans != 10 || lv != 20 {
		t.Fatalf("bans %d levels %d", bans, lv)
	}
	got := entryPrefixes(m.Bans())
	var want []string
	for i := 50; i < 60; i++ {
		want = append(want, netip.PrefixFrom(nthV4(i), 32).String())
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("kept %v", got)
	}
	if sp := sink.prefixes(); !slices.Equal(sp, want) {
		t.Fatalf("sink holds %v, want the same as memory", sp)
	}
	if n, _ := bansBucket(t, s).Len(); n != 10 {
		t.Fatalf("store holds %d", n)
	}
	if st := m.Stats(); st.Evicted != 50+40 {
		t.Fatalf("evicted %d", st.Evicted)
	}
}

func TestUserLocksBounded(t *testing.T) {
	c := newClock()
	m := newManager(t, Options{Now: c.Now, UserThreshold: 1, MaxTracked: 10})
	for i := range 100 {
		c.Add(time.Second)
		m.Failure(nthV4(i), fmt.Sprint("u", i), "bad-password")
	}
	locks := m.LockedUsers()
	if len(locks) != 10 || locks[0].User != "u90" || locks[9].User != "u99" {
		t.Fatalf("locks %v", locks)
	}
}

// TestConcurrent hammers every method from several goroutines under
// -race, then checks that memory, store and sink agree.
func TestConcurrent(t *testing.T) {
	c := newClock()
	s := openStore(t, c)
	sink := newSink()
	m := newManager(t, Options{Now: c.Now, Store: s, Sink: sink, MaxBans: 40, MaxTracked: 64,
		BanTime: time.Minute, Trusted: func(ip netip.Addr) (string, bool) { return "t", ip == nthV4(0) }})
	l := m.Layer()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx)

	const workers, ops = 8, 600
	start := runtime.NumGoroutine()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range ops {
				ip := nthV4(rng.IntN(64))
				if rng.IntN(2) == 0 {
					ip = nthV6(rng.IntN(64), rng.IntN(2) == 0)
				}
				user := fmt.Sprint("u", rng.IntN(8))
				switch rng.IntN(10) {
				case 0, 1, 2:
					m.Failure(ip, user, "bad-password")
				case 3:
					m.Success(ip, user)
				case 4:
					_ = m.UserLocked(user, ip)
				case 5:
					_, _ = m.Ban(netip.PrefixFrom(ip, ip.BitLen()), time.Duration(rng.IntN(120))*time.Second, "", "")
				case 6:
					_, _ = m.Unban(netip.PrefixFrom(ip, ip.BitLen()))
				case 7:
					r := request(t, netip.AddrPortFrom(ip, 5060), sbc.External, "User-Agent: sipvicious")
					_, _ = l.ServeSIP(ctx, &recorder{}, r)
				case 8:
					c.Add(time.Duration(rng.IntN(3)) * time.Second)
					m.Sweep()
				default:
					_, _ = m.Banned(ip)
					_ = m.Stats()
					_ = m.Bans()
					_ = m.LockedUsers()
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	m.Sweep()

	want := entryPrefixes(m.Bans())
	if len(want) == 0 || len(want) > 40 {
		t.Fatalf("bans in force %d", len(want))
	}
	if got := sink.prefixes(); !slices.Equal(got, want) {
		t.Fatalf("sink disagrees with memory:\n sink %v\n mem  %v", got, want)
	}
	var stored []string
	err := bansBucket(t, s).ForEach(func(k string, _ Entry, _ time.Time) error {
		stored = append(stored, k)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(stored)
	if !slices.Equal(stored, want) {
		t.Fatalf("store disagrees with memory:\n store %v\n mem   %v", stored, want)
	}
	if _, ok := m.Banned(nthV4(0)); ok {
		t.Fatal("trusted address banned")
	}
	// Run has returned: no goroutine of ours is left.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > start && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if n := runtime.NumGoroutine(); n > start {
		t.Fatalf("goroutines %d, started with %d", n, start)
	}
}
