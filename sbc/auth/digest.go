// Package auth is the digest authentication layer of sipwall (RFC 3261 22,
// RFC 7616, RFC 8760): stateless HMAC nonces bound to the peer address,
// per-nonce nonce-count tracking, and responses that do not tell an unknown
// user from a wrong password. See README.md.
package auth

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"hash"
)

// Algorithm names as they appear on the wire (RFC 7616 6.1, RFC 8760 2).
const (
	SHA256    = "SHA-256"
	SHA512256 = "SHA-512-256"
	MD5       = "MD5"
)

// hasher returns the hash constructor of a supported algorithm, nil for any
// other name (the "-sess" variants included: they are not offered).
func hasher(alg string) func() hash.Hash {
	switch alg {
	case SHA256:
		return sha256.New
	case SHA512256:
		return sha512.New512_256
	case MD5:
		return md5.New
	}
	return nil
}

// hexLen is the length of a hex digest of alg, 0 when unsupported.
func hexLen(alg string) int {
	if h := hasher(alg); h != nil {
		return h().Size() * 2
	}
	return 0
}

// hexHash is H(data) in lowercase hex.
func hexHash(alg, data string) string {
	h := hasher(alg)()
	h.Write([]byte(data))
	return hex.EncodeToString(h.Sum(nil))
}

// HashPassword returns HA1 = H(username ":" realm ":" password) in hex, the
// only form in which a password is stored. It returns "" for an algorithm
// that is not supported.
func HashPassword(user, realm, password, alg string) string {
	if hasher(alg) == nil {
		return ""
	}
	return hexHash(alg, user+":"+realm+":"+password)
}

// response computes the qop=auth request-digest of RFC 7616 3.4.1:
// H(HA1 ":" nonce ":" nc ":" cnonce ":" "auth" ":" H(method ":" uri)).
func response(alg, ha1, method, uri, nonce, nc, cnonce string) string {
	ha2 := hexHash(alg, method+":"+uri)
	return hexHash(alg, ha1+":"+nonce+":"+nc+":"+cnonce+":auth:"+ha2)
}
