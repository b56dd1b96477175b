//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

const (
	xdpDrop = 1
	xdpPass = 2
)

// needBPF opens a prefilter without attaching it, or skips when the test
// cannot load BPF programs (it needs root, or CAP_BPF with CAP_NET_ADMIN).
func needBPF(t testing.TB, cfg Config) *Filter {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("loading the XDP program needs root (CAP_BPF, CAP_NET_ADMIN); CI runs this as root")
	}
	f, err := Open(Options{Config: cfg})
	if err != nil {
		t.Fatalf("load XDP program: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// onOneCPU keeps the test goroutine on one thread bound to one CPU, so the
// per-CPU windows of the class caps are those of a single CPU, as in the
// model.
func onOneCPU(t *testing.T) {
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	old := set
	cpu := 0
	for ; cpu < 1024 && !set.IsSet(cpu); cpu++ {
	}
	set.Zero()
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.SchedSetaffinity(0, &old) })
}

type kernelState struct{ f *Filter }

func (s kernelState) ban(p netip.Prefix, e uint64) {
	if k, ok := hashBanKey(p); ok {
		if err := s.f.objs.Bans.Update(&xdpSwBanKey{Addr: xdpSwAddr{B: k.addr}, Plen: k.plen}, e, ebpf.UpdateAny); err != nil {
			panic(err)
		}
		return
	}
	k := lpmKey(p)
	if err := s.f.objs.BanNets.Update(&k, e, ebpf.UpdateAny); err != nil {
		panic(err)
	}
}

func (s kernelState) verify(a netip.Addr, e uint64) {
	if err := s.f.objs.Verified.Update(&xdpSwAddr{B: addr16(a)}, e, ebpf.UpdateAny); err != nil {
		panic(err)
	}
}

// reset empties the state maps between cases.
func (f *Filter) reset(t *testing.T) {
	t.Helper()
	for _, m := range []*ebpf.Map{f.objs.Bans, f.objs.BanNets, f.objs.Verified, f.objs.Sources} {
		var keys [][]byte
		k := make([]byte, m.KeySize())
		v := make([]byte, m.ValueSize())
		it := m.Iterate()
		for it.Next(&k, &v) {
			keys = append(keys, append([]byte(nil), k...))
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				t.Fatal(err)
			}
		}
	}
	zero := make([]xdpSwWindow, ebpf.MustPossibleCPU())
	for c := range NumClasses {
		if err := f.objs.Windows.Update(uint32(c), zero, ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
	}
}

// reasons reads the per-reason counters (summed over CPUs).
func (f *Filter) reasons(t testing.TB) (out [NumReasons]uint64) {
	var per []uint64
	for r := range NumReasons {
		if err := f.objs.Counters.Lookup(uint32(r), &per); err != nil {
			t.Fatal(err)
		}
		for _, v := range per {
			out[r] += v
		}
	}
	return out
}

// run runs the program once on frame and returns its action and the reason
// counted.
func (f *Filter) run(t testing.TB, frame []byte) (uint32, Reason) {
	t.Helper()
	before := f.reasons(t)
	ret, err := f.Program().Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("BPF_PROG_TEST_RUN: %v", err)
	}
	after := f.reasons(t)
	r := NumReasons
	for i := range NumReasons {
		if d := after[i] - before[i]; d != 0 {
			if d != 1 || r != NumReasons {
				t.Fatalf("counters moved by more than one decision: %v -> %v", before, after)
			}
			r = i
		}
	}
	if r == NumReasons {
		t.Fatalf("no reason counted (return %d)", ret)
	}
	return ret, r
}

// TestXDPProgramDecisions runs the kernel program (BPF_PROG_TEST_RUN) over
// every case of decideCases and holds it both to the expected reason and
// to the Go model, frame by frame.
func TestXDPProgramDecisions(t *testing.T) {
	f := needBPF(t, baseConfig())
	for _, tc := range decideCases() {
		t.Run(tc.name, func(t *testing.T) {
			// A subtest runs on a goroutine of its own: pin that one, or
			// its steps may count in the windows of different CPUs.
			onOneCPU(t)
			// The class caps count in one-second windows of the coarse
			// clock. A case whose steps straddled two windows (the test
			// was descheduled on a busy machine) proves nothing either
			// way: run it again, up to three times.
			for attempt := 1; ; attempt++ {
				window := MonoNow() / uint64(time.Second)
				err := runDecideCase(t, f, tc)
				if err == nil {
					return
				}
				if MonoNow()/uint64(time.Second) == window || attempt == 3 {
					t.Fatal(err)
				}
				t.Logf("attempt %d straddled a one-second window (%v): again", attempt, err)
			}
		})
	}
}

// runDecideCase loads tc's configuration and state into the kernel and
// a model and runs its steps through both, returning the first mismatch.
func runDecideCase(t *testing.T, f *Filter, tc decideCase) error {
	t.Helper()
	cfg := baseConfig()
	if tc.cfg != nil {
		tc.cfg(&cfg)
	}
	if err := f.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	f.reset(t)
	m, err := NewModel(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tc.setup != nil {
		tc.setup(kernelState{f})
		tc.setup(modelState{m})
	}
	// Start early in a window, so the steps normally fit in it.
	if n := MonoNow() % uint64(time.Second); n > uint64(800*time.Millisecond) {
		time.Sleep(time.Duration(uint64(time.Second)-n) + 30*time.Millisecond)
	}
	for i, s := range tc.steps {
		fr := s.f.build()
		before, _ := f.Counters()
		ret, r := f.run(t, fr)
		after, _ := f.Counters()
		mdrop, mr, _ := m.Decide(fr, MonoNow())
		if r != s.want {
			return fmt.Errorf("step %d: kernel reason %s, want %s", i, r, s.want)
		}
		if mr != r {
			return fmt.Errorf("step %d: model reason %s, kernel %s", i, mr, r)
		}
		want := uint32(xdpPass)
		if s.want.Drops() && !cfg.Observe {
			want = xdpDrop
		}
		if ret != want || mdrop != (ret == xdpDrop) {
			return fmt.Errorf("step %d: kernel returned %d, model drop=%v, want %d", i, ret, mdrop, want)
		}
		if r == ReasonPass || r == ReasonRate || r == ReasonGlobal {
			slot := &after.Passed
			prev := &before.Passed
			if r != ReasonPass {
				slot, prev = &after.Dropped, &before.Dropped
			}
			if slot[s.class]-prev[s.class] != 1 {
				return fmt.Errorf("step %d: class %s not counted (%v -> %v)", i, s.class, prev, slot)
			}
		}
	}
	return nil
}

// TestXDPConfigureInPlace checks that a configuration change takes effect
// in the loaded program without reloading it, and that bans pushed through
// the Sink methods act at once and expire.
func TestXDPConfigureInPlace(t *testing.T) {
	f := needBPF(t, baseConfig())
	onOneCPU(t)
	id := func() ebpf.ProgramID {
		info, err := f.Program().Info()
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := info.ID()
		return pid
	}
	before := id()
	opts := frame{payload: sipOptions}.build()
	if _, r := f.run(t, opts); r != ReasonPass {
		t.Fatalf("before deny: %s", r)
	}
	cfg := baseConfig()
	cfg.Deny = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	if err := f.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	if ret, r := f.run(t, opts); r != ReasonDeny || ret != xdpDrop {
		t.Fatalf("after deny: %d %s", ret, r)
	}
	cfg.Deny = nil
	cfg.UDPPorts = []uint16{5070}
	if err := f.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	if _, r := f.run(t, opts); r != ReasonOther {
		t.Fatalf("port 5060 no longer judged: %s", r)
	}
	if _, r := f.run(t, frame{dport: 5070, payload: sipOptions}.build()); r != ReasonPass {
		t.Fatalf("new port 5070: %s", r)
	}
	if id() != before {
		t.Fatal("program was reloaded")
	}

	cfg = baseConfig()
	if err := f.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	host := netip.MustParsePrefix("192.0.2.10/32")
	if err := f.Ban(host, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, r := f.run(t, opts); r != ReasonBan {
		t.Fatalf("after Ban: %s", r)
	}
	bans, err := f.Bans()
	if err != nil || len(bans) != 1 || bans[host] <= MonoNow() {
		t.Fatalf("Bans() = %v, %v", bans, err)
	}
	if err := f.Unban(host); err != nil {
		t.Fatal(err)
	}
	if err := f.Unban(host); err != nil {
		t.Fatalf("second Unban: %v", err)
	}
	if _, r := f.run(t, opts); r != ReasonPass {
		t.Fatalf("after Unban: %s", r)
	}
	net24 := netip.MustParsePrefix("192.0.2.0/24")
	if err := f.Ban(net24, time.Now().Add(50*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, r := f.run(t, opts); r != ReasonBan {
		t.Fatalf("network ban: %s", r)
	}
	// The kernel's coarse clock ticks every few milliseconds.
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, r := f.run(t, opts)
		if r == ReasonPass {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ban did not expire: %s", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := f.Sweep(); n != 1 {
		t.Fatalf("Sweep removed %d entries, want 1", n)
	}
	if err := f.Ban(netip.MustParsePrefix("2001:db8:1:2::/64"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, r := f.run(t, frame{src: v6Src, payload: sipOptions}.build()); r != ReasonBan {
		t.Fatalf("IPv6 /64 ban: %s", r)
	}
	if err := f.Verify(netip.MustParseAddr("192.0.2.10"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := f.Configure(Config{VerifiedShare: 200}); err == nil {
		t.Fatal("invalid config accepted")
	}
}

var (
	fuzzOnce   sync.Once
	fuzzFilter *Filter
	fuzzModel  *Model
)

func fuzzConfig() Config {
	c := baseConfig()
	c.Allow = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
	c.Deny = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:dead::/48")}
	return c
}

// FuzzXDPModel feeds arbitrary frames to the Go model and, when BPF can be
// loaded (root), to the kernel program too: both must reach the same
// reason and action. The configuration has no rate limits, so every
// decision depends on the frame alone.
func FuzzXDPModel(f *testing.F) {
	for _, tc := range decideCases() {
		for _, s := range tc.steps {
			f.Add(s.f.build())
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1500 {
			return
		}
		fuzzOnce.Do(func() {
			var err error
			fuzzModel, err = NewModel(fuzzConfig())
			if err != nil {
				panic(err)
			}
			fuzzModel.Ban(netip.MustParsePrefix("192.0.2.10/32"), never)
			fuzzModel.Ban(netip.MustParsePrefix("2001:db8:1:2::/64"), never)
			fuzzModel.Ban(netip.MustParsePrefix("192.0.3.0/24"), never)
			if os.Geteuid() != 0 {
				return
			}
			fuzzFilter, err = Open(Options{Config: fuzzConfig()})
			if err != nil {
				panic(err)
			}
			s := kernelState{fuzzFilter}
			s.ban(netip.MustParsePrefix("192.0.2.10/32"), never)
			s.ban(netip.MustParsePrefix("2001:db8:1:2::/64"), never)
			s.ban(netip.MustParsePrefix("192.0.3.0/24"), never)
		})
		mdrop, mr, _ := fuzzModel.Decide(data, MonoNow())
		if fuzzFilter == nil || len(data) < 14 {
			// The kernel refuses test frames shorter than an Ethernet header.
			if len(data) < 14 && (mr != ReasonOther || mdrop) {
				t.Fatalf("model judged a %d-byte frame: %s", len(data), mr)
			}
			return
		}
		ret, r := fuzzFilter.run(t, data)
		if r != mr || (ret == xdpDrop) != mdrop {
			t.Fatalf("frame %x: kernel %d/%s, model drop=%v/%s", data, ret, r, mdrop, mr)
		}
	})
}

// BenchmarkXDPProgram measures the kernel program per packet with
// BPF_PROG_TEST_RUN: a SIP request that passes and one from a banned
// source.
func BenchmarkXDPProgram(b *testing.B) {
	cfg := baseConfig()
	f := needBPF(b, cfg)
	if err := f.Ban(netip.MustParsePrefix("192.0.2.66/32"), time.Time{}); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		frame []byte
	}{
		{"pass", frame{payload: sipOptions}.build()},
		{"banned", frame{src: netip.MustParseAddr("192.0.2.66"), payload: sipOptions}.build()},
		{"other-port", frame{dport: 53, payload: "x"}.build()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			_, d, err := f.Program().Benchmark(bc.frame, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(d.Nanoseconds()), "ns/packet")
			b.ReportMetric(1e3/float64(d.Nanoseconds()), "Mpps/core")
		})
	}
}
