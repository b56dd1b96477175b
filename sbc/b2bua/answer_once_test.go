package b2bua_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/siptest"
)

// countingMedia stands in for the relay: it gives each body the port of
// the side it was written for (relayPort) and counts the rewrites per side.
type countingMedia struct {
	mu       sync.Mutex
	rewrites map[sbc.Side]int
}

func (m *countingMedia) Rewrite(_ string, toward sbc.Side, body []byte) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rewrites == nil {
		m.rewrites = map[sbc.Side]int{}
	}
	m.rewrites[toward]++
	return []byte(strings.Replace(string(body), "m=audio 40000", "m=audio "+relayPort[toward], 1)), nil
}

var relayPort = map[sbc.Side]string{sbc.External: "41000", sbc.Internal: "42000"}

func (m *countingMedia) Release(string) {}

func (m *countingMedia) count(s sbc.Side) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rewrites[s]
}

// The 2xx answer is checked with the relay before the call is taken
// (answerRefused) and relayed to the caller: the relay rewrites it once,
// and the caller gets that rewrite.
func TestAnswerRewrittenOnce(t *testing.T) {
	t.Parallel()
	m := &countingMedia{}
	caller := siptest.NewPeer(t, callerIP+":0")
	pbx := siptest.NewPeer(t, pbxIP+":0")
	h := startSBC(t, withUpstream("pbx", pbx, 1), withConfig(func(c *b2bua.Config) { c.Media = m }))

	a := caller.Invite(h.UDP, h.URI("bob"), nil, offerSDP(callerIP))
	bInv := pbx.ExpectRequest("INVITE", wait)
	if !strings.Contains(string(bInv.Body()), "m=audio "+relayPort[sbc.Internal]) {
		t.Fatalf("inside offer %q, want the relay's rewrite", bInv.Body())
	}
	pbx.ReplyBody(bInv, 200, "OK", offerSDP(pbxIP))
	a200 := caller.ExpectResponse(200, wait)
	if !strings.Contains(string(a200.Body()), "m=audio "+relayPort[sbc.External]) {
		t.Errorf("answer to the caller %q, want the relay's rewrite", a200.Body())
	}
	if n := m.count(sbc.External); n != 1 {
		t.Errorf("answer rewritten %d times toward the caller, want once", n)
	}
	if n := m.count(sbc.Internal); n != 1 {
		t.Errorf("offer rewritten %d times toward the PBX, want once", n)
	}
	a.Learn(a200)
	a.Ack(nil, "")
	pbx.ExpectRequest("ACK", wait)
}
