// Package sbctls provides sipwall's certificates and TLS settings: ACME
// certificates through certmagic or certificate files reloaded when they
// change, the server configuration of the TLS and WSS listeners, the
// client configuration toward upstreams, and the identity of a peer from its
// client certificate (mutual TLS for trunks). See README.md.
package sbctls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mholt/acmez/v3"
)

// Options configure a Manager. Either ACME (Names set) or files (CertFile
// and KeyFile set) provide the certificate.
type Options struct {
	// Names are the DNS names to obtain certificates for by ACME.
	Names []string
	// Email is the ACME account's contact (optional).
	Email string
	// CA is the ACME directory URL (default: Let's Encrypt production).
	CA string
	// CARootFile is a PEM bundle of roots to trust for the ACME server's
	// HTTPS (for a private ACME server); empty: the system roots.
	CARootFile string
	// HTTPPort is the port HTTP-01 challenges are answered on (0: no
	// HTTP-01). HTTPAddr is the address it binds (default all).
	HTTPPort int
	HTTPAddr string
	// ALPN answers TLS-ALPN-01 challenges on the TLS listeners.
	ALPN bool
	// Storage is the directory ACME accounts, keys and certificates are
	// kept in, so a restart reuses them.
	Storage string
	// RenewBefore renews a certificate when less than this much of its
	// validity is left (0: certmagic's default, a third of the lifetime).
	RenewBefore time.Duration

	// CertFile and KeyFile are a PEM certificate chain and its key; they
	// are reloaded when they change (checked every ReloadInterval, default
	// 10s); a bad new pair keeps the old one.
	CertFile, KeyFile string
	ReloadInterval    time.Duration

	// MinVersion is the lowest TLS version accepted (default and floor:
	// TLS 1.2).
	MinVersion uint16
	// ClientCAFile is a PEM bundle of CAs whose client certificates are
	// verified when a peer presents one (mutual TLS for trunks); CRLFile a
	// PEM or DER revocation list checked against them.
	ClientCAFile, CRLFile string

	Log *slog.Logger
}

// Stats describe the certificates and their upkeep.
type Stats struct {
	// NotAfter is the expiry of the certificate served (zero: none yet).
	NotAfter time.Time
	// Obtained and Renewed count certificates obtained and renewed by ACME;
	// Failures counts failed ACME attempts; Reloads counts certificate file
	// reloads; ReloadErrors bad files kept out.
	Obtained, Renewed, Failures, Reloads, ReloadErrors uint64
	// LastError is the last ACME or reload error ("" when none).
	LastError string
}

// ErrNoCertificate is returned when Options name neither ACME nor files.
var ErrNoCertificate = errors.New("tls: no certificate source: set ACME names or a certificate and key file")

const defaultReloadInterval = 10 * time.Second

// Manager provides the certificate and the TLS configurations.
type Manager struct {
	opt        Options
	log        *slog.Logger
	minVersion uint16

	// client certificates
	clientCAs *x509.CertPool
	crl       atomic.Pointer[crlSet]
	crlWatch  *fileWatch

	// files
	cert      atomic.Pointer[tls.Certificate]
	certWatch *fileWatch

	// ACME
	acme *acmeState

	mu    sync.Mutex
	stats Stats

	closeCtx    context.Context
	closeCancel context.CancelFunc
	running     atomic.Bool
	runDone     chan struct{}
	closeOnce   sync.Once
}

// New checks opt and prepares the certificate source: files are loaded at
// once (an error names the file); ACME is set up and a certificate already
// in Storage is loaded, but nothing is ordered before Run.
func New(opt Options) (*Manager, error) {
	acmeOn := len(opt.Names) > 0
	filesOn := opt.CertFile != "" || opt.KeyFile != ""
	switch {
	case !acmeOn && !filesOn:
		return nil, ErrNoCertificate
	case acmeOn && filesOn:
		return nil, errors.New("tls: set either ACME names or a certificate and key file, not both")
	case filesOn && (opt.CertFile == "" || opt.KeyFile == ""):
		return nil, errors.New("tls: a certificate file needs its key file and the other way round")
	}
	minV, err := minVersion(opt.MinVersion)
	if err != nil {
		return nil, err
	}
	if opt.ReloadInterval <= 0 {
		opt.ReloadInterval = defaultReloadInterval
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{opt: opt, log: opt.Log.With("component", "tls"), minVersion: minV, runDone: make(chan struct{})}
	m.closeCtx, m.closeCancel = context.WithCancel(context.Background())

	if opt.ClientCAFile != "" {
		pool, err := loadPool(opt.ClientCAFile)
		if err != nil {
			return nil, err
		}
		m.clientCAs = pool
		if opt.CRLFile != "" {
			m.crlWatch = &fileWatch{paths: []string{opt.CRLFile}}
			data, sum, err := m.crlWatch.read()
			if err != nil {
				return nil, fmt.Errorf("tls: CRL file: %w", err)
			}
			set, err := parseCRL(data[0])
			if err != nil {
				return nil, fmt.Errorf("tls: CRL file %s: %w", opt.CRLFile, err)
			}
			m.crlWatch.last = sum
			m.crl.Store(set)
		}
	} else if opt.CRLFile != "" {
		return nil, errors.New("tls: a CRL file needs a client CA file")
	}

	if filesOn {
		m.certWatch = &fileWatch{paths: []string{opt.CertFile, opt.KeyFile}}
		data, sum, err := m.certWatch.read()
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		cert, err := parsePair(data[0], data[1])
		if err != nil {
			return nil, fmt.Errorf("tls: certificate %s and key %s: %w", opt.CertFile, opt.KeyFile, err)
		}
		if time.Now().After(cert.Leaf.NotAfter) {
			m.log.Warn("certificate file has expired", "file", opt.CertFile, "not_after", cert.Leaf.NotAfter)
		}
		m.certWatch.last = sum
		m.cert.Store(cert)
		return m, nil
	}

	if err := m.setupACME(); err != nil {
		m.closeCancel()
		return nil, err
	}
	return m, nil
}

func minVersion(v uint16) (uint16, error) {
	switch v {
	case 0, tls.VersionSSL30, tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12:
		return tls.VersionTLS12, nil
	case tls.VersionTLS13:
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("tls: unknown minimum TLS version %#04x", v)
}

// Run keeps certificates current until ctx ends: ACME obtains and renews
// (serving HTTP-01 on HTTPPort when set), files are reloaded when they
// change. Failures are logged and counted; the certificate being served
// stays until a good one replaces it.
func (m *Manager) Run(ctx context.Context) {
	if !m.running.CompareAndSwap(false, true) {
		m.log.Warn("tls manager: Run called twice; ignored")
		return
	}
	defer close(m.runDone)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(m.closeCtx, cancel)
	defer stop()

	var wg sync.WaitGroup
	if m.acme != nil {
		wg.Add(1)
		go func() { defer wg.Done(); m.acme.runACME(ctx) }()
	}
	if m.certWatch != nil || m.crlWatch != nil {
		wg.Add(1)
		go func() { defer wg.Done(); m.reloadLoop(ctx) }()
	}
	wg.Wait()
}

// reloadLoop polls the certificate and CRL files every ReloadInterval.
func (m *Manager) reloadLoop(ctx context.Context) {
	t := time.NewTicker(m.opt.ReloadInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.reloadCert()
			m.reloadCRL()
		}
	}
}

// ServerConfig is the configuration of the TLS and WSS listeners: TLS 1.2
// or later, modern cipher suites, the certificate by SNI, TLS-ALPN-01
// when enabled, client certificates verified when presented and a client
// CA is configured (and checked against the CRL).
func (m *Manager) ServerConfig() *tls.Config {
	c := &tls.Config{
		MinVersion:     m.minVersion,
		CipherSuites:   cipherSuites(),
		GetCertificate: m.getCertificate,
	}
	if m.acme != nil && m.opt.ALPN {
		// TLS-ALPN-01 (RFC 8737): the CA offers only acme-tls/1 and
		// certmagic's GetCertificate answers with the challenge
		// certificate. http/1.1 is listed too: a server with NextProtos
		// refuses a client whose ALPN offer has none of them, and
		// browsers opening WSS offer http/1.1 (raw SIP over TLS clients
		// offer nothing and are unaffected).
		c.NextProtos = []string{acmez.ACMETLS1Protocol, "http/1.1"}
	}
	if m.clientCAs != nil {
		c.ClientCAs = m.clientCAs
		c.ClientAuth = tls.VerifyClientCertIfGiven
		c.VerifyConnection = m.verifyConnection
	}
	return c
}

// cipherSuites are the TLS 1.2 suites allowed: ECDHE key exchange with an
// AEAD (AES-GCM or ChaCha20-Poly1305). TLS 1.3 suites are all AEAD and
// not configurable.
func cipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
	}
}

func (m *Manager) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if m.acme != nil {
		return m.acme.cfg.GetCertificate(hello)
	}
	if c := m.cert.Load(); c != nil {
		return c, nil
	}
	return nil, errors.New("tls: no certificate loaded")
}

// Stats reports the certificates' state.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	s := m.stats
	m.mu.Unlock()
	if m.acme != nil {
		s.NotAfter = m.acme.notAfter()
	} else if c := m.cert.Load(); c != nil && c.Leaf != nil {
		s.NotAfter = c.Leaf.NotAfter
	}
	return s
}

func (m *Manager) count(f func(*Stats)) {
	m.mu.Lock()
	f(&m.stats)
	m.mu.Unlock()
}

// Close stops what Run started.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.closeCancel()
		if m.running.Load() {
			<-m.runDone
		}
		if m.acme != nil {
			m.acme.close()
		}
	})
	return nil
}

// ListenerOptions bound TLS handshakes on a listener.
type ListenerOptions struct {
	// HandshakeTimeout bounds a handshake (default 5s).
	HandshakeTimeout time.Duration
	// Rate and Burst bound the handshakes one source IP may start per
	// second; over it the connection is closed before any handshake work
	// (Rate 0: no limit).
	Rate  float64
	Burst int
	// OnRefused is called for each connection refused by the rate limit.
	OnRefused func()
}

// NewListener returns a listener whose connections are TLS server
// connections with cfg; the handshake runs on the first Read or Write
// under HandshakeTimeout, so Accept never blocks on a slow peer.
//
// The connections are *Conn, which embeds the *tls.Conn (ConnectionState,
// NetConn and the rest are its own); RemoteAddr is the TCP peer's.
func NewListener(inner net.Listener, cfg *tls.Config, opt ListenerOptions) net.Listener {
	return newListener(inner, cfg, opt)
}

// ClientOptions configure TLS toward an upstream.
type ClientOptions struct {
	// ServerName is the name the upstream's certificate must carry (SAN).
	ServerName string
	// RootFile is a PEM bundle of roots to verify it with (empty: system).
	RootFile string
	// CertFile and KeyFile are the client certificate presented (optional).
	CertFile, KeyFile string
}

// ClientConfig builds the TLS configuration toward an upstream: TLS 1.2 or
// later, the upstream's name verified.
func ClientConfig(opt ClientOptions) (*tls.Config, error) {
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: cipherSuites(),
		ServerName:   opt.ServerName,
	}
	if opt.RootFile != "" {
		pool, err := loadPool(opt.RootFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	if opt.CertFile != "" || opt.KeyFile != "" {
		if opt.CertFile == "" || opt.KeyFile == "" {
			return nil, errors.New("tls: a client certificate file needs its key file and the other way round")
		}
		cert, err := tls.LoadX509KeyPair(opt.CertFile, opt.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client certificate %s and key %s: %w", opt.CertFile, opt.KeyFile, err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// Identity returns the name a verified client certificate proves: the
// first DNS SAN, else the subject common name; ok is false when the peer
// presented no certificate verified against the client CAs.
func Identity(cs tls.ConnectionState) (name string, ok bool) {
	leaf := verifiedLeaf(cs)
	if leaf == nil {
		return "", false
	}
	if len(leaf.DNSNames) > 0 {
		return leaf.DNSNames[0], true
	}
	if leaf.Subject.CommonName != "" {
		return leaf.Subject.CommonName, true
	}
	return "", false
}

// Fingerprint is the SHA-256 of a verified peer's leaf certificate in
// lower-case hex ("" when there is none).
func Fingerprint(cs tls.ConnectionState) string {
	leaf := verifiedLeaf(cs)
	if leaf == nil {
		return ""
	}
	return sha256Hex(leaf.Raw)
}

func verifiedLeaf(cs tls.ConnectionState) *x509.Certificate {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return nil
	}
	return cs.VerifiedChains[0][0]
}

// UpstreamConfig is the TLS configuration for every connection sipwall
// opens toward a TLS upstream or trunk. The chain is verified against
// opt.RootFile (or the system roots) as in ClientConfig, and the leaf must
// be valid for one of names: the upstreams' configured names, or their IP
// addresses (as IP SANs). The SIP stack dials by IP address and one
// configuration serves every TLS upstream, so a certificate valid for any
// of the names is accepted from any of them: all are the operator's own
// peers, and the name list is short (often one). opt.ServerName is ignored.
func UpstreamConfig(opt ClientOptions, names []string) (*tls.Config, error) {
	if len(names) == 0 {
		return nil, errors.New("tls: no upstream name to verify")
	}
	opt.ServerName = ""
	c, err := ClientConfig(opt)
	if err != nil {
		return nil, err
	}
	roots := c.RootCAs
	names = append([]string(nil), names...)
	// Go's own check would compare the certificate with the address the
	// stack puts in ServerName; VerifyConnection does the same work with
	// the configured names instead.
	c.InsecureSkipVerify = true
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: upstream presented no certificate")
		}
		inter := x509.NewCertPool()
		for _, ic := range cs.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		leaf := cs.PeerCertificates[0]
		if _, err := leaf.Verify(opts); err != nil {
			return fmt.Errorf("tls: upstream certificate: %w", err)
		}
		for _, n := range names {
			if leaf.VerifyHostname(strings.Trim(n, "[]")) == nil {
				return nil
			}
		}
		return fmt.Errorf("tls: upstream certificate valid for none of %s", strings.Join(names, ", "))
	}
	return c, nil
}
