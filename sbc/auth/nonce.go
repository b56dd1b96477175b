package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/netip"
	"sync"
	"time"
)

// Nonce layout before base64url: 1 byte key id (which key of the KeyRing
// signed it, so verification needs one HMAC, not one per key), 8 bytes issue
// time (Unix nanoseconds, big endian), 8 random bytes (so two challenges in
// the same instant differ and keep separate nonce counts), then
// HMAC-SHA-256 under that key over those 17 bytes, the peer IP and the
// realm.
const (
	nonceIDLen    = 1
	nonceStampLen = 8
	nonceSaltLen  = 8
	nonceMACLen   = sha256.Size
	nonceHeadLen  = nonceIDLen + nonceStampLen + nonceSaltLen
	nonceRawLen   = nonceHeadLen + nonceMACLen
)

// nonceState is the outcome of checking a nonce.
type nonceState uint8

const (
	nonceValid   nonceState = iota
	nonceForeign            // not ours (or its key is gone), or issued to another peer or realm
	nonceStale              // ours, but expired (or forgotten, see ncTable)
	nonceFuture             // ours by MAC, but issued after now
)

type nonceMinter struct {
	keys *KeyRing
	// dead signs the opaque of a nonce whose key is unknown: a secret, so
	// such an opaque can never be matched.
	dead []byte
}

func newNonceMinter(keys *KeyRing) nonceMinter {
	return nonceMinter{keys: keys, dead: randomKey()}
}

func nonceMAC(key, head []byte, ip netip.Addr, realm string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write(head)
	// Unmap so that a v4-mapped v6 address and the v4 address bind alike.
	ipb := ip.Unmap().AsSlice()
	h.Write([]byte{byte(len(ipb))})
	h.Write(ipb)
	h.Write([]byte(realm))
	return h.Sum(nil)
}

// decode returns the raw bytes of a well-formed nonce and the key it names.
func (m *nonceMinter) decode(nonce string) ([]byte, []byte, bool) {
	if len(nonce) != base64.RawURLEncoding.EncodedLen(nonceRawLen) {
		return nil, nil, false
	}
	// Strict: one nonce has one spelling, so the nonce-count table, keyed
	// by the string, cannot be sidestepped by a second spelling.
	raw, err := base64.RawURLEncoding.Strict().DecodeString(nonce)
	if err != nil || len(raw) != nonceRawLen {
		return nil, nil, false
	}
	key, ok := m.keys.Lookup(raw[0])
	if !ok {
		return nil, nil, false
	}
	return raw, key, true
}

// mint returns a fresh nonce for ip and realm issued at now, signed with
// the current key.
func (m *nonceMinter) mint(now time.Time, ip netip.Addr, realm string) string {
	id, key := m.keys.Current()
	raw := make([]byte, nonceHeadLen, nonceRawLen)
	raw[0] = id
	binary.BigEndian.PutUint64(raw[nonceIDLen:], uint64(now.UnixNano()))
	_, _ = rand.Read(raw[nonceIDLen+nonceStampLen:]) // crypto/rand.Read does not fail
	raw = append(raw, nonceMAC(key, raw, ip, realm)...)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// opaque is derived from the nonce, under the nonce's key, so that it needs
// no state either and stays valid as long as the nonce's key does.
func (m *nonceMinter) opaque(nonce string) string {
	key := m.dead
	if _, k, ok := m.decode(nonce); ok {
		key = k
	}
	h := hmac.New(sha256.New, key)
	h.Write([]byte("opaque:"))
	h.Write([]byte(nonce))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:12])
}

// check verifies a nonce for ip and realm and returns its issue time.
func (m *nonceMinter) check(nonce string, now time.Time, ip netip.Addr, realm string, ttl, skew time.Duration) (nonceState, int64) {
	raw, key, ok := m.decode(nonce)
	if !ok {
		return nonceForeign, 0
	}
	want := nonceMAC(key, raw[:nonceHeadLen], ip, realm)
	if !hmac.Equal(want, raw[nonceHeadLen:]) {
		return nonceForeign, 0
	}
	issued := int64(binary.BigEndian.Uint64(raw[nonceIDLen:]))
	age := now.UnixNano() - issued
	switch {
	case age < -int64(skew):
		return nonceFuture, issued
	case age > int64(ttl):
		return nonceStale, issued
	}
	return nonceValid, issued
}

// ncTable remembers the highest nonce-count accepted per nonce so that a
// request cannot be replayed. It is bounded: a new nonce first drops the
// expired ones at the front of the table, and when it is still full, the
// one recorded first, raising a floor at or below which an untracked nonce
// counts as stale. A forgotten nonce can therefore never be replayed; its
// client is only asked to retry with a fresh one. Each step is O(1)
// (amortised): the table is kept in recording order, so a full table
// never scans or sorts itself under the lock the requests wait on (at 500
// authenticated calls a second a 65,536-entry table filled every two
// minutes, and each halving held the lock for milliseconds).
type ncTable struct {
	mu    sync.Mutex
	max   int
	m     map[string]ncEntry
	order []string // the nonces of m, in the order recorded; from head on
	head  int
	floor int64 // issue time (ns) at or below which untracked nonces are stale
}

type ncEntry struct {
	nc     uint32
	issued int64
}

func newNCTable(max int) *ncTable {
	return &ncTable{max: max, m: make(map[string]ncEntry)}
}

// ncResult is what ncTable.use decided.
type ncResult uint8

const (
	ncOK     ncResult = iota
	ncReplay          // nc not above the last accepted one
	ncForgot          // nonce older than the floor: treat as stale
)

// peek tells whether nc would be accepted, without recording it, so that
// the digest is only computed for a fresh count.
func (t *ncTable) peek(nonce string, issued int64, nc uint32) ncResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.judge(nonce, issued, nc)
}

func (t *ncTable) judge(nonce string, issued int64, nc uint32) ncResult {
	if e, ok := t.m[nonce]; ok {
		if nc <= e.nc {
			return ncReplay
		}
		return ncOK
	}
	if issued <= t.floor {
		return ncForgot
	}
	return ncOK
}

// use records nc for nonce if it is still acceptable; a concurrent request
// with the same count loses here.
func (t *ncTable) use(nonce string, issued int64, nc uint32, now time.Time, ttl time.Duration) ncResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r := t.judge(nonce, issued, nc); r != ncOK {
		return r
	}
	if _, ok := t.m[nonce]; !ok {
		cut := now.UnixNano() - int64(ttl)
		for t.head < len(t.order) && t.m[t.order[t.head]].issued < cut {
			// Expired nonces are refused by age anyway; the floor just
			// keeps the table and the age check consistent.
			t.drop(cut)
		}
		for len(t.m) >= max(t.max, 1) {
			t.drop(t.m[t.order[t.head]].issued)
		}
		t.order = append(t.order, nonce)
	}
	t.m[nonce] = ncEntry{nc: nc, issued: issued}
	return ncOK
}

// drop forgets the nonce recorded first and raises the floor to at least
// floor (mu held).
func (t *ncTable) drop(floor int64) {
	delete(t.m, t.order[t.head])
	t.order[t.head] = ""
	t.head++
	t.floor = max(t.floor, floor)
	if t.head >= 1024 && t.head*2 >= len(t.order) {
		// Reuse the front: what is left moves down, at most once per as
		// many drops as it holds.
		n := copy(t.order, t.order[t.head:])
		clear(t.order[n:])
		t.order, t.head = t.order[:n], 0
	}
}

func (t *ncTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
