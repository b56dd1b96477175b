// Package sbc is the core of sipwall: listeners, the ordered chain of layers
// every request passes, and the contract those layers implement.
package sbc

import (
	"context"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Verdict is what a layer decided about a request. A rejection is a verdict,
// not an error: the error return of ServeSIP means something broke.
type Verdict uint8

const (
	// Continue hands the request to the next layer of the chain.
	Continue Verdict = iota
	// Forwarded: the request was relayed (or answered on behalf of a peer).
	Forwarded
	// Answered: the SBC answered the request itself (OPTIONS, keepalives).
	Answered
	// Rejected: an error response was sent.
	Rejected
	// Dropped: nothing was sent back (silent drop).
	Dropped
)

func (v Verdict) String() string {
	switch v {
	case Continue:
		return "continue"
	case Forwarded:
		return "forwarded"
	case Answered:
		return "answered"
	case Rejected:
		return "rejected"
	case Dropped:
		return "dropped"
	}
	return "unknown"
}

// Side tells which side of the SBC a message came from.
type Side uint8

const (
	// External is the untrusted internet side.
	External Side = iota
	// Internal is the side of the PBX and internal proxies.
	Internal
)

func (s Side) String() string {
	if s == Internal {
		return "internal"
	}
	return "external"
}

// Identity is who a request was established to come from. Set by the auth
// layer; nil until then.
type Identity struct {
	User    string // authenticated user name, empty for trusted peers
	Realm   string
	Trusted string // name of the trusted peer (trunk, PBX) when matched by address
}

// MediaStats is what the media relay carried for one call, for the call
// log and the calls API. In is from the outside party toward the inside,
// Out the other way; the kernel fast path's packets are included.
type MediaStats struct {
	PacketsIn  uint64 `json:"packets_in"`
	BytesIn    uint64 `json:"bytes_in"`
	PacketsOut uint64 `json:"packets_out"`
	BytesOut   uint64 `json:"bytes_out"`
	FastPath   uint64 `json:"fastpath_packets"` // of those, forwarded by the kernel
	Dropped    uint64 `json:"dropped"`          // datagrams not relayed, any reason
	// Outside and Inside are the encryption the relay speaks with each
	// side: "pass" (SRTP, if any, end to end), "plain", "sdes" or "dtls".
	Outside string `json:"outside"`
	Inside  string `json:"inside"`
}

// Request is a parsed SIP request with what the SBC knows about its origin.
type Request struct {
	*sip.Request
	// Peer is the transport address the message arrived from, captured at
	// the socket. Security decisions use Peer, never Via, Contact or From.
	Peer netip.AddrPort
	// Local is the listener address the message arrived on.
	Local netip.AddrPort
	// Transport is "udp", "tcp", "tls", "ws" or "wss".
	Transport string
	// Side is External unless the peer is a configured upstream or the
	// listener is marked internal.
	Side     Side
	Identity *Identity
	// PeerCert is the verified client certificate of a tls or wss peer
	// (mutual TLS), nil when it presented none.
	PeerCert *PeerCert
	// Tags collects labels set by layers (e.g. a routing hint from policy).
	Tags map[string]string
	// Forward holds headers layers want on the request that leaves toward
	// the inside (the asserted identity, the signed source address). The
	// B2BUA and the registrar's relay add them to out-of-dialog requests
	// they send to an upstream; nothing else of the incoming request's
	// headers is copied unless allow-listed.
	Forward []sip.Header
	// MaxDuration, when set by a layer (the anti-fraud rules), ends the
	// call this request starts after that long, if that is sooner than
	// calls.max_duration.
	MaxDuration time.Duration
	// Why names the check or rule behind a layer's verdict, for the
	// decision log: set by the layer that rejects or drops the request,
	// or by one that would have refused it in shadow mode (then the
	// request goes on). Short, made of the layer's own words, never of
	// wire text.
	Why string
	// Owned is set by the auth layer for a request inside a dialog the
	// SBC created (vouched for when the dialog was made): its answers
	// are sent in a transaction, like those of an authenticated request,
	// where anything else unauthenticated from outside is answered
	// statelessly, once.
	Owned bool
	// Claimed is the user name the request's credentials gave, set by
	// the auth layer when it checks them, whether or not they are good
	// (the decision log finds failed logins by it). Attacker text.
	Claimed string
}

// HasToTag reports whether the request carries a To tag: it claims to be
// in a dialog (whether that dialog exists is the B2BUA's to say).
func (r *Request) HasToTag() bool {
	to := r.To()
	if to == nil {
		return false
	}
	tag, ok := to.Params.Get("tag")
	return ok && tag != ""
}

// PeerCert is what a verified client certificate says about a peer.
type PeerCert struct {
	// Name is the certificate's first DNS SAN, else its common name.
	Name string
	// Fingerprint is the SHA-256 of the certificate, lower-case hex.
	Fingerprint string
}

// ResponseWriter answers a request within its server transaction.
type ResponseWriter interface {
	// Respond sends res in the request's server transaction.
	Respond(res *sip.Response) error
	// Tx is the server transaction; the B2BUA uses it to see CANCEL and
	// ACKs. Nil for requests handled without a transaction (ACK).
	Tx() sip.ServerTransaction
	// Written reports the status of the final response sent, 0 if none.
	Written() int
}

// Handler is one layer of the chain.
type Handler interface {
	// Name is the layer's name in logs and metrics.
	Name() string
	// ServeSIP looks at r and either decides (Forwarded, Answered,
	// Rejected, Dropped) or passes it on (Continue).
	ServeSIP(ctx context.Context, w ResponseWriter, r *Request) (Verdict, error)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc struct {
	N string
	F func(ctx context.Context, w ResponseWriter, r *Request) (Verdict, error)
}

// Name implements Handler.
func (h HandlerFunc) Name() string { return h.N }

// ServeSIP implements Handler.
func (h HandlerFunc) ServeSIP(ctx context.Context, w ResponseWriter, r *Request) (Verdict, error) {
	return h.F(ctx, w, r)
}

// Respond builds a response to r with the given status and sends it.
// Extra headers are appended as they are.
func Respond(w ResponseWriter, r *Request, code int, reason string, hdrs ...sip.Header) error {
	res := sip.NewResponseFromRequest(r.Request, code, reason, nil)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	return w.Respond(res)
}

// ReasonPhrase is the RFC 3261 reason phrase of the final statuses layers
// reject with, and fallback for any other.
func ReasonPhrase(code int, fallback string) string {
	switch code {
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 405:
		return "Method Not Allowed"
	case 407:
		return "Proxy Authentication Required"
	case 408:
		return "Request Timeout"
	case 423:
		return "Interval Too Brief"
	case 481:
		return "Call/Transaction Does Not Exist"
	case 482:
		return "Loop Detected"
	case 483:
		return "Too Many Hops"
	case 491:
		return "Request Pending"
	case 501:
		return "Not Implemented"
	case 404:
		return "Not Found"
	case 480:
		return "Temporarily Unavailable"
	case 486:
		return "Busy Here"
	case 488:
		return "Not Acceptable Here"
	case 500:
		return "Server Internal Error"
	case 503:
		return "Service Unavailable"
	case 603:
		return "Decline"
	}
	return fallback
}
