package demo

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func TestExtensions(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			opts := fastOptions()
			// sipgo hands each response to its own goroutine, so a 180 sent
			// right before the final answer can be seen after it; a short gap
			// keeps the 180 observable.
			opts.AnswerAfter = 20 * time.Millisecond
			p := startPBX(t, opts)
			ph := newPhone(t)

			t.Run("1000 answers with echo SDP", func(t *testing.T) {
				c := ph.invite(t, p, transport, ExtEcho, offerSDP)
				ok := c.waitFor(t, sip.StatusOK)
				if !slices.Contains(c.provisional, sip.StatusRinging) {
					t.Errorf("provisional responses %v, want 180", c.provisional)
				}
				if tag := toTag(ok); tag == "" {
					t.Error("200 OK To has no tag")
				}
				if ok.Contact() == nil || ok.Contact().Address.Port != int(p.Addr(transport).Port()) {
					t.Errorf("Contact %v does not point at the PBX %s listener", ok.Contact(), transport)
				}
				body := ok.Body()
				for _, want := range []string{
					"c=IN IP4 127.0.0.1",
					"a=rtpmap:0 PCMU/8000",
					"a=rtpmap:8 PCMA/8000",
					"a=rtpmap:101 telephone-event/8000",
					"a=sendrecv",
				} {
					if !hasLine(body, want) {
						t.Errorf("answer lacks %q:\n%s", want, body)
					}
				}
				if m := mediaAddr(t, body); m.Port == 0 || !strings.Contains(string(body), "RTP/AVP 0 8 101") {
					t.Errorf("unexpected m= line in:\n%s", body)
				}
				c.ack(t)
				eventually(t, 2*time.Second, "active dialog", func() bool { return p.Stats().Active == 1 })

				res := c.do(t, c.inDialog(sip.BYE))
				if res.StatusCode != sip.StatusOK {
					t.Fatalf("BYE got %d", res.StatusCode)
				}
				if s := p.Stats(); s.Active != 0 || s.ByesReceived != 1 || s.Answered != 1 {
					t.Errorf("stats after BYE: %+v", s)
				}
			})

			t.Run("1001 is busy", func(t *testing.T) {
				c := ph.invite(t, p, transport, ExtBusy, offerSDP)
				c.waitFor(t, sip.StatusBusyHere)
				if !slices.Contains(c.provisional, sip.StatusRinging) {
					t.Errorf("provisional responses %v, want 180", c.provisional)
				}
				if p.Stats().Busy != 1 {
					t.Errorf("busy counter %d", p.Stats().Busy)
				}
			})

			t.Run("1002 rings until CANCEL", func(t *testing.T) {
				c := ph.invite(t, p, transport, ExtRing, offerSDP)
				c.waitFor(t, sip.StatusRinging)
				if res := c.cancel(t); res.StatusCode != sip.StatusOK {
					t.Fatalf("CANCEL got %d", res.StatusCode)
				}
				c.waitFor(t, sip.StatusRequestTerminated)
				eventually(t, 2*time.Second, "cancel counted", func() bool { return p.Stats().Cancels == 1 })
			})

			t.Run("1003 hangs up by itself", func(t *testing.T) {
				before := p.Stats().ByesSent
				c := ph.invite(t, p, transport, ExtHangup, offerSDP)
				ok := c.waitFor(t, sip.StatusOK)
				c.ack(t)
				select {
				case bye := <-ph.byes:
					if bye.CallID().Value() != c.invite.CallID().Value() {
						t.Errorf("BYE Call-ID %q", bye.CallID().Value())
					}
					fromTag, _ := bye.From().Params.Get("tag")
					toTagV, _ := bye.To().Params.Get("tag")
					ourTag, _ := c.invite.From().Params.Get("tag")
					if fromTag != toTag(ok) || toTagV != ourTag {
						t.Errorf("BYE tags from=%q to=%q, want from=%q to=%q", fromTag, toTagV, toTag(ok), ourTag)
					}
					if bye.Recipient.User != "tester" {
						t.Errorf("BYE Request-URI %s, want the caller's Contact", bye.Recipient.String())
					}
				case <-time.After(testTimeout):
					t.Fatal("no BYE from 1003")
				}
				eventually(t, 2*time.Second, "BYE counted and dialog gone", func() bool {
					s := p.Stats()
					return s.ByesSent == before+1 && s.Active == 0
				})
			})

			t.Run("unknown extension is 404", func(t *testing.T) {
				c := ph.invite(t, p, transport, "4242", offerSDP)
				c.waitFor(t, sip.StatusNotFound)
			})
		})
	}
}

func TestMain(m *testing.M) {
	// sipgo logs some teardown noise through its package default logger.
	sip.SetDefaultLogger(testLogger())
	os.Exit(m.Run())
}

// TestResponseOrderOnWire checks the exact sequence the PBX sends, with the
// default timings, on a raw socket that preserves order.
func TestResponseOrderOnWire(t *testing.T) {
	p := startPBX(t, Options{Logger: testLogger()})
	for ext, want := range map[string][]int{
		ExtEcho: {sip.StatusTrying, sip.StatusRinging, sip.StatusOK},
		ExtBusy: {sip.StatusTrying, sip.StatusRinging, sip.StatusBusyHere},
		"1234":  {sip.StatusNotFound},
	} {
		t.Run(ext, func(t *testing.T) {
			r := newRawPhone(t, p)
			d := newRawDialog(ext)
			r.sendInvite(t, d)
			var got []int
			var last *sip.Response
			tags := map[string]bool{}
			for len(got) < len(want) {
				m := r.recv(t, testTimeout)
				res, ok := m.(*sip.Response)
				if !ok {
					t.Fatalf("no response after %v", got)
				}
				got, last = append(got, res.StatusCode), res
				if res.StatusCode > 100 {
					tags[toTag(res)] = true
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("responses %v, want %v", got, want)
			}
			if len(tags) != 1 {
				t.Errorf("To tags differ between responses: %v", tags)
			}
			if last.StatusCode >= 300 {
				// ACK of a non-2xx belongs to the INVITE transaction.
				r.send(t, msg("ACK "+r.ruri(ext)+" SIP/2.0", r.headers(d, d.branch, toTag(last), 1, "ACK"), ""))
				return
			}
			target := last.Contact().Address.String()
			r.send(t, msg("ACK "+target+" SIP/2.0", r.headers(d, newBranch(), toTag(last), 1, "ACK"), ""))
			r.send(t, msg("BYE "+target+" SIP/2.0", r.headers(d, newBranch(), toTag(last), 2, "BYE"), ""))
			r.recvResponse(t, sip.StatusOK, sip.BYE)
		})
	}
}

func TestByeUnknownDialogIs481(t *testing.T) {
	p := startPBX(t, fastOptions())
	r := newRawPhone(t, p)
	d := newRawDialog(ExtEcho)
	r.send(t, msg("BYE "+r.ruri(d.ext)+" SIP/2.0", r.headers(d, newBranch(), "nosuchtag", 2, "BYE"), ""))
	r.recvResponse(t, sip.StatusCallTransactionDoesNotExists, sip.BYE)
	if s := p.Stats(); s.ByesReceived != 0 {
		t.Errorf("unknown BYE counted: %+v", s)
	}
}

func TestCancelWithoutInviteIs481(t *testing.T) {
	p := startPBX(t, fastOptions())
	r := newRawPhone(t, p)
	d := newRawDialog(ExtRing)
	r.send(t, msg("CANCEL "+r.ruri(d.ext)+" SIP/2.0", r.headers(d, d.branch, "", 1, "CANCEL"), ""))
	r.recvResponse(t, sip.StatusCallTransactionDoesNotExists, sip.CANCEL)
	if s := p.Stats(); s.Cancels != 0 {
		t.Errorf("unmatched CANCEL counted: %+v", s)
	}
}

// A caller may end an early dialog with BYE; the pending INVITE then gets
// 487 from the PBX itself.
func TestByeOnEarlyDialog(t *testing.T) {
	p := startPBX(t, fastOptions())
	r := newRawPhone(t, p)
	d := newRawDialog(ExtRing)
	r.sendInvite(t, d)
	ringing := r.recvResponse(t, sip.StatusRinging, sip.INVITE)
	tag := toTag(ringing)
	r.send(t, msg("BYE "+ringing.Contact().Address.String()+" SIP/2.0", r.headers(d, newBranch(), tag, 2, "BYE"), ""))
	var byeOK, terminated bool
	deadline := time.Now().Add(testTimeout)
	for !(byeOK && terminated) && time.Now().Before(deadline) {
		res, ok := r.recv(t, time.Until(deadline)).(*sip.Response)
		if !ok {
			continue
		}
		switch {
		case res.CSeq().MethodName == sip.BYE && res.StatusCode == sip.StatusOK:
			byeOK = true
		case res.CSeq().MethodName == sip.INVITE && res.StatusCode == sip.StatusRequestTerminated:
			terminated = true
			if toTag(res) != tag {
				t.Errorf("487 To tag %q, want the 180's %q", toTag(res), tag)
			}
		}
	}
	if !byeOK || !terminated {
		t.Fatalf("BYE 200 seen: %v, INVITE 487 seen: %v", byeOK, terminated)
	}
	r.send(t, msg("ACK "+r.ruri(d.ext)+" SIP/2.0", r.headers(d, d.branch, tag, 1, "ACK"), ""))
}

// Over UDP the PBX repeats its 200 OK until the ACK arrives, then stops.
func TestOKRetransmittedUntilAck(t *testing.T) {
	p := startPBX(t, fastOptions())
	r := newRawPhone(t, p)
	d := newRawDialog(ExtEcho)
	r.sendInvite(t, d)
	first := r.recvResponse(t, sip.StatusOK, sip.INVITE)
	again := r.recvResponse(t, sip.StatusOK, sip.INVITE) // after T1 = 500ms
	if toTag(again) != toTag(first) {
		t.Errorf("retransmitted 200 has tag %q, first had %q", toTag(again), toTag(first))
	}
	target := first.Contact().Address.String()
	r.send(t, msg("ACK "+target+" SIP/2.0", r.headers(d, newBranch(), toTag(first), 1, "ACK"), ""))
	// A retransmission may cross the ACK; allow that briefly.
	grace := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(grace) {
		if m := r.recv(t, time.Until(grace)); m != nil {
			if res, ok := m.(*sip.Response); !ok || res.StatusCode != sip.StatusOK {
				t.Fatalf("unexpected message after ACK:\n%s", m.String())
			}
		}
	}
	// The next retransmission would be due 1s after the one at T1.
	final := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(final) {
		if m := r.recv(t, time.Until(final)); m != nil {
			t.Fatalf("200 OK still retransmitted after ACK:\n%s", m.String())
		}
	}
	r.send(t, msg("BYE "+target+" SIP/2.0", r.headers(d, newBranch(), toTag(first), 2, "BYE"), ""))
	r.recvResponse(t, sip.StatusOK, sip.BYE)
}

func TestMaxCallDuration(t *testing.T) {
	opts := fastOptions()
	opts.MaxCallDuration = 150 * time.Millisecond
	p := startPBX(t, opts)
	r := newRawPhone(t, p)
	d := newRawDialog(ExtEcho)
	r.sendInvite(t, d)
	ok := r.recvResponse(t, sip.StatusOK, sip.INVITE)
	r.send(t, msg("ACK "+ok.Contact().Address.String()+" SIP/2.0", r.headers(d, newBranch(), toTag(ok), 1, "ACK"), ""))
	bye := r.recvRequest(t, sip.BYE)
	r.reply(t, bye, sip.StatusOK, "OK")
	eventually(t, 2*time.Second, "dialog gone", func() bool { return p.Stats().Active == 0 })
}

func TestCancelRingingSends487Once(t *testing.T) {
	p := startPBX(t, fastOptions())
	r := newRawPhone(t, p)
	d := newRawDialog(ExtRing)
	r.sendInvite(t, d)
	r.recvResponse(t, sip.StatusRinging, sip.INVITE)

	cancel := r.headers(d, d.branch, "", 1, "CANCEL")
	cancel = slices.DeleteFunc(cancel, func(h string) bool { return strings.HasPrefix(h, "Contact:") })
	r.send(t, msg("CANCEL "+r.ruri(d.ext)+" SIP/2.0", cancel, ""))

	var got200, got487 int
	var tag string
	deadline := time.Now().Add(testTimeout)
	for (got200 == 0 || got487 == 0) && time.Now().Before(deadline) {
		res, ok := r.recv(t, time.Until(deadline)).(*sip.Response)
		if !ok {
			continue
		}
		switch {
		case res.CSeq().MethodName == sip.CANCEL && res.StatusCode == sip.StatusOK:
			got200++
		case res.CSeq().MethodName == sip.INVITE && res.StatusCode == sip.StatusRequestTerminated:
			got487++
			tag = toTag(res)
		case res.CSeq().MethodName == sip.INVITE && res.IsProvisional():
		default:
			t.Fatalf("unexpected %d for %s", res.StatusCode, res.CSeq().MethodName)
		}
	}
	if got200 != 1 || got487 != 1 {
		t.Fatalf("got %d x 200 for CANCEL and %d x 487", got200, got487)
	}
	// The ACK for a non-2xx reuses the INVITE branch and stops Timer G.
	r.send(t, msg("ACK "+r.ruri(d.ext)+" SIP/2.0", r.headers(d, d.branch, tag, 1, "ACK"), ""))

	// Nothing else may follow: no second 487 and no 480 from the ring timeout.
	quiet := time.Now().Add(1200 * time.Millisecond)
	for time.Now().Before(quiet) {
		if m := r.recv(t, time.Until(quiet)); m != nil {
			t.Fatalf("unexpected message after ACK:\n%s", m.String())
		}
	}
	if s := p.Stats(); s.Cancels != 1 || s.Active != 0 {
		t.Errorf("stats: %+v", s)
	}
	if !slices.Contains(p.Received(), "CANCEL "+r.ruri(d.ext)) {
		t.Errorf("Received %v lacks the CANCEL", p.Received())
	}
}

func TestHangupExtensionSendsByeRaw(t *testing.T) {
	p := startPBX(t, fastOptions())
	r := newRawPhone(t, p)
	d := newRawDialog(ExtHangup)
	r.sendInvite(t, d)
	ok := r.recvResponse(t, sip.StatusOK, sip.INVITE)
	tag := toTag(ok)
	if ok.Contact() == nil {
		t.Fatal("200 OK without Contact")
	}
	ack := r.headers(d, newBranch(), tag, 1, "ACK")
	r.send(t, msg("ACK "+ok.Contact().Address.String()+" SIP/2.0", ack, ""))

	bye := r.recvRequest(t, sip.BYE)
	if got, want := bye.Recipient.String(), fmt.Sprintf("sip:raw@127.0.0.1:%d", r.port); got != want {
		t.Errorf("BYE Request-URI %s, want %s", got, want)
	}
	if bye.CallID().Value() != d.callID {
		t.Errorf("BYE Call-ID %s", bye.CallID().Value())
	}
	if ft, _ := bye.From().Params.Get("tag"); ft != tag {
		t.Errorf("BYE From tag %q, want PBX tag %q", ft, tag)
	}
	if tt, _ := bye.To().Params.Get("tag"); tt != d.fromTag {
		t.Errorf("BYE To tag %q, want caller tag %q", tt, d.fromTag)
	}
	if bye.CSeq().MethodName != sip.BYE {
		t.Errorf("BYE CSeq %s", bye.CSeq().Value())
	}
	r.reply(t, bye, sip.StatusOK, "OK")
	eventually(t, 2*time.Second, "bye counted", func() bool {
		s := p.Stats()
		return s.ByesSent == 1 && s.Active == 0
	})
}

func TestReInviteHoldAnswer(t *testing.T) {
	p := startPBX(t, fastOptions())
	ph := newPhone(t)
	c := ph.invite(t, p, "udp", ExtEcho, offerSDP)
	c.waitFor(t, sip.StatusOK)
	c.ack(t)

	for _, tc := range []struct{ offer, want string }{
		{"sendonly", "a=recvonly"},
		{"inactive", "a=inactive"},
		{"recvonly", "a=sendonly"},
		{"sendrecv", "a=sendrecv"},
	} {
		res := c.reinvite(t, offerWith(tc.offer))
		if res.StatusCode != sip.StatusOK {
			t.Fatalf("re-INVITE %s got %d", tc.offer, res.StatusCode)
		}
		if !hasLine(res.Body(), tc.want) {
			t.Errorf("offer a=%s: answer lacks %s:\n%s", tc.offer, tc.want, res.Body())
		}
	}
	if s := p.Stats(); s.ReInvites != 4 || s.Active != 1 {
		t.Errorf("stats: %+v", s)
	}
	if res := c.do(t, c.inDialog(sip.BYE)); res.StatusCode != sip.StatusOK {
		t.Fatalf("BYE got %d", res.StatusCode)
	}
}

func TestRTPEcho(t *testing.T) {
	p := startPBX(t, fastOptions())
	ph := newPhone(t)
	c := ph.invite(t, p, "udp", ExtEcho, offerSDP)
	ok := c.waitFor(t, sip.StatusOK)
	c.ack(t)
	media := mediaAddr(t, ok.Body())

	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	payload := []byte("\x80\x00\x00\x01rtp-echo-test")
	if _, err := conn.WriteToUDP(payload, media); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := conn.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("no echo: %v", err)
	}
	if !bytes.Equal(buf[:n], payload) || from.Port != media.Port {
		t.Fatalf("echo %q from %v, want %q from %v", buf[:n], from, payload, media)
	}

	// After BYE the echo socket is closed and stays silent.
	if res := c.do(t, c.inDialog(sip.BYE)); res.StatusCode != sip.StatusOK {
		t.Fatalf("BYE got %d", res.StatusCode)
	}
	_, _ = conn.WriteToUDP(payload, media)
	_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := conn.ReadFromUDP(buf); err == nil {
		t.Fatalf("echo still answering after BYE: %q", buf[:n])
	}
}

func TestOtherMethods(t *testing.T) {
	p := startPBX(t, fastOptions())
	ph := newPhone(t)
	ctx := testCtx(t)
	uri := pbxURI(p, "udp", "pbx")

	newReq := func(method sip.RequestMethod) *sip.Request {
		req := sip.NewRequest(method, uri)
		req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "tester", Host: "127.0.0.1", Port: 5999}})
		req.SetBody(nil)
		return req
	}
	do := func(req *sip.Request) *sip.Response {
		t.Helper()
		res, err := ph.cli.Do(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", req.Method, err)
		}
		return res
	}

	res := do(newReq(sip.OPTIONS))
	if res.StatusCode != sip.StatusOK || res.GetHeader("Allow") == nil || !strings.Contains(res.GetHeader("Allow").Value(), "INVITE") {
		t.Errorf("OPTIONS: %d Allow=%v", res.StatusCode, res.GetHeader("Allow"))
	}

	reg := newReq(sip.REGISTER)
	reg.AppendHeader(sip.NewHeader("Expires", "600"))
	res = do(reg)
	if res.StatusCode != sip.StatusOK || res.Contact() == nil {
		t.Fatalf("REGISTER: %d contact=%v", res.StatusCode, res.Contact())
	}
	if exp, _ := res.Contact().Params.Get("expires"); exp != "600" || res.Contact().Address.Port != 5999 {
		t.Errorf("REGISTER Contact %s, want the sent Contact with expires=600", res.Contact().Value())
	}

	for _, m := range []sip.RequestMethod{sip.SUBSCRIBE, sip.PUBLISH} {
		res = do(newReq(m))
		if res.StatusCode != sip.StatusMethodNotAllowed || res.GetHeader("Allow") == nil {
			t.Errorf("%s: %d Allow=%v", m, res.StatusCode, res.GetHeader("Allow"))
		}
	}
	if res = do(newReq(sip.MESSAGE)); res.StatusCode != sip.StatusOK {
		t.Errorf("out-of-dialog MESSAGE: %d", res.StatusCode)
	}
	if res = do(newReq(sip.INFO)); res.StatusCode != sip.StatusCallTransactionDoesNotExists {
		t.Errorf("INFO without dialog: %d", res.StatusCode)
	}

	// In-dialog methods.
	c := ph.invite(t, p, "udp", ExtEcho, offerSDP)
	c.waitFor(t, sip.StatusOK)
	c.ack(t)
	for _, m := range []sip.RequestMethod{sip.INFO, sip.PRACK, sip.MESSAGE, sip.UPDATE} {
		if res := c.do(t, c.inDialog(m)); res.StatusCode != sip.StatusOK {
			t.Errorf("in-dialog %s: %d", m, res.StatusCode)
		}
	}
	upd := c.inDialog(sip.UPDATE)
	ct := sip.ContentTypeHeader("application/sdp")
	upd.AppendHeader(&ct)
	upd.SetBody([]byte(offerWith("sendonly")))
	if res := c.do(t, upd); res.StatusCode != sip.StatusOK || !hasLine(res.Body(), "a=recvonly") {
		t.Errorf("UPDATE with offer: %d\n%s", res.StatusCode, res.Body())
	}

	refer := c.inDialog(sip.REFER)
	refer.AppendHeader(sip.NewHeader("Refer-To", "<sip:1001@127.0.0.1>"))
	if res := c.do(t, refer); res.StatusCode != sip.StatusAccepted {
		t.Fatalf("REFER: %d", res.StatusCode)
	}
	select {
	case n := <-ph.notifies:
		if ev := n.GetHeader("Event"); ev == nil || ev.Value() != "refer" {
			t.Errorf("NOTIFY Event %v", ev)
		}
		if ss := n.GetHeader("Subscription-State"); ss == nil || ss.Value() != "terminated;reason=noresource" {
			t.Errorf("NOTIFY Subscription-State %v", ss)
		}
		if ct := n.ContentType(); ct == nil || !strings.HasPrefix(ct.Value(), "message/sipfrag") {
			t.Errorf("NOTIFY Content-Type %v", ct)
		}
		if !strings.HasPrefix(string(n.Body()), "SIP/2.0 200 OK") {
			t.Errorf("NOTIFY body %q", n.Body())
		}
		if n.CallID().Value() != c.invite.CallID().Value() {
			t.Errorf("NOTIFY outside the dialog: Call-ID %s", n.CallID().Value())
		}
	case <-time.After(testTimeout):
		t.Fatal("no NOTIFY after REFER")
	}
	if res := c.do(t, c.inDialog(sip.BYE)); res.StatusCode != sip.StatusOK {
		t.Fatalf("BYE: %d", res.StatusCode)
	}

	want := "OPTIONS " + uri.String()
	if !slices.Contains(p.Received(), want) {
		t.Errorf("Received() lacks %q: %v", want, p.Received())
	}
}

func TestDialogTableIsBounded(t *testing.T) {
	opts := fastOptions()
	opts.MaxDialogs = 1
	p := startPBX(t, opts)
	ph := newPhone(t)
	first := ph.invite(t, p, "udp", ExtRing, offerSDP)
	first.waitFor(t, sip.StatusRinging)
	second := ph.invite(t, p, "udp", ExtEcho, offerSDP)
	second.waitFor(t, sip.StatusServiceUnavailable)
	first.cancel(t)
	first.waitFor(t, sip.StatusRequestTerminated)
	third := ph.invite(t, p, "udp", ExtBusy, offerSDP)
	third.waitFor(t, sip.StatusBusyHere)
}

func TestRingTimeout(t *testing.T) {
	opts := fastOptions()
	opts.RingTimeout = 150 * time.Millisecond
	p := startPBX(t, opts)
	c := newPhone(t).invite(t, p, "tcp", ExtRing, offerSDP)
	c.waitFor(t, sip.StatusTemporarilyUnavailable)
	eventually(t, 2*time.Second, "dialog removed", func() bool { return len(p.snapshotDialogs()) == 0 })
}

func TestUnacceptableOffer(t *testing.T) {
	p := startPBX(t, fastOptions())
	c := newPhone(t).invite(t, p, "udp", ExtEcho, strings.ReplaceAll(offerSDP, "RTP/AVP 0 8 101", "RTP/AVP 9"))
	c.waitFor(t, sip.StatusNotAcceptableHere)
}

func TestLateOfferGetsOffer(t *testing.T) {
	p := startPBX(t, fastOptions())
	c := newPhone(t).invite(t, p, "udp", ExtEcho, "")
	ok := c.waitFor(t, sip.StatusOK)
	if !strings.Contains(string(ok.Body()), "m=audio ") || !hasLine(ok.Body(), "a=sendrecv") {
		t.Errorf("no offer in 200 OK:\n%s", ok.Body())
	}
	c.ack(t)
}

func TestStartErrors(t *testing.T) {
	p := New(Options{Logger: testLogger()})
	if err := p.Start(context.Background(), "", ""); err == nil {
		t.Error("Start without addresses succeeded")
	}
	p = startPBX(t, fastOptions())
	if err := p.Start(context.Background(), "127.0.0.1:0", ""); err == nil {
		t.Error("second Start succeeded")
	}
	if !p.Addr("UDP").IsValid() || !p.Addr("tcp").IsValid() || p.Addr("sctp").IsValid() {
		t.Errorf("Addr: udp=%v tcp=%v", p.Addr("udp"), p.Addr("tcp"))
	}
}

// waitGoroutines polls until the goroutine count is back near base.
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	const slack = 2
	deadline := time.Now().Add(5 * time.Second)
	n := runtime.NumGoroutine()
	for n > base+slack && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	if n > base+slack {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("%d goroutines, baseline %d\n%s", n, base, buf)
	}
}

// closeWithin fails the test instead of hanging when Close does not return.
func closeWithin(t *testing.T, p *PBX, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("Close did not return within %v\n%s", d, buf)
		return nil
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	func() {
		p := New(fastOptions())
		if err := p.Start(context.Background(), "127.0.0.1:0", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		ph := newPhone(t)
		// An established TCP call with its echo socket, and a ringing UDP call.
		up := ph.invite(t, p, "tcp", ExtEcho, offerSDP)
		up.waitFor(t, sip.StatusOK)
		up.ack(t)
		ringing := ph.invite(t, p, "udp", ExtRing, offerSDP)
		ringing.waitFor(t, sip.StatusRinging)

		if err := closeWithin(t, p, 5*time.Second); err != nil {
			t.Errorf("Close: %v", err)
		}
		// The pending call was told the PBX went away.
		ringing.waitFor(t, sip.StatusServiceUnavailable)
		if err := p.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		_ = ph.ua.Close()
	}()
	waitGoroutines(t, base)
}

func TestContextCancelStops(t *testing.T) {
	base := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	p := New(fastOptions())
	if err := p.Start(ctx, "127.0.0.1:0", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	cancel()
	waitGoroutines(t, base)
	if err := p.Close(); err != nil {
		t.Errorf("Close after ctx cancel: %v", err)
	}
}
