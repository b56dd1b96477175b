package srtp

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/pion/stun/v3"
)

// iceChars is RFC 8445's ice-char: ALPHA / DIGIT / "+" / "/", 64 of them,
// so a random byte masked to 6 bits picks one uniformly.
const iceChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// NewICECredentials makes an ICE ufrag (8 chars, 48 bits) and password (24
// chars, 144 bits; RFC 8445 section 5.3 asks for at least 22 and 128).
func NewICECredentials() (ufrag, pwd string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read does not fail: it crashes the program
	for i := range b {
		b[i] = iceChars[b[i]&63]
	}
	return string(b[:8]), string(b[8:])
}

// ICELite answers the peer's connectivity checks on one leg (RFC 8445
// section 2.5): as a lite agent we never check, nominate or keep candidate
// pairs, we only prove to the peer's full agent that the address it checks
// reaches us and that we know the password. Safe for concurrent use.
type ICELite struct{ LocalUfrag, LocalPwd, RemoteUfrag string }

// Answer checks a STUN Binding request: USERNAME must be
// "LocalUfrag:RemoteUfrag" (RemoteUfrag empty: any remote part),
// MESSAGE-INTEGRITY must check with LocalPwd, and FINGERPRINT too if
// present. It returns the Binding success response (XOR-MAPPED-ADDRESS =
// src, an IPv4-mapped address as IPv4; MESSAGE-INTEGRITY with LocalPwd;
// FINGERPRINT) and whether the request carried USE-CANDIDATE. For anything
// else an error, ErrAuth for integrity and username failures, ErrMalformed
// otherwise (Binding indications and responses included): the caller drops
// the datagram without an answer.
func (i *ICELite) Answer(req []byte, src netip.AddrPort) (resp []byte, nominated bool, err error) {
	if !stun.IsMessage(req) {
		return nil, false, errNotSTUN
	}
	// Checks that cost no allocation first: most datagrams that fail come
	// from strangers (scans, floods at the relay's ports), and they are
	// refused before the copy and the decoding below.
	if err := i.precheck(req); err != nil {
		return nil, false, err
	}
	// pion's integrity check rewrites the length field in place: work on a
	// copy, the caller's buffer stays as it was.
	m := &stun.Message{Raw: bytes.Clone(req)}
	if err := m.Decode(); err != nil {
		return nil, false, fmt.Errorf("ice: %w: %w", ErrMalformed, err)
	}
	if int(m.Length)+20 != len(req) || m.Length%4 != 0 {
		return nil, false, fmt.Errorf("ice: %d bytes for a length of %d: %w", len(req), m.Length, ErrMalformed)
	}
	if m.Type != stun.BindingRequest {
		return nil, false, fmt.Errorf("ice: %s: %w", m.Type, ErrMalformed)
	}
	hasMI, hasFP, err := checkAttributes(m)
	if err != nil {
		return nil, false, err
	}
	if hasFP {
		if err := stun.Fingerprint.Check(m); err != nil {
			return nil, false, fmt.Errorf("ice: %w: %w", ErrMalformed, err)
		}
	}
	user, err := m.Get(stun.AttrUsername)
	if err != nil {
		return nil, false, fmt.Errorf("ice: no USERNAME: %w", ErrAuth)
	}
	local, remote, ok := strings.Cut(string(user), ":")
	if !ok || local != i.LocalUfrag || i.RemoteUfrag != "" && remote != i.RemoteUfrag {
		return nil, false, fmt.Errorf("ice: USERNAME %.40q: %w", user, ErrAuth)
	}
	if !hasMI {
		return nil, false, fmt.Errorf("ice: no MESSAGE-INTEGRITY: %w", ErrAuth)
	}
	if err := stun.NewShortTermIntegrity(i.LocalPwd).Check(m); err != nil {
		return nil, false, fmt.Errorf("ice: %w: %w", ErrAuth, err)
	}
	addr := src.Addr().Unmap()
	if !addr.IsValid() {
		return nil, false, fmt.Errorf("ice: source %v: %w", src, ErrMalformed)
	}
	r, err := stun.Build(
		stun.NewTransactionIDSetter(m.TransactionID),
		stun.BindingSuccess,
		&stun.XORMappedAddress{IP: addr.AsSlice(), Port: int(src.Port())},
		stun.NewShortTermIntegrity(i.LocalPwd),
		stun.Fingerprint,
	)
	if err != nil {
		return nil, false, fmt.Errorf("ice: build response: %w", err)
	}
	return r.Raw, m.Contains(stun.AttrUseCandidate), nil
}

// Errors of the checks made before decoding: values made once, so a flood
// of refused checks allocates nothing.
var (
	errNotSTUN    = fmt.Errorf("ice: not STUN: %w", ErrMalformed)
	errLength     = fmt.Errorf("ice: length field does not match the datagram: %w", ErrMalformed)
	errTruncated  = fmt.Errorf("ice: attribute runs past the message: %w", ErrMalformed)
	errNoUsername = fmt.Errorf("ice: no USERNAME: %w", ErrAuth)
	errUsername   = fmt.Errorf("ice: USERNAME not ours: %w", ErrAuth)
)

// precheck walks req's attributes on the wire (RFC 8489 section 14: type,
// length, value padded to 4 bytes) and refuses it unless the length field
// matches the datagram and the first USERNAME is "LocalUfrag:RemoteUfrag"
// (any remote part when RemoteUfrag is empty), as Answer requires after
// decoding. req is a STUN message (stun.IsMessage).
func (i *ICELite) precheck(req []byte) error {
	n := int(binary.BigEndian.Uint16(req[2:4]))
	if n+stunHeader != len(req) || n%4 != 0 {
		return errLength
	}
	for b := req[stunHeader:]; len(b) > 0; {
		if len(b) < 4 {
			return errTruncated
		}
		typ, l := stun.AttrType(binary.BigEndian.Uint16(b[0:2])), int(binary.BigEndian.Uint16(b[2:4]))
		padded := (l + 3) &^ 3
		if 4+padded > len(b) {
			return errTruncated
		}
		if typ == stun.AttrUsername {
			v := b[4 : 4+l]
			local, remote, ok := bytes.Cut(v, []byte{':'})
			if !ok || string(local) != i.LocalUfrag || i.RemoteUfrag != "" && string(remote) != i.RemoteUfrag {
				return errUsername
			}
			return nil
		}
		b = b[4+padded:]
	}
	return errNoUsername
}

// stunHeader is the size of a STUN message header (RFC 8489 section 5).
const stunHeader = 20

// checkAttributes enforces what pion's decoder leaves to us: nothing but
// FINGERPRINT (or MESSAGE-INTEGRITY-SHA256) after MESSAGE-INTEGRITY, since
// it would not be authenticated (a USE-CANDIDATE slipped in, say);
// FINGERPRINT last; no comprehension-required attribute we do not know
// (RFC 8489 section 14: we would owe a 420, and we answer nothing instead).
func checkAttributes(m *stun.Message) (hasMI, hasFP bool, err error) {
	for k, a := range m.Attributes {
		switch {
		case hasFP:
			return false, false, fmt.Errorf("ice: %s after FINGERPRINT: %w", a.Type, ErrMalformed)
		case a.Type == stun.AttrFingerprint:
			hasFP = true
		case a.Type == stun.AttrMessageIntegrity:
			if hasMI {
				return false, false, fmt.Errorf("ice: two MESSAGE-INTEGRITY: %w", ErrMalformed)
			}
			hasMI = true
		case hasMI && a.Type != stun.AttrMessageIntegritySHA256:
			return false, false, fmt.Errorf("ice: %s after MESSAGE-INTEGRITY: %w", a.Type, ErrMalformed)
		case a.Type < 0x8000 && !understood(a.Type):
			return false, false, fmt.Errorf("ice: attribute %d (%#04x) unknown and comprehension-required: %w", k, uint16(a.Type), ErrMalformed)
		}
	}
	return hasMI, hasFP, nil
}

// understood lists the comprehension-required attributes of an ICE check.
func understood(t stun.AttrType) bool {
	switch t {
	case stun.AttrUsername, stun.AttrMessageIntegrity, stun.AttrMessageIntegritySHA256,
		stun.AttrPriority, stun.AttrUseCandidate:
		return true
	}
	return false
}
