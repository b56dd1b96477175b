package srtp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	pionsrtp "github.com/pion/srtp/v3"
)

type readyResult struct {
	s   *Session
	err error
}

// harness is our DTLS and pion's as the peer, over an in-memory datagram
// pipe: what one side writes, the other is fed.
type harness struct {
	ours     *DTLS
	ourCert  *Certificate
	peerCert tls.Certificate
	peerPC   *feedConn
	ready    chan readyResult
	calls    atomic.Int32
}

// newHarness builds our endpoint. remote is what our side is told of the
// peer's certificate (nil: the right fingerprint); drop, if set, decides
// which of our datagrams get lost.
func newHarness(t *testing.T, role Role, remote []Fingerprint, drop func([]byte) bool, timeout time.Duration) *harness {
	t.Helper()
	h := &harness{ready: make(chan readyResult, 2)}
	var err error
	if h.ourCert, err = NewCertificate(); err != nil {
		t.Fatal(err)
	}
	if h.peerCert, err = selfsign.GenerateSelfSigned(); err != nil {
		t.Fatal(err)
	}
	if remote == nil {
		sum := sha256.Sum256(h.peerCert.Certificate[0])
		remote = []Fingerprint{{Hash: "sha-256", Value: sum[:]}}
	}
	var ours *DTLS
	h.peerPC = newFeedConn(func(b []byte) error {
		ours.Feed(b)
		return nil
	})
	ours, err = NewDTLS(DTLSConfig{
		Cert:   h.ourCert,
		Role:   role,
		Remote: remote,
		Send: func(b []byte) error {
			if drop == nil || !drop(b) {
				h.peerPC.feed(b)
			}
			return nil
		},
		Timeout: timeout,
		OnReady: func(s *Session, err error) {
			h.calls.Add(1)
			h.ready <- readyResult{s, err}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	h.ours = ours
	return h
}

// peer starts pion's side of the handshake, in the role opposite to ours,
// checking our certificate against our a=fingerprint as a browser would.
func (h *harness) peer(t *testing.T, ourRole Role, profiles ...dtls.SRTPProtectionProfile) (*dtls.Conn, chan error) {
	t.Helper()
	want, err := ParseFingerprint(h.ourCert.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("peer: no certificate")
		}
		if sum := sha256.Sum256(raw[0]); !bytes.Equal(sum[:], want.Value) {
			return errors.New("peer: our fingerprint does not match")
		}
		return nil
	}
	shared := []dtls.Option{
		dtls.WithCertificates(h.peerCert),
		dtls.WithSRTPProtectionProfiles(profiles...),
		dtls.WithInsecureSkipVerify(true),
		dtls.WithVerifyPeerCertificate(verify),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
		dtls.WithFlightInterval(100 * time.Millisecond),
		dtls.WithLoggerFactory(quietLogger{}),
	}
	var conn *dtls.Conn
	if ourRole == Server {
		var opts []dtls.ClientOption
		for _, o := range shared {
			opts = append(opts, o)
		}
		conn, err = dtls.ClientWithOptions(h.peerPC, feedAddr("sbc"), opts...)
	} else {
		var opts []dtls.ServerOption
		for _, o := range shared {
			opts = append(opts, o)
		}
		opts = append(opts, dtls.WithClientAuth(dtls.RequireAnyClientCert))
		conn, err = dtls.ServerWithOptions(h.peerPC, feedAddr("sbc"), opts...)
	}
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- conn.HandshakeContext(ctx)
	}()
	return conn, done
}

func (h *harness) wait(t *testing.T) readyResult {
	t.Helper()
	select {
	case r := <-h.ready:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("OnReady not called")
	}
	return readyResult{}
}

func waitErr(t *testing.T, c chan error) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(15 * time.Second):
		t.Fatal("peer handshake did not end")
	}
	return nil
}

// checkKeys builds the peer's SRTP contexts from pion's exported keying
// material, independently of our code, and sends both ways.
func checkKeys(t *testing.T, s *Session, peer *dtls.Conn, peerIsClient bool, profile pionsrtp.ProtectionProfile) {
	t.Helper()
	state, ok := peer.ConnectionState()
	if !ok {
		t.Fatal("peer: no connection state")
	}
	cfg := pionsrtp.Config{Profile: profile}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, peerIsClient); err != nil {
		t.Fatal(err)
	}
	enc, err := pionsrtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, profile)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := pionsrtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, profile)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint16(1); seq <= 3; seq++ {
		plain := rtpPacket(t, 0xabc, seq)
		e, _ := enc.EncryptRTP(nil, plain, nil)
		got, err := s.DecryptRTP(nil, e)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("peer to us, seq %d: %v", seq, err)
		}
		mine := rtpPacket(t, 0xdef, seq)
		out, err := s.EncryptRTP(nil, mine)
		if err != nil {
			t.Fatal(err)
		}
		back, err := dec.DecryptRTP(nil, out, nil)
		if err != nil || !bytes.Equal(back, mine) {
			t.Fatalf("us to peer, seq %d: %v", seq, err)
		}
	}
	plain := rtcpPacket(t, 0xabc, 1)
	e, _ := enc.EncryptRTCP(nil, plain, nil)
	if got, err := s.DecryptRTCP(nil, e); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("rtcp peer to us: %v", err)
	}
	mine := rtcpPacket(t, 0xdef, 1)
	out, _ := s.EncryptRTCP(nil, mine)
	if back, err := dec.DecryptRTCP(nil, out, nil); err != nil || !bytes.Equal(back, mine) {
		t.Fatalf("rtcp us to peer: %v", err)
	}
}

var testProfiles = []struct {
	suite string
	dtls  dtls.SRTPProtectionProfile
	srtp  pionsrtp.ProtectionProfile
}{
	{AEAD_AES_128_GCM, dtls.SRTP_AEAD_AES_128_GCM, pionsrtp.ProtectionProfileAeadAes128Gcm},
	{AES_CM_128_HMAC_SHA1_80, dtls.SRTP_AES128_CM_HMAC_SHA1_80, pionsrtp.ProtectionProfileAes128CmHmacSha1_80},
}

func roleName(r Role) string {
	if r == Server {
		return "server"
	}
	return "client"
}

func TestDTLSHandshake(t *testing.T) {
	for _, role := range []Role{Server, Client} {
		for _, p := range testProfiles {
			t.Run(roleName(role)+"/"+p.suite, func(t *testing.T) {
				h := newHarness(t, role, nil, nil, 0)
				defer h.ours.Close()
				if role == Client {
					// Our ClientHello waits in the peer's queue until it reads.
					h.ours.Start()
				}
				peer, done := h.peer(t, role, p.dtls)
				defer peer.Close()
				if role == Server {
					h.ours.Start()
				}
				r := h.wait(t)
				if r.err != nil {
					t.Fatalf("OnReady error: %v", r.err)
				}
				if err := waitErr(t, done); err != nil {
					t.Fatalf("peer handshake: %v", err)
				}
				if h.ours.Session() != r.s || r.s.Suite() != p.suite {
					t.Fatalf("Session() %p, OnReady %p, suite %q", h.ours.Session(), r.s, r.s.Suite())
				}
				checkKeys(t, r.s, peer, role == Server, p.srtp)
				h.ours.Close()
				h.ours.Close()
				if n := h.calls.Load(); n != 1 {
					t.Errorf("OnReady called %d times", n)
				}
			})
		}
	}
}

func TestDTLSPrefersGCM(t *testing.T) {
	h := newHarness(t, Server, nil, nil, 0)
	defer h.ours.Close()
	peer, done := h.peer(t, Server, dtls.SRTP_AES128_CM_HMAC_SHA1_80, dtls.SRTP_AEAD_AES_128_GCM)
	defer peer.Close()
	h.ours.Start()
	r := h.wait(t)
	if r.err != nil || waitErr(t, done) != nil {
		t.Fatalf("handshake: %v", r.err)
	}
	if r.s.Suite() != AEAD_AES_128_GCM {
		t.Errorf("suite %q, want %q", r.s.Suite(), AEAD_AES_128_GCM)
	}
}

func TestDTLSNoCommonProfile(t *testing.T) {
	h := newHarness(t, Server, nil, nil, 5*time.Second)
	defer h.ours.Close()
	peer, done := h.peer(t, Server, dtls.SRTP_AES128_CM_HMAC_SHA1_32)
	defer peer.Close()
	h.ours.Start()
	if r := h.wait(t); r.err == nil || r.s != nil {
		t.Fatalf("OnReady(%v, %v) without a common SRTP profile", r.s, r.err)
	} else {
		t.Logf("OnReady: %v", r.err)
	}
	_ = waitErr(t, done)
	if h.ours.Session() != nil {
		t.Error("a session without a common profile")
	}
}

func TestDTLSWrongFingerprint(t *testing.T) {
	for _, role := range []Role{Server, Client} {
		t.Run(roleName(role), func(t *testing.T) {
			wrong := sha256.Sum256([]byte("not the peer's certificate"))
			other := sha1.Sum([]byte("nor this"))
			h := newHarness(t, role, []Fingerprint{{"sha-256", wrong[:]}, {"sha-1", other[:]}}, nil, 0)
			defer h.ours.Close()
			peer, done := h.peer(t, role, dtls.SRTP_AEAD_AES_128_GCM)
			defer peer.Close()
			h.ours.Start()
			r := h.wait(t)
			if !errors.Is(r.err, ErrFingerprint) || r.s != nil {
				t.Fatalf("OnReady(%v, %v), want ErrFingerprint", r.s, r.err)
			}
			t.Logf("OnReady: %v", r.err)
			if h.ours.Session() != nil {
				t.Error("a session with the wrong certificate")
			}
			peer.Close()
			if err := waitErr(t, done); err == nil {
				t.Error("the peer finished its handshake")
			}
		})
	}
}

func TestDTLSTimeout(t *testing.T) {
	for _, role := range []Role{Server, Client} {
		t.Run(roleName(role), func(t *testing.T) {
			fp := sha256.Sum256([]byte("x"))
			h := newHarness(t, role, []Fingerprint{{"sha-256", fp[:]}}, func([]byte) bool { return true }, 300*time.Millisecond)
			defer h.ours.Close()
			start := time.Now()
			h.ours.Start()
			r := h.wait(t)
			if !errors.Is(r.err, ErrTimeout) || r.s != nil {
				t.Fatalf("OnReady(%v, %v), want ErrTimeout", r.s, r.err)
			}
			if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
				t.Errorf("timed out after %v", d)
			}
		})
	}
}

func TestDTLSCloseDuringHandshake(t *testing.T) {
	base := runtime.NumGoroutine()
	answered := make(chan struct{})
	var once atomic.Bool
	// Our first answer (the HelloVerifyRequest) is lost, and all after it:
	// the handshake is under way and stays so.
	h := newHarness(t, Server, nil, func([]byte) bool {
		if once.CompareAndSwap(false, true) {
			close(answered)
		}
		return true
	}, 10*time.Second)
	peer, done := h.peer(t, Server, dtls.SRTP_AEAD_AES_128_GCM)
	h.ours.Start()
	select {
	case <-answered:
	case <-time.After(10 * time.Second):
		t.Fatal("no answer to the ClientHello")
	}
	start := time.Now()
	h.ours.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	r := h.wait(t)
	if !errors.Is(r.err, ErrClosed) || r.s != nil {
		t.Errorf("OnReady(%v, %v), want ErrClosed", r.s, r.err)
	}
	peer.Close()
	_ = waitErr(t, done)
	waitGoroutines(t, base)
	if n := h.calls.Load(); n != 1 {
		t.Errorf("OnReady called %d times", n)
	}
}

func TestDTLSCloseAfterHandshakeNoLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	h := newHarness(t, Client, nil, nil, 0)
	h.ours.Start()
	peer, done := h.peer(t, Client, dtls.SRTP_AEAD_AES_128_GCM)
	if r := h.wait(t); r.err != nil {
		t.Fatal(r.err)
	}
	if err := waitErr(t, done); err != nil {
		t.Fatal(err)
	}
	// Close does not wait while OnReady runs (it may be called from it):
	// let OnReady return first.
	for deadline := time.Now().Add(5 * time.Second); h.ours.inReady.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("OnReady did not return")
		}
	}
	h.ours.Close()
	select {
	case <-h.ours.done:
	default:
		t.Error("Close returned before the goroutine ended")
	}
	peer.Close()
	waitGoroutines(t, base)
}

func TestDTLSCloseBeforeStart(t *testing.T) {
	h := newHarness(t, Client, nil, nil, 0)
	h.ours.Feed([]byte{22, 254, 253})
	h.ours.Close()
	h.ours.Close()
	h.ours.Start()
	r := h.wait(t)
	if !errors.Is(r.err, ErrClosed) || r.s != nil {
		t.Errorf("OnReady(%v, %v), want ErrClosed", r.s, r.err)
	}
	if n := h.calls.Load(); n != 1 || h.ours.Session() != nil {
		t.Errorf("OnReady called %d times", n)
	}
	if h.peerPC.Close(); len(h.peerPC.in) != 0 {
		t.Error("Start after Close sent something")
	}
}

func TestDTLSCloseFromOnReady(t *testing.T) {
	fp := sha256.Sum256([]byte("x"))
	closed := make(chan struct{})
	var d *DTLS
	d, err := NewDTLS(DTLSConfig{
		Cert:    mustCert(t),
		Role:    Client,
		Remote:  []Fingerprint{{"sha-256", fp[:]}},
		Send:    func([]byte) error { return nil },
		Timeout: 100 * time.Millisecond,
		OnReady: func(*Session, error) {
			d.Close()
			close(closed)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close from OnReady did not return")
	}
	d.Close()
}

// TestDTLSLostFinalFlight loses our last flight (ChangeCipherSpec and
// Finished, as server): the peer repeats its own, and our endpoint, done
// with its handshake but still reading, answers again.
func TestDTLSLostFinalFlight(t *testing.T) {
	var lost atomic.Int32
	h := newHarness(t, Server, nil, func(b []byte) bool {
		return b[0] == 20 && lost.CompareAndSwap(0, 1)
	}, 0)
	defer h.ours.Close()
	peer, done := h.peer(t, Server, dtls.SRTP_AEAD_AES_128_GCM)
	defer peer.Close()
	h.ours.Start()
	r := h.wait(t)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if err := waitErr(t, done); err != nil {
		t.Fatalf("peer handshake: %v", err)
	}
	if lost.Load() != 1 {
		t.Fatal("no final flight was lost: the test tests nothing")
	}
	checkKeys(t, r.s, peer, true, pionsrtp.ProtectionProfileAeadAes128Gcm)
}

func TestDTLSPeerCloseNotify(t *testing.T) {
	h := newHarness(t, Server, nil, nil, 0)
	defer h.ours.Close()
	peer, done := h.peer(t, Server, dtls.SRTP_AEAD_AES_128_GCM)
	h.ours.Start()
	if r := h.wait(t); r.err != nil {
		t.Fatal(r.err)
	}
	if err := waitErr(t, done); err != nil {
		t.Fatal(err)
	}
	peer.Close() // close_notify
	select {
	case <-h.ours.done:
	case <-time.After(10 * time.Second):
		t.Fatal("close_notify did not end our reading")
	}
	if h.ours.Session() == nil {
		t.Error("the session went with the DTLS association")
	}
}

func TestDTLSFeedNeverBlocks(t *testing.T) {
	h := newHarness(t, Server, nil, nil, 0)
	defer h.ours.Close()
	for range 10 * feedQueue {
		h.ours.Feed(make([]byte, 100))
	}
	h.ours.Feed(make([]byte, maxDatagram+1))
	if n := len(h.ours.pc.in); n != feedQueue {
		t.Errorf("%d queued, want %d", n, feedQueue)
	}
}

func TestNewDTLSErrors(t *testing.T) {
	cert := mustCert(t)
	fp := []Fingerprint{{"sha-256", make([]byte, 32)}}
	send := func([]byte) error { return nil }
	for _, tc := range []struct {
		name string
		cfg  DTLSConfig
		err  error
	}{
		{"no cert", DTLSConfig{Remote: fp, Send: send}, ErrConfig},
		{"no send", DTLSConfig{Cert: cert, Remote: fp}, ErrConfig},
		{"bad role", DTLSConfig{Cert: cert, Role: 7, Remote: fp, Send: send}, ErrConfig},
		{"no fingerprint", DTLSConfig{Cert: cert, Send: send}, ErrFingerprint},
	} {
		if _, err := NewDTLS(tc.cfg); !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
	}
}

func TestCertificate(t *testing.T) {
	a, b := mustCert(t), mustCert(t)
	if a.Fingerprint() == b.Fingerprint() {
		t.Error("two certificates, one fingerprint")
	}
	f, err := ParseFingerprint(a.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(a.cert.Certificate[0])
	if f.Hash != "sha-256" || !bytes.Equal(f.Value, sum[:]) {
		t.Errorf("fingerprint %q is not the certificate's", a.Fingerprint())
	}
	if !strings.HasPrefix(a.Fingerprint(), "sha-256 ") || strings.ToUpper(a.Fingerprint()[8:]) != a.Fingerprint()[8:] {
		t.Errorf("fingerprint %q: want sha-256 and upper-case hex", a.Fingerprint())
	}
	x, err := x509.ParseCertificate(a.cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	key, ok := x.PublicKey.(*ecdsa.PublicKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", x.PublicKey)
	}
	if x.SerialNumber.Sign() <= 0 || len(x.Subject.CommonName) != 32 {
		t.Errorf("serial %v, CN %q", x.SerialNumber, x.Subject.CommonName)
	}
	if err := x.CheckSignature(x.SignatureAlgorithm, x.RawTBSCertificate, x.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if d := time.Until(a.Expires()); d < 29*24*time.Hour || d > 31*24*time.Hour || !x.NotAfter.Equal(a.Expires()) {
		t.Errorf("expires in %v", d)
	}
}

func TestParseFingerprint(t *testing.T) {
	hexs := func(n int) string {
		p := make([]string, n)
		for i := range p {
			p[i] = fmt.Sprintf("%02X", i)
		}
		return strings.Join(p, ":")
	}
	seq := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}
	for _, tc := range []struct {
		value string
		hash  string
		n     int // digest bytes; 0: ErrMalformed
	}{
		{"sha-256 " + hexs(32), "sha-256", 32},
		{"SHA-256 " + strings.ToLower(hexs(32)), "sha-256", 32},
		{"sha-1 " + hexs(20), "sha-1", 20},
		{"sha-224 " + hexs(28), "sha-224", 28},
		{"sha-384 " + hexs(48), "sha-384", 48},
		{"sha-512\t" + hexs(64), "sha-512", 64},
		{"  sha-256  " + hexs(32) + " ", "sha-256", 32},
		{"", "", 0},
		{"sha-256", "", 0},
		{"sha-256 " + hexs(31), "", 0},
		{"sha-256 " + hexs(33), "", 0},
		{"sha-1 " + hexs(32), "", 0},
		{"md5 " + hexs(16), "", 0},
		{"md2 " + hexs(16), "", 0},
		{"sha-3 " + hexs(32), "", 0},
		{"sha-256 " + strings.ReplaceAll(hexs(32), ":", "-"), "", 0},
		{"sha-256 " + strings.ReplaceAll(hexs(32), ":", ""), "", 0},
		{"sha-256 " + strings.Replace(hexs(32), "0A", "0G", 1), "", 0},
		{"sha-256 " + hexs(32) + " extra", "", 0},
		{"sha-256 " + hexs(31) + ":+1", "", 0},
	} {
		f, err := ParseFingerprint(tc.value)
		if tc.n == 0 {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("%.30q: %v, want ErrMalformed", tc.value, err)
			}
			continue
		}
		if err != nil || f.Hash != tc.hash || !bytes.Equal(f.Value, seq(tc.n)) {
			t.Errorf("%.30q: %+v, %v", tc.value, f, err)
			continue
		}
		if f.String() != tc.hash+" "+hexs(tc.n) {
			t.Errorf("String() = %q", f.String())
		}
	}
}

func mustCert(t *testing.T) *Certificate {
	t.Helper()
	c, err := NewCertificate()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitGoroutines waits, bounded, for the goroutine count to come back to
// base: pion's read loops end just after the connection is closed.
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var _ net.PacketConn = (*feedConn)(nil)
