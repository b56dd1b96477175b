package srtp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/pion/stun/v3"
)

const (
	localUfrag  = "Lufrag01"
	localPwd    = "local+password/0123456789"
	remoteUfrag = "RemU"
)

type checkOpts struct {
	user      string
	pwd       string
	nominate  bool
	noMI      bool
	noFP      bool
	noUser    bool
	class     stun.MessageClass
	afterMI   bool // USE-CANDIDATE slipped in after MESSAGE-INTEGRITY
	unknownCR bool // a comprehension-required attribute we do not know
}

// bindingRequest is a connectivity check as a full agent (a browser)
// sends it, built with pion/stun.
func bindingRequest(t testing.TB, o checkOpts) []byte {
	t.Helper()
	if o.user == "" {
		o.user = localUfrag + ":" + remoteUfrag
	}
	if o.pwd == "" {
		o.pwd = localPwd
	}
	prio := make([]byte, 4)
	binary.BigEndian.PutUint32(prio, 0x6e7f1eff)
	tie := make([]byte, 8)
	binary.BigEndian.PutUint64(tie, 0x0123456789abcdef)
	setters := []stun.Setter{stun.TransactionID, stun.NewType(stun.MethodBinding, o.class)}
	if !o.noUser {
		setters = append(setters, stun.NewUsername(o.user))
	}
	setters = append(setters,
		stun.RawAttribute{Type: stun.AttrPriority, Value: prio},
		stun.RawAttribute{Type: stun.AttrICEControlling, Value: tie},
	)
	if o.nominate {
		setters = append(setters, stun.RawAttribute{Type: stun.AttrUseCandidate})
	}
	if o.unknownCR {
		setters = append(setters, stun.RawAttribute{Type: 0x7ff0, Value: []byte{1, 2, 3, 4}})
	}
	if !o.noMI {
		setters = append(setters, stun.NewShortTermIntegrity(o.pwd))
	}
	if o.afterMI {
		setters = append(setters, stun.RawAttribute{Type: stun.AttrUseCandidate})
	}
	if !o.noFP {
		setters = append(setters, stun.Fingerprint)
	}
	m, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

func TestICEAnswer(t *testing.T) {
	srcs := []netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.7:50000"),
		netip.MustParseAddrPort("[2001:db8::7]:40000"),
	}
	ice := &ICELite{LocalUfrag: localUfrag, LocalPwd: localPwd, RemoteUfrag: remoteUfrag}
	for _, src := range srcs {
		for _, nominate := range []bool{true, false} {
			req := bindingRequest(t, checkOpts{nominate: nominate})
			orig := bytes.Clone(req)
			resp, nominated, err := ice.Answer(req, src)
			if err != nil {
				t.Fatalf("%v: %v", src, err)
			}
			if nominated != nominate {
				t.Errorf("nominated %v, want %v", nominated, nominate)
			}
			if !bytes.Equal(req, orig) {
				t.Error("Answer changed the request")
			}
			verifyResponse(t, req, resp, src)
		}
	}
}

// verifyResponse checks the answer as the peer's agent would.
func verifyResponse(t *testing.T, req, resp []byte, src netip.AddrPort) {
	t.Helper()
	m := &stun.Message{Raw: bytes.Clone(resp)}
	if err := m.Decode(); err != nil {
		t.Fatal(err)
	}
	r := &stun.Message{Raw: bytes.Clone(req)}
	if err := r.Decode(); err != nil {
		t.Fatal(err)
	}
	if m.Type != stun.BindingSuccess || m.TransactionID != r.TransactionID {
		t.Errorf("type %v, transaction %x, want %x", m.Type, m.TransactionID, r.TransactionID)
	}
	if err := stun.NewShortTermIntegrity(localPwd).Check(m); err != nil {
		t.Errorf("integrity: %v", err)
	}
	if err := stun.Fingerprint.Check(m); err != nil {
		t.Errorf("fingerprint: %v", err)
	}
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(m); err != nil {
		t.Fatal(err)
	}
	got, _ := netip.AddrFromSlice(xa.IP)
	if netip.AddrPortFrom(got.Unmap(), uint16(xa.Port)) != src {
		t.Errorf("XOR-MAPPED-ADDRESS %v, want %v", xa, src)
	}
	if m.Contains(stun.AttrUsername) {
		t.Error("USERNAME in the response")
	}
}

func TestICEAnswerMappedSource(t *testing.T) {
	ice := &ICELite{LocalUfrag: localUfrag, LocalPwd: localPwd}
	req := bindingRequest(t, checkOpts{})
	resp, _, err := ice.Answer(req, netip.MustParseAddrPort("[::ffff:192.0.2.9]:5000"))
	if err != nil {
		t.Fatal(err)
	}
	verifyResponse(t, req, resp, netip.MustParseAddrPort("192.0.2.9:5000"))
	if _, _, err := ice.Answer(req, netip.AddrPort{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("no source: %v", err)
	}
}

func TestICEAnyRemoteUfrag(t *testing.T) {
	// Before the answer we may not know the remote ufrag yet.
	ice := &ICELite{LocalUfrag: localUfrag, LocalPwd: localPwd}
	for _, user := range []string{localUfrag + ":whatever", localUfrag + ":"} {
		req := bindingRequest(t, checkOpts{user: user})
		resp, _, err := ice.Answer(req, netip.MustParseAddrPort("192.0.2.1:1"))
		if err != nil {
			t.Fatalf("%q: %v", user, err)
		}
		verifyResponse(t, req, resp, netip.MustParseAddrPort("192.0.2.1:1"))
	}
	if _, _, err := ice.Answer(bindingRequest(t, checkOpts{user: localUfrag}), netip.MustParseAddrPort("192.0.2.1:1")); !errors.Is(err, ErrAuth) {
		t.Errorf("USERNAME without a colon: %v", err)
	}
}

func TestICERefused(t *testing.T) {
	ice := &ICELite{LocalUfrag: localUfrag, LocalPwd: localPwd, RemoteUfrag: remoteUfrag}
	src := netip.MustParseAddrPort("192.0.2.7:50000")
	good := bindingRequest(t, checkOpts{})
	badFP := bytes.Clone(good)
	badFP[len(badFP)-1] ^= 1
	trailing := append(bytes.Clone(good), 0, 0, 0, 0)
	cookie := bytes.Clone(good)
	cookie[4] ^= 1

	for _, tc := range []struct {
		name string
		req  []byte
		err  error
	}{
		{"wrong password", bindingRequest(t, checkOpts{pwd: "not the password at all!"}), ErrAuth},
		{"wrong local ufrag", bindingRequest(t, checkOpts{user: "other:" + remoteUfrag}), ErrAuth},
		{"wrong remote ufrag", bindingRequest(t, checkOpts{user: localUfrag + ":other"}), ErrAuth},
		{"swapped ufrags", bindingRequest(t, checkOpts{user: remoteUfrag + ":" + localUfrag}), ErrAuth},
		{"no USERNAME", bindingRequest(t, checkOpts{noUser: true}), ErrAuth},
		{"no MESSAGE-INTEGRITY", bindingRequest(t, checkOpts{noMI: true}), ErrAuth},
		{"no MESSAGE-INTEGRITY nor FINGERPRINT", bindingRequest(t, checkOpts{noMI: true, noFP: true}), ErrAuth},
		{"bad FINGERPRINT", badFP, ErrMalformed},
		{"attribute after MESSAGE-INTEGRITY", bindingRequest(t, checkOpts{afterMI: true}), ErrMalformed},
		{"unknown comprehension-required", bindingRequest(t, checkOpts{unknownCR: true}), ErrMalformed},
		{"indication", bindingRequest(t, checkOpts{class: stun.ClassIndication}), ErrMalformed},
		{"success response", bindingRequest(t, checkOpts{class: stun.ClassSuccessResponse}), ErrMalformed},
		{"error response", bindingRequest(t, checkOpts{class: stun.ClassErrorResponse}), ErrMalformed},
		{"trailing bytes", trailing, ErrMalformed},
		{"bad cookie", cookie, ErrMalformed},
		{"truncated", good[:len(good)-4], ErrMalformed},
		{"header only", good[:20], ErrMalformed},
		{"empty", nil, ErrMalformed},
		{"rtp", rtpPacket(t, 1, 1), ErrMalformed},
		{"garbage", []byte(strings.Repeat("\x00\x01garbage!", 8)), ErrMalformed},
	} {
		resp, nominated, err := ice.Answer(tc.req, src)
		if !errors.Is(err, tc.err) || resp != nil || nominated {
			t.Errorf("%s: %v, %d bytes, nominated %v; want %v", tc.name, err, len(resp), nominated, tc.err)
		}
		if errors.Is(err, ErrAuth) && errors.Is(err, ErrMalformed) {
			t.Errorf("%s: both ErrAuth and ErrMalformed", tc.name)
		}
	}
	// Without FINGERPRINT, a good request is answered (it is optional).
	if _, _, err := ice.Answer(bindingRequest(t, checkOpts{noFP: true}), src); err != nil {
		t.Errorf("no FINGERPRINT: %v", err)
	}
}

func TestNewICECredentials(t *testing.T) {
	u1, p1 := NewICECredentials()
	u2, p2 := NewICECredentials()
	if len(u1) != 8 || len(p1) != 24 || u1 == u2 || p1 == p2 {
		t.Fatalf("%q %q / %q %q", u1, p1, u2, p2)
	}
	for _, s := range []string{u1, p1, u2, p2} {
		for _, c := range s {
			if !strings.ContainsRune(iceChars, c) {
				t.Errorf("%q: %q is not an ice-char", s, c)
			}
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		first byte
		want  Kind
	}{
		{0, KindSTUN}, {1, KindSTUN}, {3, KindSTUN},
		{4, KindOther}, {15, KindOther},
		{16, KindOther}, {19, KindOther}, // ZRTP
		{20, KindDTLS}, {22, KindDTLS}, {23, KindDTLS}, {63, KindDTLS},
		{64, KindOther}, {79, KindOther}, // TURN channels
		{80, KindOther}, {127, KindOther},
		{128, KindRTP}, {0x80, KindRTP}, {0x90, KindRTP}, {191, KindRTP},
		{192, KindOther}, {255, KindOther}, // QUIC, unassigned
	} {
		if got := Classify([]byte{tc.first, 0, 0, 0}); got != tc.want {
			t.Errorf("first byte %d: %v, want %v", tc.first, got, tc.want)
		}
	}
	if Classify(nil) != KindOther {
		t.Error("empty datagram is not KindOther")
	}
	if Classify(bindingRequest(t, checkOpts{})) != KindSTUN || Classify(rtpPacket(t, 1, 1)) != KindRTP || Classify(rtcpPacket(t, 1, 1)) != KindRTP {
		t.Error("real packets misclassified")
	}
}

// TestICERefusedWithoutAllocation: checks from strangers (a scan or a
// flood at the relay's ports: wrong or missing USERNAME, a length field
// that lies) are refused before Answer copies or decodes anything.
func TestICERefusedWithoutAllocation(t *testing.T) {
	ice := &ICELite{LocalUfrag: localUfrag, LocalPwd: localPwd, RemoteUfrag: remoteUfrag}
	src := netip.MustParseAddrPort("192.0.2.7:50000")
	long := bindingRequest(t, checkOpts{})
	binary.BigEndian.PutUint16(long[2:4], uint16(len(long))) // claims more than it has
	for _, tc := range []struct {
		name string
		req  []byte
		err  error
	}{
		{"wrong local ufrag", bindingRequest(t, checkOpts{user: "other:" + remoteUfrag}), ErrAuth},
		{"wrong remote ufrag", bindingRequest(t, checkOpts{user: localUfrag + ":other"}), ErrAuth},
		{"no colon", bindingRequest(t, checkOpts{user: localUfrag}), ErrAuth},
		{"no USERNAME", bindingRequest(t, checkOpts{noUser: true}), ErrAuth},
		{"length field", long, ErrMalformed},
	} {
		var err error
		allocs := testing.AllocsPerRun(100, func() {
			_, _, err = ice.Answer(tc.req, src)
		})
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
		}
		if allocs != 0 {
			t.Errorf("%s: %.0f allocations per refused check, want 0", tc.name, allocs)
		}
	}
	// The walk stops at a truncated attribute instead of reading past it.
	trunc := bindingRequest(t, checkOpts{noUser: true})
	binary.BigEndian.PutUint16(trunc[stunHeader+2:stunHeader+4], 0xfff0)
	if _, _, err := ice.Answer(trunc, src); !errors.Is(err, ErrMalformed) {
		t.Errorf("attribute longer than the message: %v, want ErrMalformed", err)
	}
}
