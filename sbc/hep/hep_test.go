package hep

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// sameMessage compares what survives a round trip.
func sameMessage(t *testing.T, got, want Message) {
	t.Helper()
	if !got.Time.Equal(want.Time) {
		t.Errorf("Time = %v, want %v", got.Time, want.Time)
	}
	if got.Src != want.Src || got.Dst != want.Dst {
		t.Errorf("addrs = %v -> %v, want %v -> %v", got.Src, got.Dst, want.Src, want.Dst)
	}
	if got.Transport != want.Transport {
		t.Errorf("Transport = %q, want %q", got.Transport, want.Transport)
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		t.Errorf("Payload = %q, want %q", got.Payload, want.Payload)
	}
	if got.CorrelationID != want.CorrelationID {
		t.Errorf("CorrelationID = %q, want %q", got.CorrelationID, want.CorrelationID)
	}
}

// TestEncodeExactBytes checks a hand-assembled packet, chunk by chunk,
// against the layout of the HEP3 specification.
func TestEncodeExactBytes(t *testing.T) {
	m := Message{
		Time:      time.Unix(1700000000, 250000*1000),
		Src:       ap("192.0.2.1:5060"),
		Dst:       ap("192.0.2.2:5080"),
		Transport: "udp",
		Payload:   []byte("OPTIONS"),
	}
	want := bytes.Join([][]byte{
		{'H', 'E', 'P', '3', 0x00, 0x6a}, // magic, total length 106
		{0, 0, 0, 0x01, 0, 7, 2},         // IP family: IPv4
		{0, 0, 0, 0x02, 0, 7, 17},        // IP protocol: UDP
		{0, 0, 0, 0x03, 0, 10, 192, 0, 2, 1},
		{0, 0, 0, 0x04, 0, 10, 192, 0, 2, 2},
		{0, 0, 0, 0x07, 0, 8, 0x13, 0xc4},                         // src port 5060
		{0, 0, 0, 0x08, 0, 8, 0x13, 0xd8},                         // dst port 5080
		{0, 0, 0, 0x09, 0, 10, 0x65, 0x53, 0xf1, 0x00},            // 1700000000 s
		{0, 0, 0, 0x0a, 0, 10, 0x00, 0x03, 0xd0, 0x90},            // 250000 µs
		{0, 0, 0, 0x0b, 0, 7, 1},                                  // protocol type SIP
		{0, 0, 0, 0x0c, 0, 10, 0, 0, 0, 7},                        // agent id 7
		{0, 0, 0, 0x0f, 0, 13, 'O', 'P', 'T', 'I', 'O', 'N', 'S'}, // payload
	}, nil)
	got, err := Encode(nil, m, 7, "")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Encode:\n got % x\nwant % x", got, want)
	}

	// Password and correlation id add their chunks before the payload.
	m.CorrelationID = "c1"
	got, err = Encode([]byte("prefix"), m, 7, "pw")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(got, []byte("prefixHEP3\x00\x7a")) { // 106 + 8 + 8 = 122
		t.Fatalf("header: % x", got[:12])
	}
	tail := bytes.Join([][]byte{
		{0, 0, 0, 0x0e, 0, 8, 'p', 'w'},
		{0, 0, 0, 0x11, 0, 8, 'c', '1'},
		{0, 0, 0, 0x0f, 0, 13, 'O', 'P', 'T', 'I', 'O', 'N', 'S'},
	}, nil)
	if !bytes.HasSuffix(got, tail) {
		t.Fatalf("tail:\n got % x\nwant % x", got[len(got)-len(tail):], tail)
	}
}

func TestRoundTrip(t *testing.T) {
	ts := time.Date(2025, 3, 4, 5, 6, 7, 891011000, time.UTC) // µs precision
	payload := []byte("INVITE sip:bob@example.com SIP/2.0\r\nCall-ID: abc@h\r\n\r\n")
	cases := []struct {
		name           string
		m              Message
		password       string
		agent          uint32
		wantTransport  string
		wantSrc, wantD string
	}{
		{name: "v4 udp", m: Message{Src: ap("10.0.0.1:5060"), Dst: ap("10.0.0.2:5060"), Transport: "udp"}, agent: 1},
		{name: "v4 tcp pw cid", m: Message{Src: ap("10.0.0.1:40000"), Dst: ap("10.0.0.2:5060"), Transport: "tcp", CorrelationID: "abc@h"}, password: "secret", agent: 0xdeadbeef},
		{name: "v4 tls", m: Message{Src: ap("10.0.0.1:40000"), Dst: ap("10.0.0.2:5061"), Transport: "tls"}, wantTransport: "tcp"},
		{name: "v4 wss cid", m: Message{Src: ap("10.0.0.1:40000"), Dst: ap("10.0.0.2:443"), Transport: "wss", CorrelationID: "x"}, wantTransport: "tcp"},
		{name: "v4 default transport", m: Message{Src: ap("10.0.0.1:1"), Dst: ap("10.0.0.2:2")}, wantTransport: "udp"},
		{name: "v6 udp pw", m: Message{Src: ap("[2001:db8::1]:5060"), Dst: ap("[2001:db8::2]:5060"), Transport: "udp"}, password: "p"},
		{name: "v6 tcp cid", m: Message{Src: ap("[2001:db8::1]:5060"), Dst: ap("[2001:db8::2]:5060"), Transport: "tcp", CorrelationID: "abc@h"}},
		{name: "v6 tls pw cid", m: Message{Src: ap("[::1]:5061"), Dst: ap("[fe80::1]:5061"), Transport: "tls", CorrelationID: "c"}, password: "pw", agent: 9, wantTransport: "tcp"},
		{name: "v6 zone dropped", m: Message{Src: ap("[fe80::1%eth0]:5060"), Dst: ap("[fe80::2]:5060"), Transport: "udp"}, wantSrc: "[fe80::1]:5060"},
		{name: "v4-mapped unmapped", m: Message{Src: ap("[::ffff:10.1.1.1]:5060"), Dst: ap("10.1.1.2:5060"), Transport: "udp"}, wantSrc: "10.1.1.1:5060"},
		{name: "empty payload", m: Message{Src: ap("10.0.0.1:5060"), Dst: ap("10.0.0.2:5060"), Transport: "udp"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := c.m
			m.Time = ts
			if c.name != "empty payload" {
				m.Payload = payload
			}
			b, err := Encode(nil, m, c.agent, c.password)
			if err != nil {
				t.Fatal(err)
			}
			if n, _ := PacketLen(b); n != len(b) {
				t.Fatalf("length field %d, packet %d", n, len(b))
			}
			d, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			want := m
			if c.wantTransport != "" {
				want.Transport = c.wantTransport
			}
			if c.wantSrc != "" {
				want.Src = ap(c.wantSrc)
			}
			sameMessage(t, d.Message, want)
			if d.AgentID != c.agent || d.Password != c.password || d.ProtoType != ProtoSIP {
				t.Errorf("agent %d pw %q proto %d, want %d %q %d", d.AgentID, d.Password, d.ProtoType, c.agent, c.password, ProtoSIP)
			}
		})
	}
}

func TestEncodeErrors(t *testing.T) {
	ok := Message{Time: time.Unix(1, 0), Src: ap("10.0.0.1:1"), Dst: ap("10.0.0.2:2"), Transport: "udp"}
	cases := []struct {
		name string
		edit func(*Message)
		pw   string
		want error
	}{
		{"no src", func(m *Message) { m.Src = netip.AddrPort{} }, "", ErrAddress},
		{"no dst", func(m *Message) { m.Dst = netip.AddrPort{} }, "", ErrAddress},
		{"mixed families", func(m *Message) { m.Dst = ap("[2001:db8::1]:5060") }, "", ErrAddress},
		{"bad transport", func(m *Message) { m.Transport = "quic" }, "", ErrTransport},
		{"before epoch", func(m *Message) { m.Time = time.Unix(-1, 0) }, "", ErrTime},
		{"zero time", func(m *Message) { m.Time = time.Time{} }, "", ErrTime},
		{"after 2106", func(m *Message) { m.Time = time.Unix(1<<32, 0) }, "", ErrTime},
		{"payload too big", func(m *Message) { m.Payload = make([]byte, 65535) }, "", ErrTooBig},
		{"password pushes over", func(m *Message) { m.Payload = make([]byte, 65535-99) }, "xyz", ErrTooBig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := ok
			c.edit(&m)
			dst := []byte("keep")
			out, err := Encode(dst, m, 0, c.pw)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if string(out) != "keep" {
				t.Fatalf("dst changed on error: %q", out)
			}
		})
	}
	// The largest packet that fits is accepted.
	m := ok
	m.Payload = make([]byte, 65535-106+len("OPTIONS"))
	b, err := Encode(nil, m, 0, "")
	if err != nil || len(b) != 65535 {
		t.Fatalf("max packet: len %d err %v", len(b), err)
	}
	if _, err := Decode(b); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeErrors(t *testing.T) {
	good, err := Encode(nil, Message{
		Time: time.Unix(1700000000, 0), Src: ap("10.0.0.1:5060"), Dst: ap("10.0.0.2:5060"),
		Transport: "udp", Payload: []byte("OPTIONS"),
	}, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	// setLen fixes the total length after editing the chunks.
	setLen := func(b []byte) []byte {
		binary.BigEndian.PutUint16(b[4:6], uint16(len(b)))
		return b
	}
	clone := func() []byte { return bytes.Clone(good) }
	// chunkAt finds the offset of the generic chunk typ in good.
	chunkAt := func(typ uint16) int {
		for off := headerLen; off < len(good); {
			if binary.BigEndian.Uint16(good[off+2:]) == typ {
				return off
			}
			off += int(binary.BigEndian.Uint16(good[off+4:]))
		}
		t.Fatalf("no chunk %#x", typ)
		return 0
	}
	without := func(typ uint16) []byte {
		off := chunkAt(typ)
		n := int(binary.BigEndian.Uint16(good[off+4:]))
		return setLen(append(clone()[:off], good[off+n:]...))
	}
	withByte := func(typ uint16, v byte) []byte {
		b := clone()
		b[chunkAt(typ)+6] = v
		return b
	}

	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"short header", []byte("HEP3\x00"), ErrTruncated},
		{"bad magic", append([]byte("HEP2"), good[4:]...), ErrMagic},
		{"lowercase magic", append([]byte("hep3"), good[4:]...), ErrMagic},
		{"total length below header", append([]byte("HEP3\x00\x05"), good[6:]...), ErrLength},
		{"truncated body", good[:len(good)-1], ErrTruncated},
		{"trailing bytes", append(clone(), 0), ErrLength},
		{"truncated chunk header", setLen(append(clone(), 0, 0, 0)), ErrTruncated},
		{"chunk length below 6", func() []byte {
			b := clone()
			binary.BigEndian.PutUint16(b[headerLen+4:], 5)
			return b
		}(), ErrLength},
		{"chunk past end", func() []byte {
			b := clone()
			off := chunkAt(chunkPayload)
			binary.BigEndian.PutUint16(b[off+4:], 200)
			return b
		}(), ErrTruncated},
		{"fixed chunk wrong size", func() []byte {
			b := clone()
			off := chunkAt(chunkSrcPort) // 8 -> claims 7, leaving a stray byte
			binary.BigEndian.PutUint16(b[off+4:], 7)
			return b
		}(), ErrLength},
		{"no family", without(chunkIPFamily), ErrMissingChunk},
		{"no proto", without(chunkIPProto), ErrMissingChunk},
		{"no src addr", without(chunkIPv4Src), ErrMissingChunk},
		{"no dst port", without(chunkDstPort), ErrMissingChunk},
		{"no time", without(chunkTimeSec), ErrMissingChunk},
		{"no payload", without(chunkPayload), ErrMissingChunk},
		{"family 6 without v6 addrs", withByte(chunkIPFamily, familyIPv6), ErrMissingChunk},
		{"unknown family", withByte(chunkIPFamily, 7), ErrBadChunkValue},
		{"unknown IP proto", withByte(chunkIPProto, 1), ErrBadChunkValue},
		{"usec out of range", func() []byte {
			b := clone()
			binary.BigEndian.PutUint32(b[chunkAt(chunkTimeUsec)+6:], 1_000_000)
			return b
		}(), ErrBadChunkValue},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.b)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestDecodeSkipsUnknownChunks(t *testing.T) {
	m := Message{Time: time.Unix(1700000000, 5000), Src: ap("10.0.0.1:5060"), Dst: ap("10.0.0.2:5060"), Transport: "udp", Payload: []byte("BYE")}
	b, err := Encode(nil, m, 3, "")
	if err != nil {
		t.Fatal(err)
	}
	extra := []byte{
		0x00, 0x00, 0x00, 0x20, 0, 9, 1, 2, 3, // unknown generic type 0x20
		0x00, 0x00, 0x01, 0x00, 0, 6, // unknown generic type 0x100, empty
		0xbe, 0xef, 0x00, 0x01, 0, 7, 99, // vendor chunk reusing type 1: ignored
		0x00, 0x00, 0x00, 0x0d, 0, 8, 0, 30, // keep-alive timer: not used
	}
	b = append(b[:headerLen], append(extra, b[headerLen:]...)...)
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)))
	d, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	sameMessage(t, d.Message, m)
	if d.AgentID != 3 {
		t.Errorf("agent %d", d.AgentID)
	}
}

func TestPacketLen(t *testing.T) {
	if _, err := PacketLen([]byte("HEP")); !errors.Is(err, ErrTruncated) {
		t.Fatal(err)
	}
	if n, err := PacketLen([]byte("HEP3\x01\x00")); err != nil || n != 256 {
		t.Fatal(n, err)
	}
}

func fuzzSeeds() [][]byte {
	base := Message{Time: time.Unix(1700000000, 123000), Src: ap("10.0.0.1:5060"), Dst: ap("10.0.0.2:5080"), Transport: "udp", Payload: []byte("OPTIONS sip:a SIP/2.0\r\n\r\n")}
	v6 := base
	v6.Src, v6.Dst, v6.Transport, v6.CorrelationID = ap("[2001:db8::1]:5060"), ap("[2001:db8::2]:5061"), "tls", "call-id"
	var seeds [][]byte
	for _, c := range []struct {
		m  Message
		pw string
	}{{base, ""}, {base, "pw"}, {v6, ""}, {v6, strings.Repeat("k", 40)}} {
		b, err := Encode(nil, c.m, 42, c.pw)
		if err != nil {
			panic(err)
		}
		seeds = append(seeds, b)
	}
	return append(seeds,
		nil,
		[]byte("HEP3"),
		[]byte("HEP3\x00\x06"),
		[]byte("HEP3\x00\x0c\x00\x00\x00\x01\x00\x07"),
		[]byte("HEP3\xff\xff\x00\x00\x00\x0f\xff\xff"),
		seeds[0][:len(seeds[0])-3],
	)
}

func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := Decode(b)
		if err != nil {
			return
		}
		enc, err := Encode(nil, d.Message, d.AgentID, d.Password)
		if err != nil {
			// Allowed: an IPv6 pair of one v4-mapped and one plain address
			// (mixed after unmapping), or a packet that grows past 64 KiB
			// when the optional chunks it lacked are added.
			return
		}
		d2, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-decode: %v\n% x", err, enc)
		}
		want := d.Message
		// Encode sends IPv4-mapped addresses as IPv4.
		want.Src = netip.AddrPortFrom(want.Src.Addr().Unmap(), want.Src.Port())
		want.Dst = netip.AddrPortFrom(want.Dst.Addr().Unmap(), want.Dst.Port())
		sameMessage(t, d2.Message, want)
		if d2.AgentID != d.AgentID || d2.Password != d.Password {
			t.Fatalf("agent/password changed: %d %q -> %d %q", d.AgentID, d.Password, d2.AgentID, d2.Password)
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	m := Message{
		Time:          time.Now(),
		Src:           ap("192.0.2.1:5060"),
		Dst:           ap("192.0.2.2:5060"),
		Transport:     "tls",
		Payload:       bytes.Repeat([]byte("x"), 800),
		CorrelationID: "a84b4c76e66710@pc33.atlanta.example.com",
	}
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(len(m.Payload)))
	for b.Loop() {
		var err error
		buf, err = Encode(buf[:0], m, 1, "secret")
		if err != nil {
			b.Fatal(err)
		}
	}
}

func TestEncodeNoAllocs(t *testing.T) {
	m := Message{Time: time.Now(), Src: ap("[2001:db8::1]:5060"), Dst: ap("[2001:db8::2]:5060"), Transport: "udp", Payload: []byte("OPTIONS"), CorrelationID: "cid"}
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(100, func() { buf, _ = Encode(buf[:0], m, 1, "pw") }); n != 0 {
		t.Fatalf("Encode allocates %v times", n)
	}
}
