package e2e

import (
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	code := m.Run()
	CleanupBuild()
	os.Exit(code)
}

// eachTransport runs f once over UDP and once over TCP, as subtests.
func eachTransport(t *testing.T, f func(t *testing.T, tr Transport)) {
	SkipIfShort(t)
	for _, tr := range Transports {
		t.Run(tr.Name, func(t *testing.T) { f(t, tr) })
	}
}

// TestReadiness checks the harness itself: sipwall starts from a generated
// configuration and answers OPTIONS on UDP (StartSBC fails otherwise).
func TestReadiness(t *testing.T) {
	SkipIfShort(t)
	sbc := StartSBC(t, SBCConfig{Transport: Transports[0], PBXPort: AllocPorts(t, PBXIP)})
	// A second OPTIONS, from another source port, gets its own 200.
	c, err := net.ListenPacket("udp", net.JoinHostPort(SBCIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dst, _ := net.ResolveUDPAddr("udp", sbc.Addr)
	msg := OptionsRequest(sbc.Addr, c.LocalAddr().(*net.UDPAddr).Port, 1)
	buf := make([]byte, 8192)
	for i := 0; i < 5; i++ {
		c.WriteTo([]byte(msg), dst)
		c.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			continue
		}
		if !strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
			t.Fatalf("OPTIONS got %q", strings.SplitN(string(buf[:n]), "\r\n", 2)[0])
		}
		if !strings.Contains(string(buf[:n]), "z9hG4bK-e2eready-") {
			t.Errorf("200 to OPTIONS does not carry the request's Via branch")
		}
		return
	}
	t.Fatal("no answer to OPTIONS")
}

// TestBasicCall: outside caller -> sipwall -> PBX answers; the caller hangs up.
func TestBasicCall(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr Transport) {
		r := Call{UAC: "uac_basic.xml", UAS: "uas_answer.xml", UACPause: 500 * time.Millisecond}.Run(t, tr)
		if t.Failed() {
			return
		}
		// sipwall is a B2BUA: the PBX sees a new dialog and none of the
		// caller's Via headers.
		outside := MessageHeader(r.Caller.Messages(), "INVITE ", "Call-ID")
		inside := MessageHeader(r.Callee.Messages(), "INVITE ", "Call-ID")
		if len(outside) != 1 || len(inside) != 1 {
			t.Fatalf("Call-ID of the INVITEs: caller %q, PBX %q", outside, inside)
		}
		if outside[0] == inside[0] {
			t.Errorf("the PBX got the caller's Call-ID %q: not a new dialog", inside[0])
		}
		for _, via := range MessageHeader(r.Callee.Messages(), "INVITE ", "Via") {
			if strings.Contains(via, OutsideIP) {
				t.Errorf("the PBX's INVITE carries the caller's Via: %s", via)
			}
		}
	})
}

// TestHoldResume: an answered call is held (a=sendonly) and resumed
// (a=sendrecv) with two re-INVITEs through sipwall, then hung up.
func TestHoldResume(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr Transport) {
		r := Call{UAC: "uac_hold.xml", UAS: "uas_hold.xml", UACPause: 200 * time.Millisecond}.Run(t, tr)
		if t.Failed() {
			return
		}
		// The PBX must have seen both offers, with their direction.
		msgs := r.Callee.Messages()
		if !strings.Contains(msgs, "a=sendonly") {
			t.Errorf("hold offer (a=sendonly) did not reach the PBX")
		}
		if got := strings.Count(r.Caller.Messages(), "a=recvonly"); got != 1 {
			t.Errorf("caller saw %d answers with a=recvonly, want 1 (the answer to hold)", got)
		}
	})
}

// TestCancelBeforeAnswer: the caller cancels while the PBX rings; the PBX
// gets a CANCEL and ends the INVITE with 487, which reaches the caller.
func TestCancelBeforeAnswer(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr Transport) {
		r := Call{UAC: "uac_cancel.xml", UAS: "uas_noanswer.xml"}.Run(t, tr)
		if t.Failed() {
			return
		}
		if !strings.Contains(r.Callee.Messages(), "CANCEL sip:") {
			t.Errorf("the PBX did not receive a CANCEL")
		}
	})
}

// TestBusy: the PBX rejects with 486, relayed to the caller.
func TestBusy(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr Transport) {
		Call{UAC: "uac_expect_busy.xml", UAS: "uas_busy.xml"}.Run(t, tr)
	})
}

// TestNoAnswerTimeout: the PBX rings forever; after calls.ring_timeout (3s)
// sipwall answers the caller 408 and cancels the call toward the PBX.
func TestNoAnswerTimeout(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr Transport) {
		start := time.Now()
		r := Call{
			UAC: "uac_expect_timeout.xml", UAS: "uas_noanswer.xml",
			RingTimeout: 3 * time.Second,
		}.Run(t, tr)
		if t.Failed() {
			return
		}
		if !strings.Contains(r.Caller.Messages(), "SIP/2.0 408") {
			t.Errorf("caller did not receive 408 Request Timeout")
		}
		if !strings.Contains(r.Callee.Messages(), "CANCEL sip:") {
			t.Errorf("the PBX did not receive a CANCEL")
		}
		if d := time.Since(start); d < 3*time.Second {
			t.Errorf("call ended after %s, before the 3s ring timeout", d)
		}
	})
}

// TestPBXRejectsAfterRinging: the PBX rings, then answers 480 itself; the
// 480 reaches the caller (uac_expect_timeout accepts 408 or 480).
func TestPBXRejectsAfterRinging(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr Transport) {
		r := Call{
			UAC: "uac_expect_timeout.xml", UAS: "uas_ring_reject.xml",
			UASPause: 300 * time.Millisecond,
		}.Run(t, tr)
		if t.Failed() {
			return
		}
		if !strings.Contains(r.Caller.Messages(), "SIP/2.0 480") {
			t.Errorf("caller did not receive the PBX's 480")
		}
	})
}

// TestPBXHangsUp: the PBX sends the BYE; sipwall relays it to the caller.
func TestPBXHangsUp(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr Transport) {
		Call{UAC: "uac_remote_bye.xml", UAS: "uas_bye.xml", UASPause: 300 * time.Millisecond}.Run(t, tr)
	})
}

// TestConcurrentCalls: 100 calls at 50/s, each 1s long, so that up to
// about 50 to 100 are up at once. One sipp stands for many callers, so the
// cap of calls in progress per address is off.
func TestConcurrentCalls(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr Transport) {
		Call{
			UAC: "uac_basic.xml", UAS: "uas_answer.xml",
			Calls: 100, Limit: 100, Rate: 50, UACPause: time.Second,
			Timeout: 60 * time.Second, NoTraceMsg: true, CallsConfig: "max_per_source: 0",
		}.Run(t, tr)
	})
}

// TestOutboundFromPBX: the PBX (inside, the upstream's address and port)
// calls an outside number; sipwall sends it to outbound.uri.
func TestOutboundFromPBX(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr Transport) {
		r := Call{
			UAC: "uac_basic.xml", UAS: "uas_answer.xml", FromInside: true,
			Service: "15551230000", UACPause: 200 * time.Millisecond,
		}.Run(t, tr)
		if t.Failed() {
			return
		}
		if !strings.Contains(r.Callee.Messages(), "INVITE sip:15551230000@") {
			t.Errorf("the trunk's INVITE does not carry the dialled number in its Request-URI")
		}
	})
}
