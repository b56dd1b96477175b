package main

import (
	"crypto/tls"
	"log/slog"
	"path/filepath"

	"github.com/sipwall/sipwall/sbc/config"
	"github.com/sipwall/sipwall/sbc/upstream"
	sbctls "github.com/sipwall/sipwall/tls"
)

// buildTLS makes the certificate manager from the tls section; nil when no
// certificate is configured (then no tls or wss listener is, either:
// config.Validate sees to it). ACME state lives beside the store.
func buildTLS(cfg *config.Config, log *slog.Logger) (*sbctls.Manager, error) {
	t := cfg.TLS
	if len(t.ACME.Names) == 0 && t.CertFile == "" {
		return nil, nil
	}
	opt := sbctls.Options{
		CertFile: t.CertFile, KeyFile: t.KeyFile,
		ClientCAFile: t.ClientCA, CRLFile: t.CRLFile,
		MinVersion: tls.VersionTLS12,
		Log:        log.With("component", "tls"),
	}
	if t.MinVersion == "1.3" {
		opt.MinVersion = tls.VersionTLS13
	}
	if len(t.ACME.Names) > 0 {
		a := t.ACME
		opt.Names, opt.Email, opt.CA, opt.CARootFile = a.Names, a.Email, a.CA, a.CARoot
		opt.HTTPPort, opt.ALPN, opt.RenewBefore = a.HTTPPort, a.ALPN, a.RenewBefore.D()
		opt.Storage = filepath.Join(cfg.Store.Path, "acme")
	}
	m, err := sbctls.New(opt)
	if err != nil {
		return nil, cfg.KeyError(tlsErrorKey(t), err)
	}
	return m, nil
}

// tlsErrorKey names the key a certificate error is reported on.
func tlsErrorKey(t config.TLS) string {
	if len(t.ACME.Names) > 0 {
		return "tls.acme"
	}
	return "tls.cert_file"
}

// upstreamTLS is the configuration of TLS connections toward upstreams and
// the trunk: nil when none uses TLS. Their certificates must chain to
// tls.upstream_ca and carry a configured tls_name (or the IP address).
func upstreamTLS(cfg *config.Config, targets []upstream.Target, outbound *upstream.Target) (*tls.Config, error) {
	var names []string
	for i, t := range targets {
		if t.Transport != "tls" {
			continue
		}
		name := cfg.Upstreams[i].TLSName
		if name == "" {
			name = t.Addr.Addr().String()
		}
		names = append(names, name)
	}
	if outbound != nil && outbound.Transport == "tls" {
		names = append(names, outbound.Addr.Addr().String())
	}
	if len(names) == 0 {
		return nil, nil
	}
	c, err := sbctls.UpstreamConfig(sbctls.ClientOptions{
		RootFile: cfg.TLS.UpstreamCA, CertFile: cfg.TLS.UpstreamCertFile, KeyFile: cfg.TLS.UpstreamKeyFile,
	}, names)
	if err != nil {
		return nil, cfg.KeyError("tls.upstream_ca", err)
	}
	return c, nil
}

// tlsListenerOptions bound handshakes on the tls and wss listeners.
func tlsListenerOptions(t config.TLS) sbctls.ListenerOptions {
	return sbctls.ListenerOptions{HandshakeTimeout: t.HandshakeTimeout.D(), Rate: float64(t.HandshakeRate), Burst: t.HandshakeBurst}
}
