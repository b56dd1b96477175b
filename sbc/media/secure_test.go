package media

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/media/sdp"
	"github.com/sipwall/sipwall/sbc/media/srtp"
)

func withEncryption(out, in string, require bool) func(*Config) {
	return func(c *Config) { c.Encryption = Encryption{Outside: out, Inside: in, Require: require} }
}

// sdesSDP is an SRTP offer or answer with one a=crypto line.
func sdesSDP(user string, ap netip.AddrPort, c srtp.Crypto) []byte {
	return body(
		"v=0",
		fmt.Sprintf("o=%s 1 1 IN IP4 %s", user, ap.Addr()),
		"s=-",
		fmt.Sprintf("c=IN IP4 %s", ap.Addr()),
		"t=0 0",
		fmt.Sprintf("m=audio %d RTP/SAVP 0 101", ap.Port()),
		"a=rtpmap:0 PCMU/8000",
		"a=rtpmap:101 telephone-event/8000",
		"a=crypto:"+c.String(),
	)
}

// theCrypto is the one a=crypto of stream 0 of a body.
func theCrypto(t *testing.T, b []byte) srtp.Crypto {
	t.Helper()
	v := mustParse(t, b).Attrs(0, "crypto")
	if len(v) != 1 {
		t.Fatalf("%d a=crypto lines, want 1:\n%s", len(v), b)
	}
	c, err := srtp.ParseCrypto(v[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// An SDES-SRTP phone outside, a plain PBX inside: the PBX sees a plain
// offer and plain RTP, the phone an SRTP answer with the SBC's own key
// and SRTP; RTCP toward the phone is hidden, then encrypted; a replayed
// or forged packet goes nowhere.
func TestSecureSDESOutside(t *testing.T) {
	m := newTestManager(t, withEncryption(EncAuto, EncOff, false))
	phone, phoneRTCP := rtpPair(t, phoneIP)
	pbx, pbxC := rtpPair(t, pbxIP)
	phoneKey, err := srtp.NewCrypto(1, srtp.AES_CM_128_HMAC_SHA1_80)
	if err != nil {
		t.Fatal(err)
	}
	offer := rewrite(t, m, "c1", sbc.Internal, sdesSDP("phone", phone.addr(), phoneKey))
	if bytes.Contains(offer, []byte("crypto")) || !bytes.Contains(offer, []byte(" RTP/AVP 0 101\r\n")) {
		t.Fatalf("offer toward the plain PBX:\n%s", offer)
	}
	ans := rewrite(t, m, "c1", sbc.External, audioSDP("pbx", 1, pbx.addr()))
	if !bytes.Contains(ans, []byte(" RTP/SAVP 0 8 101\r\n")) {
		t.Fatalf("answer toward the SRTP phone:\n%s", ans)
	}
	sbcKey := theCrypto(t, ans)
	if sbcKey.Tag != 1 || sbcKey.Suite != phoneKey.Suite || bytes.Equal(sbcKey.Key, phoneKey.Key) {
		t.Fatalf("answer's a=crypto %q: want tag 1, the offer's suite, a key of the SBC's own", sbcKey.String())
	}
	phoneSess, err := srtp.SessionFromSDES(phoneKey, sbcKey)
	if err != nil {
		t.Fatal(err)
	}
	toInt, toExt := relayAddr(t, offer, 0, false), relayAddr(t, ans, 0, false)

	// Phone → PBX: SRTP in, RTP out, the same bytes.
	plain := rtpPacket(7, 172)
	sealed, err := phoneSess.EncryptRTP(nil, plain)
	if err != nil {
		t.Fatal(err)
	}
	phone.send(toExt, sealed)
	got, _ := pbx.recv()
	if !bytes.Equal(got, plain) {
		t.Fatalf("PBX got %x, want the plain packet %x", got, plain)
	}
	// The same SRTP packet again: a replay, dropped.
	phone.send(toExt, sealed)
	pbx.expectNothing(100 * time.Millisecond)
	// A forged one (payload changed, tag not): dropped.
	forged, _ := phoneSess.EncryptRTP(nil, rtpPacket(8, 172))
	forged[20] ^= 1
	phone.send(toExt, forged)
	pbx.expectNothing(100 * time.Millisecond)
	waitStat(t, m, "replay and forgery counted", func(s Stats) bool { return s.Dropped[DropCrypto] == 2 })

	// PBX → phone: RTP in, SRTP out that the phone decrypts.
	back := rtpPacket(100, 172)
	pbx.send(toInt, back)
	got, _ = phone.recv()
	if bytes.Equal(got, back) {
		t.Fatal("the phone got plain RTP")
	}
	dec, err := phoneSess.DecryptRTP(nil, got)
	if err != nil || !bytes.Equal(dec, back) {
		t.Fatalf("phone decrypts %x, %v; want %x", dec, err, back)
	}

	// RTCP from the PBX: hidden (CNAME rewritten), then SRTCP.
	pbxC.send(relayAddr(t, offer, 0, true), leakySR())
	got, _ = phoneRTCP.recv()
	dec, err = phoneSess.DecryptRTCP(nil, got)
	if err != nil {
		t.Fatalf("phone cannot decrypt the SRTCP: %v", err)
	}
	if bytes.Contains(dec, []byte("pbx@10.0.0.5")) {
		t.Fatalf("RTCP toward the phone kept the PBX's CNAME: %q", dec)
	}

	// The call's account for the call log (the counters move just after
	// the datagram left).
	st, ok := m.CallStats("c1")
	for deadline := time.Now().Add(waitFor); st.PacketsOut < 2 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
		st, ok = m.CallStats("c1")
	}
	if !ok || st.PacketsIn != 1 || st.PacketsOut != 2 || st.Dropped != 2 || st.Outside != "sdes" || st.Inside != "plain" {
		t.Errorf("CallStats = %+v, %v; want 1 packet in, 2 out (RTP, RTCP), 2 dropped, sdes outside, plain inside", st, ok)
	}
}

// A re-INVITE from the SDES phone with a new key: what it sends is then
// decrypted with the new key, and still with the old one (the PBX may
// refuse the re-INVITE, and the phone then keeps it); the SBC's key, and
// so its answer's a=crypto, stay.
func TestSecureSDESRekey(t *testing.T) {
	m := newTestManager(t, withEncryption(EncAuto, EncOff, false))
	phone, _ := rtpPair(t, phoneIP)
	pbx, _ := rtpPair(t, pbxIP)
	k1, _ := srtp.NewCrypto(1, srtp.AES_CM_128_HMAC_SHA1_80)
	offer := rewrite(t, m, "r1", sbc.Internal, sdesSDP("phone", phone.addr(), k1))
	ans := rewrite(t, m, "r1", sbc.External, audioSDP("pbx", 1, pbx.addr()))
	sbcKey := theCrypto(t, ans)
	toExt := relayAddr(t, ans, 0, false)
	old, _ := srtp.SessionFromSDES(k1, sbcKey)
	send := func(s *srtp.Session, seq uint16) {
		t.Helper()
		p := rtpPacket(seq, 172)
		enc, _ := s.EncryptRTP(nil, p)
		phone.send(toExt, enc)
		got, _ := pbx.recv()
		if !bytes.Equal(got, p) {
			t.Fatalf("PBX got %x, want %x", got, p)
		}
	}
	send(old, 1)

	k2, _ := srtp.NewCrypto(1, srtp.AES_CM_128_HMAC_SHA1_80)
	rewrite(t, m, "r1", sbc.Internal, sdesSDP("phone", phone.addr(), k2))
	ans2 := rewrite(t, m, "r1", sbc.External, audioSDP("pbx", 2, pbx.addr()))
	if got := theCrypto(t, ans2); !bytes.Equal(got.Key, sbcKey.Key) {
		t.Errorf("the SBC's key changed on the phone's rekey")
	}
	_ = offer
	send(old, 2) // the old key still works (the re-INVITE may have been refused)
	rekeyed, _ := srtp.SessionFromSDES(k2, sbcKey)
	send(rekeyed, 3)
}

// Nobody without the keys or the ICE password can take a stream the SBC
// terminates SRTP on: a stranger's RTP-looking datagram before the SDES
// phone's first packet does not latch (it fails authentication), and on
// a DTLS side a stranger's DTLS record before the browser's ICE check is
// neither latched nor fed to a handshake; none is made until a record
// comes from the checked address (the handshake's clock starts then, not
// at the offer: a call may ring for long).
func TestSecureLatchNeedsAuthentication(t *testing.T) {
	m := newTestManager(t, withEncryption(EncAuto, EncOff, false))
	phone, _ := rtpPair(t, phoneIP)
	pbx, _ := rtpPair(t, pbxIP)
	stranger := newEndpoint(t, strangerIP)
	k, _ := srtp.NewCrypto(1, srtp.AES_CM_128_HMAC_SHA1_80)
	rewrite(t, m, "h4", sbc.Internal, sdesSDP("phone", phone.addr(), k))
	ans := rewrite(t, m, "h4", sbc.External, audioSDP("pbx", 1, pbx.addr()))
	toExt := relayAddr(t, ans, 0, false)
	stranger.send(toExt, rtpPacket(1, 40))
	waitStat(t, m, "the stranger's datagram refused", func(s Stats) bool { return s.Dropped[DropCrypto] == 1 })
	sess, _ := srtp.SessionFromSDES(k, theCrypto(t, ans))
	p := rtpPacket(2, 172)
	enc, _ := sess.EncryptRTP(nil, p)
	phone.send(toExt, enc)
	if got, _ := pbx.recv(); !bytes.Equal(got, p) {
		t.Fatalf("the phone's SRTP after a stranger's datagram: PBX got %x", got)
	}

	browser := newEndpoint(t, phoneIP)
	cert, _ := srtp.NewCertificate()
	bu, bp := srtp.NewICECredentials()
	rewrite(t, m, "h3", sbc.Internal, webrtcOffer(cert.Fingerprint(), bu, bp, browser.addr()))
	ans = rewrite(t, m, "h3", sbc.External, audioSDP("pbx", 1, netip.MustParseAddrPort("127.0.0.4:30100")))
	relay := relayAddr(t, ans, 0, false)
	m.mu.Lock()
	st := m.sessions["h3"].streams[0]
	m.mu.Unlock()
	keys := st.sec[sbc.External].Load().keys
	assoc := func() *srtp.DTLS {
		keys.mu.Lock()
		defer keys.mu.Unlock()
		return keys.assoc[rtp]
	}
	if assoc() != nil {
		t.Fatal("a DTLS association (and its timer) before any record from the browser")
	}
	alert := []byte{0x15, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 40}
	stranger.send(relay, alert)
	waitStat(t, m, "the stranger's record refused", func(s Stats) bool { return s.Dropped[DropUnlatched] >= 1 })
	if assoc() != nil || st.peer[sbc.External][rtp].Load().latched {
		t.Fatal("a stranger's DTLS record latched the stream or reached a handshake")
	}
	parsed := mustParse(t, ans)
	sbcFP, _ := srtp.ParseFingerprint(first(attr(parsed, 0, "fingerprint")))
	bsess, _ := browserWire(t, browser, relay, cert, sbcFP, first(attr(parsed, 0, "ice-ufrag"))+":"+bu, first(attr(parsed, 0, "ice-pwd")))
	if bsess == nil || assoc() == nil {
		t.Fatal("no association after the browser's check and handshake")
	}
}

// leakySR is an SR with an SDES naming the PBX.
func leakySR() []byte {
	sr := []byte{0x80, 200, 0, 6, 0, 0, 0, 9}
	sr = append(sr, make([]byte, 20)...)
	cname := "pbx@10.0.0.5"
	sdes := []byte{0x81, 202, 0, 0, 0, 0, 0, 9, 1, byte(len(cname))}
	sdes = append(sdes, cname...)
	for len(sdes)%4 != 0 {
		sdes = append(sdes, 0)
	}
	sdes[3] = byte(len(sdes)/4 - 1)
	return append(sr, sdes...)
}

// The PBX calls a phone outside in sdes mode: the SBC's offer toward the
// phone is SRTP with its key; the phone's answer keys the other way.
func TestSecureSDESOfferTowardOutside(t *testing.T) {
	m := newTestManager(t, withEncryption(EncSDES, EncOff, false))
	phone, _ := rtpPair(t, phoneIP)
	pbx, _ := rtpPair(t, pbxIP)
	offer := rewrite(t, m, "c2", sbc.External, audioSDP("pbx", 1, pbx.addr()))
	if !bytes.Contains(offer, []byte(" RTP/SAVP 0 8 101\r\n")) {
		t.Fatalf("offer toward the phone:\n%s", offer)
	}
	sbcKey := theCrypto(t, offer)
	phoneKey, _ := srtp.NewCrypto(sbcKey.Tag, sbcKey.Suite)
	ans := rewrite(t, m, "c2", sbc.Internal, sdesSDP("phone", phone.addr(), phoneKey))
	if bytes.Contains(ans, []byte("crypto")) || !bytes.Contains(ans, []byte(" RTP/AVP 0 101\r\n")) {
		t.Fatalf("answer toward the PBX:\n%s", ans)
	}
	phoneSess, _ := srtp.SessionFromSDES(phoneKey, sbcKey)
	back := rtpPacket(1, 160)
	pbx.send(relayAddr(t, ans, 0, false), back)
	got, _ := phone.recv()
	if dec, err := phoneSess.DecryptRTP(nil, got); err != nil || !bytes.Equal(dec, back) {
		t.Fatalf("phone decrypts %x, %v", dec, err)
	}
	// A re-INVITE from the PBX (same media) keeps the SBC's key: the
	// body toward the phone is the same, version included.
	again := rewrite(t, m, "c2", sbc.External, audioSDP("pbx", 2, pbx.addr()))
	if !bytes.Equal(again, offer) {
		t.Errorf("re-offer toward the phone changed:\n%s\nwas\n%s", again, offer)
	}
}

// Encryption required: a plain offer from outside is refused (the B2BUA
// answers 488), an SRTP one is not.
func TestSecureRequire(t *testing.T) {
	m := newTestManager(t, withEncryption(EncAuto, EncOff, true))
	_, err := m.Rewrite("c3", sbc.Internal, audioSDP("phone", 1, netip.MustParseAddrPort("127.0.0.3:30000")))
	if !errors.Is(err, sdp.ErrPlain) {
		t.Fatalf("plain offer with encryption required: %v, want sdp.ErrPlain", err)
	}
	k, _ := srtp.NewCrypto(1, srtp.AES_CM_128_HMAC_SHA1_80)
	if _, err := m.Rewrite("c4", sbc.Internal, sdesSDP("phone", netip.MustParseAddrPort("127.0.0.3:30000"), k)); err != nil {
		t.Fatalf("SRTP offer with encryption required: %v", err)
	}
	if _, err := New(Config{External: extIP, Internal: intIP, Encryption: Encryption{Outside: EncPass, Inside: EncOff}}); err == nil {
		t.Error("pass on one side only accepted")
	}
}

// webrtcOffer is what a browser offers: DTLS-SRTP, ICE, rtcp-mux,
// BUNDLE, c=0.0.0.0 and port 9.
func webrtcOffer(fp, ufrag, pwd string, cand netip.AddrPort) []byte {
	return body(
		"v=0",
		"o=- 4611731400430051336 2 IN IP4 127.0.0.1",
		"s=-",
		"t=0 0",
		"a=group:BUNDLE 0",
		"a=extmap-allow-mixed",
		"a=msid-semantic: WMS stream",
		"m=audio 9 UDP/TLS/RTP/SAVPF 111 0",
		"c=IN IP4 0.0.0.0",
		"a=rtcp:9 IN IP4 0.0.0.0",
		fmt.Sprintf("a=candidate:1 1 udp 2122260223 %s %d typ host generation 0", cand.Addr(), cand.Port()),
		"a=ice-ufrag:"+ufrag,
		"a=ice-pwd:"+pwd,
		"a=ice-options:trickle",
		"a=fingerprint:"+fp,
		"a=setup:actpass",
		"a=mid:0",
		"a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
		"a=sendrecv",
		"a=msid:stream track",
		"a=rtcp-mux",
		"a=rtpmap:111 opus/48000/2",
		"a=rtcp-fb:111 transport-cc",
		"a=fmtp:111 minptime=10;useinbandfec=1",
		"a=rtpmap:0 PCMU/8000",
		"a=ssrc:3735928559 cname:browser",
	)
}

// A browser outside, a plain PBX inside: the PBX gets a plain offer; the
// browser an ICE-lite DTLS-SRTP answer. Then the browser's side of the
// wire, played with the srtp package: ICE check answered (and latched),
// DTLS handshake as the client, SRTP both ways with rtcp-mux.
func TestSecureWebRTC(t *testing.T) {
	m := newTestManager(t, withEncryption(EncAuto, EncOff, false))
	browser := newEndpoint(t, phoneIP)
	pbx, pbxC := rtpPair(t, pbxIP)
	cert, err := srtp.NewCertificate()
	if err != nil {
		t.Fatal(err)
	}
	bu, bp := srtp.NewICECredentials()
	offer := rewrite(t, m, "w1", sbc.Internal, webrtcOffer(cert.Fingerprint(), bu, bp, browser.addr()))
	for _, gone := range []string{"fingerprint", "ice-", "candidate", "setup", "a=mid", "BUNDLE", "rtcp-mux", "rtcp-fb", "ssrc", "msid", "extmap", "SAVPF", "0.0.0.0"} {
		if bytes.Contains(offer, []byte(gone)) {
			t.Errorf("offer toward the PBX holds %q:\n%s", gone, offer)
		}
	}
	if !bytes.Contains(offer, []byte(" RTP/AVP 111 0\r\n")) {
		t.Errorf("offer toward the PBX:\n%s", offer)
	}
	ans := rewrite(t, m, "w1", sbc.External, audioSDP("pbx", 1, pbx.addr()))
	parsed := mustParse(t, ans)
	for _, want := range []string{" UDP/TLS/RTP/SAVPF 0 8 101\r\n", "a=ice-lite\r\n", "a=group:BUNDLE 0\r\n", "a=mid:0\r\n",
		"a=setup:passive\r\n", "a=rtcp-mux\r\n", "a=end-of-candidates\r\n"} {
		if !bytes.Contains(ans, []byte(want)) {
			t.Errorf("answer toward the browser lacks %q:\n%s", strings.TrimSpace(want), ans)
		}
	}
	relay := relayAddr(t, ans, 0, false)
	if c := first(parsed.Attrs(0, "candidate")); !strings.Contains(c, fmt.Sprintf(" %s %d typ host", relay.Addr(), relay.Port())) {
		t.Errorf("candidate %q does not name the relay port %s", c, relay)
	}
	sbcFP, err := srtp.ParseFingerprint(first(attr(parsed, 0, "fingerprint")))
	if err != nil {
		t.Fatal(err)
	}
	su, sp := first(attr(parsed, 0, "ice-ufrag")), first(attr(parsed, 0, "ice-pwd"))

	sess, media := browserWire(t, browser, relay, cert, sbcFP, su+":"+bu, sp)
	// The check was answered and counted apart: neither it nor the
	// handshake is relayed media.
	if s := m.Stats(); s.ICEChecks == 0 || s.Packets != 0 || s.Bytes != 0 {
		t.Errorf("after the ICE check and the handshake: %d checks answered, %d packets and %d bytes relayed; want > 0, 0, 0",
			s.ICEChecks, s.Packets, s.Bytes)
	}
	toInt := relayAddr(t, offer, 0, false)
	sendUntil(t, sess, browser, pbx, relay)
	// RTP from the PBX reaches the browser as SRTP; the PBX's RTCP (on
	// its own port) reaches it muxed on the RTP port, as SRTCP.
	back := rtpPacket(500, 172)
	pbx.send(toInt, back)
	select {
	case got := <-media:
		if dec, err := sess.DecryptRTP(nil, got); err != nil || !bytes.Equal(dec, back) {
			t.Fatalf("browser decrypts %x, %v", dec, err)
		}
	case <-time.After(waitFor):
		t.Fatal("no SRTP reached the browser")
	}
	pbxC.send(relayAddr(t, offer, 0, true), leakySR())
	select {
	case got := <-media:
		dec, err := sess.DecryptRTCP(nil, got)
		if err != nil || bytes.Contains(dec, []byte("pbx@10.0.0.5")) {
			t.Fatalf("browser's SRTCP: %q, %v", dec, err)
		}
	case <-time.After(waitFor):
		t.Fatal("no SRTCP reached the browser on its RTP port")
	}
	if s := m.Stats(); s.FastPathStreams != 0 {
		t.Errorf("an encrypted stream went to the kernel path: %+v", s)
	}

	// An ICE restart (a re-offer with new ICE credentials, the same
	// certificate): new ICE credentials of ours, the DTLS association and
	// its keys go on.
	bu2, bp2 := srtp.NewICECredentials()
	rewrite(t, m, "w1", sbc.Internal, webrtcOffer(cert.Fingerprint(), bu2, bp2, browser.addr()))
	ans2 := mustParse(t, rewrite(t, m, "w1", sbc.External, audioSDP("pbx", 2, pbx.addr())))
	if first(attr(ans2, 0, "ice-ufrag")) == su || first(attr(ans2, 0, "fingerprint")) != first(attr(parsed, 0, "fingerprint")) {
		t.Errorf("ICE restart: ufrag %q (was %q), fingerprint kept: %v", first(attr(ans2, 0, "ice-ufrag")), su,
			first(attr(ans2, 0, "fingerprint")) == first(attr(parsed, 0, "fingerprint")))
	}
	sendUntil(t, sess, browser, pbx, relay)
}

// stunRequest is a browser's ICE connectivity check (RFC 8445 7.1.1).
func stunRequest(t *testing.T, username, pwd string) []byte {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername(username),
		stun.RawAttribute{Type: stun.AttrPriority, Value: []byte{0x6e, 0, 0x1e, 0xff}},
		stun.RawAttribute{Type: stun.AttrICEControlling, Value: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		stun.RawAttribute{Type: stun.AttrUseCandidate},
		stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// browserWire plays a browser's side of the wire toward the relay at
// relay: an ICE check (username, the SBC's password), then a DTLS
// handshake as the client. It returns the SRTP session and what else the
// browser receives.
func browserWire(t *testing.T, browser *endpoint, relay netip.AddrPort, cert *srtp.Certificate, sbcFP srtp.Fingerprint, username, pwd string) (*srtp.Session, chan []byte) {
	t.Helper()
	req := stunRequest(t, username, pwd)
	browser.send(relay, req)
	resp, _ := browser.recv()
	if srtp.Classify(resp) != srtp.KindSTUN {
		t.Fatalf("answer to the ICE check: %x", resp)
	}
	ready := make(chan *srtp.Session, 1)
	d, err := srtp.NewDTLS(srtp.DTLSConfig{
		Cert: cert, Role: srtp.Client, Remote: []srtp.Fingerprint{sbcFP},
		Send: func(p []byte) error { browser.send(relay, p); return nil },
		OnReady: func(s *srtp.Session, err error) {
			if err != nil {
				t.Errorf("browser's DTLS: %v", err)
			}
			ready <- s
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	media := make(chan []byte, 64)
	go func() {
		buf := make([]byte, 2048)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = browser.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			n, err := browser.conn.Read(buf)
			if err != nil {
				continue
			}
			p := append([]byte(nil), buf[:n]...)
			if srtp.Classify(p) == srtp.KindDTLS {
				d.Feed(p)
			} else {
				select {
				case media <- p:
				default:
				}
			}
		}
	}()
	d.Start()
	var sess *srtp.Session
	select {
	case sess = <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("no DTLS handshake in 10 s")
	}
	if sess == nil {
		t.FailNow()
	}
	return sess, media
}

// sendUntil sends SRTP from the browser until the PBX gets it in clear:
// the SBC may still be finishing its side of the handshake.
func sendUntil(t *testing.T, sess *srtp.Session, browser, pbx *endpoint, relay netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for seq := uint16(1); ; seq++ {
		plain := rtpPacket(seq, 172)
		sealed, err := sess.EncryptRTP(nil, plain)
		if err != nil {
			t.Fatal(err)
		}
		browser.send(relay, sealed)
		if got, _, err := pbx.tryRecv(100 * time.Millisecond); err == nil {
			if !bytes.Equal(got, plain) {
				t.Fatalf("PBX got %x, want %x", got, plain)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no SRTP from the browser reached the PBX")
		}
	}
}

// The PBX calls a browser (registered over wss): the SBC's offer toward
// it is DTLS-SRTP with ICE-lite; the browser answers active and connects;
// the PBX sees a plain answer and plain RTP.
func TestSecureOfferTowardBrowser(t *testing.T) {
	m := newTestManager(t, withEncryption(EncAuto, EncOff, false))
	m.Leg("w2", sbc.External, "WSS", "")
	browser := newEndpoint(t, phoneIP)
	pbx, _ := rtpPair(t, pbxIP)
	offer := rewrite(t, m, "w2", sbc.External, audioSDP("pbx", 1, pbx.addr()))
	parsed := mustParse(t, offer)
	for _, want := range []string{" UDP/TLS/RTP/SAVPF 0 8 101\r\n", "a=ice-lite\r\n", "a=setup:actpass\r\n", "a=rtcp-mux\r\n", "a=group:BUNDLE 0\r\n"} {
		if !bytes.Contains(offer, []byte(want)) {
			t.Errorf("offer toward the browser lacks %q:\n%s", strings.TrimSpace(want), offer)
		}
	}
	sbcFP, err := srtp.ParseFingerprint(first(attr(parsed, 0, "fingerprint")))
	if err != nil {
		t.Fatal(err)
	}
	su, sp := first(attr(parsed, 0, "ice-ufrag")), first(attr(parsed, 0, "ice-pwd"))
	cert, _ := srtp.NewCertificate()
	bu, bp := srtp.NewICECredentials()
	answer := bytes.Replace(webrtcOffer(cert.Fingerprint(), bu, bp, browser.addr()), []byte("a=setup:actpass"), []byte("a=setup:active"), 1)
	ans := rewrite(t, m, "w2", sbc.Internal, answer)
	for _, gone := range []string{"fingerprint", "ice-", "setup", "SAVPF", "rtcp-mux", "0.0.0.0"} {
		if bytes.Contains(ans, []byte(gone)) {
			t.Errorf("answer toward the PBX holds %q:\n%s", gone, ans)
		}
	}
	relay := relayAddr(t, offer, 0, false)
	sess, media := browserWire(t, browser, relay, cert, sbcFP, su+":"+bu, sp)
	sendUntil(t, sess, browser, pbx, relay)
	back := rtpPacket(900, 172)
	pbx.send(relayAddr(t, ans, 0, false), back)
	select {
	case got := <-media:
		if dec, err := sess.DecryptRTP(nil, got); err != nil || !bytes.Equal(dec, back) {
			t.Fatalf("browser decrypts %x, %v", dec, err)
		}
	case <-time.After(waitFor):
		t.Fatal("no SRTP reached the browser")
	}
}

// A trusted peer with a mode of its own: off, so its plain offer passes
// although encryption is required from everyone else, and its SDES offer
// is answered plain; sdes, so the SBC's offers toward it carry a key.
func TestSecurePeerMode(t *testing.T) {
	m := newTestManager(t, func(c *Config) {
		c.Encryption = Encryption{Outside: EncAuto, Inside: EncOff, Require: true, Peers: map[string]string{"carrier": EncOff, "trunk": EncSDES}}
	})
	ap := netip.MustParseAddrPort("127.0.0.3:30000")
	m.Leg("p1", sbc.External, "udp", "carrier")
	if _, err := m.Rewrite("p1", sbc.Internal, audioSDP("carrier", 1, ap)); err != nil {
		t.Fatalf("plain offer of a peer in mode off: %v", err)
	}
	if _, err := m.Rewrite("p2", sbc.Internal, audioSDP("someone", 1, ap)); !errors.Is(err, sdp.ErrPlain) {
		t.Fatalf("plain offer from anyone else: %v, want sdp.ErrPlain", err)
	}
	m.Leg("p3", sbc.External, "udp", "trunk")
	offer := rewrite(t, m, "p3", sbc.External, audioSDP("pbx", 1, netip.MustParseAddrPort("127.0.0.4:30000")))
	if !bytes.Contains(offer, []byte("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:")) {
		t.Errorf("offer toward a peer in mode sdes:\n%s", offer)
	}
	if _, err := New(Config{External: extIP, Internal: intIP, Encryption: Encryption{Outside: EncPass, Inside: EncPass, Peers: map[string]string{"x": EncSDES}}}); err == nil {
		t.Error("a peer mode with pass inside accepted")
	}
	m.Release("p1")
	m.Release("p3")
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.hints) != 0 {
		t.Errorf("%d leg hints left after the calls", len(m.hints))
	}
}

// BenchmarkRelayOneSRTP is the CPU of the hot path for one packet of a
// latched stream, without sockets: plain relaying against relaying with
// SRTP terminated outside (SDES, AES_CM_128_HMAC_SHA1_80), each way.
// "in" is a packet from the SRTP phone (decrypted for the PBX), "out"
// one from the PBX (encrypted for the phone).
func BenchmarkRelayOneSRTP(b *testing.B) {
	for _, tc := range []struct {
		name string
		srtp bool
		in   bool
	}{{"plain/in", false, true}, {"plain/out", false, false}, {"srtp/in", true, true}, {"srtp/out", true, false}} {
		b.Run(tc.name, func(b *testing.B) {
			m := newTestManager(b, withEncryption(EncAuto, EncOff, false))
			phone, _ := rtpPair(b, phoneIP)
			pbx, _ := rtpPair(b, pbxIP)
			phoneKey, _ := srtp.NewCrypto(1, srtp.AES_CM_128_HMAC_SHA1_80)
			offer := audioSDP("phone", 1, phone.addr())
			if tc.srtp {
				offer = sdesSDP("phone", phone.addr(), phoneKey)
			}
			rewrite(b, m, "b", sbc.Internal, offer)
			ans := rewrite(b, m, "b", sbc.External, audioSDP("pbx", 1, pbx.addr()))
			var phoneSess *srtp.Session
			if tc.srtp {
				sbcKey, err := srtp.ParseCrypto(mustParse(b, ans).Attrs(0, "crypto")[0])
				if err != nil {
					b.Fatal(err)
				}
				phoneSess, _ = srtp.SessionFromSDES(phoneKey, sbcKey)
			}
			m.mu.Lock()
			st := m.sessions["b"].streams[0]
			m.mu.Unlock()
			st.peer[0][rtp].Store(&peerState{dst: phone.addr(), latched: true})
			st.peer[1][rtp].Store(&peerState{dst: pbx.addr(), latched: true})
			in, src := st.sock[1][rtp], pbx.addr()
			if tc.in {
				in, src = st.sock[0][rtp], phone.addr()
			}
			// Packets from the phone are encrypted ahead, a batch at a
			// time, outside the timer (replay protection refuses a
			// packet twice).
			const batch = 4096
			pkts := make([][]byte, batch)
			seq := uint16(0)
			fill := func() {
				for i := range pkts {
					seq++
					p := rtpPacket(seq, loadPacketSize)
					if tc.srtp && tc.in {
						p, _ = phoneSess.EncryptRTP(nil, p)
					}
					pkts[i] = p
				}
			}
			fill()
			var sc scratch
			buf := make([]byte, 2*MaxDatagram)
			b.ReportAllocs()
			b.ResetTimer()
			i := 0
			for b.Loop() {
				if i == batch {
					b.StopTimer()
					fill()
					i = 0
					b.StartTimer()
				}
				n := copy(buf, pkts[i])
				i++
				if _, _, _, _, ok := st.relayOne(in, buf[:n], src, &sc); !ok {
					b.Fatal("packet not relayed")
				}
			}
		})
	}
}

// Where plain media from outside is refused, the SBC's own offers toward
// the outside are SDES-SRTP (a plain answer would be refused); a failover
// to another endpoint on that side gets an offer of its own.
func TestSecureRequireOwnOffer(t *testing.T) {
	m := newTestManager(t, withEncryption(EncAuto, EncOff, true))
	m.Leg("o1", sbc.External, "wss", "")
	offer := rewrite(t, m, "o1", sbc.External, audioSDP("pbx", 1, netip.MustParseAddrPort("127.0.0.4:30200")))
	if !bytes.Contains(offer, []byte("UDP/TLS/RTP/SAVPF")) {
		t.Fatalf("offer toward a browser:\n%s", offer)
	}
	// The browser did not answer; the next target is a UDP phone.
	m.Leg("o1", sbc.External, "udp", "")
	offer = rewrite(t, m, "o1", sbc.External, audioSDP("pbx", 1, netip.MustParseAddrPort("127.0.0.4:30200")))
	if !bytes.Contains(offer, []byte(" RTP/SAVP ")) || !bytes.Contains(offer, []byte("a=crypto:1 ")) || bytes.Contains(offer, []byte("fingerprint")) {
		t.Fatalf("offer toward a UDP phone after a browser, encryption required:\n%s", offer)
	}
}

// A browser whose certificate is not the one its SDP's fingerprint names
// gets no keys: the handshake fails and is counted.
func TestSecureDTLSWrongCertificate(t *testing.T) {
	m := newTestManager(t, withEncryption(EncAuto, EncOff, false))
	browser := newEndpoint(t, phoneIP)
	named, _ := srtp.NewCertificate()
	used, _ := srtp.NewCertificate()
	bu, bp := srtp.NewICECredentials()
	rewrite(t, m, "wc", sbc.Internal, webrtcOffer(named.Fingerprint(), bu, bp, browser.addr()))
	ans := mustParse(t, rewrite(t, m, "wc", sbc.External, audioSDP("pbx", 1, netip.MustParseAddrPort("127.0.0.4:30300"))))
	relay := netip.AddrPortFrom(extIP, uint16(ans.Media()[0].Port))
	browser.send(relay, stunRequest(t, first(attr(ans, 0, "ice-ufrag"))+":"+bu, first(attr(ans, 0, "ice-pwd"))))
	if resp, _ := browser.recv(); srtp.Classify(resp) != srtp.KindSTUN {
		t.Fatalf("answer to the ICE check: %x", resp)
	}
	sbcFP, _ := srtp.ParseFingerprint(first(attr(ans, 0, "fingerprint")))
	d, err := srtp.NewDTLS(srtp.DTLSConfig{Cert: used, Role: srtp.Client, Remote: []srtp.Fingerprint{sbcFP},
		Send:    func(p []byte) error { browser.send(relay, p); return nil },
		OnReady: func(*srtp.Session, error) {}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Start()
	deadline := time.Now().Add(5 * time.Second)
	for m.Stats().DTLSFailures == 0 && time.Now().Before(deadline) {
		if p, _, err := browser.tryRecv(50 * time.Millisecond); err == nil && srtp.Classify(p) == srtp.KindDTLS {
			d.Feed(p)
		}
	}
	if n := m.Stats().DTLSFailures; n != 1 {
		t.Fatalf("DTLSFailures = %d after a handshake with the wrong certificate, want 1", n)
	}
	m.mu.Lock()
	st := m.sessions["wc"].streams[0]
	m.mu.Unlock()
	if st.sec[sbc.External].Load().keys.sess[rtp].Load() != nil {
		t.Error("keys agreed with a certificate the SDP did not name")
	}
}
