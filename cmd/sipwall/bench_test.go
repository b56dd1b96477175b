package main

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc/cluster/redistest"
	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/siptest"
	"github.com/sipwall/sipwall/sbc/store"
)

// benchRules are bench/rules.yaml's rules, applied to the trusted caller of
// BenchmarkCall too: every call is counted, none refused.
const benchRules = `country: GB
rule_sets:
  - name: customers
    applies_to: {users: ["*"], trusted: ["*"]}
    rules:
      - name: premium-and-irsf
        match: {lists: [irsf, premium], international: true}
        measure: calls_per_minute
        critical: 5
        action: reject
      - name: burst
        measure: calls_per_minute
        warning: 50000
        critical: 100000
        action: block_account
      - name: concurrent
        measure: concurrent_calls
        critical: 50000
        action: reject
      - name: daily
        measure: calls_per_day
        critical: 10000000
        action: alert
`

// startBench runs the full chain in-process — ban, sanity, auth (the
// caller is a trusted peer), policy (built-in), fraud rules, B2BUA with
// topology hiding and the media relay — toward pbx, with adjust applied
// to the configuration last.
func startBench(b *testing.B, pbx *siptest.Peer, adjust func(*config.Config)) (*app, netip.AddrPort) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := config.Default()
	port, err := siptest.FreePort("127.0.0.1")
	if err != nil {
		b.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cfg.Listen = []config.Listener{{Transport: "udp", Addr: addr, Side: "external"}}
	cfg.Health.Interval = 0
	cfg.Log.Level = "warn"
	cfg.Admin.Addr = "127.0.0.1:0"
	cfg.Upstreams = []config.Upstream{{Name: "pbx", URI: "sip:" + pbx.Addr().String(), Priority: 1, Weight: 1}}
	cfg.Auth.Trusted = []config.Trusted{{Name: "office", CIDRs: []string{"127.0.0.2/32"}}}
	// A loaded machine can hold one evaluation past the 50 ms default,
	// which fails the call closed (500): the percentiles show it instead.
	cfg.Policy.Timeout = config.Duration(time.Second)
	// One caller address stands for a whole office, as in scripts/bench.sh.
	cfg.Calls.MaxPerUser, cfg.Calls.MaxPerSource = 0, 0
	cfg.Prefilter.Rates.Request = config.Rate{}
	cfg.Prefilter.Rates.Response = config.Rate{}
	cfg.Prefilter.Caps.Request, cfg.Prefilter.Caps.Response = 0, 0
	rules := filepath.Join(b.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte(benchRules), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg.Rules.File = rules
	st, cleanup, err := store.OpenTemp()
	if err != nil {
		b.Fatal(err)
	}
	cfg.Store.Path = st.Dir()
	if adjust != nil {
		adjust(cfg)
	}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	a, err := start(ctx, cfg, st, newLogger(cfg.Log, &syncBuffer{}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		a.stop()
		cancel()
		cleanup()
	})
	return a, netip.MustParseAddrPort(addr)
}

const (
	benchOffer = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n" +
		"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
	benchAnswer = "v=0\r\no=- 2 2 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\n" +
		"m=audio 41000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)

// liveHeap is the heap still reachable after a collection.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// BenchmarkCall is one call per operation through the full chain: INVITE
// with an offer, 180, 200 with the answer, ACK, BYE, 200, each message
// waited for before the next is sent (so ns/op is latency, not
// throughput). The scripted caller and PBX (sbc/siptest) run in the same
// process: their parsing and building count in B/op and allocs/op too,
// -memprofile tells them apart. p50-ns and p99-ns are the percentiles of
// a whole call; retained-B/op is the live heap a call leaves while its
// transactions linger (up to 64×T1 after its last response), which is
// what the collector marks again and again under load.
//
// BenchmarkCall/redis is the same with store.backend redis against a
// redis-server of its own (sbc/cluster/redistest; skipped without one) and
// reports the round trips to Redis per call (redis-rtt/op, the health
// check's PING once a second included).
func BenchmarkCall(b *testing.B) {
	b.Run("embedded", func(b *testing.B) { benchCall(b, nil) })
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		benchCall(b, func(c *config.Config) {
			c.Store.Backend = "redis"
			c.Store.Redis.Addrs = []string{srv.Addr()}
		})
	})
}

func benchCall(b *testing.B, adjust func(*config.Config)) {
	caller := siptest.NewPeer(b, "127.0.0.2:0")
	pbx := siptest.NewPeer(b, "127.0.0.3:0")
	caller.Quiet, pbx.Quiet = true, true
	caller.User, pbx.User = "office", "pbx"
	a, sbcAddr := startBench(b, pbx, adjust)
	const wait = 5 * time.Second
	call := func() {
		d := caller.Invite(sbcAddr, "sip:+442079460018@"+sbcAddr.String(), nil, benchOffer)
		inv := pbx.ExpectRequest("INVITE", wait)
		pbx.Reply(inv, 180, "Ringing")
		caller.ExpectResponse(180, wait)
		pbx.ReplyBody(inv, 200, "OK", benchAnswer)
		d.Learn(caller.ExpectResponse(200, wait))
		d.Ack(nil, "")
		pbx.ExpectRequest("ACK", wait)
		d.Send("BYE", nil, "")
		pbx.Reply(pbx.ExpectRequest("BYE", wait), 200, "OK")
		caller.ExpectResponse(200, wait)
	}
	// Warm up: the first calls fill caches and pools.
	for range 20 {
		call()
	}
	lat := make([]time.Duration, 0, 1<<16)
	heap0 := liveHeap()
	var rtt0 uint64
	if a.shared != nil {
		rtt0 = a.shared.Stats().RoundTrips
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		call()
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(t0))
		}
	}
	b.StopTimer()
	if a.shared != nil {
		b.ReportMetric(float64(a.shared.Stats().RoundTrips-rtt0)/float64(b.N), "redis-rtt/op")
	}
	// What the calls leave behind while their transactions linger (64×T1
	// after the last response): the live heap after a collection.
	b.ReportMetric(float64(liveHeap()-heap0)/float64(b.N), "retained-B/op")
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
	}
}
