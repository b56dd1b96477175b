package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Nonce layout before base64url: 8 bytes issue time (Unix nanoseconds, big
// endian), 8 random bytes (so two challenges in the same instant differ and
// keep separate nonce counts), then HMAC-SHA-256 over those 16 bytes, the
// peer IP and the realm.
const (
	nonceStampLen = 8
	nonceSaltLen  = 8
	nonceMACLen   = sha256.Size
	nonceRawLen   = nonceStampLen + nonceSaltLen + nonceMACLen
)

// nonceState is the outcome of checking a nonce.
type nonceState uint8

const (
	nonceValid   nonceState = iota
	nonceForeign            // not ours, or issued to another peer or realm
	nonceStale              // ours, but expired (or forgotten, see ncTable)
	nonceFuture             // ours by MAC, but issued after now
)

type nonceMinter struct {
	key []byte
}

func (m *nonceMinter) mac(stampSalt []byte, ip netip.Addr, realm string) []byte {
	h := hmac.New(sha256.New, m.key)
	h.Write(stampSalt)
	// Unmap so that a v4-mapped v6 address and the v4 address bind alike.
	ipb := ip.Unmap().AsSlice()
	h.Write([]byte{byte(len(ipb))})
	h.Write(ipb)
	h.Write([]byte(realm))
	return h.Sum(nil)
}

// mint returns a fresh nonce for ip and realm issued at now.
func (m *nonceMinter) mint(now time.Time, ip netip.Addr, realm string) string {
	raw := make([]byte, nonceStampLen+nonceSaltLen, nonceRawLen)
	binary.BigEndian.PutUint64(raw, uint64(now.UnixNano()))
	_, _ = rand.Read(raw[nonceStampLen:]) // crypto/rand.Read does not fail
	raw = append(raw, m.mac(raw, ip, realm)...)
	return base64.RawURLEncoding.EncodeToString(raw)
}

// opaque is derived from the nonce so that it needs no state either.
func (m *nonceMinter) opaque(nonce string) string {
	h := hmac.New(sha256.New, m.key)
	h.Write([]byte("opaque:"))
	h.Write([]byte(nonce))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:12])
}

// check verifies a nonce for ip and realm and returns its issue time.
func (m *nonceMinter) check(nonce string, now time.Time, ip netip.Addr, realm string, ttl, skew time.Duration) (nonceState, int64) {
	if len(nonce) != base64.RawURLEncoding.EncodedLen(nonceRawLen) {
		return nonceForeign, 0
	}
	raw, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(raw) != nonceRawLen {
		return nonceForeign, 0
	}
	want := m.mac(raw[:nonceStampLen+nonceSaltLen], ip, realm)
	if !hmac.Equal(want, raw[nonceStampLen+nonceSaltLen:]) {
		return nonceForeign, 0
	}
	issued := int64(binary.BigEndian.Uint64(raw))
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
// request cannot be replayed. It is bounded: when full it drops expired
// entries, then the older half, and raises a floor below which an untracked
// nonce counts as stale. A forgotten nonce can therefore never be replayed;
// its client is only asked to retry with a fresh one.
type ncTable struct {
	mu    sync.Mutex
	max   int
	m     map[string]ncEntry
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
	if _, ok := t.m[nonce]; !ok && len(t.m) >= t.max {
		t.shrink(now, ttl)
	}
	t.m[nonce] = ncEntry{nc: nc, issued: issued}
	return ncOK
}

func (t *ncTable) shrink(now time.Time, ttl time.Duration) {
	cut := now.UnixNano() - int64(ttl)
	for k, e := range t.m {
		if e.issued < cut {
			delete(t.m, k)
		}
	}
	if cut > t.floor {
		// Expired nonces are refused by age anyway; the floor just keeps
		// the table and the age check consistent.
		t.floor = cut
	}
	if len(t.m) < t.max {
		return
	}
	stamps := make([]int64, 0, len(t.m))
	for _, e := range t.m {
		stamps = append(stamps, e.issued)
	}
	slices.Sort(stamps)
	t.floor = max(t.floor, stamps[len(stamps)/2])
	for k, e := range t.m {
		if e.issued <= t.floor {
			delete(t.m, k)
		}
	}
}

func (t *ncTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}
