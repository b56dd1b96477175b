package sbc

import "fmt"

// Order is the one list that fixes the order of the layers, outside to
// inside (see docs/architecture.md). A layer missing from the map given to
// BuildChain is simply not part of the chain; a layer not named here is an
// error, so nothing can be slipped in out of order.
var Order = []string{
	"ban",       // banned sources dropped, scanners banned on sight
	"sanity",    // RFC 3261 validation (hardening issue)
	"local",     // requests the SBC answers itself (OPTIONS to the SBC)
	"auth",      // trusted peers and digest authentication
	"policy",    // OPA decision
	"rules",     // anti-fraud
	"registrar", // REGISTER and location lookups
	"b2bua",     // dialogs, forwarding to upstreams
}

// BuildChain orders the given layers by Order.
func BuildChain(layers map[string]Handler) ([]Handler, error) {
	known := map[string]bool{}
	for _, n := range Order {
		known[n] = true
	}
	for n := range layers {
		if !known[n] {
			return nil, fmt.Errorf("layer %q is not in the chain order", n)
		}
	}
	var chain []Handler
	for _, n := range Order {
		if h, ok := layers[n]; ok && h != nil {
			chain = append(chain, h)
		}
	}
	return chain, nil
}
