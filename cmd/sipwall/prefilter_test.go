package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sipwall/sipwall/bpf"
	"github.com/sipwall/sipwall/bpf/netlab"
	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/decision"
)

const (
	// pfQuiet is how long answerCount waits for one more response before it
	// decides that everything answered has arrived; pfMaxWait bounds it.
	pfQuiet   = 500 * time.Millisecond
	pfMaxWait = 3 * time.Second
)

// udpListener is the bound address of the app's UDP listener.
func udpListener(t *testing.T, a *app) netip.AddrPort {
	t.Helper()
	for _, l := range a.server.Listeners() {
		if l.Spec.Transport == "udp" {
			return l.Bound
		}
	}
	t.Fatalf("the app has no UDP listener; want one")
	return netip.AddrPort{}
}

// pfOptions is an OPTIONS to the SBC itself (no user part), which the local
// layer answers 200, sent from the socket at from.
func pfOptions(from, to netip.AddrPort, tag string) []byte {
	return []byte(strings.Join([]string{
		fmt.Sprintf("OPTIONS sip:%s SIP/2.0", to),
		fmt.Sprintf("Via: SIP/2.0/UDP %s;rport;branch=z9hG4bK-%s", from, tag),
		"Max-Forwards: 70",
		fmt.Sprintf("From: <sip:probe@%s>;tag=%s", from.Addr(), tag),
		fmt.Sprintf("To: <sip:%s>", to),
		"Call-ID: " + tag,
		"CSeq: 1 OPTIONS",
		"Content-Length: 0",
		"", "",
	}, "\r\n"))
}

// sendOptions sends n OPTIONS with fresh tags from c to dst, as fast as it
// can.
func sendOptions(t *testing.T, c *net.UDPConn, dst netip.AddrPort, what string, n int) {
	t.Helper()
	from := c.LocalAddr().(*net.UDPAddr).AddrPort()
	for i := range n {
		tag := fmt.Sprintf("pf-%s-%d-%d", strings.ReplaceAll(what, " ", "-"), time.Now().UnixNano(), i)
		if _, err := c.WriteToUDPAddrPort(pfOptions(from, dst, tag), dst); err != nil {
			t.Fatalf("%s: send OPTIONS %d/%d to %s: %v", what, i+1, n, dst, err)
		}
	}
}

// answerCount counts the 200 responses waiting on c, reading until none
// has come for quiet (at most pfMaxWait in all). Any other response fails
// the test.
func answerCount(t *testing.T, c *net.UDPConn, what string, quiet time.Duration) int {
	t.Helper()
	n := 0
	buf := make([]byte, 8192)
	end := time.Now().Add(pfMaxWait)
	for time.Now().Before(end) {
		d := time.Now().Add(quiet)
		if d.After(end) {
			d = end
		}
		c.SetReadDeadline(d)
		m, _, err := c.ReadFromUDPAddrPort(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return n
		}
		if err != nil {
			t.Fatalf("%s: receive on %s: %v", what, c.LocalAddr(), err)
		}
		if !strings.HasPrefix(string(buf[:m]), "SIP/2.0 200 ") {
			line, _, _ := strings.Cut(string(buf[:m]), "\r\n")
			t.Fatalf("%s: got %q, want SIP/2.0 200 to OPTIONS", what, line)
		}
		n++
	}
	return n
}

// exchangeOptions sends n OPTIONS from c to dst and returns how many were
// answered 200.
func exchangeOptions(t *testing.T, c *net.UDPConn, dst netip.AddrPort, what string, n int) int {
	t.Helper()
	sendOptions(t, c, dst, what, n)
	return answerCount(t, c, what, pfQuiet)
}

// loopbackSender is a UDP socket on the loopback address src, closed at
// cleanup.
func loopbackSender(t *testing.T, src string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(src), 0)))
	if err != nil {
		t.Fatalf("bind a sender on %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func xdpCounters(t *testing.T, f *bpf.Filter) bpf.Counters {
	t.Helper()
	c, err := f.Counters()
	if err != nil {
		t.Fatalf("read the XDP counters: %v", err)
	}
	return c
}

// TestPrefilterXDPBansFromBanStore proves that the running app, with
// prefilter mode xdp, puts a ban decided in its ban store into the kernel at
// once and takes it out on unban, without a restart: a network namespace
// joined by a veth pair sends real OPTIONS to a listener on the host end,
// where the XDP program is attached. Answered before the ban; while banned
// nothing is answered, the kernel counts the drops as bans and the
// userspace ban check never sees the datagrams; answered again after the
// unban.
func TestPrefilterXDPBansFromBanStore(t *testing.T) {
	lab := netlab.New(t)
	a, _ := startDemo(t, func(c *config.Config) {
		c.Listen = []config.Listener{{Transport: "udp", Addr: netip.AddrPortFrom(lab.HostV4, 0).String(), Side: "external"}}
		c.Prefilter.Mode = config.PrefilterXDP
		c.Prefilter.Interfaces = []string{lab.Host}
		c.Prefilter.PinPath = "" // nothing pinned on the host's bpf filesystem
	})
	if a.pf == nil {
		t.Fatal("prefilter mode xdp: app.pf is nil, want a prefilter")
	}
	f := a.pf.xdp.Load()
	if f == nil {
		t.Fatalf("prefilter mode xdp on %s: no XDP program attached, want one", lab.Host)
	}
	if at := f.Attachments(); len(at) != 1 || at[0].Interface != lab.Host {
		t.Fatalf("XDP attachments %+v, want one on %s", at, lab.Host)
	}
	dst := udpListener(t, a)
	t.Logf("namespace %s, %s -> sipwall on %s (%s, %s)", lab.NS, lab.NSV4, dst, lab.Host, f.Attachments()[0].Mode)

	var c *net.UDPConn
	if err := lab.Do(func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lab.NSV4, 0)))
		return err
	}); err != nil {
		t.Fatalf("bind a sender on %s in namespace %s: %v", lab.NSV4, lab.NS, err)
	}
	defer c.Close()

	// The links may take a moment to come up: the first answer may need a
	// few tries.
	before := xdpCounters(t, f)
	deadline := time.Now().Add(5 * time.Second)
	for answerCountOnce(t, c, dst) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no answer to OPTIONS from %s to %s within 5s before any ban; want 200", lab.NSV4, dst)
		}
	}
	answerCount(t, c, "late answers", pfQuiet)
	if d := xdpCounters(t, f).Reasons[bpf.ReasonPass] - before.Reasons[bpf.ReasonPass]; d == 0 {
		t.Fatal("answered, but the XDP program counted no passed packet; want the OPTIONS judged in the kernel")
	}

	host := netip.PrefixFrom(lab.NSV4, 32)
	if _, err := a.sec.bans.Ban(host, time.Hour, "", "test"); err != nil {
		t.Fatalf("ban %s in the ban store: %v", host, err)
	}
	before = xdpCounters(t, f)
	blocked, prefiltered := a.server.Stats.Blocked.Load(), a.server.Stats.Prefiltered.Load()
	if n := exchangeOptions(t, c, dst, "banned", 3); n != 0 {
		t.Fatalf("%d of 3 OPTIONS from banned %s answered, want none", n, host)
	}
	after := xdpCounters(t, f)
	if d := after.Reasons[bpf.ReasonBan] - before.Reasons[bpf.ReasonBan]; d != 3 {
		t.Fatalf("XDP counted %d packets dropped as banned, want 3: the ban store's ban did not reach the kernel", d)
	}
	if d := after.Reasons[bpf.ReasonPass] - before.Reasons[bpf.ReasonPass]; d != 0 {
		t.Fatalf("XDP passed %d packets while %s was banned, want 0", d, host)
	}
	if d := a.server.Stats.Blocked.Load() - blocked; d != 0 {
		t.Fatalf("the userspace ban check dropped %d datagrams, want 0: XDP should have dropped them first", d)
	}
	if d := a.server.Stats.Prefiltered.Load() - prefiltered; d != 0 {
		t.Fatalf("the userspace limiter dropped %d datagrams with XDP attached, want 0", d)
	}

	if ok, err := a.sec.bans.Unban(host); err != nil || !ok {
		t.Fatalf("unban %s in the ban store: in force %v, error %v; want true, nil", host, ok, err)
	}
	before = xdpCounters(t, f)
	if n := exchangeOptions(t, c, dst, "unbanned", 3); n != 3 {
		t.Fatalf("%d of 3 OPTIONS answered after the unban of %s, want 3", n, host)
	}
	if d := xdpCounters(t, f).Reasons[bpf.ReasonBan] - before.Reasons[bpf.ReasonBan]; d != 0 {
		t.Fatalf("XDP dropped %d packets as banned after the unban, want 0", d)
	}
}

// answerCountOnce sends one OPTIONS and waits a short while for its answer.
func answerCountOnce(t *testing.T, c *net.UDPConn, dst netip.AddrPort) int {
	t.Helper()
	sendOptions(t, c, dst, "first contact", 1)
	return answerCount(t, c, "first contact", 200*time.Millisecond)
}

// TestPrefilterXDPFallsBackToUserspace proves that mode xdp does not stop
// sipwall from starting when the program cannot be attached (here: an
// interface that does not exist): the error is logged, no XDP program is
// held, and the userspace limiter judges the datagrams instead — from one
// source, the burst is answered and the rest dropped before parsing.
func TestPrefilterXDPFallsBackToUserspace(t *testing.T) {
	a, _, logs := startDemoLogs(t, func(c *config.Config) {
		c.Prefilter.Mode = config.PrefilterXDP
		c.Prefilter.Interfaces = []string{"swnone0"}
		c.Prefilter.PinPath = "" // nothing pinned on the host's bpf filesystem
		c.Prefilter.Rates.Request = config.Rate{Rate: 1, Burst: 3}
	})
	if a.pf == nil {
		t.Fatal("prefilter mode xdp: app.pf is nil, want a prefilter")
	}
	if f := a.pf.xdp.Load(); f != nil {
		t.Fatalf("XDP attached to %+v, want nothing attached to a missing interface", f.Attachments())
	}
	if !strings.Contains(logs.String(), "XDP prefilter not attached") {
		t.Fatalf("log lacks %q:\n%s", "XDP prefilter not attached", logs.String())
	}
	c := loopbackSender(t, "127.0.0.21")
	dst := udpListener(t, a)
	before := a.server.Stats.Prefiltered.Load()
	if n := exchangeOptions(t, c, dst, "fallback burst", 6); n != 3 {
		t.Fatalf("%d of 6 OPTIONS sent at once answered, want 3 (burst 3 of the userspace limiter)", n)
	}
	if d := a.server.Stats.Prefiltered.Load() - before; d < 3 {
		t.Fatalf("the userspace limiter dropped %d datagrams, want at least 3", d)
	}
}

// TestPrefilterOff proves that mode off turns the prefilter off: no
// prefilter is built, and a source far over the configured request rate is
// answered every time.
func TestPrefilterOff(t *testing.T) {
	a, _ := startDemo(t, func(c *config.Config) {
		c.Prefilter.Mode = config.PrefilterOff
		c.Prefilter.Rates.Request = config.Rate{Rate: 1, Burst: 3}
	})
	if a.pf != nil {
		t.Fatal("prefilter mode off: app.pf is set, want nil")
	}
	c := loopbackSender(t, "127.0.0.22")
	if n := exchangeOptions(t, c, udpListener(t, a), "prefilter off", 20); n != 20 {
		t.Fatalf("%d of 20 OPTIONS answered with the prefilter off, want 20", n)
	}
	if d := a.server.Stats.Prefiltered.Load(); d != 0 {
		t.Fatalf("%d datagrams prefiltered with the prefilter off, want 0", d)
	}
}

// The userspace prefilter's drops reach the decision log (bounded per
// second, coalesced per source): "why" on a flooding address says
// prefilter, rate, request.
func TestPrefilterUserspaceDropsInDecisionLog(t *testing.T) {
	a, _ := startDemo(t, func(c *config.Config) {
		c.Prefilter.Mode = config.PrefilterUserspace
		c.Prefilter.Rates.Request = config.Rate{Rate: 1, Burst: 2}
	})
	dst := udpListener(t, a)
	c := loopbackSender(t, "127.0.0.7")
	if got := exchangeOptions(t, c, dst, "flood", 20); got > 3 {
		t.Fatalf("%d of 20 OPTIONS answered under a request rate of 1/s burst 2", got)
	}
	got := a.decisions.Search(decision.Query{Text: "127.0.0.7"})
	if len(got) != 1 || got[0].Layer != "prefilter" || got[0].Verdict != "dropped" || got[0].Why != "rate (request)" || got[0].Count < 10 {
		t.Fatalf("decisions about 127.0.0.7: %+v, want one coalesced prefilter drop for the rate", got)
	}
}
