package sbctls

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// renewCheckInterval is how often certmagic looks for certificates to
// renew (tests shorten it). certmagic also renews when less than five of
// these intervals are left before expiry.
var renewCheckInterval = certmagic.DefaultRenewCheckInterval

// acmeState is the certmagic side of a Manager.
type acmeState struct {
	m      *Manager
	zlog   *zap.Logger
	cache  *certmagic.Cache
	cfg    *certmagic.Config // serves handshakes, obtains
	issuer *certmagic.ACMEIssuer
	tmpl   certmagic.ACMEIssuer
	store  certmagic.Storage

	// blocker holds the loopback port certmagic is told to use for its
	// own TLS-ALPN-01 server, so that it never starts one: the challenge
	// is answered by the TLS listeners through ServerConfig.
	blocker net.Listener

	mu      sync.Mutex
	byRatio map[float64]*certmagic.Config
}

func (m *Manager) setupACME() error {
	opt := m.opt
	if opt.Storage == "" {
		return errors.New("tls: ACME needs a storage directory")
	}
	if opt.HTTPPort <= 0 && !opt.ALPN {
		return errors.New("tls: ACME needs an HTTP-01 port or TLS-ALPN-01")
	}
	if opt.HTTPPort > 65535 {
		return fmt.Errorf("tls: HTTP-01 port %d out of range", opt.HTTPPort)
	}
	for _, n := range opt.Names {
		if !certmagic.SubjectQualifiesForCert(n) {
			return fmt.Errorf("tls: %q is not a name a certificate can be obtained for", n)
		}
	}
	a := &acmeState{m: m, zlog: zapToSlog(m.log), store: &certmagic.FileStorage{Path: opt.Storage}, byRatio: map[float64]*certmagic.Config{}}
	a.tmpl = certmagic.ACMEIssuer{
		CA:                      opt.CA,
		Email:                   opt.Email,
		Agreed:                  true,
		DisableHTTPChallenge:    opt.HTTPPort <= 0,
		DisableTLSALPNChallenge: !opt.ALPN,
		// certmagic would bind ListenHost:port itself for a challenge; the
		// ports below are held by this package (HTTP-01 server in Run,
		// blocker for TLS-ALPN-01), so it finds them taken and leaves the
		// answer to them.
		ListenHost:  "127.0.0.1",
		AltHTTPPort: opt.HTTPPort,
		Logger:      a.zlog,
	}
	if opt.CARootFile != "" {
		pool, err := loadPool(opt.CARootFile)
		if err != nil {
			return err
		}
		a.tmpl.TrustedRoots = pool
	}
	if opt.ALPN {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("tls: TLS-ALPN-01 set-up: %w", err)
		}
		a.blocker = ln
		a.tmpl.AltTLSALPNPort = ln.Addr().(*net.TCPAddr).Port
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   a.configForCert,
		RenewCheckInterval: renewCheckInterval,
		Logger:             a.zlog,
	})
	a.cfg, a.issuer = a.newConfig(0)
	m.acme = a

	// serve what Storage already has, without contacting the CA
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range opt.Names {
		cert, err := a.cfg.CacheManagedCertificate(ctx, n)
		switch {
		case err == nil:
			m.log.Info("tls: certificate loaded from storage", "name", n, "not_after", cert.Leaf.NotAfter)
		case errors.Is(err, fs.ErrNotExist):
			m.log.Info("tls: no certificate in storage yet; it will be obtained", "name", n)
		default:
			m.log.Error("tls: loading certificate from storage", "name", n, "err", err)
		}
	}
	return nil
}

// newConfig makes a certmagic configuration with its ACME issuer; ratio is
// the renewal window as a share of the lifetime (0: certmagic's default).
func (a *acmeState) newConfig(ratio float64) (*certmagic.Config, *certmagic.ACMEIssuer) {
	cfg := certmagic.New(a.cache, certmagic.Config{
		RenewalWindowRatio: ratio,
		Storage:            a.store,
		Logger:             a.zlog,
		OnEvent:            a.onEvent,
		// phones often connect by address, without SNI, or with another
		// name: serve the first name's certificate then
		DefaultServerName:  a.m.opt.Names[0],
		FallbackServerName: a.m.opt.Names[0],
	})
	iss := certmagic.NewACMEIssuer(cfg, a.tmpl)
	cfg.Issuers = []certmagic.Issuer{iss}
	return cfg, iss
}

// configForCert gives certmagic the configuration to maintain cert with:
// RenewBefore is a duration, certmagic's window a share of the lifetime,
// so each lifetime gets its ratio.
func (a *acmeState) configForCert(cert certmagic.Certificate) (*certmagic.Config, error) {
	rb := a.m.opt.RenewBefore
	life := cert.Lifetime()
	if rb <= 0 || life <= 0 {
		return a.cfg, nil
	}
	ratio := math.Min(1, math.Ceil(float64(rb)/float64(life)*1000)/1000)
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.byRatio[ratio]
	if !ok {
		c, _ = a.newConfig(ratio)
		a.byRatio[ratio] = c
	}
	return c, nil
}

func (a *acmeState) onEvent(ctx context.Context, event string, data map[string]any) error {
	m := a.m
	name, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtained":
		if renewal {
			m.count(func(s *Stats) { s.Renewed++ })
			m.log.Info("tls: certificate renewed", "name", name, "issuer", data["issuer"])
		} else {
			m.count(func(s *Stats) { s.Obtained++ })
			m.log.Info("tls: certificate obtained", "name", name, "issuer", data["issuer"])
		}
	case "cert_failed":
		msg := "ACME failure"
		if err, ok := data["error"].(error); ok && err != nil {
			msg = err.Error()
		}
		what := "obtaining"
		if renewal {
			what = "renewing"
		}
		msg = fmt.Sprintf("%s certificate for %s: %s", what, name, msg)
		m.count(func(s *Stats) { s.Failures++; s.LastError = msg })
		m.log.Error("tls: ACME "+what+" failed; the current certificate stays", "name", name, "err", msg)
	}
	return nil
}

// runACME serves HTTP-01, starts management of the names (stored ones are
// already served; missing ones are ordered; due ones renewed) and waits
// for ctx.
func (a *acmeState) runACME(ctx context.Context) {
	m := a.m
	var srv *http.Server
	srvDone := make(chan struct{})
	if m.opt.HTTPPort > 0 {
		addr := net.JoinHostPort(m.opt.HTTPAddr, strconv.Itoa(m.opt.HTTPPort))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			m.log.Error("tls: HTTP-01 listener", "addr", addr, "err", err)
			m.count(func(s *Stats) { s.LastError = "HTTP-01 listener: " + err.Error() })
			close(srvDone)
		} else {
			srv = &http.Server{
				Handler:           a.issuer.HTTPChallengeHandler(http.NotFoundHandler()),
				ReadHeaderTimeout: 5 * time.Second,
				ReadTimeout:       10 * time.Second,
				WriteTimeout:      10 * time.Second,
				IdleTimeout:       30 * time.Second,
				MaxHeaderBytes:    8 << 10,
				BaseContext:       func(net.Listener) context.Context { return ctx },
			}
			srv.SetKeepAlivesEnabled(false)
			m.log.Info("tls: answering ACME HTTP-01", "addr", ln.Addr().String())
			go func() {
				defer close(srvDone)
				if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
					m.log.Error("tls: HTTP-01 server", "err", err)
				}
			}()
		}
	} else {
		close(srvDone)
	}

	if err := a.cfg.ManageAsync(ctx, m.opt.Names); err != nil {
		m.log.Error("tls: ACME management", "err", err)
		m.count(func(s *Stats) { s.Failures++; s.LastError = err.Error() })
	}
	// certificates loaded from storage in New are not checked by
	// ManageAsync (already managed); check them now, not at the first
	// maintenance tick
	if err := a.cache.RenewManagedCertificates(ctx); err != nil {
		m.log.Error("tls: checking certificates for renewal", "err", err)
	}

	<-ctx.Done()
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
		srv.Close()
	}
	<-srvDone
}

// notAfter is the expiry of the certificate served for the first name.
func (a *acmeState) notAfter() time.Time {
	var t time.Time
	for _, c := range a.cache.AllMatchingCertificates(a.m.opt.Names[0]) {
		if c.Leaf != nil && c.Leaf.NotAfter.After(t) {
			t = c.Leaf.NotAfter
		}
	}
	return t
}

func (a *acmeState) close() {
	a.cache.Stop()
	if a.blocker != nil {
		a.blocker.Close()
	}
}
