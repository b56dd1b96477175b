package srtp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/logging"
	pionsrtp "github.com/pion/srtp/v3"
	"github.com/pion/transport/v5/deadline"
)

const (
	// certLifetime: a call outlives no certificate we hand out; the relay
	// makes a new one before Expires.
	certLifetime = 30 * 24 * time.Hour
	// defaultTimeout is DTLSConfig.Timeout's default.
	defaultTimeout = 10 * time.Second
	// feedQueue bounds the datagrams waiting for the handshake goroutine:
	// a flight is a handful of records, the rest is a flood.
	feedQueue = 64
	// maxDatagram is pion's read buffer: anything longer is not DTLS of ours.
	maxDatagram = 8192
)

// Certificate is our DTLS certificate: self-signed, as in every WebRTC
// stack, since the a=fingerprint in the signalled SDP, not a CA, vouches
// for it (RFC 5763 section 5). One can serve many calls.
type Certificate struct {
	cert        tls.Certificate
	expires     time.Time
	fingerprint string
}

// NewCertificate makes a self-signed ECDSA P-256 certificate with a random
// serial and common name (nothing in it names us), valid 30 days.
func NewCertificate() (*Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new certificate: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("new certificate: %w", err)
	}
	cn := make([]byte, 16)
	if _, err := rand.Read(cn); err != nil {
		return nil, fmt.Errorf("new certificate: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Second) // what the certificate can hold
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)), // positive, RFC 5280 section 4.1.2.2
		Subject:               pkix.Name{CommonName: hex.EncodeToString(cn)},
		NotBefore:             now.Add(-time.Hour), // a peer's clock a little behind
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("new certificate: %w", err)
	}
	sum := sha256.Sum256(der)
	return &Certificate{
		cert:        tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		expires:     tmpl.NotAfter,
		fingerprint: Fingerprint{Hash: "sha-256", Value: sum[:]}.String(),
	}, nil
}

// Fingerprint is the value of our a=fingerprint: "sha-256 AB:CD:...".
func (c *Certificate) Fingerprint() string { return c.fingerprint }

// Expires is the certificate's NotAfter.
func (c *Certificate) Expires() time.Time { return c.expires }

// Fingerprint is one a=fingerprint value (RFC 8122).
type Fingerprint struct {
	Hash  string // lower case: sha-1, sha-224, sha-256, sha-384 or sha-512
	Value []byte
}

// String is the value for a=fingerprint: (upper-case hex, RFC 8122's UHEX).
func (f Fingerprint) String() string {
	var b strings.Builder
	b.Grow(len(f.Hash) + 1 + 3*len(f.Value))
	b.WriteString(f.Hash)
	b.WriteByte(' ')
	const uhex = "0123456789ABCDEF"
	for i, v := range f.Value {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteByte(uhex[v>>4])
		b.WriteByte(uhex[v&15])
	}
	return b.String()
}

// hashLen gives the digest length of the hash functions of RFC 8122 we
// accept (md2 and md5 are not among them: RFC 8122 section 5).
var hashLen = map[string]int{"sha-1": 20, "sha-224": 28, "sha-256": 32, "sha-384": 48, "sha-512": 64}

// digest hashes der with the named function; nil for an unknown name.
func digest(hash string, der []byte) []byte {
	switch hash {
	case "sha-1":
		s := sha1.Sum(der)
		return s[:]
	case "sha-224":
		s := sha256.Sum224(der)
		return s[:]
	case "sha-256":
		s := sha256.Sum256(der)
		return s[:]
	case "sha-384":
		s := sha512.Sum384(der)
		return s[:]
	case "sha-512":
		s := sha512.Sum512(der)
		return s[:]
	}
	return nil
}

// ParseFingerprint reads the value of an a=fingerprint line: a hash name of
// RFC 8122 (case-insensitive), whitespace, then the digest as colon-separated
// hex pairs, exactly as long as the hash's. Anything else is ErrMalformed.
func ParseFingerprint(value string) (Fingerprint, error) {
	f := fields(value)
	if len(f) != 2 {
		return Fingerprint{}, fmt.Errorf("parse fingerprint: %d fields: %w", len(f), ErrMalformed)
	}
	hash := strings.ToLower(f[0])
	n, ok := hashLen[hash]
	if !ok {
		return Fingerprint{}, fmt.Errorf("parse fingerprint: hash %.20q: %w", f[0], ErrMalformed)
	}
	if len(f[1]) != 3*n-1 {
		return Fingerprint{}, fmt.Errorf("parse fingerprint: %d characters for %s: %w", len(f[1]), hash, ErrMalformed)
	}
	v := make([]byte, n)
	for i := range v {
		p := f[1][3*i:]
		if i < n-1 && p[2] != ':' {
			return Fingerprint{}, fmt.Errorf("parse fingerprint: separator: %w", ErrMalformed)
		}
		if _, err := hex.Decode(v[i:i+1], []byte(p[:2])); err != nil {
			return Fingerprint{}, fmt.Errorf("parse fingerprint: hex: %w", ErrMalformed)
		}
	}
	return Fingerprint{Hash: hash, Value: v}, nil
}

// Role is our DTLS role on a leg.
type Role int

const (
	Server Role = iota // a=setup:passive on our side
	Client             // a=setup:active on our side
)

// DTLSConfig configures one DTLS-SRTP endpoint.
type DTLSConfig struct {
	Cert   *Certificate
	Role   Role
	Remote []Fingerprint // the peer's certificate must match one of these (else the handshake fails with ErrFingerprint)
	// Send writes one datagram to the peer (the relay's socket). It must
	// not keep pkt, nor call Close.
	Send    func(pkt []byte) error
	Timeout time.Duration // whole handshake; 0: 10 s
	// OnReady is called exactly once: the SRTP session from the exported
	// keys, or why not (ErrFingerprint, ErrTimeout, ErrClosed, ErrUnsupported
	// when no SRTP profile was agreed, or pion's error). It runs on the
	// handshake goroutine, or on Close's when Close comes before Start.
	// It may call Close.
	OnReady func(*Session, error)
}

// DTLS is one DTLS-SRTP endpoint (RFC 5763/5764) on a leg: pion runs the
// handshake over datagrams the relay hands to Feed and sends through
// DTLSConfig.Send; the SRTP keys are exported from it into a Session.
type DTLS struct {
	cfg     DTLSConfig
	pc      *feedConn
	conn    *dtls.Conn
	session atomic.Pointer[Session]

	mu      sync.Mutex
	started bool
	closed  bool
	done    chan struct{} // closed when Start's goroutine ends

	readyOnce sync.Once
	inReady   atomic.Bool
	verified  atomic.Bool // the peer's certificate matched
	mismatch  atomic.Bool // a peer's certificate did not
}

// The profiles we offer, in our order of preference: Chrome and baresip
// offer both.
var dtlsProfiles = map[dtls.SRTPProtectionProfile]string{
	dtls.SRTP_AEAD_AES_128_GCM:       AEAD_AES_128_GCM,
	dtls.SRTP_AES128_CM_HMAC_SHA1_80: AES_CM_128_HMAC_SHA1_80,
}

// NewDTLS prepares the endpoint; nothing is sent before Start.
func NewDTLS(cfg DTLSConfig) (*DTLS, error) {
	switch {
	case cfg.Cert == nil:
		return nil, fmt.Errorf("new dtls: no certificate: %w", ErrConfig)
	case cfg.Send == nil:
		return nil, fmt.Errorf("new dtls: no Send: %w", ErrConfig)
	case cfg.Role != Server && cfg.Role != Client:
		return nil, fmt.Errorf("new dtls: role %d: %w", cfg.Role, ErrConfig)
	case len(cfg.Remote) == 0:
		return nil, fmt.Errorf("new dtls: no remote fingerprint: %w", ErrFingerprint)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	cfg.Remote = append([]Fingerprint(nil), cfg.Remote...)
	d := &DTLS{cfg: cfg, pc: newFeedConn(cfg.Send), done: make(chan struct{})}
	shared := []dtls.Option{
		dtls.WithCertificates(cfg.Cert.cert),
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80),
		dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret),
		// No CA: the fingerprint check below is the verification.
		dtls.WithInsecureSkipVerify(true),
		dtls.WithVerifyPeerCertificate(d.verify),
		// pion's own logs go nowhere: nothing of a handshake reaches ours.
		dtls.WithLoggerFactory(quietLogger{}),
	}
	var err error
	if cfg.Role == Client {
		opts := make([]dtls.ClientOption, 0, len(shared))
		for _, o := range shared {
			opts = append(opts, o)
		}
		d.conn, err = dtls.ClientWithOptions(d.pc, peerAddr, opts...)
	} else {
		opts := make([]dtls.ServerOption, 0, len(shared)+1)
		for _, o := range shared {
			opts = append(opts, o)
		}
		// The client's certificate is what its fingerprint names.
		opts = append(opts, dtls.WithClientAuth(dtls.RequireAnyClientCert))
		d.conn, err = dtls.ServerWithOptions(d.pc, peerAddr, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("new dtls: %w", err)
	}
	return d, nil
}

// verify matches the peer's certificate against the SDP's fingerprints.
func (d *DTLS) verify(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) > 0 {
		for _, f := range d.cfg.Remote {
			if sum := digest(strings.ToLower(f.Hash), raw[0]); sum != nil && bytes.Equal(sum, f.Value) {
				d.verified.Store(true)
				return nil
			}
		}
	}
	d.mismatch.Store(true)
	return fmt.Errorf("dtls: peer certificate: %w", ErrFingerprint)
}

// Start starts the handshake in its own goroutine; as Client it sends the
// ClientHello through Send. Once only; nothing after Close.
func (d *DTLS) Start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started || d.closed {
		return
	}
	d.started = true
	go d.run()
}

// Feed hands over one DTLS datagram received from the peer. It copies pkt
// and never blocks: past feedQueue waiting datagrams, it drops.
func (d *DTLS) Feed(pkt []byte) { d.pc.feed(pkt) }

// Session is the SRTP session, nil until the handshake is done.
func (d *DTLS) Session() *Session { return d.session.Load() }

// Close ends everything, goroutines included (a close_notify goes to the
// peer if the handshake was done), and returns once they have ended, except
// while OnReady runs: Close may be called from OnReady, so then it does not
// wait, and the goroutine ends as OnReady returns. Safe to call twice and
// before Start.
func (d *DTLS) Close() {
	d.mu.Lock()
	first := !d.closed
	d.closed = true
	started := d.started
	d.mu.Unlock()
	if first {
		// pion aborts a handshake under way and waits for it.
		_ = d.conn.Close()
		d.pc.Close()
		if !started {
			d.ready(nil, fmt.Errorf("dtls: %w", ErrClosed))
		}
	}
	if started && !d.inReady.Load() {
		<-d.done
	}
}

func (d *DTLS) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed
}

// run is the handshake, then the reading that keeps pion answering the
// peer: a repeated final flight of the peer gets ours again, alerts and
// close_notify are consumed.
func (d *DTLS) run() {
	defer close(d.done)
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Timeout)
	err := d.conn.HandshakeContext(ctx)
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	cancel()
	var sess *Session
	if err == nil {
		sess, err = d.keys()
	} else {
		err = d.why(err, timedOut)
	}
	if err != nil {
		_ = d.conn.Close()
		d.ready(nil, err)
		return
	}
	d.session.Store(sess)
	d.ready(sess, nil)
	buf := make([]byte, maxDatagram)
	for {
		// Application data has no business here and is dropped; a
		// non-fatal alert comes back as an error and reading goes on.
		if _, err := d.conn.Read(buf); errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || d.isClosed() {
			return
		}
	}
}

// why names the reason a handshake failed.
func (d *DTLS) why(err error, timedOut bool) error {
	switch {
	case d.mismatch.Load():
		return fmt.Errorf("dtls handshake: %w", ErrFingerprint)
	case d.isClosed():
		return fmt.Errorf("dtls handshake: %w", ErrClosed)
	case timedOut:
		return fmt.Errorf("dtls handshake: %w after %v", ErrTimeout, d.cfg.Timeout)
	}
	return fmt.Errorf("dtls handshake: %w", err)
}

// keys builds the Session from the keying material the handshake exports
// (RFC 5764 section 4.2).
func (d *DTLS) keys() (*Session, error) {
	if !d.verified.Load() {
		// pion let a handshake through without a certificate to check.
		return nil, fmt.Errorf("dtls: no peer certificate checked: %w", ErrFingerprint)
	}
	p, ok := d.conn.SelectedSRTPProtectionProfile()
	name, known := dtlsProfiles[p]
	if !ok || !known {
		return nil, fmt.Errorf("dtls: no SRTP profile agreed: %w", ErrUnsupported)
	}
	s, _ := lookup(name)
	state, ok := d.conn.ConnectionState()
	if !ok {
		return nil, errors.New("dtls: no connection state after the handshake")
	}
	cfg := pionsrtp.Config{Profile: s.profile}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, d.cfg.Role == Client); err != nil {
		return nil, fmt.Errorf("dtls: export keys: %w", err)
	}
	k := cfg.Keys
	local := append(append(make([]byte, 0, s.keyLen), k.LocalMasterKey...), k.LocalMasterSalt...)
	remote := append(append(make([]byte, 0, s.keyLen), k.RemoteMasterKey...), k.RemoteMasterSalt...)
	return newSession(s, local, remote)
}

// ready calls OnReady, once.
func (d *DTLS) ready(s *Session, err error) {
	d.readyOnce.Do(func() {
		if d.cfg.OnReady == nil {
			return
		}
		d.inReady.Store(true)
		defer d.inReady.Store(false)
		d.cfg.OnReady(s, err)
	})
}

// feedConn is the net.PacketConn pion's handshake runs on: reads come from
// Feed, writes go to DTLSConfig.Send. pion cancels a read by setting a read
// deadline in the past, so read deadlines are real; writes do not block
// here, so write deadlines are accepted and ignored.
type feedConn struct {
	in     chan []byte
	closed chan struct{}
	once   sync.Once
	send   func([]byte) error
	rd     *deadline.Deadline
}

var _ net.PacketConn = (*feedConn)(nil)

func newFeedConn(send func([]byte) error) *feedConn {
	return &feedConn{
		in:     make(chan []byte, feedQueue),
		closed: make(chan struct{}),
		send:   send,
		rd:     deadline.New(),
	}
}

func (c *feedConn) feed(pkt []byte) {
	if len(pkt) == 0 || len(pkt) > maxDatagram {
		return
	}
	select {
	case <-c.closed:
		return
	default:
	}
	select {
	case c.in <- bytes.Clone(pkt):
	default:
	}
}

func (c *feedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case <-c.closed:
		return 0, nil, net.ErrClosed
	default:
	}
	select {
	case p := <-c.in:
		return copy(b, p), peerAddr, nil
	case <-c.closed:
		return 0, nil, net.ErrClosed
	case <-c.rd.Done():
		return 0, nil, os.ErrDeadlineExceeded
	}
}

func (c *feedConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	if err := c.send(b); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (c *feedConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *feedConn) LocalAddr() net.Addr { return localAddr }

func (c *feedConn) SetDeadline(t time.Time) error {
	c.rd.Set(t)
	return nil
}

func (c *feedConn) SetReadDeadline(t time.Time) error {
	c.rd.Set(t)
	return nil
}

func (c *feedConn) SetWriteDeadline(time.Time) error { return nil }

// feedAddr names the two ends of a feedConn: the relay knows the real ones.
type feedAddr string

func (a feedAddr) Network() string { return "udp" }
func (a feedAddr) String() string  { return string(a) }

var (
	peerAddr  net.Addr = feedAddr("peer")
	localAddr net.Addr = feedAddr("local")
)

// quietLogger drops pion's logs.
type quietLogger struct{}

func (quietLogger) NewLogger(string) logging.LeveledLogger { return quietLogger{} }
func (quietLogger) Trace(string)                           {}
func (quietLogger) Tracef(string, ...any)                  {}
func (quietLogger) Debug(string)                           {}
func (quietLogger) Debugf(string, ...any)                  {}
func (quietLogger) Info(string)                            {}
func (quietLogger) Infof(string, ...any)                   {}
func (quietLogger) Warn(string)                            {}
func (quietLogger) Warnf(string, ...any)                   {}
func (quietLogger) Error(string)                           {}
func (quietLogger) Errorf(string, ...any)                  {}
