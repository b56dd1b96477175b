package sdp

import (
	"net/netip"
	"strings"
)

// crlf joins lines into a body, each line ended by CRLF.
func crlf(lines ...string) string { return strings.Join(lines, "\r\n") + "\r\n" }

// Real-world bodies, trimmed to what matters. Addresses are private or
// documentation ranges; each sample uses its own so a leak is unambiguous.
var (
	// chan_pjsip offer.
	sampleAsterisk = crlf(
		"v=0",
		"o=- 1908257046 1908257046 IN IP4 10.20.0.5",
		"s=Asterisk",
		"c=IN IP4 10.20.0.5",
		"t=0 0",
		"m=audio 17844 RTP/AVP 0 8 101",
		"a=rtpmap:0 PCMU/8000",
		"a=rtpmap:8 PCMA/8000",
		"a=rtpmap:101 telephone-event/8000",
		"a=fmtp:101 0-16",
		"a=ptime:20",
		"a=maxptime:150",
		"a=sendrecv",
	)
	// FreeSWITCH offer with SDES-SRTP and an a=rtcp carrying an address.
	sampleFreeSWITCH = crlf(
		"v=0",
		"o=FreeSWITCH 1712040000 1712040001 IN IP4 172.16.5.10",
		"s=FreeSWITCH",
		"c=IN IP4 172.16.5.10",
		"t=0 0",
		"m=audio 24618 RTP/SAVP 9 0 8 101 13",
		"a=rtpmap:9 G722/8000",
		"a=rtpmap:0 PCMU/8000",
		"a=rtpmap:8 PCMA/8000",
		"a=rtpmap:101 telephone-event/8000",
		"a=fmtp:101 0-16",
		"a=rtpmap:13 CN/8000",
		"a=ptime:20",
		"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
		"a=rtcp:24619 IN IP4 172.16.5.10",
	)
	// Browser offer after gathering: ICE, DTLS, rtcp-mux, BUNDLE.
	sampleWebRTC = crlf(
		"v=0",
		"o=- 4611731400430051336 2 IN IP4 127.0.0.1",
		"s=-",
		"t=0 0",
		"a=group:BUNDLE 0",
		"a=extmap-allow-mixed",
		"a=msid-semantic: WMS stream0",
		"a=ice-options:trickle",
		"m=audio 54321 UDP/TLS/RTP/SAVPF 111 9 0 8 126",
		"c=IN IP4 198.51.100.77",
		"a=rtcp:9 IN IP4 0.0.0.0",
		"a=candidate:1467250027 1 udp 2122260223 192.168.1.33 54321 typ host generation 0 network-id 1",
		"a=candidate:842163049 1 udp 1686052607 198.51.100.77 54321 typ srflx raddr 192.168.1.33 rport 54321 generation 0 network-id 1",
		"a=candidate:3828176911 1 udp 2122194687 fd00:1::33 54400 typ host generation 0 network-id 2",
		"a=candidate:1119455001 1 udp 2122131711 6f1c1c46-0d5b-4b6c-9f2f-3a1ad2b0c8e1.local 54500 typ host generation 0",
		"a=end-of-candidates",
		"a=ice-ufrag:Xk7q",
		"a=ice-pwd:b1n4J0f1Yc5yQ2pW8r3E7s9t",
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
	)
	// T.38 re-INVITE from an ATA.
	sampleT38 = crlf(
		"v=0",
		"o=- 3 4 IN IP4 10.1.1.20",
		"s=-",
		"c=IN IP4 10.1.1.20",
		"t=0 0",
		"m=image 4002 udptl t38",
		"a=T38FaxVersion:0",
		"a=T38MaxBitRate:14400",
		"a=T38FaxRateManagement:transferredTCF",
		"a=T38FaxMaxBuffer:262",
		"a=T38FaxMaxDatagram:176",
		"a=T38FaxUdpEC:t38UDPRedundancy",
	)
	// Asterisk putting the call on hold (RFC 3264 style).
	sampleHoldSendonly = crlf(
		"v=0",
		"o=- 1908257046 1908257047 IN IP4 10.20.0.6",
		"s=Asterisk",
		"c=IN IP4 10.20.0.6",
		"t=0 0",
		"m=audio 17844 RTP/AVP 0 101",
		"a=rtpmap:0 PCMU/8000",
		"a=rtpmap:101 telephone-event/8000",
		"a=fmtp:101 0-16",
		"a=ptime:20",
		"a=sendonly",
	)
	// A gateway putting the call on hold the RFC 2543 way, c= at both levels.
	sampleHoldZero = crlf(
		"v=0",
		"o=CiscoSystemsSIP-GW-UserAgent 2117 4529 IN IP4 10.10.10.1",
		"s=SIP Call",
		"c=IN IP4 0.0.0.0",
		"t=0 0",
		"m=audio 18774 RTP/AVP 18 101",
		"c=IN IP4 0.0.0.0",
		"a=rtpmap:18 G729/8000",
		"a=fmtp:18 annexb=no",
		"a=rtpmap:101 telephone-event/8000",
		"a=fmtp:101 0-15",
		"a=ptime:20",
	)
	// RFC 2543 hold with the unspecified address at session level only.
	sampleHoldZeroSession = crlf(
		"v=0",
		"o=user1 53655765 2353687638 IN IP4 10.0.3.4",
		"s=-",
		"c=IN IP4 0.0.0.0",
		"t=0 0",
		"m=audio 6000 RTP/AVP 0",
		"i=main audio",
		"a=rtpmap:0 PCMU/8000",
	)
	// A video phone: audio and video, bandwidth lines.
	sampleAudioVideo = crlf(
		"v=0",
		"o=- 1234 1 IN IP4 192.168.10.50",
		"s=Polycom IP Phone",
		"c=IN IP4 192.168.10.50",
		"b=AS:2048",
		"t=0 0",
		"m=audio 2222 RTP/AVP 9 0 8 101",
		"a=rtpmap:9 G722/8000",
		"a=rtpmap:0 PCMU/8000",
		"a=rtpmap:8 PCMA/8000",
		"a=rtpmap:101 telephone-event/8000",
		"a=fmtp:101 0-15",
		"a=sendrecv",
		"m=video 2224 RTP/AVP 109 34",
		"b=TIAS:1920000",
		"a=rtpmap:109 H264/90000",
		"a=fmtp:109 profile-level-id=42E01F",
		"a=rtpmap:34 H263/90000",
		"a=recvonly",
	)
	// A softphone on IPv6 with a port-only a=rtcp.
	sampleIPv6 = crlf(
		"v=0",
		"o=bob 20518 0 IN IP6 2001:db8:1::10",
		"s=Talk",
		"c=IN IP6 2001:db8:1::10",
		"t=0 0",
		"a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics",
		"m=audio 7078 RTP/AVP 96 0 8 101",
		"a=rtpmap:96 opus/48000/2",
		"a=fmtp:96 useinbandfec=1",
		"a=rtpmap:101 telephone-event/8000",
		"a=rtcp:7079",
		"a=rtcp-fb:* trr-int 1000",
	)
	// RFC 8866 section 5's example: identity lines, session c= for two
	// streams, a media-level c= of the other family for the third.
	sampleRFC8866 = crlf(
		"v=0",
		"o=jdoe 3724394400 3724394405 IN IP4 198.51.100.1",
		"s=Call to John Smith",
		"i=SDP Offer #1",
		"u=http://www.jdoe.example.com/home.html",
		"e=Jane Doe <jane@jdoe.example.com>",
		"p=+1 617 555-6011",
		"c=IN IP4 198.51.100.1",
		"t=0 0",
		"m=audio 49170 RTP/AVP 0",
		"m=audio 49180 RTP/AVP 0",
		"m=video 51372 RTP/AVP 99",
		"c=IN IP6 2001:db8::2",
		"a=rtpmap:99 h263-1998/90000",
	)
	// Media-level c= only, a=rtcp with addresses, a disabled stream.
	sampleMediaConn = crlf(
		"v=0",
		"o=- 7 7 IN IP4 10.9.8.7",
		"s=-",
		"t=0 0",
		"m=audio 5004 RTP/AVP 0",
		"c=IN IP4 10.9.8.7",
		"a=rtcp:5005 IN IP4 10.9.8.7",
		"m=video 0 RTP/AVP 96",
		"c=IN IP4 10.9.8.6",
		"a=rtcp:5007 IN IP4 10.9.8.6",
	)
	// RFC 3605 section 2.1's example: RTCP on another address.
	sampleRTCPAddr = crlf(
		"v=0",
		"o=- 1 1 IN IP4 126.16.64.4",
		"s=-",
		"c=IN IP4 126.16.64.4",
		"t=0 0",
		"m=audio 49170 RTP/AVP 0",
		"a=rtcp:53020 IN IP4 126.16.64.5",
	)
	// RFC 4566 section 5's example with a port count: multicast with TTL.
	samplePortCount = crlf(
		"v=0",
		"o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5",
		"s=SDP Seminar",
		"i=A Seminar on the session description protocol",
		"u=http://www.example.com/seminars/sdp.pdf",
		"e=j.doe@example.com (Jane Doe)",
		"c=IN IP4 224.2.17.12/127",
		"t=2873397496 2873404696",
		"a=recvonly",
		"m=audio 49170/2 RTP/AVP 0",
		"m=video 51372 RTP/AVP 99",
		"a=rtpmap:99 h263-1998/90000",
	)
	// LF line ends, a missing final line end.
	sampleLF = strings.TrimSuffix(strings.ReplaceAll(sampleAsterisk, "\r\n", "\n"), "\n")
	// Trailing empty lines, as some stacks send them.
	sampleTrailingBlank = sampleT38 + "\r\n\r\n"
)

var samples = []struct{ name, body string }{
	{"asterisk", sampleAsterisk},
	{"freeswitch", sampleFreeSWITCH},
	{"webrtc", sampleWebRTC},
	{"t38", sampleT38},
	{"hold-sendonly", sampleHoldSendonly},
	{"hold-zero", sampleHoldZero},
	{"hold-zero-session", sampleHoldZeroSession},
	{"audio-video", sampleAudioVideo},
	{"ipv6", sampleIPv6},
	{"rfc8866", sampleRFC8866},
	{"media-conn", sampleMediaConn},
	{"rtcp-addr", sampleRTCPAddr},
	{"port-count", samplePortCount},
	{"lf", sampleLF},
	{"trailing-blank", sampleTrailingBlank},
}

var (
	sbc4 = netip.MustParseAddr("203.0.113.10")
	sbc6 = netip.MustParseAddr("2001:db8:ffff::10")
)

// target builds a Target at addr with the given RTP/RTCP port pairs.
func target(addr netip.Addr, ports ...int) Target {
	t := Target{Addr: addr, Origin: Origin{User: "sipwall", SessID: "4242", Version: "1"}}
	for i := 0; i+1 < len(ports); i += 2 {
		t.Ports = append(t.Ports, PortPair{RTP: ports[i], RTCP: ports[i+1]})
	}
	return t
}

// relayTarget gives every stream of s an even RTP port and RTCP above it.
func relayTarget(s *Session, addr netip.Addr) Target {
	t := target(addr)
	for i := range s.Media() {
		t.Ports = append(t.Ports, PortPair{RTP: 40000 + 2*i, RTCP: 40001 + 2*i})
	}
	return t
}
