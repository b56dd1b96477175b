package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/sipwall/sipwall/sbc/config"
)

// demoWSS adds a WSS listener on addr (the browsers' side, external) to
// cfg. Its certificate is certFile and keyFile, or when both are empty a
// self-signed one written into dir, the demo's temporary store, so that
// the tls section is configured as `run` would read it from a file.
func demoWSS(cfg *config.Config, addr, certFile, keyFile, dir string) error {
	if (certFile == "") != (keyFile == "") {
		return errors.New("demo: -cert and -key go together")
	}
	if certFile == "" {
		var err error
		if certFile, keyFile, err = writeSelfSigned(dir); err != nil {
			return fmt.Errorf("demo: self-signed certificate: %w", err)
		}
	}
	cfg.TLS.CertFile, cfg.TLS.KeyFile = certFile, keyFile
	cfg.Listen = append(cfg.Listen, config.Listener{Transport: config.TransportWSS, Addr: addr, Side: "external"})
	return nil
}

// writeSelfSigned writes a self-signed ECDSA P-256 certificate for
// 127.0.0.1 and localhost, valid for a week, and its key into dir.
// Browsers accept it only when told to (a flag, or an exception the
// user grants once on https://ADDR/).
func writeSelfSigned(dir string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "sipwall demo"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "demo-wss.pem"), filepath.Join(dir, "demo-wss.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}
