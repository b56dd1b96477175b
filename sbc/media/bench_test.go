package media

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc"
)

// Load test: phones outside blast fixed-size RTP packets at the relay,
// PBX sockets inside count them and measure the latency through it.
const (
	loadPacketSize = 172 // 20 ms of G.711 plus the RTP header
	// loadWindow bounds the packets in flight (TestLoad): closed loop, so
	// a sender faster than the relay fills no socket buffer (and loses
	// nothing), and the latency is the relay's, not an ever-growing
	// queue's.
	loadWindow   = 64
	loadDrainFor = time.Second // wait for stragglers after the last send
)

type loadResult struct {
	Streams        int
	Sent, Received uint64
	Elapsed        time.Duration
	P50, P99       time.Duration
}

func (r loadResult) pps() float64 { return float64(r.Received) / r.Elapsed.Seconds() }

func (r loadResult) loss() float64 {
	if r.Sent == 0 {
		return 0
	}
	return 100 * float64(r.Sent-r.Received) / float64(r.Sent)
}

type load struct {
	tb       testing.TB
	m        *Manager
	phones   []*net.UDPConn
	pbxs     []*net.UDPConn
	toExt    []netip.AddrPort
	start    time.Time
	received atomic.Uint64
	// measuring is set after the warm-up: only then are samples written,
	// each index by the receiver that counted it.
	measuring atomic.Bool
	samples   []int64 // latency in ns, by arrival order
	tokens    chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// newLoad sets up streams calls through real SDP and latches each of them
// with one packet. packets sizes the latency sample buffer.
func newLoad(tb testing.TB, m *Manager, streams, packets, window int) *load {
	tb.Helper()
	l := &load{tb: tb, m: m, start: time.Now(), samples: make([]int64, packets), tokens: make(chan struct{}, window)}
	for range window {
		l.tokens <- struct{}{}
	}
	listen := func(ip netip.Addr) *net.UDPConn {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			tb.Fatal(err)
		}
		return c
	}
	for i := range streams {
		phone, pbx := listen(phoneIP), listen(pbxIP)
		l.phones, l.pbxs = append(l.phones, phone), append(l.pbxs, pbx)
		key := fmt.Sprint("load-", i)
		rewrite(tb, m, key, sbc.Internal, audioSDP("alice", 1, phone.LocalAddr().(*net.UDPAddr).AddrPort()))
		ans := rewrite(tb, m, key, sbc.External, audioSDP("pbx", 1, pbx.LocalAddr().(*net.UDPAddr).AddrPort()))
		l.toExt = append(l.toExt, relayAddr(tb, ans, 0, false))
	}
	tb.Cleanup(l.close)
	for _, c := range l.pbxs {
		l.wg.Add(1)
		go l.receive(c)
	}
	// Warm up: latch every stream, outside the measurement.
	pkt := rtpPacket(0, loadPacketSize)
	for i, c := range l.phones {
		if _, err := c.WriteToUDPAddrPort(pkt, l.toExt[i]); err != nil {
			tb.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.received.Load() < uint64(streams) {
		if time.Now().After(deadline) {
			tb.Fatalf("warm-up: %d of %d streams relayed", l.received.Load(), streams)
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	l.received.Store(0)
	l.measuring.Store(true)
	return l
}

func (l *load) receive(c *net.UDPConn) {
	defer l.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		if !l.measuring.Load() {
			l.received.Add(1) // warm-up
			continue
		}
		if n >= 20 {
			lat := int64(time.Since(l.start)) - int64(binary.BigEndian.Uint64(buf[12:20]))
			if i := l.received.Add(1) - 1; i < uint64(len(l.samples)) {
				l.samples[i] = lat
			}
		}
		select {
		case l.tokens <- struct{}{}:
		default:
		}
	}
}

// run sends packets round-robin over the streams from one sender per CPU,
// within limit, waits for them to arrive, and closes the load. The
// latency is left to percentiles, out of the benchmark's timer.
func (l *load) run(packets int, limit time.Duration) loadResult {
	senders := runtime.GOMAXPROCS(0)
	var sent atomic.Uint64
	begin := time.Now()
	stop := begin.Add(limit)
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pkt := rtpPacket(uint16(s), loadPacketSize)
			lost := time.NewTimer(time.Hour)
			defer lost.Stop()
			quota := packets / senders
			if s < packets%senders {
				quota++
			}
			for k := 0; k < quota; k++ {
				select {
				case <-l.tokens:
				default:
					// Window full. A token lost with its packet comes back
					// after a while, so the loop cannot stall.
					lost.Reset(20 * time.Millisecond)
					select {
					case <-l.tokens:
					case <-lost.C:
					}
					lost.Stop()
				}
				if k%1024 == 0 && time.Now().After(stop) {
					return
				}
				i := (s + k*senders) % len(l.phones)
				binary.BigEndian.PutUint64(pkt[12:20], uint64(time.Since(l.start)))
				if _, err := l.phones[i].WriteToUDPAddrPort(pkt, l.toExt[i]); err != nil {
					l.tb.Error(err)
					return
				}
				sent.Add(1)
			}
		}()
	}
	wg.Wait()
	// Drain: until everything arrived, or no progress for loadDrainFor.
	last, lastChange := l.received.Load(), time.Now()
	for last < sent.Load() && time.Since(lastChange) < loadDrainFor {
		time.Sleep(time.Millisecond) // polling interval
		if n := l.received.Load(); n != last {
			last, lastChange = n, time.Now()
		}
	}
	elapsed := time.Since(begin)
	if last < sent.Load() {
		elapsed -= time.Since(lastChange) // do not count the final wait
	}
	r := loadResult{Streams: len(l.phones), Sent: sent.Load(), Received: last, Elapsed: elapsed}
	l.close()
	return r
}

// percentiles fills in the latency of r, after run (which stopped the
// receivers writing samples).
func (l *load) percentiles(r *loadResult) {
	n := min(int(l.received.Load()), len(l.samples))
	if n == 0 {
		return
	}
	lat := l.samples[:n]
	slices.Sort(lat)
	r.P50 = time.Duration(lat[n/2])
	r.P99 = time.Duration(lat[n*99/100])
}

func (l *load) close() {
	l.closeOnce.Do(l.closeAll)
}

func (l *load) closeAll() {
	for _, c := range l.phones {
		c.Close()
	}
	for _, c := range l.pbxs {
		c.Close()
	}
	l.wg.Wait()
}

func loadManager(tb testing.TB) *Manager {
	return newTestManager(tb, withPairs(tb, 1000)) // 1000 streams: 1000 pairs per side
}

// TestLoad is the bounded load test: 50 streams, 20000 packets, nothing
// lost, nothing dropped, every packet counted.
func TestLoad(t *testing.T) {
	const streams, packets = 50, 20000
	m := loadManager(t)
	l := newLoad(t, m, streams, packets, loadWindow)
	r := l.run(packets, 20*time.Second)
	l.percentiles(&r)
	t.Logf("%d streams: %d/%d packets in %s, %.0f pkts/s, p50 %s, p99 %s",
		r.Streams, r.Received, r.Sent, r.Elapsed, r.pps(), r.P50, r.P99)
	if r.Sent != packets || r.Received != r.Sent {
		t.Fatalf("sent %d, received %d, want %d both", r.Sent, r.Received, packets)
	}
	st := m.Stats()
	if st.Packets != packets+streams || st.Bytes != (packets+streams)*loadPacketSize {
		t.Errorf("Stats %+v: want %d packets (warm-up included)", st, packets+streams)
	}
	for reason, n := range st.Dropped {
		if n != 0 {
			t.Errorf("%d dropped (%s)", n, reason)
		}
	}
}

// BenchmarkRelay measures relay throughput over loopback, one op being one
// packet through the relay, with 100 and 1000 streams. Senders, receivers
// and relay share the CPUs. The window is the number of packets in flight:
// 4 shows the latency of a lightly loaded relay, 128 its throughput (and
// the queueing that comes with it: latency ≈ window / rate).
func BenchmarkRelay(b *testing.B) {
	for _, streams := range []int{100, 1000} {
		for _, window := range []int{4, 128} {
			b.Run(fmt.Sprintf("streams=%d/window=%d", streams, window), func(b *testing.B) {
				m := loadManager(b)
				l := newLoad(b, m, streams, b.N, window)
				b.ReportAllocs()
				b.ResetTimer()
				r := l.run(b.N, 10*time.Second)
				b.StopTimer()
				l.percentiles(&r)
				if r.Sent != uint64(b.N) {
					b.Logf("time limit: %d of %d packets sent", r.Sent, b.N)
				}
				b.ReportMetric(r.pps(), "pkts/s")
				b.ReportMetric(float64(r.P50.Microseconds()), "p50-µs")
				b.ReportMetric(float64(r.P99.Microseconds()), "p99-µs")
				b.ReportMetric(r.loss(), "loss-%")
			})
		}
	}
}

// BenchmarkRelayAllocs reports the allocations of the relay hot path
// alone: one packet each way through a latched stream per op.
func BenchmarkRelayAllocs(b *testing.B) {
	m := newTestManager(b, nil)
	c := setupCall(b, m, "k")
	pkt := rtpPacket(1, loadPacketSize)
	buf := make([]byte, 2048)
	c.phone.conn.SetReadDeadline(time.Now().Add(time.Minute))
	c.pbx.conn.SetReadDeadline(time.Now().Add(time.Minute))
	roundTrip := func() {
		c.phone.conn.WriteToUDPAddrPort(pkt, c.toExt)
		if _, _, err := c.pbx.conn.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
		c.pbx.conn.WriteToUDPAddrPort(pkt, c.toInt)
		if _, _, err := c.phone.conn.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
	roundTrip()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		roundTrip()
	}
}

// BenchmarkStreamSetup measures the relay's share of a call's setup and
// teardown: the offer and the answer rewritten (one audio stream, so one
// port pair per side), then the call released; sequential call keys. The
// injected clock advances 5 ms per call (200 calls/s), the rate of the
// call-load profile, so released pairs age as they would under that load:
// after the first 2 s of clock (400 calls), every pair is a warm one.
// binds/op and reused/op are port pairs per call (two per call: one per
// side).
func BenchmarkStreamSetup(b *testing.B) {
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	m := newTestManager(b, func(c *Config) { withPairs(b, 1000)(c); c.Now = clk.Now })
	offer := audioSDP("alice", 1, netip.MustParseAddrPort("198.51.100.7:49170"))
	answer := audioSDP("pbx", 1, netip.MustParseAddrPort("10.0.0.1:3000"))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		clk.now = clk.now.Add(5 * time.Millisecond)
		key := "call-" + strconv.Itoa(i)
		i++
		if _, err := m.Rewrite(key, sbc.Internal, offer); err != nil {
			b.Fatal(err)
		}
		if _, err := m.Rewrite(key, sbc.External, answer); err != nil {
			b.Fatal(err)
		}
		m.Release(key)
	}
	st := m.Stats()
	b.ReportMetric(float64(st.Binds)/float64(i), "binds/op")
	b.ReportMetric(float64(st.Reused)/float64(i), "reused/op")
}
