package main

import (
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Replies of rtpengine-daemon 10.5.3.5 (Debian 12) to relayload's offer and
// to the delete of that call after the phone sent 3 packets and the PBX 2,
// and to an offer with a broken body. Dictionary keys come unsorted.
const (
	cannedOffer  = "a1 d3:sdp144:v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=relayload\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 44130 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\na=rtcp:44131\r\n6:result2:oke"
	cannedDelete = "a3 d7:createdi1796659695e10:created_usi39215e11:last signali1796659695e4:SSRCde4:tagsd7:phone-0d3:tag7:phone-07:createdi1796659695e13:subscriptionsld3:tag5:pbx-04:type12:offer/answeree11:subscribersld3:tag5:pbx-04:type12:offer/answeree6:mediasld5:indexi1e4:type5:audio8:protocol7:RTP/AVP5:codec9:PCMU/80007:streamsld10:local porti44146e13:local address9:127.0.0.16:family4:IPv48:endpointd6:family4:IPv47:address9:127.0.0.54:porti31000ee19:advertised endpointd6:family4:IPv47:address9:127.0.0.54:porti31000ee11:last packeti1796659695e5:flagsl3:RTP6:fillede4:SSRCi0e5:statsd7:packetsi3e5:bytesi516e6:errorsi0eeed10:local porti44147e13:local address9:127.0.0.16:family4:IPv48:endpointd6:family4:IPv47:address9:127.0.0.54:porti31001ee19:advertised endpointd6:family4:IPv47:address9:127.0.0.54:porti31001ee11:last packeti1796659695e5:flagsl4:RTCP6:fillede5:statsd7:packetsi0e5:bytesi0e6:errorsi0eeee5:flagsl11:initialized4:send4:recveeee5:pbx-0d3:tag5:pbx-07:createdi1796659695e13:subscriptionsld3:tag7:phone-04:type12:offer/answeree11:subscribersld3:tag7:phone-04:type12:offer/answeree6:mediasld5:indexi1e4:type5:audio8:protocol7:RTP/AVP5:codec9:PCMU/80007:streamsld10:local porti44130e13:local address9:127.0.0.16:family4:IPv48:endpointd6:family4:IPv47:address9:127.0.0.64:porti31000ee19:advertised endpointd6:family4:IPv47:address9:127.0.0.64:porti31000ee11:last packeti1796659695e5:flagsl3:RTP6:fillede4:SSRCi0e5:statsd7:packetsi2e5:bytesi344e6:errorsi0eeed10:local porti44131e13:local address9:127.0.0.16:family4:IPv48:endpointd6:family4:IPv47:address9:127.0.0.64:porti31001ee19:advertised endpointd6:family4:IPv47:address9:127.0.0.64:porti31001ee11:last packeti1796659695e5:flagsl4:RTCP6:fillede5:statsd7:packetsi0e5:bytesi0e6:errorsi0eeee5:flagsl11:initialized4:send4:recv15:ICE controllingeeeee6:totalsd3:RTPd7:packetsi5e5:bytesi860e6:errorsi0ee4:RTCPd7:packetsi0e5:bytesi0e6:errorsi0eee6:result2:oke"
	cannedError  = "c2 d6:result5:error12:error-reason19:Failed to parse SDPe"
)

func TestBencode(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   any
		enc  string
		dec  any // what decoding enc gives; in when nil
	}{
		{"string", "spam", "4:spam", nil},
		{"empty string", "", "0:", nil},
		{"bytes", []byte("a:b"), "3:a:b", "a:b"},
		{"int", 42, "i42e", int64(42)},
		{"negative", int64(-7), "i-7e", nil},
		{"zero", 0, "i0e", int64(0)},
		{"list", []any{"a", int64(1), []any{}}, "l1:ai1elee", nil},
		{"string list", []string{"trust-address", "x"}, "l13:trust-address1:xe", []any{"trust-address", "x"}},
		{"dict sorted", map[string]any{"sdp": "v=0", "command": "offer", "call-id": "c1"},
			"d7:call-id2:c17:command5:offer3:sdp3:v=0e", nil},
		{"nested", map[string]any{"totals": map[string]any{"RTP": map[string]any{"packets": int64(5)}}},
			"d6:totalsd3:RTPd7:packetsi5eeee", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := bencode(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.enc {
				t.Fatalf("encoded %q, want %q", b, tc.enc)
			}
			want := tc.dec
			if want == nil {
				want = tc.in
			}
			got, err := bdecode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded %#v, want %#v", got, want)
			}
		})
	}
	if _, err := bencode(map[string]any{"x": 1.5}); err == nil {
		t.Fatal("a float encoded")
	}
}

func TestBdecodeMalformed(t *testing.T) {
	for _, in := range []string{
		"", "i", "ie", "i-e", "i01e", "i-0e", "i1", "4:abc", "-1:a", "01:a", "1a",
		"l", "li1e", "d", "d1:a", "di1ei2ee", "d1:ai1e1:ai2ee", "x", "i1ei2e",
		strings.Repeat("l", bMaxDepth+2) + strings.Repeat("e", bMaxDepth+2),
		"99999999999999999999:a",
	} {
		if v, err := bdecode([]byte(in)); err == nil {
			t.Errorf("%q decoded to %#v", in, v)
		} else if !errors.Is(err, errBencode) {
			t.Errorf("%q: %v is not errBencode", in, err)
		}
	}
}

func TestCannedReplies(t *testing.T) {
	cookie, d, err := ngParse([]byte(cannedOffer))
	if err != nil || cookie != "a1" {
		t.Fatalf("offer reply: cookie %q, %v", cookie, err)
	}
	addr, port, err := ngRelayAddr(d)
	if err != nil || addr != netip.MustParseAddr("127.0.0.1") || port != 44130 {
		t.Fatalf("offer reply: relay %s %d, %v; want 127.0.0.1 44130", addr, port, err)
	}

	cookie, d, err = ngParse([]byte(cannedDelete))
	if err != nil || cookie != "a3" || d["result"] != "ok" {
		t.Fatalf("delete reply: cookie %q, result %v, %v", cookie, d["result"], err)
	}
	var st ngStats
	st.add(d)
	if want := (ngStats{calls: 1, packets: 5, bytes: 860}); st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
	// The phone's three packets are counted on the port the phone sends to.
	media, _ := bpath(d, "tags", "phone-0", "medias").([]any)
	if len(media) != 1 {
		t.Fatalf("phone-0 medias: %#v", bpath(d, "tags", "phone-0", "medias"))
	}
	streams, _ := bpath(media[0], "streams").([]any)
	if len(streams) != 2 || bpath(streams[0], "local port") != int64(44146) || bpath(streams[0], "stats", "packets") != int64(3) {
		t.Fatalf("phone-0 streams: %#v", streams)
	}

	_, d, err = ngParse([]byte(cannedError))
	if err != nil || d["result"] != "error" || d["error-reason"] != "Failed to parse SDP" {
		t.Fatalf("error reply: %#v, %v", d, err)
	}
	if _, _, err := ngParse([]byte("d6:result2:oke")); err == nil {
		t.Fatal("a reply without a cookie parsed")
	}
}

// TestNGClient runs the client against a fake rtpengine on loopback that
// loses the first datagram and answers the retransmission after a stale
// reply of another cookie.
func TestNGClient(t *testing.T) {
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	type got struct {
		cookie string
		cmd    map[string]any
	}
	seen := make(chan got, 8)
	go func() {
		buf := make([]byte, 64<<10)
		for n := 0; ; n++ {
			k, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			cookie, cmd, err := ngParse(buf[:k])
			if err != nil {
				t.Errorf("fake rtpengine: %v", err)
				return
			}
			seen <- got{cookie, cmd}
			if n == 0 {
				continue // lost
			}
			reply := cannedError[3:]
			if cmd["command"] == "offer" && cmd["sdp"] != "broken" {
				reply = cannedOffer[3:]
			}
			srv.WriteToUDPAddrPort([]byte("stale "+reply), from)
			srv.WriteToUDPAddrPort([]byte(cookie+" "+reply), from)
		}
	}()

	conn, err := net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := newNGClient(conn, 200*time.Millisecond, 3)
	call := &ngCall{callID: "relayload-1-0", fromTag: "phone-0", toTag: "pbx-0"}
	addr, port, err := c.offer(call, audioSDP(netip.MustParseAddr("127.0.0.5"), 30000))
	if err != nil || addr != netip.MustParseAddr("127.0.0.1") || port != 44130 {
		t.Fatalf("offer: %s %d, %v", addr, port, err)
	}
	first, second := <-seen, <-seen
	if first.cookie != second.cookie || !reflect.DeepEqual(first.cmd, second.cmd) {
		t.Fatalf("retransmission differs: %v %v, then %v %v", first.cookie, first.cmd, second.cookie, second.cmd)
	}
	for k, v := range map[string]any{"command": "offer", "call-id": "relayload-1-0", "from-tag": "phone-0"} {
		if first.cmd[k] != v {
			t.Errorf("offer's %s: %#v, want %#v", k, first.cmd[k], v)
		}
	}
	if sdp, _ := first.cmd["sdp"].(string); !strings.Contains(sdp, "m=audio 30000 RTP/AVP 0") {
		t.Errorf("offer's sdp: %q", sdp)
	}

	_, _, err = c.offer(call, []byte("broken"))
	if !errors.Is(err, ErrNG) || !strings.Contains(err.Error(), "Failed to parse SDP") {
		t.Fatalf("refused offer: %v", err)
	}
	<-seen

	srv.Close()
	c.timeout = 20 * time.Millisecond
	if _, err := c.delete(call); err == nil {
		t.Fatal("delete without a daemon succeeded")
	}
}

func FuzzBdecode(f *testing.F) {
	for _, s := range []string{cannedOffer[3:], cannedDelete[3:], cannedError[3:], "li1e0:e", "d1:ai-3ee"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := bdecode(b)
		if err != nil {
			return
		}
		enc, err := bencode(v)
		if err != nil {
			t.Fatalf("decoded %#v does not encode: %v", v, err)
		}
		again, err := bdecode(enc)
		if err != nil || !reflect.DeepEqual(again, v) {
			t.Fatalf("%q: re-encoded %q decodes to %#v, %v", b, enc, again, err)
		}
	})
}
