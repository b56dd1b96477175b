package sdp

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestRewriteGolden(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		target Target
		want   string
	}{
		{"asterisk", sampleAsterisk, target(sbc4, 40000, 40001), crlf(
			"v=0",
			"o=sipwall 4242 1 IN IP4 203.0.113.10",
			"s=-",
			"c=IN IP4 203.0.113.10",
			"t=0 0",
			"m=audio 40000 RTP/AVP 0 8 101",
			"a=rtpmap:0 PCMU/8000",
			"a=rtpmap:8 PCMA/8000",
			"a=rtpmap:101 telephone-event/8000",
			"a=fmtp:101 0-16",
			"a=ptime:20",
			"a=maxptime:150",
			"a=sendrecv",
		)},
		{"lf endings become CRLF", sampleLF, target(sbc4, 40000, 0), crlf(
			"v=0",
			"o=sipwall 4242 1 IN IP4 203.0.113.10",
			"s=-",
			"c=IN IP4 203.0.113.10",
			"t=0 0",
			"m=audio 40000 RTP/AVP 0 8 101",
			"a=rtpmap:0 PCMU/8000",
			"a=rtpmap:8 PCMA/8000",
			"a=rtpmap:101 telephone-event/8000",
			"a=fmtp:101 0-16",
			"a=ptime:20",
			"a=maxptime:150",
			"a=sendrecv",
		)},
		{"freeswitch: crypto kept, a=rtcp with address", sampleFreeSWITCH, target(sbc4, 40002, 40003), crlf(
			"v=0",
			"o=sipwall 4242 1 IN IP4 203.0.113.10",
			"s=-",
			"c=IN IP4 203.0.113.10",
			"t=0 0",
			"m=audio 40002 RTP/SAVP 9 0 8 101 13",
			"a=rtpmap:9 G722/8000",
			"a=rtpmap:0 PCMU/8000",
			"a=rtpmap:8 PCMA/8000",
			"a=rtpmap:101 telephone-event/8000",
			"a=fmtp:101 0-16",
			"a=rtpmap:13 CN/8000",
			"a=ptime:20",
			"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
			"a=rtcp:40003 IN IP4 203.0.113.10",
		)},
		{"webrtc: ICE removed, rtcp-mux port", sampleWebRTC, target(sbc4, 40004, 0), crlf(
			"v=0",
			"o=sipwall 4242 1 IN IP4 203.0.113.10",
			"s=-",
			"c=IN IP4 203.0.113.10",
			"t=0 0",
			"a=group:BUNDLE 0",
			"a=extmap-allow-mixed",
			"a=msid-semantic: WMS stream0",
			"m=audio 40004 UDP/TLS/RTP/SAVPF 111 9 0 8 126",
			"a=rtcp:40004 IN IP4 203.0.113.10",
			"a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08",
			"a=setup:actpass",
			"a=mid:0",
			"a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
			"a=sendrecv",
			"a=msid:stream0 track0",
			"a=rtcp-mux",
			"a=rtpmap:111 opus/48000/2",
			"a=rtcp-fb:111 transport-cc",
			"a=fmtp:111 minptime=10;useinbandfec=1",
			"a=rtpmap:9 G722/8000",
			"a=rtpmap:0 PCMU/8000",
			"a=rtpmap:8 PCMA/8000",
			"a=rtpmap:126 telephone-event/8000",
			"a=ssrc:1001 cname:4TOk42mSjXCkVIa6",
		)},
		{"t38: no a=rtcp added to udptl", sampleT38, target(sbc4, 40010, 40013), crlf(
			"v=0",
			"o=sipwall 4242 1 IN IP4 203.0.113.10",
			"s=-",
			"c=IN IP4 203.0.113.10",
			"t=0 0",
			"m=image 40010 udptl t38",
			"a=T38FaxVersion:0",
			"a=T38MaxBitRate:14400",
			"a=T38FaxRateManagement:transferredTCF",
			"a=T38FaxMaxBuffer:262",
			"a=T38FaxMaxDatagram:176",
			"a=T38FaxUdpEC:t38UDPRedundancy",
		)},
		{"trailing empty lines dropped", sampleTrailingBlank, target(sbc4, 40010, 40011), crlf(
			"v=0",
			"o=sipwall 4242 1 IN IP4 203.0.113.10",
			"s=-",
			"c=IN IP4 203.0.113.10",
			"t=0 0",
			"m=image 40010 udptl t38",
			"a=T38FaxVersion:0",
			"a=T38MaxBitRate:14400",
			"a=T38FaxRateManagement:transferredTCF",
			"a=T38FaxMaxBuffer:262",
			"a=T38FaxMaxDatagram:176",
			"a=T38FaxUdpEC:t38UDPRedundancy",
		)},
		{"hold with sendonly: an ordinary rewrite", sampleHoldSendonly, target(sbc4, 40000, 40001), crlf(
			"v=0",
			"o=sipwall 4242 1 IN IP4 203.0.113.10",
			"s=-",
			"c=IN IP4 203.0.113.10",
			"t=0 0",
			"m=audio 40000 RTP/AVP 0 101",
			"a=rtpmap:0 PCMU/8000",
			"a=rtpmap:101 telephone-event/8000",
			"a=fmtp:101 0-16",
			"a=ptime:20",
			"a=sendonly",
		)},
		{"hold with c=0.0.0.0 keeps its media c=", sampleHoldZero, target(sbc4, 40020, 40021), crlf(
			"v=0",
			"o=sipwall 4242 1 IN IP4 203.0.113.10",
			"s=-",
			"c=IN IP4 203.0.113.10",
			"t=0 0",
			"m=audio 40020 RTP/AVP 18 101",
			"c=IN IP4 0.0.0.0",
			"a=rtpmap:18 G729/8000",
			"a=fmtp:18 annexb=no",
			"a=rtpmap:101 telephone-event/8000",
			"a=fmtp:101 0-15",
			"a=ptime:20",
		)},
		{"hold at session level gets a media c= after i=", sampleHoldZeroSession, target(sbc4, 40000, 40001), crlf(
			"v=0",
			"o=sipwall 4242 1 IN IP4 203.0.113.10",
			"s=-",
			"c=IN IP4 203.0.113.10",
			"t=0 0",
			"m=audio 40000 RTP/AVP 0",
			"i=main audio",
			"c=IN IP4 0.0.0.0",
			"a=rtpmap:0 PCMU/8000",
		)},
		{"hold toward IPv6 uses ::", sampleHoldZeroSession, target(sbc6, 40000, 40001), crlf(
			"v=0",
			"o=sipwall 4242 1 IN IP6 2001:db8:ffff::10",
			"s=-",
			"c=IN IP6 2001:db8:ffff::10",
			"t=0 0",
			"m=audio 40000 RTP/AVP 0",
			"i=main audio",
			"c=IN IP6 ::",
			"a=rtpmap:0 PCMU/8000",
		)},
		{"audio and video, a=rtcp added when RTCP is not RTP+1", sampleAudioVideo, target(sbc4, 40030, 40031, 40032, 40037), crlf(
			"v=0",
			"o=sipwall 4242 1 IN IP4 203.0.113.10",
			"s=-",
			"c=IN IP4 203.0.113.10",
			"b=AS:2048",
			"t=0 0",
			"m=audio 40030 RTP/AVP 9 0 8 101",
			"a=rtpmap:9 G722/8000",
			"a=rtpmap:0 PCMU/8000",
			"a=rtpmap:8 PCMA/8000",
			"a=rtpmap:101 telephone-event/8000",
			"a=fmtp:101 0-15",
			"a=sendrecv",
			"m=video 40032 RTP/AVP 109 34",
			"b=TIAS:1920000",
			"a=rtpmap:109 H264/90000",
			"a=fmtp:109 profile-level-id=42E01F",
			"a=rtpmap:34 H263/90000",
			"a=recvonly",
			"a=rtcp:40037",
		)},
		{"IPv6 to IPv4", sampleIPv6, target(sbc4, 40000, 40001), crlf(
			"v=0",
			"o=sipwall 4242 1 IN IP4 203.0.113.10",
			"s=-",
			"c=IN IP4 203.0.113.10",
			"t=0 0",
			"a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics",
			"m=audio 40000 RTP/AVP 96 0 8 101",
			"a=rtpmap:96 opus/48000/2",
			"a=fmtp:96 useinbandfec=1",
			"a=rtpmap:101 telephone-event/8000",
			"a=rtcp:40001",
			"a=rtcp-fb:* trr-int 1000",
		)},
		{"rfc8866: identity lines removed, one c=", sampleRFC8866, target(sbc6, 40000, 40001, 40002, 40003, 40004, 40005), crlf(
			"v=0",
			"o=sipwall 4242 1 IN IP6 2001:db8:ffff::10",
			"s=-",
			"c=IN IP6 2001:db8:ffff::10",
			"t=0 0",
			"m=audio 40000 RTP/AVP 0",
			"m=audio 40002 RTP/AVP 0",
			"m=video 40004 RTP/AVP 99",
			"a=rtpmap:99 h263-1998/90000",
		)},
		{"media-level c= only, disabled stream", sampleMediaConn, target(sbc4, 40000, 40001, 50000, 50001), crlf(
			"v=0",
			"o=sipwall 4242 1 IN IP4 203.0.113.10",
			"s=-",
			"c=IN IP4 203.0.113.10",
			"t=0 0",
			"m=audio 40000 RTP/AVP 0",
			"a=rtcp:40001 IN IP4 203.0.113.10",
			"m=video 0 RTP/AVP 96",
		)},
		{"a=rtcp on another address", sampleRTCPAddr, target(sbc4, 40000, 40001), crlf(
			"v=0",
			"o=sipwall 4242 1 IN IP4 203.0.113.10",
			"s=-",
			"c=IN IP4 203.0.113.10",
			"t=0 0",
			"m=audio 40000 RTP/AVP 0",
			"a=rtcp:40001 IN IP4 203.0.113.10",
		)},
		{"port count kept, multicast TTL dropped", samplePortCount, target(sbc4, 40000, 40001, 40002, 40003), crlf(
			"v=0",
			"o=sipwall 4242 1 IN IP4 203.0.113.10",
			"s=-",
			"c=IN IP4 203.0.113.10",
			"t=2873397496 2873404696",
			"a=recvonly",
			"m=audio 40000/2 RTP/AVP 0",
			"m=video 40002 RTP/AVP 99",
			"a=rtpmap:99 h263-1998/90000",
		)},
		{"empty origin user, mapped target address", sampleRTCPAddr,
			Target{Addr: netip.MustParseAddr("::ffff:203.0.113.10"), Ports: []PortPair{{40000, 40001}}, Origin: Origin{SessID: "9", Version: "10"}},
			crlf(
				"v=0",
				"o=- 9 10 IN IP4 203.0.113.10",
				"s=-",
				"c=IN IP4 203.0.113.10",
				"t=0 0",
				"m=audio 40000 RTP/AVP 0",
				"a=rtcp:40001 IN IP4 203.0.113.10",
			)},
		{"session c= after t= moves before it", crlf("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "t=0 0", "c=IN IP4 10.0.0.1", "m=audio 5000 RTP/AVP 0"),
			target(sbc4, 40000, 40001), crlf(
				"v=0",
				"o=sipwall 4242 1 IN IP4 203.0.113.10",
				"s=-",
				"c=IN IP4 203.0.113.10",
				"t=0 0",
				"m=audio 40000 RTP/AVP 0",
			)},
		{"no media, no c=", crlf("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "i=x"), target(sbc4), crlf(
			"v=0",
			"o=sipwall 4242 1 IN IP4 203.0.113.10",
			"s=-",
			"c=IN IP4 203.0.113.10",
		)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Rewrite(tt.target)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("Rewrite():\n%s\nwant:\n%s", got, tt.want)
			}
			checkRewritten(t, s, tt.target, got)
		})
	}
}

// TestRewriteSamples rewrites every sample toward both families and checks
// the invariants of checkRewritten.
func TestRewriteSamples(t *testing.T) {
	for _, sm := range samples {
		for _, addr := range []netip.Addr{sbc4, sbc6} {
			t.Run(sm.name+"/"+addr.String(), func(t *testing.T) {
				s, err := Parse([]byte(sm.body))
				if err != nil {
					t.Fatal(err)
				}
				tg := relayTarget(s, addr)
				out, err := s.Rewrite(tg)
				if err != nil {
					t.Fatal(err)
				}
				checkRewritten(t, s, tg, out)
				checkKeptLines(t, sm.body, string(out))
			})
		}
	}
}

// checkRewritten checks what must hold for any rewrite of in toward tg:
// out parses, has the same streams with the target's ports, shows no
// address but the target's and the unspecified one, names no original
// address even in lines Parse does not read, carries no ICE or identity
// line, and is a fixed point of Rewrite.
func checkRewritten(t *testing.T, in *Session, tg Target, out []byte) {
	t.Helper()
	s, err := Parse(out)
	if err != nil {
		t.Fatalf("rewritten body does not parse: %v\n%s", err, out)
	}
	before, after := in.Media(), s.Media()
	if len(before) != len(after) {
		t.Fatalf("%d media became %d", len(before), len(after))
	}
	addr := tg.Addr.Unmap()
	for i, m := range after {
		b := before[i]
		wantPort := tg.Ports[i].RTP
		if b.Port == 0 {
			wantPort = 0
		}
		if m.Port != wantPort || m.Type != b.Type || m.Proto != b.Proto || m.PortCount != b.PortCount ||
			m.Direction != b.Direction || m.Crypto != b.Crypto || m.RTCPMux != b.RTCPMux {
			t.Errorf("media %d: %+v became %+v", i, b, m)
		}
		if b.Port != 0 && m.Hold() != b.Hold() {
			t.Errorf("media %d: hold %v became %v", i, b.Hold(), m.Hold())
		}
		if b.Port != 0 && !m.Hold() && m.Addr != addr {
			t.Errorf("media %d: address %v, want %v", i, m.Addr, addr)
		}
	}
	if o := s.Origin(); o.Addr != addr {
		t.Errorf("origin address %v", o.Addr)
	}
	for _, a := range s.Addrs() {
		if a != addr && !a.IsUnspecified() {
			t.Errorf("rewritten body shows %v", a)
		}
	}
	for _, a := range in.Addrs() {
		if !a.IsUnspecified() && a != addr && strings.Contains(string(out), a.String()) {
			t.Errorf("original address %v still in the body", a)
		}
	}
	for _, line := range strings.Split(string(out), "\r\n") {
		for _, bad := range []string{"a=candidate", "a=remote-candidates", "a=end-of-candidates", "a=ice-", "a=altc", "u=", "e=", "p="} {
			if strings.HasPrefix(line, bad) {
				t.Errorf("line %q kept", line)
			}
		}
		if strings.HasPrefix(line, "s=") && line != "s=-" {
			t.Errorf("session name %q kept", line)
		}
	}
	again, err := s.Rewrite(tg)
	if err != nil || string(again) != string(out) {
		t.Errorf("rewriting the result changes it (%v):\n%s\nthen:\n%s", err, out, again)
	}
}

// checkKeptLines: every line Rewrite has no reason to touch comes out byte
// for byte, in the same order.
func checkKeptLines(t *testing.T, in, out string) {
	t.Helper()
	kept := func(body string) []string {
		var lines []string
		media := false
		for _, l := range strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n") {
			if strings.HasPrefix(l, "m=") {
				media = true
			}
			switch {
			case l == "", len(l) > 1 && strings.ContainsRune("oscmuep", rune(l[0])),
				!media && strings.HasPrefix(l, "i="),
				strings.HasPrefix(l, "a=rtcp:"), strings.HasPrefix(l, "a=candidate"), strings.HasPrefix(l, "a=ice-"),
				strings.HasPrefix(l, "a=end-of-candidates"), strings.HasPrefix(l, "a=remote-candidates"):
				continue
			}
			lines = append(lines, l)
		}
		return lines
	}
	a, b := kept(in), kept(out)
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Errorf("untouched lines differ:\n%q\n%q", a, b)
	}
}

func TestRewriteBadTarget(t *testing.T) {
	s, err := Parse([]byte(sampleMediaConn)) // audio 5004, video 0
	if err != nil {
		t.Fatal(err)
	}
	good := target(sbc4, 40000, 40001, 0, 0)
	if _, err := s.Rewrite(good); err != nil {
		t.Fatalf("disabled stream's ports are ignored: %v", err)
	}
	tests := []struct {
		name string
		edit func(*Target)
	}{
		{"zero address", func(t *Target) { t.Addr = netip.Addr{} }},
		{"unspecified address", func(t *Target) { t.Addr = netip.IPv4Unspecified() }},
		{"zone", func(t *Target) { t.Addr = netip.MustParseAddr("fe80::1%eth0") }},
		{"too few ports", func(t *Target) { t.Ports = t.Ports[:1] }},
		{"no ports", func(t *Target) { t.Ports = nil }},
		{"RTP port 0", func(t *Target) { t.Ports[0].RTP = 0 }},
		{"RTP port 70000", func(t *Target) { t.Ports[0].RTP = 70000 }},
		{"RTCP port negative", func(t *Target) { t.Ports[0].RTCP = -1 }},
		{"RTCP port 70000", func(t *Target) { t.Ports[0].RTCP = 70000 }},
		{"default RTCP past 65535", func(t *Target) { t.Ports[0] = PortPair{RTP: 65535} }},
		{"user with a space", func(t *Target) { t.Origin.User = "a b" }},
		{"user with CRLF", func(t *Target) { t.Origin.User = "a\r\nc=IN IP4 10.0.0.1" }},
		{"session id empty", func(t *Target) { t.Origin.SessID = "" }},
		{"version not a number", func(t *Target) { t.Origin.Version = "1a" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := good
			tg.Ports = append([]PortPair(nil), good.Ports...)
			tt.edit(&tg)
			out, err := s.Rewrite(tg)
			if !errors.Is(err, ErrBadTarget) || out != nil {
				t.Errorf("Rewrite() = %q, %v; want ErrBadTarget", out, err)
			}
		})
	}
}

// TestRewriteTooLarge: a body at the limits that Rewrite would push past
// them fails instead of producing what Parse refuses.
func TestRewriteTooLarge(t *testing.T) {
	head := crlf("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "t=0 0")
	body := head + strings.Repeat("m=audio 5000 RTP/AVP 0\r\n", MaxMedia)
	body += strings.Repeat("a=x\r\n", MaxLines-strings.Count(body, "\n"))
	s, err := Parse([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	tg := relayTarget(s, sbc4)
	if _, err := s.Rewrite(tg); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Rewrite() error %v, want ErrTooLarge", err)
	}
}
