package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/media"
	"github.com/sipwall/sipwall/sbc/upstream"
	"github.com/sipwall/sipwall/topology"
)

// The leak report's item label is a fixed set: every RTCP item the relay
// reports is one of them (else it would be counted as "other").
func TestRTCPItemsReported(t *testing.T) {
	items := topology.Items()
	for _, it := range media.RTCPItems {
		if !slices.Contains(items, it) {
			t.Errorf("media reports %q, which the leak report does not know", it)
		}
	}
}

// The topology section reaches the policy: defaults scrub, the file's
// choices apply.
func TestBuildTopologyFromConfig(t *testing.T) {
	noPool := func() *upstream.Pool { return nil }
	reason := func(c config.Topology) string {
		t.Helper()
		r := topology.NewReport(nil, nil)
		p, err := buildTopology(c, noPool, r)
		if err != nil {
			t.Fatal(err)
		}
		in := sip.NewRequest(sip.BYE, sip.Uri{Scheme: "sip", Host: "192.0.2.1"})
		in.AppendHeader(sip.NewHeader("Reason", `SIP;cause=200;text="Asterisk hung up"`))
		out := sip.NewRequest(sip.BYE, sip.Uri{Scheme: "sip", Host: "198.51.100.1"})
		p.CopyHeaders(topology.ToOutside, in, out, "203.0.113.1", 5060)
		if got := p.Reason(topology.ToOutside, 480, "Gone fishing"); got != "Temporarily Unavailable" && !slices.Contains(c.KeepReasons, 480) {
			t.Errorf("reason phrase %q crossed", got)
		}
		if h := out.GetHeader("Reason"); h != nil {
			return h.Value()
		}
		return ""
	}
	def := config.Default().Topology
	if got := reason(def); got != "SIP;cause=200" {
		t.Errorf("default Reason %q, want the cause only", got)
	}
	keep := def
	keep.TextHeaders.Reason = "keep"
	keep.KeepReasons = []int{480}
	if got := reason(keep); !strings.Contains(got, "Asterisk hung up") {
		t.Errorf("text_headers.reason keep gave %q", got)
	}
	drop := def
	drop.TextHeaders.Reason = "drop"
	if got := reason(drop); got != "" {
		t.Errorf("text_headers.reason drop gave %q", got)
	}
}
