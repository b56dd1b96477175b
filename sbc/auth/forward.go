package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipwall/sipwall/sbc"
)

// Forwarder writes the headers that tell the upstream who a request is
// from: the authenticated user (IdentityHeader) and the real source address
// signed with Key (SourceHeader), so the PBX can log or ban the caller
// rather than the SBC. Empty header names turn either off.
type Forwarder struct {
	IdentityHeader string
	SourceHeader   string
	// Key signs SourceHeader; at least 32 bytes when SourceHeader is set.
	Key []byte
	Now func() time.Time
}

// MinSourceKeyLen is the shortest key accepted for the source signature.
const MinSourceKeyLen = 32

// ErrShortKey means a signing key is shorter than MinSourceKeyLen.
var ErrShortKey = errors.New("auth: source key shorter than 32 bytes")

// Check reports a configuration that cannot work.
func (f *Forwarder) Check() error {
	if f.SourceHeader != "" && len(f.Key) < MinSourceKeyLen {
		return ErrShortKey
	}
	return nil
}

// Apply adds the configured headers to r.Forward. user is empty for
// trusted peers, which get the source header only.
func (f *Forwarder) Apply(r *sbc.Request, user, realm string) {
	if f == nil {
		return
	}
	if f.IdentityHeader != "" && user != "" {
		r.Forward = append(r.Forward, sip.NewHeader(f.IdentityHeader, "<sip:"+user+"@"+realm+">"))
	}
	if f.SourceHeader != "" {
		now := time.Now
		if f.Now != nil {
			now = f.Now
		}
		r.Forward = append(r.Forward, sip.NewHeader(f.SourceHeader, SignSource(f.Key, r.Peer.String(), r.Transport, now().Unix())))
	}
}

// SignSource returns the value of the source header:
//
//	<peer ip:port>;transport=<t>;ts=<unix seconds>;sig=<hex>
//
// where sig is the hex HMAC-SHA-256 under key of everything before
// ";sig=". The header only travels inside, from the SBC to the PBX; the
// timestamp lets the checker refuse old copies (allow a few seconds).
// Clients cannot forge it: the B2BUA copies no such header from outside.
func SignSource(key []byte, peer, transport string, ts int64) string {
	v := peer + ";transport=" + transport + ";ts=" + strconv.FormatInt(ts, 10)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(v))
	return v + ";sig=" + hex.EncodeToString(m.Sum(nil))
}
