package upstream

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// DefaultPort is used when an upstream URI names no port.
const DefaultPort = 5060

// Target is one internal PBX or proxy the B2BUA can forward to.
type Target struct {
	// Name identifies the target in logs, metrics and Mark calls.
	Name string
	// URI is the configured SIP URI; requests to this target use it as
	// Request-URI.
	URI sip.Uri
	// Addr is where packets go: the URI host (an IP literal) and port.
	Addr netip.AddrPort
	// Transport is "udp", "tcp" or "tls", from the URI transport parameter.
	Transport string
	// Priority orders failover: lower values are tried first.
	Priority int
	// Weight is the relative share of calls among targets of one priority.
	Weight int
	// Exact makes URI the Request-URI as it is (a registered Contact, a
	// redirect target); otherwise the dialled user replaces URI's user.
	Exact bool
	// External marks a target on the outside (a trunk, a registered phone):
	// the B2BUA sends to it from an external listener and treats its leg as
	// outside. Upstreams are inside.
	External bool
}

// ParseTarget builds a Target from configuration values. The URI host must be
// an IP literal because upstreams are inside the trust boundary and DNS would
// make the forwarding path depend on an outside service. A missing port means
// 5060, a missing transport parameter means udp, a weight of 0 means 1.
func ParseTarget(name, uri string, priority, weight int) (Target, error) {
	if name == "" {
		return Target{}, errors.New("upstream: empty name")
	}
	if priority < 0 {
		return Target{}, fmt.Errorf("upstream %q: negative priority %d", name, priority)
	}
	if weight < 0 {
		return Target{}, fmt.Errorf("upstream %q: negative weight %d", name, weight)
	}
	if weight == 0 {
		weight = 1
	}

	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		return Target{}, fmt.Errorf("upstream %q: parse uri %q: %w", name, uri, err)
	}
	if u.Scheme != "sip" {
		// sips would need TLS, which the forwarding path does not offer.
		return Target{}, fmt.Errorf("upstream %q: uri %q: scheme must be sip", name, uri)
	}
	if u.Wildcard || u.Host == "" {
		return Target{}, fmt.Errorf("upstream %q: uri %q: missing host", name, uri)
	}

	// sipgo keeps the brackets of an IPv6 reference in Host.
	ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(u.Host, "["), "]"))
	if err != nil {
		return Target{}, fmt.Errorf("upstream %q: uri %q: host must be an ip address: %w", name, uri, err)
	}
	port := u.Port
	if port == 0 {
		port = DefaultPort
	}
	if port < 0 || port > 65535 {
		return Target{}, fmt.Errorf("upstream %q: uri %q: port %d out of range", name, uri, port)
	}

	transport := "udp"
	for _, kv := range u.UriParams {
		// Parameter names are case-insensitive (RFC 3261 19.1.4).
		if strings.EqualFold(kv.K, "transport") {
			transport = strings.ToLower(kv.V)
		}
	}
	if transport != "udp" && transport != "tcp" && transport != "tls" {
		return Target{}, fmt.Errorf("upstream %q: uri %q: unsupported transport %q (want udp, tcp or tls)", name, uri, transport)
	}

	return Target{
		Name: name,
		URI:  u,
		// Unmap so that an IPv4-mapped literal matches plain IPv4 sources in Lookup.
		Addr:      netip.AddrPortFrom(ip.Unmap(), uint16(port)),
		Transport: transport,
		Priority:  priority,
		Weight:    weight,
	}, nil
}

// clone returns a copy that shares no slices with t, so callers may modify
// the URI without racing with the pool.
func (t Target) clone() Target {
	t.URI = *t.URI.Clone()
	return t
}
