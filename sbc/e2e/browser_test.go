package e2e

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestBrowserWebRTC: headless Chromium with JsSIP (testdata/browser)
// registers as alice over WSS to `sipwall demo -wss` and calls the demo
// PBX's echo (1000). The browser speaks WebRTC (ICE, DTLS-SRTP, rtcp-mux,
// BUNDLE); sipwall terminates it and relays plain RTP to the PBX.
//
//   - register: JsSIP registered (2xx to its REGISTER over WSS);
//   - call: the call is confirmed, the browser received the echo (more
//     than 50 packets, audio energy above 0) over a DTLS transport in
//     state "connected";
//   - media: in a loopback capture, every datagram to or from the relay's
//     browser-side port is STUN, DTLS or SRTP/SRTCP, with at least one
//     DTLS handshake record; between the relay and the PBX there is only
//     plain RTP/RTCP; an SRTP packet and the plain one inside with the
//     same SSRC and sequence number carry different payload bytes, the
//     SRTP one longer by the authentication tag (10 or 16 bytes).
func TestBrowserWebRTC(t *testing.T) {
	SkipIfShort(t)
	chromium := RequireChromium(t)
	RequireTool(t, "tshark", "tshark")
	demo := StartDemoWSS(t)
	page := ServePage(t)
	// Both legs of the relay: browser–demo and demo–PBX (no SIP: the
	// browser speaks it over WSS, the demo to its PBX inside itself).
	capt := startCapture(t, "udp and host "+BrowserSBCIP)
	url := page.CallURL(demo.WSSURL())
	browser := StartChromium(t, chromium, url)
	rep, raw, err := page.WaitReport(browserRun, browser)
	pcap := capt.stop()
	browser.Stop()
	if err != nil {
		t.Fatalf("%s: %v\npage events:\n%s\nbrowser console (tail):\n%s\nchromium stderr (tail):\n%s",
			url, err, page.Events(), browser.Console(logTail), browser.Stderr(8<<10))
	}
	var pretty bytes.Buffer
	json.Indent(&pretty, raw, "", "  ")
	t.Logf("browser report (JsSIP %s, %s):\n%s", rep.JsSIP, rep.UserAgent, pretty.String())
	defer func() {
		if t.Failed() {
			t.Logf("browser console (tail):\n%s", browser.Console(logTail))
		}
	}()

	if !t.Run("register", func(t *testing.T) {
		if !rep.Registered {
			t.Fatalf("JsSIP did not register over WSS (%s): %s", demo.WSSURL(), registerSummary(rep))
		}
		t.Logf("registered: %s", registerSummary(rep))
	}) {
		return
	}

	t.Run("call", func(t *testing.T) {
		if !rep.Call.Confirmed {
			t.Fatalf("the call to %s was not confirmed: %s", rep.Target, callSummary(rep))
		}
		s := rep.Stats
		if s == nil || s.Transport == nil {
			t.Fatalf("no transport in getStats: %s", callSummary(rep))
		}
		if s.Transport.DTLSState != "connected" {
			t.Errorf("dtlsState %q, want connected: %s", s.Transport.DTLSState, callSummary(rep))
		}
		if s.Inbound == nil {
			t.Fatalf("no inbound-rtp audio in getStats (nothing came back from the echo): %s", callSummary(rep))
		}
		if s.Inbound.PacketsReceived <= 50 {
			t.Errorf("inbound-rtp packetsReceived %d, want more than 50 in %s: %s", s.Inbound.PacketsReceived, browserHold, callSummary(rep))
		}
		if s.Inbound.TotalAudioEnergy <= 0 {
			t.Errorf("inbound-rtp totalAudioEnergy %v, want > 0 (the echo of the fake microphone's beep): %s", s.Inbound.TotalAudioEnergy, callSummary(rep))
		}
		if rep.Call.Ended == nil || rep.Call.Ended.Originator != "local" {
			t.Errorf("the call did not end by the browser's BYE: %s", callSummary(rep))
		}
	})

	t.Run("media", func(t *testing.T) {
		if !rep.Call.Confirmed || rep.Stats == nil || rep.Stats.Local == nil || rep.Stats.Remote == nil {
			t.Skip("no established call with a selected candidate pair to look at (see the call subtest)")
		}
		file := capt.file
		pkts, err := ReadUDPCapture(file)
		if err != nil {
			t.Fatal(err)
		}
		relay := rep.Stats.Remote.AddrPort()
		browserAddr := rep.Stats.Local.AddrPort()
		pbxPeers := demo.Latched()["internal"]
		t.Logf("capture %d bytes, %d UDP datagrams; browser %v, relay (browser side) %v, PBX peers latched %v",
			len(pcap), len(pkts), browserAddr, relay, pbxPeers)
		var ssrcs []uint32
		if rep.Stats.Outbound != nil {
			ssrcs = append(ssrcs, rep.Stats.Outbound.SSRC)
		}
		if rep.Stats.Inbound != nil {
			ssrcs = append(ssrcs, rep.Stats.Inbound.SSRC)
		}
		inside := browserInsideTuples(pkts, pbxPeers, ssrcs)
		res := checkBrowserMedia(pkts, relay, inside)
		t.Log(res.String())
		for _, p := range res.Problems {
			t.Error(p)
		}
		if !slices.ContainsFunc(pkts, func(p UDPPacket) bool { return p.Src == browserAddr && p.Dst == relay }) {
			t.Errorf("no datagram from the browser's address %v to the relay %v in the capture", browserAddr, relay)
		}
	})
}

// registerSummary says how JsSIP's registration went.
func registerSummary(r *BrowserReport) string {
	var parts []string
	if !r.Registered {
		parts = append(parts, fmt.Sprintf("outcome %q", r.Outcome))
	}
	if g := r.Register; g == nil {
		parts = append(parts, "no response to REGISTER")
	} else {
		if g.Cause != "" {
			parts = append(parts, "registrationFailed: "+g.Cause)
		}
		if g.Status != 0 {
			parts = append(parts, fmt.Sprintf("response %d %s", g.Status, g.Reason))
		}
	}
	if len(r.Errors) > 0 {
		parts = append(parts, "page errors: "+strings.Join(r.Errors, "; "))
	}
	return strings.Join(parts, ", ")
}

// callSummary is what the browser saw of the call: the SIP responses, how
// JsSIP ended it, WebRTC's errors and states, the DTLS and ICE state of
// the transport and what it received, and the SDP answer it was given.
func callSummary(r *BrowserReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "outcome %q", r.Outcome)
	fmt.Fprintf(&b, "; SIP responses %v, accepted %v", r.Call.Progress, r.Call.Accepted)
	if f := r.Call.Failed; f != nil {
		fmt.Fprintf(&b, "; failed (%s): %s", f.Originator, f.Cause)
		if f.Status != 0 {
			fmt.Fprintf(&b, ", final response %d %s", f.Status, f.Reason)
		}
		if f.Warning != "" {
			fmt.Fprintf(&b, " (Warning: %s)", f.Warning)
		}
	}
	if e := r.Call.Ended; e != nil {
		fmt.Fprintf(&b, "; ended (%s): %s", e.Originator, e.Cause)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(&b, "; errors: %s", strings.Join(r.Errors, "; "))
	}
	fmt.Fprintf(&b, "; RTCPeerConnection: signalingState %q, iceGatheringState %q, iceConnectionState %q, connectionState %q",
		r.LastState("signalingState"), r.LastState("iceGatheringState"), r.LastState("iceConnectionState"), r.LastState("connectionState"))
	if s := r.Stats; s != nil {
		if tr := s.Transport; tr != nil {
			fmt.Fprintf(&b, "; transport: dtlsState %q, iceState %q, srtpCipher %q", tr.DTLSState, tr.ICEState, tr.SRTPCipher)
		} else {
			b.WriteString("; no transport in getStats")
		}
		if s.Local != nil && s.Remote != nil {
			fmt.Fprintf(&b, ", selected pair %v -> %v", s.Local.AddrPort(), s.Remote.AddrPort())
		}
		if in := s.Inbound; in != nil {
			fmt.Fprintf(&b, "; inbound-rtp: %d packets, %d bytes, energy %v, codec %s", in.PacketsReceived, in.BytesReceived, in.TotalAudioEnergy, in.Codec)
		} else {
			b.WriteString("; no inbound-rtp")
		}
		if out := s.Outbound; out != nil {
			fmt.Fprintf(&b, "; outbound-rtp: %d packets", out.PacketsSent)
		}
	}
	answer := r.SDP.Remote
	if answer == "" {
		answer = r.SDP.Answer
	}
	if answer != "" {
		fmt.Fprintf(&b, "\nSDP answer the browser was given:\n%s", strings.TrimSpace(answer))
	} else {
		b.WriteString("\nno SDP answer reached the browser")
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// What the capture must show

// udpTuple is an unordered pair of UDP endpoints.
type udpTuple [2]netip.AddrPort

func udpTupleOf(a, b netip.AddrPort) udpTuple {
	if a.Compare(b) > 0 {
		a, b = b, a
	}
	return udpTuple{a, b}
}

// browserInsideTuples finds the relay–PBX legs of the call: the
// datagrams to or from a PBX peer the relay latched onto (from sipwall's
// log), or, when the log names none, the RTP to or from the demo PBX
// carrying one of the call's SSRCs.
func browserInsideTuples(pkts []UDPPacket, pbxPeers []netip.AddrPort, ssrcs []uint32) map[udpTuple]bool {
	out := map[udpTuple]bool{}
	for _, p := range pkts {
		if slices.Contains(pbxPeers, p.Src) || slices.Contains(pbxPeers, p.Dst) {
			out[udpTupleOf(p.Src, p.Dst)] = true
		}
	}
	if len(out) > 0 {
		return out
	}
	pbx := netip.MustParseAddr(DemoPBXIP)
	for _, p := range pkts {
		if p.Src.Addr() != pbx && p.Dst.Addr() != pbx {
			continue
		}
		if rtpHeaderSize(p.Payload) > 0 && !isRTCPPacket(p.Payload) && slices.Contains(ssrcs, binary.BigEndian.Uint32(p.Payload[8:12])) {
			out[udpTupleOf(p.Src, p.Dst)] = true
		}
	}
	return out
}

// Kinds of datagram on the browser side, and directions.
const (
	wireSTUN  = "STUN"
	wireDTLS  = "DTLS"
	wireSRTP  = "SRTP"
	wireSRTCP = "SRTCP"

	dirToRelay   = "browser→relay"
	dirToBrowser = "relay→browser"
)

// browserMediaResult is what checkBrowserMedia found.
type browserMediaResult struct {
	Outside        map[string]int // datagrams per kind on the browser side
	OutsideRecords map[string]int // datagrams per direction on the browser side
	DTLSHandshakes int            // DTLS handshake records (content type 22)
	Inside         int            // datagrams relay–PBX
	InsideRTCP     int
	Matched        map[string]int // SRTP datagrams with a plain twin inside, per direction
	TagLens        map[int]int    // SRTP length − plain length, over the matches
	Problems       []string
}

func (r browserMediaResult) String() string {
	return fmt.Sprintf("browser side: %v per kind, %v per direction, %d DTLS handshake records; inside: %d datagrams (%d RTCP); SRTP with a plain twin inside: %v, length differences %v",
		r.Outside, r.OutsideRecords, r.DTLSHandshakes, r.Inside, r.InsideRTCP, r.Matched, r.TagLens)
}

func (r *browserMediaResult) problem(format string, args ...any) {
	if len(r.Problems) < 20 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// checkBrowserMedia checks the datagrams to or from relay (the relay's
// browser-side socket) and those on the inside tuples, as
// TestBrowserWebRTC's media subtest describes.
func checkBrowserMedia(pkts []UDPPacket, relay netip.AddrPort, inside map[udpTuple]bool) browserMediaResult {
	r := browserMediaResult{Outside: map[string]int{}, OutsideRecords: map[string]int{}, Matched: map[string]int{}, TagLens: map[int]int{}}
	type key struct {
		ssrc uint32
		seq  uint16
	}
	plain := map[key][]byte{}
	for _, p := range pkts {
		if !inside[udpTupleOf(p.Src, p.Dst)] {
			continue
		}
		r.Inside++
		b := p.Payload
		switch {
		case len(b) > 0 && b[0] <= 3:
			r.problem("inside %v→%v: STUN (%d bytes), want plain RTP only", p.Src, p.Dst, len(b))
		case len(b) > 0 && b[0] >= 20 && b[0] <= 63:
			r.problem("inside %v→%v: DTLS (content type %d), want plain RTP only", p.Src, p.Dst, b[0])
		case isRTCPPacket(b):
			r.InsideRTCP++
			if !rtcpLengthsAddUp(b) {
				r.problem("inside %v→%v: RTCP whose lengths do not add up to the datagram (SRTCP?): % x", p.Src, p.Dst, b[:min(len(b), 16)])
			}
		case rtpHeaderSize(b) > 0:
			h := rtpHeaderSize(b)
			plain[key{binary.BigEndian.Uint32(b[8:12]), binary.BigEndian.Uint16(b[2:4])}] = b[h:]
		default:
			r.problem("inside %v→%v: neither RTP nor RTCP (%d bytes, first % x)", p.Src, p.Dst, len(b), b[:min(len(b), 4)])
		}
	}
	if r.Inside == 0 {
		r.problem("no datagram between the relay and the PBX in the capture")
	}
	for _, p := range pkts {
		if p.Src != relay && p.Dst != relay {
			continue
		}
		dir := dirToRelay
		if p.Src == relay {
			dir = dirToBrowser
		}
		r.OutsideRecords[dir]++
		b := p.Payload
		switch {
		case len(b) >= 20 && b[0] <= 3 && binary.BigEndian.Uint32(b[4:8]) == 0x2112A442:
			r.Outside[wireSTUN]++
		case len(b) >= 13 && b[0] >= 20 && b[0] <= 63 && b[1] == 0xfe:
			r.Outside[wireDTLS]++
			if b[0] == 22 {
				r.DTLSHandshakes++
			}
		case isRTCPPacket(b):
			r.Outside[wireSRTCP]++
			if !hasSRTCPIndex(b) {
				r.problem("%s %v→%v: RTCP without SRTCP's E flag and index (plain RTCP?): % x", dir, p.Src, p.Dst, b[:min(len(b), 16)])
			}
		case rtpHeaderSize(b) > 0:
			r.Outside[wireSRTP]++
			h := rtpHeaderSize(b)
			in, ok := plain[key{binary.BigEndian.Uint32(b[8:12]), binary.BigEndian.Uint16(b[2:4])}]
			if !ok {
				continue
			}
			r.Matched[dir]++
			out := b[h:]
			r.TagLens[len(out)-len(in)]++
			if len(out) >= len(in) && bytes.Equal(out[:len(in)], in) {
				r.problem("%s %v→%v: SSRC %d seq %d carries the same payload as the plain RTP inside: not encrypted",
					dir, p.Src, p.Dst, binary.BigEndian.Uint32(b[8:12]), binary.BigEndian.Uint16(b[2:4]))
			}
		default:
			r.problem("%s %v→%v: neither STUN, DTLS nor SRTP (%d bytes, first % x)", dir, p.Src, p.Dst, len(b), b[:min(len(b), 4)])
		}
	}
	if r.DTLSHandshakes == 0 {
		r.problem("no DTLS handshake record on the browser side")
	}
	if r.Outside[wireSRTP] == 0 {
		r.problem("no SRTP on the browser side")
	}
	for _, dir := range []string{dirToRelay, dirToBrowser} {
		if r.Matched[dir] < 20 {
			r.problem("%s: %d SRTP datagrams with a plain twin inside (same SSRC and sequence number), want at least 20", dir, r.Matched[dir])
		}
	}
	for d, n := range r.TagLens {
		if d != 10 && d != 16 {
			r.problem("%d SRTP datagrams are %d bytes longer than their plain twin inside, want 10 (AES_CM_128_HMAC_SHA1_80) or 16 (AEAD_AES_*_GCM)", n, d)
		}
	}
	if len(r.TagLens) > 1 {
		r.problem("SRTP tags of several lengths: %v", r.TagLens)
	}
	return r
}

// rtpHeaderSize is the length of the RTP header at the start of b (fixed
// part, CSRCs, extension), or -1 when b is no RTP version 2 packet.
func rtpHeaderSize(b []byte) int {
	if len(b) < 12 || b[0]>>6 != 2 {
		return -1
	}
	n := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < n+4 {
			return -1
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(b[n+2:]))
	}
	if n > len(b) {
		return -1
	}
	return n
}

// isRTCPPacket tells RTCP from RTP by the packet type (RFC 5761: 192-223).
func isRTCPPacket(b []byte) bool {
	return len(b) >= 8 && b[0]>>6 == 2 && b[1] >= 192 && b[1] <= 223
}

// rtcpLengthsAddUp reports whether b is a compound RTCP packet whose length
// fields add up to the datagram exactly: SRTCP's index and tag would be
// left over.
func rtcpLengthsAddUp(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 4 || b[0]>>6 != 2 {
			return false
		}
		n := 4 * (int(binary.BigEndian.Uint16(b[2:4])) + 1)
		if n > len(b) {
			return false
		}
		b = b[n:]
	}
	return true
}

// hasSRTCPIndex reports whether b ends like SRTCP: the E flag (encrypted)
// set in the word holding the SRTCP index, which is the last one for
// AEAD GCM (RFC 7714) and the one before the 10-byte tag for
// AES_CM_128_HMAC_SHA1_80 (RFC 3711).
func hasSRTCPIndex(b []byte) bool {
	if len(b) < 8+4+10 {
		return false
	}
	return b[len(b)-4]&0x80 != 0 || b[len(b)-14]&0x80 != 0
}

// The media check itself: plain RTP on the browser side, or a leg
// without DTLS, must be reported; an encrypted call must pass.
func TestCheckBrowserMedia(t *testing.T) {
	relay := netip.MustParseAddrPort("127.0.0.1:40000")
	browser := netip.MustParseAddrPort("127.0.0.1:50000")
	relayIn := netip.MustParseAddrPort("127.0.0.1:40002")
	pbx := netip.MustParseAddrPort("127.0.0.10:30000")
	inside := map[udpTuple]bool{udpTupleOf(relayIn, pbx): true}
	rtp := func(ssrc uint32, seq uint16, payload []byte) []byte {
		b := make([]byte, 12, 12+len(payload))
		b[0], b[1] = 0x80, 0
		binary.BigEndian.PutUint16(b[2:], seq)
		binary.BigEndian.PutUint32(b[8:], ssrc)
		return append(b, payload...)
	}
	voice := bytes.Repeat([]byte{0x7f}, 160)
	secret := func(n int) []byte { return bytes.Repeat([]byte{0xa5}, n) }
	stun := append([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42}, make([]byte, 12)...)
	dtls := append([]byte{22, 0xfe, 0xfd}, make([]byte, 40)...)
	call := func(outside func(seq uint16) []byte) []UDPPacket {
		pkts := []UDPPacket{{browser, relay, stun}, {relay, browser, stun}, {browser, relay, dtls}, {relay, browser, dtls}}
		for seq := uint16(1); seq <= 30; seq++ {
			pkts = append(pkts,
				UDPPacket{browser, relay, outside(seq)}, UDPPacket{relayIn, pbx, rtp(7, seq, voice)},
				UDPPacket{pbx, relayIn, rtp(7^0x5157, seq, voice)}, UDPPacket{relay, browser, rtp(7^0x5157, seq, secret(170))})
		}
		return pkts
	}
	ok := checkBrowserMedia(call(func(seq uint16) []byte { return rtp(7, seq, secret(170)) }), relay, inside)
	if len(ok.Problems) > 0 || ok.TagLens[10] != 60 || ok.DTLSHandshakes != 2 {
		t.Errorf("an encrypted call: %v, problems %q", ok, ok.Problems)
	}
	leak := checkBrowserMedia(call(func(seq uint16) []byte { return rtp(7, seq, voice) }), relay, inside)
	if !slices.ContainsFunc(leak.Problems, func(p string) bool { return strings.Contains(p, "not encrypted") }) {
		t.Errorf("plain RTP on the browser side not reported: %q", leak.Problems)
	}
	noDTLS := slices.DeleteFunc(call(func(seq uint16) []byte { return rtp(7, seq, secret(170)) }), func(p UDPPacket) bool { return p.Payload[0] == 22 })
	if r := checkBrowserMedia(noDTLS, relay, inside); !slices.ContainsFunc(r.Problems, func(p string) bool { return strings.Contains(p, "no DTLS handshake") }) {
		t.Errorf("a browser side without DTLS not reported: %q", r.Problems)
	}
	dtlsInside := append(call(func(seq uint16) []byte { return rtp(7, seq, secret(170)) }), UDPPacket{relayIn, pbx, dtls})
	if r := checkBrowserMedia(dtlsInside, relay, inside); !slices.ContainsFunc(r.Problems, func(p string) bool { return strings.Contains(p, "inside") && strings.Contains(p, "DTLS") }) {
		t.Errorf("DTLS inside not reported: %q", r.Problems)
	}
}
