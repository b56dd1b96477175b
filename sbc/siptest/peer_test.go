package siptest

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

const wait = 2 * time.Second

func TestMsg(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		want  string
	}{
		{
			name:  "no body gets Content-Length 0",
			lines: []string{"OPTIONS sip:x@127.0.0.1 SIP/2.0", "CSeq: 1 OPTIONS"},
			want:  "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
		},
		{
			name:  "body after empty line is counted",
			lines: []string{"MESSAGE sip:x@127.0.0.1 SIP/2.0", "Content-Type: text/plain", "", "hi", "there"},
			want:  "MESSAGE sip:x@127.0.0.1 SIP/2.0\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nhi\r\nthere",
		},
		{
			name:  "given Content-Length is kept",
			lines: []string{"MESSAGE sip:x@127.0.0.1 SIP/2.0", "l: 99", "", "hi"},
			want:  "MESSAGE sip:x@127.0.0.1 SIP/2.0\r\nl: 99\r\n\r\nhi",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(Msg(tt.lines...)); got != tt.want {
				t.Errorf("Msg() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBuildReplacesContentLength(t *testing.T) {
	got := string(Build("SIP/2.0 200 OK", []string{"Content-Length: 7", "CSeq: 1 INVITE"}, "v=0\r\n"))
	want := "SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\nContent-Length: 5\r\n\r\nv=0\r\n"
	if got != want {
		t.Errorf("Build() = %q, want %q", got, want)
	}
}

func TestMerge(t *testing.T) {
	got := merge([]string{"Via: a", "Max-Forwards: 70", "To: <sip:x>"},
		[]string{"max-forwards: 0", "X-Extra: 1", "t: <sip:y>"})
	want := []string{"Via: a", "max-forwards: 0", "t: <sip:y>", "X-Extra: 1"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("merge() = %q, want %q", got, want)
	}
}

// TestPeerToPeer runs a whole INVITE dialog between two peers, checking
// what each helper puts on the wire.
func TestPeerToPeer(t *testing.T) {
	a := NewPeer(t, "127.0.0.5:0")
	b := NewPeer(t, "127.0.0.6:0")
	a.User, b.User = "alice", "bob"

	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.5\r\ns=-\r\n"
	call := a.Invite(b.Addr(), "sip:bob@"+b.Addr().String(), []string{"Subject: hi"}, sdp)
	inv := b.ExpectRequest("INVITE", wait)
	if string(inv.Body()) != sdp {
		t.Errorf("INVITE body = %q, want %q", inv.Body(), sdp)
	}
	if h := inv.GetHeader("Subject"); h == nil || h.Value() != "hi" {
		t.Errorf("Subject = %v, want hi", h)
	}
	if inv.Source() != a.Addr().String() {
		t.Errorf("Source = %q, want %q", inv.Source(), a.Addr())
	}
	if ct := inv.ContentType(); ct == nil || ct.Value() != "application/sdp" {
		t.Errorf("Content-Type = %v", ct)
	}

	// 100 Trying carries no tag and is skipped by ExpectResponse.
	b.Reply(inv, 100, "Trying")
	ringing := b.Reply(inv, 180, "Ringing")
	ok := b.ReplyBody(inv, 200, "OK", sdp)
	tag, _ := ringing.To().Params.Get("tag")
	if tag == "" || tag != b.ToTag(inv) {
		t.Fatalf("180 To tag = %q, want the peer's dialog tag %q", tag, b.ToTag(inv))
	}
	if tag2, _ := ok.To().Params.Get("tag"); tag2 != tag {
		t.Errorf("200 To tag %q differs from 180 tag %q", tag2, tag)
	}

	r180 := a.ExpectResponse(180, wait)
	call.Learn(r180)
	r200 := a.ExpectResponse(200, wait)
	call.Learn(r200)
	if call.RemoteTag != tag {
		t.Errorf("learned remote tag %q, want %q", call.RemoteTag, tag)
	}
	if want := "sip:bob@" + b.Addr().String(); call.Target != want {
		t.Errorf("learned target %q, want %q", call.Target, want)
	}

	// A retransmitted 200 is skipped by Expect but still seen by Recv.
	b.SendRaw(a.Addr(), []byte(ok.String()))
	msg, err := a.Recv(wait)
	if err != nil {
		t.Fatal(err)
	}
	if r, isRes := msg.(*sip.Response); !isRes || r.StatusCode != 200 {
		t.Fatalf("Recv = %s, want the retransmitted 200", Describe(msg))
	}

	call.Ack(nil, "")
	ack := b.ExpectRequest("ACK", wait)
	if ack.CSeq().SeqNo != inv.CSeq().SeqNo {
		t.Errorf("ACK CSeq %d, want %d", ack.CSeq().SeqNo, inv.CSeq().SeqNo)
	}
	if br1, br2 := branch(ack), branch(inv); br1 == br2 {
		t.Errorf("ACK for 2xx reuses the INVITE branch %q", br1)
	}

	// The callee hangs up with its own dialog view.
	bd := b.DialogFrom(inv)
	bye := bd.Send("BYE", nil, "")
	got := a.ExpectRequest("BYE", wait)
	if ft, _ := got.From().Params.Get("tag"); ft != tag {
		t.Errorf("BYE From tag %q, want %q", ft, tag)
	}
	if tt, _ := got.To().Params.Get("tag"); tt != call.LocalTag {
		t.Errorf("BYE To tag %q, want %q", tt, call.LocalTag)
	}
	if got.Recipient.User != "alice" {
		t.Errorf("BYE Request-URI %s, want alice's contact", got.Recipient.String())
	}
	a.Reply(got, 200, "OK")
	res := b.ExpectResponse(200, wait)
	if res.CSeq().SeqNo != bye.CSeq().SeqNo || res.CSeq().MethodName != sip.BYE {
		t.Errorf("200 CSeq %s, want %s", res.CSeq().Value(), bye.CSeq().Value())
	}
	a.NoMessage(50 * time.Millisecond)
	b.NoMessage(50 * time.Millisecond)
}

func TestCancelAndAckFailure(t *testing.T) {
	a := NewPeer(t, "127.0.0.5:0")
	b := NewPeer(t, "127.0.0.6:0")
	call := a.Invite(b.Addr(), "sip:bob@"+b.Addr().String(), nil, "")
	inv := b.ExpectRequest("INVITE", wait)
	call.Cancel()
	cancel := b.ExpectRequest("CANCEL", wait)
	if branch(cancel) != branch(inv) {
		t.Errorf("CANCEL branch differs from INVITE's")
	}
	if cancel.CSeq().SeqNo != inv.CSeq().SeqNo || cancel.CSeq().MethodName != sip.CANCEL {
		t.Errorf("CANCEL CSeq %s", cancel.CSeq().Value())
	}
	b.Reply(cancel, 200, "OK")
	r487 := b.Reply(inv, 487, "Request Terminated")
	a.ExpectResponse(200, wait)
	got := a.ExpectResponse(487, wait)
	call.AckFailure(got)
	ack := b.ExpectRequest("ACK", wait)
	if branch(ack) != branch(inv) {
		t.Errorf("ACK for 487 must reuse the INVITE branch")
	}
	if ack.To().Value() != r487.To().Value() {
		t.Errorf("ACK To %q, want %q", ack.To().Value(), r487.To().Value())
	}
}

func TestOverrideDefaults(t *testing.T) {
	a := NewPeer(t, "127.0.0.5:0")
	b := NewPeer(t, "127.0.0.6:0")
	a.Invite(b.Addr(), "sip:bob@"+b.Addr().String(), []string{"Max-Forwards: 0"}, "")
	inv := b.ExpectRequest("INVITE", wait)
	if mf := inv.MaxForwards(); mf == nil || *mf != 0 {
		t.Errorf("Max-Forwards = %v, want 0", mf)
	}
	if n := len(inv.GetHeaders("Max-Forwards")); n != 1 {
		t.Errorf("%d Max-Forwards headers, want 1", n)
	}
}

func TestRecvTimeout(t *testing.T) {
	a := NewPeer(t, "127.0.0.5:0")
	start := time.Now()
	_, err := a.Recv(30 * time.Millisecond)
	if !isTimeout(err) {
		t.Fatalf("Recv error = %v, want a deadline error", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("Recv took %v", time.Since(start))
	}
}

func branch(m sip.Message) string {
	b, _ := m.Via().Params.Get("branch")
	return b
}
