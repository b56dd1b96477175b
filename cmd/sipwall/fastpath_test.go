package main

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipwall/sipwall/bpf/netlab"
	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/config"
)

// relayWorks sets up a call on the app's relay and carries one RTP packet
// each way between two loopback sockets.
func relayWorks(t *testing.T, a *app) {
	t.Helper()
	peer := func(ip string) *net.UDPConn {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	phone, pbx := peer("127.0.0.31"), peer("127.0.0.32")
	sdp := func(c *net.UDPConn) []byte {
		ap := c.LocalAddr().(*net.UDPAddr).AddrPort()
		return []byte(strings.Join([]string{"v=0", "o=- 1 1 IN IP4 " + ap.Addr().String(), "s=-",
			"c=IN IP4 " + ap.Addr().String(), "t=0 0", "m=audio " + strconv.Itoa(int(ap.Port())) + " RTP/AVP 0", ""}, "\r\n"))
	}
	port := func(body []byte) netip.AddrPort {
		for _, l := range strings.Split(string(body), "\r\n") {
			if rest, ok := strings.CutPrefix(l, "m=audio "); ok {
				p, _, _ := strings.Cut(rest, " ")
				return netip.MustParseAddrPort("127.0.0.1:" + p)
			}
		}
		t.Fatalf("no m=audio in %s", body)
		return netip.AddrPort{}
	}
	offer, err := a.relay.Rewrite("fastpath-test", sbc.Internal, sdp(phone))
	if err != nil {
		t.Fatal(err)
	}
	answer, err := a.relay.Rewrite("fastpath-test", sbc.External, sdp(pbx))
	if err != nil {
		t.Fatal(err)
	}
	defer a.relay.Release("fastpath-test")
	pkt := append([]byte{0x80, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1}, bytes.Repeat([]byte{0xff}, 160)...)
	buf := make([]byte, 2048)
	for _, c := range []struct {
		from, to *net.UDPConn
		via      netip.AddrPort
	}{{phone, pbx, port(answer)}, {pbx, phone, port(offer)}} {
		if _, err := c.from.WriteToUDPAddrPort(pkt, c.via); err != nil {
			t.Fatal(err)
		}
		c.to.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, _, err := c.to.ReadFromUDPAddrPort(buf); err != nil || n != len(pkt) {
			t.Fatalf("relay: %d bytes, %v", n, err)
		}
	}
}

// TestMediaFastPathFallsBack: media.fastpath tc where the program cannot
// attach: sipwall starts, says so, sipwall_media_fastpath_up is 0 and the
// relay carries media in userspace.
func TestMediaFastPathFallsBack(t *testing.T) {
	a, _, logs := startDemoLogs(t, func(c *config.Config) {
		c.Media.FastPath = config.MediaFastTC
		c.Prefilter.Interfaces = []string{"swnone0"}
	})
	if a.relay == nil || a.fast == nil || a.fast.path != nil {
		t.Fatalf("relay %v, fast path %+v: want a relay and no fast path", a.relay != nil, a.fast)
	}
	if !strings.Contains(logs.String(), "media fast path not attached") {
		t.Fatalf("log lacks %q:\n%s", "media fast path not attached", logs.String())
	}
	fams := scrape(t, a, "")
	if v := metricValue(fams, "sipwall_media_fastpath_up", nil); v != 0 {
		t.Fatalf("sipwall_media_fastpath_up = %v, want 0", v)
	}
	relayWorks(t, a)
	if s := a.relay.Stats(); s.Packets != 2 || s.FastPathPackets != 0 {
		t.Fatalf("relay stats %+v, want 2 packets in userspace", s)
	}
}

// TestMediaFastPathAutoOff: auto without XDP (the default) wants nothing:
// no program, no fast path series.
func TestMediaFastPathAutoOff(t *testing.T) {
	a, _ := startDemo(t)
	if a.fast == nil || a.fast.wanted || a.fast.path != nil {
		t.Fatalf("fast path %+v, want none by default", a.fast)
	}
	if v := metricValue(scrape(t, a, ""), "sipwall_media_fastpath_up", nil); v != -1 {
		t.Fatalf("sipwall_media_fastpath_up = %v, want no series", v)
	}
	relayWorks(t, a)
}

// TestMediaFastPathAttached: tc, and auto beside the XDP prefilter, attach
// to the lab's interface; sipwall_media_fastpath_up is 1.
func TestMediaFastPathAttached(t *testing.T) {
	if os.Geteuid() != 0 && (os.Getenv("CI") != "" || os.Getenv("SIPWALL_E2E_REQUIRED") == "1") {
		t.Fatal("the media fast path needs root, and CI (or SIPWALL_E2E_REQUIRED=1) requires this test")
	}
	lab := netlab.New(t)
	for _, c := range []struct {
		name string
		mod  func(*config.Config)
	}{
		{"tc", func(c *config.Config) { c.Media.FastPath = config.MediaFastTC }},
		{"auto with xdp", func(c *config.Config) {
			c.Prefilter.Mode = config.PrefilterXDP
			c.Prefilter.PinPath = "" // nothing pinned on the host's bpf filesystem
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, _ := startDemo(t, func(cfg *config.Config) {
				cfg.Prefilter.Interfaces = []string{lab.Host}
				c.mod(cfg)
			})
			if a.fast == nil || a.fast.path == nil {
				t.Fatalf("no fast path attached to %s", lab.Host)
			}
			if got := a.fast.path.Interfaces(); len(got) != 1 || got[0] != lab.Host {
				t.Fatalf("attached to %v, want [%s]", got, lab.Host)
			}
			fams := scrape(t, a, "")
			if v := metricValue(fams, "sipwall_media_fastpath_up", nil); v != 1 {
				t.Fatalf("sipwall_media_fastpath_up = %v, want 1", v)
			}
			if v := metricValue(fams, "sipwall_media_fastpath_decisions_total", map[string]string{"reason": "forward"}); v != 0 {
				t.Fatalf("sipwall_media_fastpath_decisions_total{reason=forward} = %v, want 0", v)
			}
			// The relay binds loopback, where the program is not
			// attached: it relays in userspace, as before.
			relayWorks(t, a)
		})
	}
}
