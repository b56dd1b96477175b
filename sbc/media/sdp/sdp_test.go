package sdp

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

var (
	a4   = netip.MustParseAddr
	zero = netip.Addr{}
)

func TestParseMedia(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		origin Origin
		media  []Media
	}{
		{"asterisk", sampleAsterisk,
			Origin{"-", "1908257046", "1908257046", a4("10.20.0.5")},
			[]Media{{Type: "audio", Port: 17844, PortCount: 1, Proto: "RTP/AVP", Addr: a4("10.20.0.5"), Direction: "sendrecv"}}},
		{"freeswitch", sampleFreeSWITCH,
			Origin{"FreeSWITCH", "1712040000", "1712040001", a4("172.16.5.10")},
			[]Media{{Type: "audio", Port: 24618, PortCount: 1, Proto: "RTP/SAVP", Addr: a4("172.16.5.10"),
				RTCPPort: 24619, RTCPAddr: a4("172.16.5.10"), Direction: "sendrecv", Crypto: true}}},
		{"webrtc", sampleWebRTC,
			Origin{"-", "4611731400430051336", "2", a4("127.0.0.1")},
			[]Media{{Type: "audio", Port: 54321, PortCount: 1, Proto: "UDP/TLS/RTP/SAVPF", Addr: a4("198.51.100.77"),
				RTCPPort: 9, RTCPAddr: a4("0.0.0.0"), RTCPMux: true, Direction: "sendrecv", Fingerprint: true}}},
		{"t38", sampleT38,
			Origin{"-", "3", "4", a4("10.1.1.20")},
			[]Media{{Type: "image", Port: 4002, PortCount: 1, Proto: "udptl", Addr: a4("10.1.1.20"), Direction: "sendrecv"}}},
		{"hold-sendonly", sampleHoldSendonly,
			Origin{"-", "1908257046", "1908257047", a4("10.20.0.6")},
			[]Media{{Type: "audio", Port: 17844, PortCount: 1, Proto: "RTP/AVP", Addr: a4("10.20.0.6"), Direction: "sendonly"}}},
		{"hold-zero", sampleHoldZero,
			Origin{"CiscoSystemsSIP-GW-UserAgent", "2117", "4529", a4("10.10.10.1")},
			[]Media{{Type: "audio", Port: 18774, PortCount: 1, Proto: "RTP/AVP", Addr: a4("0.0.0.0"), Direction: "sendrecv"}}},
		{"audio-video", sampleAudioVideo,
			Origin{"-", "1234", "1", a4("192.168.10.50")},
			[]Media{
				{Type: "audio", Port: 2222, PortCount: 1, Proto: "RTP/AVP", Addr: a4("192.168.10.50"), Direction: "sendrecv"},
				{Type: "video", Port: 2224, PortCount: 1, Proto: "RTP/AVP", Addr: a4("192.168.10.50"), Direction: "recvonly"},
			}},
		{"ipv6", sampleIPv6,
			Origin{"bob", "20518", "0", a4("2001:db8:1::10")},
			[]Media{{Type: "audio", Port: 7078, PortCount: 1, Proto: "RTP/AVP", Addr: a4("2001:db8:1::10"), RTCPPort: 7079, Direction: "sendrecv"}}},
		{"rfc8866", sampleRFC8866,
			Origin{"jdoe", "3724394400", "3724394405", a4("198.51.100.1")},
			[]Media{
				{Type: "audio", Port: 49170, PortCount: 1, Proto: "RTP/AVP", Addr: a4("198.51.100.1"), Direction: "sendrecv"},
				{Type: "audio", Port: 49180, PortCount: 1, Proto: "RTP/AVP", Addr: a4("198.51.100.1"), Direction: "sendrecv"},
				{Type: "video", Port: 51372, PortCount: 1, Proto: "RTP/AVP", Addr: a4("2001:db8::2"), Direction: "sendrecv"},
			}},
		{"media-conn", sampleMediaConn,
			Origin{"-", "7", "7", a4("10.9.8.7")},
			[]Media{
				{Type: "audio", Port: 5004, PortCount: 1, Proto: "RTP/AVP", Addr: a4("10.9.8.7"), RTCPPort: 5005, RTCPAddr: a4("10.9.8.7"), Direction: "sendrecv"},
				{Type: "video", Port: 0, PortCount: 1, Proto: "RTP/AVP", Addr: a4("10.9.8.6"), RTCPPort: 5007, RTCPAddr: a4("10.9.8.6"), Direction: "sendrecv"},
			}},
		{"rtcp-addr", sampleRTCPAddr,
			Origin{"-", "1", "1", a4("126.16.64.4")},
			[]Media{{Type: "audio", Port: 49170, PortCount: 1, Proto: "RTP/AVP", Addr: a4("126.16.64.4"), RTCPPort: 53020, RTCPAddr: a4("126.16.64.5"), Direction: "sendrecv"}}},
		{"port-count", samplePortCount,
			Origin{"jdoe", "2890844526", "2890842807", a4("10.47.16.5")},
			[]Media{
				{Type: "audio", Port: 49170, PortCount: 2, Proto: "RTP/AVP", Addr: a4("224.2.17.12"), Direction: "recvonly"},
				{Type: "video", Port: 51372, PortCount: 1, Proto: "RTP/AVP", Addr: a4("224.2.17.12"), Direction: "recvonly"},
			}},
		{"lf", sampleLF,
			Origin{"-", "1908257046", "1908257046", a4("10.20.0.5")},
			[]Media{{Type: "audio", Port: 17844, PortCount: 1, Proto: "RTP/AVP", Addr: a4("10.20.0.5"), Direction: "sendrecv"}}},
		{"no connection at all", crlf("v=0", "o=- 1 1 IN IP4 rtp.example.net", "s=-", "t=0 0", "m=audio 0 RTP/AVP 0", "a=INACTIVE"),
			Origin{"-", "1", "1", zero},
			[]Media{{Type: "audio", Port: 0, PortCount: 1, Proto: "RTP/AVP", Direction: "inactive"}}},
		{"no media", crlf("v=0", "o=- 1 1 IN IP6 ::1", "s= "),
			Origin{"-", "1", "1", a4("::1")}, []Media{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Origin(); got != tt.origin {
				t.Errorf("Origin() = %+v, want %+v", got, tt.origin)
			}
			got := s.Media()
			if !slices.Equal(got, tt.media) {
				t.Errorf("Media():\n got  %+v\n want %+v", got, tt.media)
			}
			if len(got) > 0 {
				got[0].Port = -1 // the caller's copy
				if s.Media()[0].Port == -1 {
					t.Error("Media() shares the session's slice")
				}
			}
		})
	}
}

func TestHold(t *testing.T) {
	for _, tt := range []struct {
		m    Media
		want bool
	}{
		{Media{Port: 1000, Addr: a4("0.0.0.0")}, true},
		{Media{Port: 1000, Addr: a4("::")}, true},
		{Media{Port: 0, Addr: a4("0.0.0.0")}, false},
		{Media{Port: 1000, Addr: a4("10.0.0.1"), Direction: "sendonly"}, false},
		{Media{Port: 1000}, false},
	} {
		if got := tt.m.Hold(); got != tt.want {
			t.Errorf("%+v.Hold() = %v", tt.m, got)
		}
	}
}

func TestAddrs(t *testing.T) {
	tests := []struct {
		name, body string
		want       []string
	}{
		{"asterisk", sampleAsterisk, []string{"10.20.0.5"}},
		{"webrtc", sampleWebRTC, []string{"0.0.0.0", "127.0.0.1", "192.168.1.33", "198.51.100.77", "fd00:1::33"}},
		{"rfc8866", sampleRFC8866, []string{"198.51.100.1", "2001:db8::2"}},
		{"media-conn", sampleMediaConn, []string{"10.9.8.6", "10.9.8.7"}},
		{"rtcp-addr", sampleRTCPAddr, []string{"126.16.64.4", "126.16.64.5"}},
		{"origin host name", crlf("v=0", "o=alice 1 1 IN IP4 client.atlanta.example.com", "s=-", "c=IN IP4 192.0.2.101"), []string{"192.0.2.101"}},
		{"remote candidates and altc", crlf("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "t=0 0",
			"a=ice-lite",
			"m=audio 5000 RTP/AVP 0",
			"c=IN IP4 10.0.0.1",
			"a=remote-candidates:1 192.0.2.7 5000 2 192.0.2.8 5001",
			"a=altc:1 IP6 2001:db8::7 5000",
			"a=ice-pacing:50"),
			[]string{"10.0.0.1", "192.0.2.7", "192.0.2.8", "2001:db8::7"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range s.Addrs() {
				got = append(got, a.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Addrs() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMalformed(t *testing.T) {
	ok := sampleAsterisk
	many := func(n int, line string) string {
		return crlf("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "c=IN IP4 10.0.0.1", "t=0 0") + strings.Repeat(line+"\r\n", n)
	}
	tests := []struct {
		name string
		body string
		want error
	}{
		{"empty", "", ErrMalformed},
		{"only line ends", "\r\n\r\n", ErrMalformed},
		{"no v=", strings.TrimPrefix(ok, "v=0\r\n"), ErrMalformed},
		{"v=1", strings.Replace(ok, "v=0", "v=1", 1), ErrMalformed},
		{"v= twice", strings.Replace(ok, "t=0 0", "v=0", 1), ErrMalformed},
		{"leading space", " " + ok, ErrMalformed},
		{"byte order mark", "\ufeff" + ok, ErrMalformed},
		{"missing o=", crlf("v=0", "s=-", "c=IN IP4 10.0.0.1", "t=0 0", "m=audio 5000 RTP/AVP 0"), ErrMalformed},
		{"missing s=", crlf("v=0", "o=- 1 1 IN IP4 10.0.0.1", "c=IN IP4 10.0.0.1", "t=0 0"), ErrMalformed},
		{"o= twice", strings.Replace(ok, "s=Asterisk", "o=- 1 1 IN IP4 10.0.0.1\r\ns=x", 1), ErrMalformed},
		{"s= twice", strings.Replace(ok, "t=0 0", "s=again\r\nt=0 0", 1), ErrMalformed},
		{"o= in media", ok + "o=- 1 1 IN IP4 10.0.0.1\r\n", ErrMalformed},
		{"s= in media", ok + "s=-\r\n", ErrMalformed},
		{"t= in media", ok + "t=0 0\r\n", ErrMalformed},
		{"e= in media", ok + "e=a@example.com\r\n", ErrMalformed},
		{"o= five fields", strings.Replace(ok, "o=- 1908257046 ", "o=", 1), ErrMalformed},
		{"o= version not a number", strings.Replace(ok, "1908257046 IN", "x IN", 1), ErrMalformed},
		{"o= network type", strings.Replace(ok, "1908257046 IN IP4", "1908257046 ATM IP4", 1), ErrMalformed},
		{"o= family mismatch", strings.Replace(ok, "IN IP4 10.20.0.5\r\ns=", "IN IP6 10.20.0.5\r\ns=", 1), ErrMalformed},
		{"o= odd host", strings.Replace(ok, "IN IP4 10.20.0.5\r\ns=", "IN IP4 a_b!\r\ns=", 1), ErrMalformed},
		{"unknown letter", ok + "x=1\r\n", ErrMalformed},
		{"uppercase letter", ok + "A=sendonly\r\n", ErrMalformed},
		{"no equals", ok + "a\r\n", ErrMalformed},
		{"space before equals (RFC 4475 dblreq)", ok + "m =video 3227 RTP/AVP 31\r\n", ErrMalformed},
		{"multi-letter type (RFC 4475 test.dat)", "v=0\r\ntesting=123\r\n", ErrMalformed},
		{"empty line inside", strings.Replace(ok, "t=0 0\r\n", "t=0 0\r\n\r\n", 1), ErrMalformed},
		{"NUL", strings.Replace(ok, "Asterisk", "Aster\x00isk", 1), ErrMalformed},
		{"bare CR", strings.Replace(ok, "s=Asterisk\r\n", "s=Asterisk\rc=IN IP4 10.0.0.9\r\n", 1), ErrMalformed},
		{"escape", strings.Replace(ok, "Asterisk", "\x1b[31mAsterisk", 1), ErrMalformed},
		{"DEL", strings.Replace(ok, "Asterisk", "Asterisk\x7f", 1), ErrMalformed},
		{"C1 control", strings.Replace(ok, "Asterisk", "Asterisk\u0085", 1), ErrMalformed},
		{"invalid UTF-8", strings.Replace(ok, "Asterisk", "Asterisk\xff", 1), ErrMalformed},
		{"m= port 70000", strings.Replace(ok, "m=audio 17844", "m=audio 70000", 1), ErrMalformed},
		{"m= port signed", strings.Replace(ok, "m=audio 17844", "m=audio +17844", 1), ErrMalformed},
		{"m= port negative", strings.Replace(ok, "m=audio 17844", "m=audio -1", 1), ErrMalformed},
		{"m= port hex", strings.Replace(ok, "m=audio 17844", "m=audio 0x45", 1), ErrMalformed},
		{"m= port count 0", strings.Replace(ok, "m=audio 17844", "m=audio 17844/0", 1), ErrMalformed},
		{"m= port count empty", strings.Replace(ok, "m=audio 17844", "m=audio 17844/", 1), ErrMalformed},
		{"m= no format", strings.Replace(ok, "RTP/AVP 0 8 101", "RTP/AVP", 1), ErrMalformed},
		{"m= bad proto", strings.Replace(ok, "RTP/AVP 0 8 101", "RTP//AVP 0", 1), ErrMalformed},
		{"m= tab", strings.Replace(ok, "RTP/AVP 0 8 101", "RTP/AVP 0\t8", 1), ErrMalformed},
		{"c= FQDN", strings.Replace(ok, "c=IN IP4 10.20.0.5", "c=IN IP4 media.example.com", 1), ErrMalformed},
		{"c= family mismatch", strings.Replace(ok, "c=IN IP4 10.20.0.5", "c=IN IP4 2001:db8::1", 1), ErrMalformed},
		{"c= IPv4 as IP6", strings.Replace(ok, "c=IN IP4 10.20.0.5", "c=IN IP6 10.20.0.5", 1), ErrMalformed},
		{"c= zone", strings.Replace(ok, "c=IN IP4 10.20.0.5", "c=IN IP6 fe80::1%eth0", 1), ErrMalformed},
		{"c= network type", strings.Replace(ok, "c=IN IP4", "c=TN RFC2543", 1), ErrMalformed},
		{"c= extra field", strings.Replace(ok, "c=IN IP4 10.20.0.5", "c=IN IP4 10.20.0.5 10.0.0.1", 1), ErrMalformed},
		{"c= TTL on unicast", strings.Replace(ok, "c=IN IP4 10.20.0.5", "c=IN IP4 10.20.0.5/127", 1), ErrMalformed},
		{"c= TTL above 255", strings.Replace(ok, "c=IN IP4 10.20.0.5", "c=IN IP4 224.2.1.1/256", 1), ErrMalformed},
		{"c= IPv6 TTL and count", strings.Replace(ok, "c=IN IP4 10.20.0.5", "c=IN IP6 ff15::101/3/2", 1), ErrMalformed},
		{"c= twice at session level", strings.Replace(ok, "t=0 0", "c=IN IP4 10.0.0.1\r\nt=0 0", 1), ErrMalformed},
		{"c= twice in a stream", ok + "c=IN IP4 10.0.0.1\r\nc=IN IP4 10.0.0.2\r\n", ErrMalformed},
		{"a=rtcp FQDN", ok + "a=rtcp:17845 IN IP4 rtcp.example.com\r\n", ErrMalformed},
		{"a=rtcp port 70000", ok + "a=rtcp:70000\r\n", ErrMalformed},
		{"a=rtcp no port", ok + "a=rtcp\r\n", ErrMalformed},
		{"a=rtcp twice", ok + "a=rtcp:17845\r\na=rtcp:17847\r\n", ErrMalformed},
		{"a=rtcp at session level", strings.Replace(ok, "t=0 0", "t=0 0\r\na=rtcp:9 IN IP4 10.0.0.9", 1), ErrMalformed},
		{"two directions", ok + "a=sendonly\r\n", ErrMalformed},
		{"empty attribute", ok + "a=\r\n", ErrMalformed},
		{"bad attribute name", ok + "a=rtp map:0 PCMU/8000\r\n", ErrMalformed},
		{"33 KiB", ok + strings.Repeat("a=x-pad:"+strings.Repeat("y", 1000)+"\r\n", 33), ErrTooLarge},
		{"2000 lines", many(2000, "a=x"), ErrTooLarge},
		{"1025 lines", many(MaxLines+1-5, "a=x"), ErrTooLarge},
		{"17 media", many(MaxMedia+1, "m=audio 5000 RTP/AVP 0"), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse([]byte(tt.body))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse() = %v, %v; want %v", s, err, tt.want)
			}
			if s != nil {
				t.Error("a session with an error")
			}
		})
	}
}

// TestLimitsInclusive: a body at every limit parses.
func TestLimitsInclusive(t *testing.T) {
	head := crlf("v=0", "o=- 1 1 IN IP4 10.0.0.1", "s=-", "c=IN IP4 10.0.0.1", "t=0 0")
	media := head + strings.Repeat("m=audio 5000 RTP/AVP 0\r\n", MaxMedia)
	lines := head + strings.Repeat("a=x\r\n", MaxLines-5)
	size := head + "a=x-pad:" + strings.Repeat("y", MaxSize-len(head)-len("a=x-pad:\r\n")) + "\r\n"
	for name, body := range map[string]string{"media": media, "lines": lines, "size": size} {
		if _, err := Parse([]byte(body)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if len(size) != MaxSize {
		t.Fatalf("size case has %d bytes", len(size))
	}
}

// TestErrorsQuoteNothing: an error names the line, not the attacker's bytes.
func TestErrorsQuoteNothing(t *testing.T) {
	body := strings.Replace(sampleAsterisk, "c=IN IP4 10.20.0.5", "c=IN IP4 evil-marker.example.com", 1)
	_, err := Parse([]byte(body))
	if err == nil || strings.Contains(err.Error(), "evil-marker") || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("error %q", err)
	}
}

// a=fingerprint at session level covers every section (RFC 8122).
func TestFingerprintSessionLevel(t *testing.T) {
	s, err := Parse([]byte("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" +
		"a=fingerprint:sha-256 7B:8B\r\nm=audio 5000 UDP/TLS/RTP/SAVP 0\r\nm=video 5002 RTP/AVP 96\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range s.Media() {
		if !m.Fingerprint {
			t.Errorf("media %d: Fingerprint false under a session-level a=fingerprint", i)
		}
	}
	s, err = Parse([]byte("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Media()[0].Fingerprint {
		t.Error("Fingerprint true without a=fingerprint")
	}
}
