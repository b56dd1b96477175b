package sbc

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// FuzzEdgeMatching drives the edge transaction layer with random
// interleavings of INVITE, CANCEL, ACK, retransmissions and answers from
// two sources that copy each other's Via, branch, Call-ID and tags. Two
// properties must hold whatever the order: a source is only ever sent
// answers to requests it sent itself, and an INVITE is cancelled only by
// a CANCEL from its own source naming its Call-ID and CSeq.
func FuzzEdgeMatching(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 1, 0, 1, 0, 0})
	f.Add([]byte{0, 0, 0, 3, 0, 0, 2, 0, 0, 1, 1, 0, 2, 1, 0})
	f.Add([]byte{0, 1, 1, 0, 0, 1, 1, 0, 1, 4, 0, 1, 2, 1, 1, 3, 1, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 90 {
			ops = ops[:90]
		}
		h := newEdgeHarness(t)
		defer h.close()
		for i := 0; i+2 < len(ops); i += 3 {
			h.op(ops[i]%5, int(ops[i+1]&1), int(ops[i+1]>>1)%3, int(ops[i+2])%3+1)
		}
		h.check(t)
	})
}

type edgeHarness struct {
	s     *Server
	flows [2]*flow
	mu    sync.Mutex
	// sent: branch|cseq|method of each request per source; written: the
	// responses per source; pending: INVITE transactions by source and
	// Call-ID; cancels: source|call|cseq of CANCELs sent; cancelled: the
	// same key for INVITEs whose OnCancel ran.
	sent      [2]map[string]bool
	written   [2][]*sip.Response
	pending   map[string]*edgeTx
	cancels   map[string]bool
	cancelled map[string]bool
}

func newEdgeHarness(t *testing.T) *edgeHarness {
	h := &edgeHarness{pending: map[string]*edgeTx{}, cancels: map[string]bool{}, cancelled: map[string]bool{}}
	s, err := NewServer(Options{})
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	s.edge.run = func(req *sip.Request, tx *edgeTx) { s.dispatch(req, tx) }
	tu := HandlerFunc{N: "b2bua", F: func(_ context.Context, w ResponseWriter, r *Request) (Verdict, error) {
		src := 0
		if r.Peer == h.flows[1].peer {
			src = 1
		}
		switch r.Method {
		case sip.INVITE:
			key := itoa(src) + "|" + r.CallID().Value() + "|" + itoa(int(r.CSeq().SeqNo))
			tx := w.Tx().(*edgeTx)
			tx.OnCancel(func(*sip.Request) {
				h.mu.Lock()
				h.cancelled[key] = true
				h.mu.Unlock()
			})
			h.mu.Lock()
			h.pending[itoa(src)+"|"+r.CallID().Value()] = tx
			h.mu.Unlock()
			return Forwarded, Respond(w, r, 180, "Ringing")
		case sip.CANCEL:
			if MatchCancel(w) {
				return Answered, nil
			}
			return Rejected, Respond(w, r, 481, "Call/Transaction Does Not Exist")
		}
		return Dropped, nil
	}}
	chain, _ := BuildChain(map[string]Handler{"auth": vouch, "b2bua": tu})
	s.SetChain(chain)
	for i := range h.flows {
		i := i
		h.sent[i] = map[string]bool{}
		h.flows[i] = &flow{
			transport: "udp",
			local:     netip.MustParseAddrPort("127.0.0.1:5060"),
			peer:      netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(2 + i)}), 5060),
			write: func(b []byte) error {
				m, err := sip.ParseMessage(b)
				if err == nil {
					if res, ok := m.(*sip.Response); ok {
						h.mu.Lock()
						h.written[i] = append(h.written[i], res)
						h.mu.Unlock()
					}
				}
				return nil
			},
		}
	}
	return h
}

// op sends a request from source src: 0 INVITE, 1 CANCEL, 2 ACK, 3 the
// same INVITE again, 4 a final 486 from the TU on the source's pending
// INVITE of that Call-ID. Both sources write the same Via sent-by.
func (h *edgeHarness) op(kind byte, src, n, cseq int) {
	call, branch := "call-"+itoa(n), "z9hG4bK-"+itoa(n)
	method := map[byte]string{0: "INVITE", 1: "CANCEL", 2: "ACK", 3: "INVITE"}[kind]
	if kind == 4 {
		h.mu.Lock()
		tx := h.pending[itoa(src)+"|"+call]
		h.mu.Unlock()
		if tx == nil {
			return
		}
		if req := tx.request(); req != nil { // nil: answered already
			_ = tx.Respond(sip.NewResponseFromRequest(req, 486, "Busy Here", nil))
		}
		return
	}
	raw := strings.Join([]string{
		method + " sip:1000@127.0.0.1 SIP/2.0",
		"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=" + branch,
		"Max-Forwards: 70",
		"From: <sip:alice@example.com>;tag=f-" + itoa(n),
		"To: <sip:1000@127.0.0.1>",
		"Call-ID: " + call,
		"CSeq: " + itoa(cseq) + " " + method,
		"Content-Length: 0", "", "",
	}, "\r\n")
	m, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		return
	}
	req := m.(*sip.Request)
	f := h.flows[src]
	req.SetTransport("UDP")
	req.SetSource(f.peer.String())
	h.mu.Lock()
	h.sent[src][branch+"|"+itoa(cseq)+"|"+method] = true
	if method == "CANCEL" {
		h.cancels[itoa(src)+"|"+call+"|"+itoa(cseq)] = true
	}
	h.mu.Unlock()
	h.s.edge.receive(req, f, len(raw))
}

func (h *edgeHarness) check(t *testing.T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for src := range h.written {
		for _, res := range h.written[src] {
			branch, _ := res.Via().Params.Get("branch")
			cs := res.CSeq()
			k := branch + "|" + itoa(int(cs.SeqNo)) + "|" + string(cs.MethodName)
			if !h.sent[src][k] {
				t.Fatalf("source %d was sent %d for %s, a request it never sent", src, res.StatusCode, k)
			}
		}
	}
	for k := range h.cancelled {
		if !h.cancels[k] {
			t.Fatalf("INVITE %s cancelled without a CANCEL from its source naming it", k)
		}
	}
}

func (h *edgeHarness) close() {
	h.s.edge.mu.Lock()
	txs := make([]*edgeTx, 0, len(h.s.edge.txs))
	for _, tx := range h.s.edge.txs {
		txs = append(txs, tx)
	}
	h.s.edge.mu.Unlock()
	for _, tx := range txs {
		tx.Terminate()
	}
}
