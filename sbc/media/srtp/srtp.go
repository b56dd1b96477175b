// Package srtp gives the media relay what it needs to terminate encrypted
// media on one leg of a call: SDES keys (RFC 4568) and the SRTP session
// built from them, DTLS-SRTP (RFC 5763/5764), the ICE-lite answers a
// browser waits for before it sends anything (RFC 8445 section 2.5), and
// the demultiplexing of one UDP port (RFC 7983). The cryptography is
// pion's (srtp/v3, dtls/v3, stun/v3): this package chooses, parses, checks
// and bounds, and never logs a key. See README.md.
package srtp

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	pionsrtp "github.com/pion/srtp/v3"
	"github.com/pion/transport/v5/replaydetector"
)

// The SDES crypto suites we implement (RFC 4568, RFC 7714).
const (
	AES_CM_128_HMAC_SHA1_80 = "AES_CM_128_HMAC_SHA1_80"
	AES_CM_128_HMAC_SHA1_32 = "AES_CM_128_HMAC_SHA1_32"
	AEAD_AES_128_GCM        = "AEAD_AES_128_GCM" // RFC 7714
)

var (
	// ErrMalformed: the input does not follow its grammar (or, for
	// packets, is too short or not RTP/RTCP at all).
	ErrMalformed = errors.New("malformed")
	// ErrUnsupported: well formed, but something we do not implement.
	ErrUnsupported = errors.New("unsupported")
	// ErrAuth: an authentication tag or a STUN MESSAGE-INTEGRITY or
	// USERNAME that does not check.
	ErrAuth = errors.New("authentication failed")
	// ErrReplay: an SRTP or SRTCP index already seen, or too old for the
	// replay window.
	ErrReplay = errors.New("replayed packet")
	// ErrFingerprint: the peer's DTLS certificate matches none of the
	// a=fingerprint values of its SDP.
	ErrFingerprint = errors.New("certificate fingerprint mismatch")
	// ErrTooManySSRCs: a packet from one more SSRC than MaxSSRCs in one
	// direction.
	ErrTooManySSRCs = errors.New("too many SSRCs")
	// ErrTimeout: the DTLS handshake did not finish in DTLSConfig.Timeout.
	ErrTimeout = errors.New("dtls handshake timed out")
	// ErrClosed: the DTLS endpoint was closed before its handshake ended.
	ErrClosed = errors.New("closed")
	// ErrConfig: NewDTLS was given an unusable DTLSConfig.
	ErrConfig = errors.New("invalid configuration")
)

const (
	// MaxSSRCs bounds the SSRCs one Session keeps state for, per direction
	// and kind: pion keeps a map entry per SSRC for ever, and the SSRCs we
	// encrypt come from the other leg's peer.
	MaxSSRCs = 64
	// ReplayWindow is the replay window, in packets, for SRTP and SRTCP
	// (libsrtp's default; RFC 3711 asks for at least 64).
	ReplayWindow = 128

	maxTag = 999999999
	// pion's limits for its own replay detectors (srtp/v3 option.go).
	maxSRTPIndex  = 1<<48 - 1
	maxSRTCPIndex = 1<<31 - 1
)

// suite is what we need to know of a crypto suite.
type suite struct {
	name    string
	profile pionsrtp.ProtectionProfile
	keyLen  int // master key + master salt, bytes
}

var suites = []suite{
	{AES_CM_128_HMAC_SHA1_80, pionsrtp.ProtectionProfileAes128CmHmacSha1_80, 30},
	{AES_CM_128_HMAC_SHA1_32, pionsrtp.ProtectionProfileAes128CmHmacSha1_32, 30},
	{AEAD_AES_128_GCM, pionsrtp.ProtectionProfileAeadAes128Gcm, 28},
}

// lookup finds a supported suite; the names are ABNF literals, so
// case-insensitive (RFC 5234 section 2.3).
func lookup(name string) (suite, bool) {
	for _, s := range suites {
		if strings.EqualFold(s.name, name) {
			return s, true
		}
	}
	return suite{}, false
}

// Supported says whether we implement the SDES crypto suite.
func Supported(name string) bool {
	_, ok := lookup(name)
	return ok
}

// Crypto is one a=crypto attribute of SDES (RFC 4568).
type Crypto struct {
	Tag   int    // 1..999999999
	Suite string // one of the constants above when supported
	Key   []byte // master key followed by master salt (30 bytes for AES_CM_128, 28 for AEAD_AES_128_GCM)
}

// String is the value for a=crypto: (no lifetime, no MKI). It holds the key:
// never log it.
func (c Crypto) String() string {
	return strconv.Itoa(c.Tag) + " " + c.Suite + " inline:" + base64.StdEncoding.EncodeToString(c.Key)
}

// NewCrypto is a fresh key for suite, from crypto/rand.
func NewCrypto(tag int, name string) (Crypto, error) {
	if tag < 1 || tag > maxTag {
		return Crypto{}, fmt.Errorf("new crypto: tag %d: %w", tag, ErrMalformed)
	}
	s, ok := lookup(name)
	if !ok {
		return Crypto{}, fmt.Errorf("new crypto: suite %.40q: %w", name, ErrUnsupported)
	}
	key := make([]byte, s.keyLen)
	if _, err := rand.Read(key); err != nil {
		return Crypto{}, fmt.Errorf("new crypto: %w", err)
	}
	return Crypto{Tag: tag, Suite: s.name, Key: key}, nil
}

// Choose picks from an offer's a=crypto values the first one we support,
// in the order of the offer (the offerer's preference, RFC 4568 section
// 7.1.1); values that do not parse are skipped like unsupported ones.
func Choose(values []string) (Crypto, error) {
	for _, v := range values {
		if c, err := ParseCrypto(v); err == nil {
			return c, nil
		}
	}
	return Crypto{}, fmt.Errorf("choose crypto: none of %d offered: %w", len(values), ErrUnsupported)
}

// ParseCrypto reads the value of an a=crypto line (everything after
// "a=crypto:"):
//
//	tag SP suite SP "inline:" key-salt ["|" lifetime] ["|" mki] *(SP session-param)
//
// Only one key parameter, no MKI and no session parameter are accepted
// (ErrUnsupported): with one key an MKI only costs bytes, and the session
// parameters (UNENCRYPTED_SRTP, KDR, FEC_ORDER...) weaken or change the
// transform. A lifetime is checked and ignored: we never send 2^31 packets
// with one key in a call.
func ParseCrypto(value string) (Crypto, error) {
	f := fields(value)
	if len(f) < 3 {
		return Crypto{}, fmt.Errorf("parse crypto: %d fields: %w", len(f), ErrMalformed)
	}
	tag, ok := digits(f[0], 9)
	if !ok || tag < 1 {
		return Crypto{}, fmt.Errorf("parse crypto: tag %.12q: %w", f[0], ErrMalformed)
	}
	if !token(f[1]) {
		return Crypto{}, fmt.Errorf("parse crypto: suite %.40q: %w", f[1], ErrMalformed)
	}
	s, known := lookup(f[1])
	key, err := parseKeyParams(f[2], s.keyLen)
	if err != nil {
		return Crypto{}, err
	}
	for _, p := range f[3:] {
		if !sessionParam(p) {
			return Crypto{}, fmt.Errorf("parse crypto: session parameter %.40q: %w", p, ErrMalformed)
		}
	}
	if !known {
		return Crypto{}, fmt.Errorf("parse crypto: suite %.40q: %w", f[1], ErrUnsupported)
	}
	if len(key) != s.keyLen {
		return Crypto{}, fmt.Errorf("parse crypto: %d key bytes for %s, want %d: %w", len(key), s.name, s.keyLen, ErrMalformed)
	}
	if len(f) > 3 {
		return Crypto{}, fmt.Errorf("parse crypto: session parameter %.40q: %w", f[3], ErrUnsupported)
	}
	return Crypto{Tag: tag, Suite: s.name, Key: key}, nil
}

// parseKeyParams reads "inline:" key-salt ["|" lifetime] ["|" mki]. An MKI
// is ErrUnsupported, but only once the rest is known to be well formed.
func parseKeyParams(p string, keyLen int) ([]byte, error) {
	if strings.Contains(p, ";") {
		return nil, fmt.Errorf("parse crypto: several key parameters: %w", ErrMalformed)
	}
	method, info, ok := strings.Cut(p, ":")
	if !ok || !strings.EqualFold(method, "inline") {
		return nil, fmt.Errorf("parse crypto: key method %.20q: %w", method, ErrMalformed)
	}
	parts := strings.Split(info, "|")
	if len(parts) > 3 {
		return nil, fmt.Errorf("parse crypto: %d key-info parts: %w", len(parts), ErrMalformed)
	}
	key, err := decodeKey(parts[0])
	if err != nil {
		return nil, err
	}
	var mki string
	switch len(parts) {
	case 2:
		if strings.Contains(parts[1], ":") {
			mki = parts[1]
		} else if !lifetime(parts[1]) {
			return nil, fmt.Errorf("parse crypto: lifetime %.20q: %w", parts[1], ErrMalformed)
		}
	case 3:
		if !lifetime(parts[1]) {
			return nil, fmt.Errorf("parse crypto: lifetime %.20q: %w", parts[1], ErrMalformed)
		}
		mki = parts[2]
	}
	if mki != "" {
		v, l, _ := strings.Cut(mki, ":")
		n, okl := digits(l, 3)
		if !allDigits(v) || !okl || n < 1 || n > 128 {
			return nil, fmt.Errorf("parse crypto: mki %.20q: %w", mki, ErrMalformed)
		}
		if keyLen != 0 && len(key) != keyLen {
			return nil, fmt.Errorf("parse crypto: %d key bytes, want %d: %w", len(key), keyLen, ErrMalformed)
		}
		return nil, fmt.Errorf("parse crypto: mki: %w", ErrUnsupported)
	}
	return key, nil
}

// decodeKey is strict base64 with padding (RFC 4568 section 9.2 refers to
// RFC 3548): Go's decoder skips CR and LF, which have no place here.
func decodeKey(s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=') {
			return nil, fmt.Errorf("parse crypto: key: base64: %w", ErrMalformed)
		}
	}
	key, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(key) == 0 {
		return nil, fmt.Errorf("parse crypto: key: base64: %w", ErrMalformed)
	}
	return key, nil
}

// lifetime is ["2^"] 1*DIGIT, at most 2^48 (RFC 3711's bound for SRTP).
func lifetime(s string) bool {
	if e, ok := strings.CutPrefix(s, "2^"); ok {
		n, ok := digits(e, 2)
		return ok && n >= 1 && n <= 48
	}
	n, ok := digits(s, 15)
	return ok && n >= 1 && n <= 1<<48
}

// digits reads 1 to max decimal digits (max <= 18, so it fits an int).
func digits(s string, max int) (int, bool) {
	if len(s) > max || !allDigits(s) {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

// allDigits is 1*DIGIT.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// token is 1*(ALPHA / DIGIT / "_"), the characters of a suite name.
func token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// sessionParam is 1*(VCHAR), RFC 4568's srtp-session-extension and the
// rest: we refuse them all, but tell garbage from a real parameter.
func sessionParam(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return s != ""
}

// fields splits on runs of SP and HTAB (1*WSP), nothing else.
func fields(s string) []string {
	var f []string
	for s != "" {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			break
		}
		i := strings.IndexAny(s, " \t")
		if i < 0 {
			i = len(s)
		}
		f = append(f, s[:i])
		s = s[i:]
	}
	return f
}

// Session holds the SRTP contexts of one leg: the peer's keys (to decrypt
// what it sends us, with replay protection on, SRTP and SRTCP) and ours (to
// encrypt what we send it). Safe for concurrent use: each direction and
// kind has its own pion context and mutex, so RTP and RTCP, in and out,
// never wait for each other.
type Session struct {
	suite           string
	decRTP, decRTCP *half
	encRTP, encRTCP *half // shared with the sessions Rekeyed makes
}

// half is one pion context, used for one direction and one kind only
// (pion's contexts are not safe for concurrent use, and a context must
// either only encrypt or only decrypt).
type half struct {
	mu       sync.Mutex
	ctx      *pionsrtp.Context
	rtpHdr   rtp.Header  // reused: pion fills it, and it would escape
	rtcpHdr  rtcp.Header // likewise
	ssrcs    int         // SSRCs pion holds state for
	replayed bool        // set by the replay detector during one call
}

// SessionFromSDES builds the session of a leg keyed by SDES: local is the
// a=crypto we sent the peer (we encrypt with it), remote the one it sent us.
// Both must have the same suite (RFC 4568 section 7.1.3: the answer keeps
// the offer's suite), else ErrUnsupported.
func SessionFromSDES(local, remote Crypto) (*Session, error) {
	if !strings.EqualFold(local.Suite, remote.Suite) {
		return nil, fmt.Errorf("sdes session: suites %.40q and %.40q: %w", local.Suite, remote.Suite, ErrUnsupported)
	}
	s, ok := lookup(local.Suite)
	if !ok {
		return nil, fmt.Errorf("sdes session: suite %.40q: %w", local.Suite, ErrUnsupported)
	}
	if len(local.Key) != s.keyLen || len(remote.Key) != s.keyLen {
		return nil, fmt.Errorf("sdes session: key lengths %d and %d, want %d: %w", len(local.Key), len(remote.Key), s.keyLen, ErrMalformed)
	}
	return newSession(s, local.Key, remote.Key)
}

// newSession builds the four contexts from master key || master salt.
func newSession(s suite, local, remote []byte) (*Session, error) {
	saltAt, err := s.profile.KeyLen()
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	sess := &Session{suite: s.name, decRTP: new(half), decRTCP: new(half), encRTP: new(half), encRTCP: new(half)}
	// One master key, two contexts per direction: SRTP and SRTCP have
	// session keys of their own (RFC 3711 section 4.3), and each context
	// only ever uses one kind, so no keystream is used twice.
	mk := func(key []byte, opts ...pionsrtp.ContextOption) (*pionsrtp.Context, error) {
		return pionsrtp.CreateContext(key[:saltAt], key[saltAt:], s.profile, opts...)
	}
	if sess.encRTP.ctx, err = mk(local); err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	if sess.encRTCP.ctx, err = mk(local); err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	if sess.decRTP.ctx, err = mk(remote, pionsrtp.SRTPReplayDetectorFactory(sess.decRTP.detector(maxSRTPIndex))); err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	if sess.decRTCP.ctx, err = mk(remote, pionsrtp.SRTCPReplayDetectorFactory(sess.decRTCP.detector(maxSRTCPIndex))); err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	return sess, nil
}

// Rekeyed is the session after the peer sent a new SDES key (a
// re-INVITE's offer): what it sends is decrypted with remote, fresh
// contexts with their own replay windows; what we send stays encrypted by
// the same contexts as before (our key did not change, and a new context
// on the same key would use its keystream again). Same suite only.
func (s *Session) Rekeyed(remote Crypto) (*Session, error) {
	if !strings.EqualFold(s.suite, remote.Suite) {
		return nil, fmt.Errorf("rekey: suites %.40q and %.40q: %w", s.suite, remote.Suite, ErrUnsupported)
	}
	su, ok := lookup(remote.Suite)
	if !ok || len(remote.Key) != su.keyLen {
		return nil, fmt.Errorf("rekey: suite %.40q, key of %d bytes: %w", remote.Suite, len(remote.Key), ErrMalformed)
	}
	fresh, err := newSession(su, remote.Key, remote.Key)
	if err != nil {
		return nil, err
	}
	return &Session{suite: s.suite, decRTP: fresh.decRTP, decRTCP: fresh.decRTCP, encRTP: s.encRTP, encRTCP: s.encRTCP}, nil
}

// Suite is the crypto suite in use (one of the constants above).
func (s *Session) Suite() string { return s.suite }

// DecryptRTP authenticates and decrypts an SRTP packet from the peer into
// dst (reused when it has the capacity; it may be pkt itself). ErrReplay,
// ErrAuth, ErrMalformed, ErrTooManySSRCs.
func (s *Session) DecryptRTP(dst, pkt []byte) ([]byte, error) {
	h := s.decRTP
	if len(pkt) < 12 {
		return nil, fmt.Errorf("decrypt rtp: %d bytes: %w", len(pkt), ErrMalformed)
	}
	ssrc := binary.BigEndian.Uint32(pkt[8:12])
	h.mu.Lock()
	defer h.mu.Unlock()
	_, known := h.ctx.ROC(ssrc)
	if !known && h.ssrcs >= MaxSSRCs {
		return nil, fmt.Errorf("decrypt rtp: %w", ErrTooManySSRCs)
	}
	h.replayed = false
	out, err := h.ctx.DecryptRTP(dst, pkt, &h.rtpHdr)
	if err != nil {
		return nil, h.decryptError("decrypt rtp", err)
	}
	if !known {
		h.ssrcs++
	}
	return out, nil
}

// EncryptRTP encrypts an RTP packet for the peer into dst (reused when it
// has the capacity for the packet and its tag; it may be pkt itself).
func (s *Session) EncryptRTP(dst, pkt []byte) ([]byte, error) {
	h := s.encRTP
	if len(pkt) < 12 {
		return nil, fmt.Errorf("encrypt rtp: %d bytes: %w", len(pkt), ErrMalformed)
	}
	ssrc := binary.BigEndian.Uint32(pkt[8:12])
	h.mu.Lock()
	defer h.mu.Unlock()
	_, known := h.ctx.ROC(ssrc)
	if !known && h.ssrcs >= MaxSSRCs {
		return nil, fmt.Errorf("encrypt rtp: %w", ErrTooManySSRCs)
	}
	out, err := h.ctx.EncryptRTP(dst, pkt, &h.rtpHdr)
	if !known {
		if _, now := h.ctx.ROC(ssrc); now {
			h.ssrcs++
		}
	}
	if err != nil {
		return nil, fmt.Errorf("encrypt rtp: %w: %w", ErrMalformed, err)
	}
	return out, nil
}

// DecryptRTCP authenticates and decrypts an SRTCP packet (compound or not)
// from the peer into dst. Errors as DecryptRTP.
func (s *Session) DecryptRTCP(dst, pkt []byte) ([]byte, error) {
	h := s.decRTCP
	if len(pkt) < 8 {
		return nil, fmt.Errorf("decrypt rtcp: %d bytes: %w", len(pkt), ErrMalformed)
	}
	ssrc := binary.BigEndian.Uint32(pkt[4:8])
	h.mu.Lock()
	defer h.mu.Unlock()
	_, known := h.ctx.Index(ssrc)
	if !known && h.ssrcs >= MaxSSRCs {
		return nil, fmt.Errorf("decrypt rtcp: %w", ErrTooManySSRCs)
	}
	h.replayed = false
	out, err := h.ctx.DecryptRTCP(dst, pkt, &h.rtcpHdr)
	if err != nil {
		return nil, h.decryptError("decrypt rtcp", err)
	}
	if !known {
		h.ssrcs++
	}
	return out, nil
}

// EncryptRTCP encrypts an RTCP packet (compound or not) for the peer into
// dst, which needs room for 4 bytes of index and the tag.
func (s *Session) EncryptRTCP(dst, pkt []byte) ([]byte, error) {
	h := s.encRTCP
	if len(pkt) < 8 {
		return nil, fmt.Errorf("encrypt rtcp: %d bytes: %w", len(pkt), ErrMalformed)
	}
	ssrc := binary.BigEndian.Uint32(pkt[4:8])
	h.mu.Lock()
	defer h.mu.Unlock()
	_, known := h.ctx.Index(ssrc)
	if !known && h.ssrcs >= MaxSSRCs {
		return nil, fmt.Errorf("encrypt rtcp: %w", ErrTooManySSRCs)
	}
	out, err := h.ctx.EncryptRTCP(dst, pkt, &h.rtcpHdr)
	if !known {
		if _, now := h.ctx.Index(ssrc); now {
			h.ssrcs++
		}
	}
	if err != nil {
		return nil, fmt.Errorf("encrypt rtcp: %w: %w", ErrMalformed, err)
	}
	return out, nil
}

// decryptError sorts pion's error into our sentinels: pion's duplicate
// error is not exported, so the replay detector tells us itself.
func (h *half) decryptError(op string, err error) error {
	switch {
	case h.replayed:
		return fmt.Errorf("%s: %w", op, ErrReplay)
	case errors.Is(err, pionsrtp.ErrFailedToVerifyAuthTag):
		return fmt.Errorf("%s: %w: %w", op, ErrAuth, err)
	default:
		return fmt.Errorf("%s: %w: %w", op, ErrMalformed, err)
	}
}

// detector is the factory of pion's own sliding-window detector (as its
// SRTPReplayProtection and SRTCPReplayProtection options make it), wrapped
// to record a refusal in h.replayed.
func (h *half) detector(maxIndex uint64) func() replaydetector.ReplayDetector {
	return func() replaydetector.ReplayDetector {
		d := replaydetector.New(ReplayWindow, maxIndex)
		ca, _ := d.(replaydetector.CheckAccepter)
		return &flagDetector{d: d, ca: ca, flag: &h.replayed}
	}
}

// flagDetector implements both of pion's detector interfaces so that pion
// keeps using the allocation-free one (CheckAccepter).
type flagDetector struct {
	d    replaydetector.ReplayDetector
	ca   replaydetector.CheckAccepter
	flag *bool
}

func (f *flagDetector) Check(seq uint64) (func() bool, bool) {
	accept, ok := f.d.Check(seq)
	if !ok {
		*f.flag = true
	}
	return accept, ok
}

func (f *flagDetector) CheckSeq(seq uint64) replaydetector.Token {
	t := f.ca.CheckSeq(seq)
	if !t.Passed() {
		*f.flag = true
	}
	return t
}

func (f *flagDetector) Accept(t replaydetector.Token) bool { return f.ca.Accept(t) }

var (
	_ replaydetector.ReplayDetector = (*flagDetector)(nil)
	_ replaydetector.CheckAccepter  = (*flagDetector)(nil)
)
