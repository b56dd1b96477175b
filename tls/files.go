package sbctls

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// fileWatch notices when a set of files changes, by the SHA-256 of their
// contents (they are small; reading them at each poll also catches a
// change that keeps size and modification time).
type fileWatch struct {
	paths []string
	last  [32]byte // sum of the contents last tried (good or bad)
}

// read returns the files' contents and their combined sum.
func (w *fileWatch) read() ([][]byte, [32]byte, error) {
	h := sha256.New()
	out := make([][]byte, len(w.paths))
	for i, p := range w.paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, [32]byte{}, err
		}
		out[i] = b
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return out, sum, nil
}

// changed reads the files and reports whether they differ from the last
// contents tried; a read error counts as a change only once.
func (w *fileWatch) changed() ([][]byte, bool, error) {
	data, sum, err := w.read()
	if err != nil {
		// remember the failure so it is reported once, not at every poll
		errSum := sha256.Sum256([]byte("error:" + err.Error()))
		if errSum == w.last {
			return nil, false, nil
		}
		w.last = errSum
		return nil, true, err
	}
	if sum == w.last {
		return nil, false, nil
	}
	w.last = sum
	return data, true, nil
}

// parsePair parses a PEM certificate chain and key and checks the leaf.
func parsePair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

func (m *Manager) reloadCert() {
	if m.certWatch == nil {
		return
	}
	data, changed, err := m.certWatch.changed()
	if !changed {
		return
	}
	var cert *tls.Certificate
	if err == nil {
		cert, err = parsePair(data[0], data[1])
		if err == nil && time.Now().After(cert.Leaf.NotAfter) {
			err = fmt.Errorf("certificate expired %s", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	if err != nil {
		err = fmt.Errorf("reloading certificate %s and key %s: %w; keeping the current one", m.opt.CertFile, m.opt.KeyFile, err)
		m.log.Error("tls: "+err.Error(), "cert_file", m.opt.CertFile, "key_file", m.opt.KeyFile)
		m.count(func(s *Stats) { s.ReloadErrors++; s.LastError = err.Error() })
		return
	}
	m.cert.Store(cert)
	m.count(func(s *Stats) { s.Reloads++ })
	m.log.Info("tls: certificate reloaded", "cert_file", m.opt.CertFile,
		"subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
}

func (m *Manager) reloadCRL() {
	if m.crlWatch == nil {
		return
	}
	data, changed, err := m.crlWatch.changed()
	if !changed {
		return
	}
	var set *crlSet
	if err == nil {
		set, err = parseCRL(data[0])
	}
	if err != nil {
		err = fmt.Errorf("reloading CRL %s: %w; keeping the current one", m.opt.CRLFile, err)
		m.log.Error("tls: "+err.Error(), "crl_file", m.opt.CRLFile)
		m.count(func(s *Stats) { s.ReloadErrors++; s.LastError = err.Error() })
		return
	}
	m.crl.Store(set)
	m.count(func(s *Stats) { s.Reloads++ })
	m.log.Info("tls: CRL reloaded", "crl_file", m.opt.CRLFile, "entries", set.size())
}

// loadPool reads a PEM bundle of certificates into a pool.
func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("tls: %s: no PEM certificate found", path)
	}
	return pool, nil
}

// crlSet holds the revocation lists of the CRL file (one or more, PEM or
// one DER).
type crlSet struct {
	lists []*x509.RevocationList
}

func (s *crlSet) size() int {
	n := 0
	for _, l := range s.lists {
		n += len(l.RevokedCertificateEntries)
	}
	return n
}

func parseCRL(data []byte) (*crlSet, error) {
	set := &crlSet{}
	trimmed := bytes.TrimSpace(data)
	if bytes.HasPrefix(trimmed, []byte("-----BEGIN")) {
		rest := trimmed
		for {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			if blk.Type != "X509 CRL" {
				continue
			}
			l, err := x509.ParseRevocationList(blk.Bytes)
			if err != nil {
				return nil, err
			}
			set.lists = append(set.lists, l)
		}
		if len(set.lists) == 0 {
			return nil, errors.New("no X509 CRL PEM block")
		}
		return set, nil
	}
	l, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, err
	}
	set.lists = append(set.lists, l)
	return set, nil
}

// revoked reports whether cert, issued by issuer, is listed in a CRL that
// issuer signed.
func (s *crlSet) revoked(cert, issuer *x509.Certificate) bool {
	for _, l := range s.lists {
		if !bytes.Equal(l.RawIssuer, issuer.RawSubject) {
			continue
		}
		if l.CheckSignatureFrom(issuer) != nil {
			continue
		}
		for _, e := range l.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
				return true
			}
		}
	}
	return false
}

// verifyConnection refuses a verified client certificate (or an
// intermediate of its chain) that the CRL revokes. It also runs on resumed
// sessions, so a revocation applies to them too.
func (m *Manager) verifyConnection(cs tls.ConnectionState) error {
	set := m.crl.Load()
	if set == nil {
		return nil
	}
	for _, chain := range cs.VerifiedChains {
		for i := 0; i+1 < len(chain); i++ {
			if set.revoked(chain[i], chain[i+1]) {
				return fmt.Errorf("tls: client certificate %q (serial %s) is revoked",
					chain[i].Subject.String(), chain[i].SerialNumber.String())
			}
		}
	}
	return nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
