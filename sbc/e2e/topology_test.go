package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// capture runs dumpcap on the loopback interface with a BPF filter until
// stop is called, and returns the captured file's bytes.
type capture struct {
	cmd  *exec.Cmd
	file string
}

func startCapture(t *testing.T, filter string) *capture {
	t.Helper()
	bin := requireTool(t, "dumpcap", "tshark")
	c := &capture{file: filepath.Join(t.TempDir(), "outside.pcap")}
	var stderr bytes.Buffer
	// -P: classic pcap, which the tests read themselves (udpPayloads).
	c.cmd = exec.Command(bin, "-q", "-P", "-i", "lo", "-f", filter, "-w", c.file, "-a", "duration:120")
	c.cmd.Stderr = &stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("dumpcap: %v", err)
	}
	t.Cleanup(func() { c.stop() })
	// dumpcap creates the file once it captures.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := os.Stat(c.file); err == nil && st.Size() > 0 {
			return c
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("dumpcap did not start capturing: %s", stderr.String())
	return nil
}

func (c *capture) stop() []byte {
	if c.cmd.ProcessState == nil {
		_ = c.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = c.cmd.Process.Kill()
			<-done
		}
	}
	data, _ := os.ReadFile(c.file)
	return data
}

// TestTopologyHidden: a call from outside to a PBX that tells everything
// about itself (brand, version, its address and host name in headers and
// SDP). Every byte on the outside (all packets to or from the caller's
// address, captured by dumpcap) is free of the PBX's address, ports, host
// name and brand; RTP flows end to end through the relay (the PBX echoes
// it); a third party sending to the relay port after latching is ignored.
func TestTopologyHidden(t *testing.T) {
	SkipIfShort(t)
	pbx := Sipp{Name: "pbx", Scenario: "uas_leaky.xml", IP: PBXIP, Transport: Transports[0], RTPEcho: true, Timeout: 30 * time.Second}.Start(t)
	sbc := StartSBC(t, SBCConfig{Transport: Transports[0], PBXPort: pbx.Port,
		Extra: "topology: {internal_names: [pbx.corp.local]}\n"})
	// A caller address of its own, so that the capture holds this test's
	// outside traffic only (other tests and benchmarks use OutsideIP).
	const callerIP = "127.0.0.12"
	capt := startCapture(t, "host "+callerIP)

	phone := newRawPhone(t, callerIP, sbc.Addr)
	rtp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(callerIP)})
	if err != nil {
		t.Fatal(err)
	}
	defer rtp.Close()
	rtpPort := rtp.LocalAddr().(*net.UDPAddr).Port
	sdp := fmt.Sprintf("v=0\r\no=caller 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n", callerIP, callerIP, rtpPort)
	fromTag := "tag" + rand.Text()[:8]
	inv := phone.invite("1000", fromTag, sdp)
	ok := phone.roundTrip(t, inv)
	if code(ok) != 200 {
		t.Fatalf("INVITE got %q", startLine(ok))
	}
	_, answer, _ := strings.Cut(ok, "\r\n\r\n")
	relay := sdpAddr(t, answer)
	if relay.IP.String() != SBCIP {
		t.Fatalf("answer sends media to %s, want the SBC %s:\n%s", relay, SBCIP, answer)
	}
	toTag := regexp.MustCompile(`(?m)^To:.*;tag=([^;\r\n]+)`).FindStringSubmatch(ok)
	if toTag == nil {
		t.Fatalf("200 without To tag:\n%s", ok)
	}
	if _, err := phone.c.WriteToUDP([]byte(phone.inDialog("ACK", "1000", fromTag, toTag[1], 1)), phone.dst); err != nil {
		t.Fatal(err)
	}

	// RTP: 20 packets out, their echoes back through the relay.
	third, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.9")})
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	got, foreign := 0, 0
	buf := make([]byte, 2048)
	for i := 0; i < 20; i++ {
		pkt := rtpPacket(uint16(i), []byte("caller-audio"))
		if _, err := rtp.WriteToUDP(pkt, relay); err != nil {
			t.Fatal(err)
		}
		if i == 10 {
			// After latching, a third party's packets to the relay port
			// must go nowhere.
			for k := 0; k < 5; k++ {
				_, _ = third.WriteToUDP(rtpPacket(uint16(100+k), []byte("third-party")), relay)
			}
		}
		_ = rtp.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		for {
			n, from, err := rtp.ReadFromUDP(buf)
			if err != nil {
				break
			}
			if from.String() != relay.String() {
				t.Errorf("RTP came back from %s, not the relay %s", from, relay)
			}
			if bytes.Contains(buf[:n], []byte("third-party")) {
				foreign++
			} else if bytes.Contains(buf[:n], []byte("caller-audio")) {
				got++
			}
		}
	}
	t.Logf("RTP: %d of 20 echoed through the relay %s, %d third-party relayed", got, relay, foreign)
	if got < 15 {
		t.Errorf("%d of 20 RTP packets came back through the relay", got)
	}
	if foreign != 0 {
		t.Errorf("%d third-party packets were relayed after latching", foreign)
	}

	bye := phone.roundTrip(t, phone.inDialog("BYE", "1000", fromTag, toTag[1], 2))
	if code(bye) != 200 {
		t.Errorf("BYE got %q", startLine(bye))
	}
	time.Sleep(300 * time.Millisecond) // let the last packets reach the capture
	pcap := capt.stop()
	t.Logf("outside capture: %d bytes", len(pcap))
	if len(pcap) < 1000 {
		t.Fatalf("capture holds %d bytes: nothing captured?", len(pcap))
	}
	if !bytes.Contains(pcap, []byte("SIP/2.0 200 OK")) {
		t.Fatalf("capture does not hold the call's 200")
	}
	pbxMedia := strconv.Itoa(pbx.Port + 2)
	for _, leak := range []string{PBXIP, "pbx.corp.local", "Asterisk", "FPBX", "X-Asterisk", "P-Charging", "Warning", ":" + strconv.Itoa(pbx.Port), " " + pbxMedia + " "} {
		if i := bytes.Index(pcap, []byte(leak)); i >= 0 {
			lo, hi := max(0, i-200), min(len(pcap), i+100)
			t.Errorf("outside capture holds %q: ...%q...", leak, pcap[lo:hi])
		}
	}
	if !bytes.Contains(pcap, []byte("Diversion: <sip:200@"+SBCIP)) {
		t.Errorf("Diversion not relayed with the SBC's address")
	}
}

// invite is an INVITE from the raw phone with an SDP offer.
func (p *rawPhone) invite(user, fromTag, sdp string) string {
	return strings.Join([]string{
		"INVITE sip:" + user + "@" + p.dst.String() + " SIP/2.0",
		"Via: SIP/2.0/UDP " + p.local + ";rport;branch=z9hG4bK-" + rand.Text(),
		"Max-Forwards: 70",
		"From: <sip:caller@" + p.local + ">;tag=" + fromTag,
		"To: <sip:" + user + "@" + p.dst.String() + ">",
		"Call-ID: " + p.callID,
		"CSeq: 1 INVITE",
		"Contact: <sip:caller@" + p.local + ">",
		"Content-Type: application/sdp",
		"Content-Length: " + strconv.Itoa(len(sdp)),
		"", sdp,
	}, "\r\n")
}

// inDialog is an ACK or BYE in the dialog of invite.
func (p *rawPhone) inDialog(method, user, fromTag, toTag string, cseq int) string {
	return strings.Join([]string{
		method + " sip:" + p.dst.String() + " SIP/2.0",
		"Via: SIP/2.0/UDP " + p.local + ";rport;branch=z9hG4bK-" + rand.Text(),
		"Max-Forwards: 70",
		"From: <sip:caller@" + p.local + ">;tag=" + fromTag,
		"To: <sip:" + user + "@" + p.dst.String() + ">;tag=" + toTag,
		"Call-ID: " + p.callID,
		"CSeq: " + strconv.Itoa(cseq) + " " + method,
		"Content-Length: 0",
		"", "",
	}, "\r\n")
}

// sdpAddr reads the RTP address of the first m= line of an SDP body.
func sdpAddr(t *testing.T, body string) *net.UDPAddr {
	t.Helper()
	c := regexp.MustCompile(`(?m)^c=IN IP4 ([0-9.]+)`).FindStringSubmatch(body)
	m := regexp.MustCompile(`(?m)^m=audio ([0-9]+) `).FindStringSubmatch(body)
	if c == nil || m == nil {
		t.Fatalf("no c= or m= in SDP:\n%s", body)
	}
	port, _ := strconv.Atoi(m[1])
	return &net.UDPAddr{IP: net.ParseIP(c[1]), Port: port}
}

// rtpPacket is an RTP header (version 2, PCMU) and a payload.
func rtpPacket(seq uint16, payload []byte) []byte {
	b := make([]byte, 12, 12+len(payload))
	b[0], b[1] = 0x80, 0
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[4:], uint32(seq)*160)
	binary.BigEndian.PutUint32(b[8:], 0x5157a11)
	return append(b, payload...)
}

// TestTopologyHiddenFromInside: a call placed by the PBX (sipp on PBXIP)
// out through the trunk (sipp on TrunkIP). The trunk's side of the wire
// holds neither the PBX's address nor its ports: From, Contact, Via,
// Call-ID and SDP name the SBC only.
func TestTopologyHiddenFromInside(t *testing.T) {
	SkipIfShort(t)
	RequireSipp(t)
	capt := startCapture(t, "host "+TrunkIP)
	r := Call{UAC: "uac_basic.xml", UAS: "uas_answer.xml", FromInside: true, UACPause: 200 * time.Millisecond}.Run(t, Transports[0])
	if t.Failed() {
		return
	}
	time.Sleep(300 * time.Millisecond)
	pcap := capt.stop()
	if !bytes.Contains(pcap, []byte("INVITE sip:")) {
		t.Fatalf("capture (%d bytes) holds no INVITE", len(pcap))
	}
	for _, leak := range []string{PBXIP, ":" + strconv.Itoa(r.Caller.Port), " " + strconv.Itoa(r.Caller.Port+2) + " "} {
		if i := bytes.Index(pcap, []byte(leak)); i >= 0 {
			lo, hi := max(0, i-200), min(len(pcap), i+100)
			t.Errorf("trunk-side capture holds %q: ...%q...", leak, pcap[lo:hi])
		}
	}
}

// TestTopologyHiddenFlows runs the other call flows with a capture of the
// caller's side: hold/resume (re-INVITEs with new SDP), CANCEL, a busy
// PBX (4xx) and a PBX redirecting to one of its own extensions (302 with
// an inside Contact, which sipwall must rewrite), and a REGISTER relayed
// to the PBX. No byte outside names
// the PBX's address.
func TestTopologyHiddenFlows(t *testing.T) {
	SkipIfShort(t)
	RequireSipp(t)
	const callerIP = "127.0.0.12"
	for _, tc := range []struct {
		name, uac, uas string
		ring           time.Duration
		want           string // must appear outside
	}{
		{"hold-resume", "uac_hold.xml", "uas_hold.xml", 0, "a=sendonly"},
		{"cancel", "uac_cancel.xml", "uas_noanswer.xml", 0, "487 Request Terminated"},
		{"busy", "uac_expect_busy.xml", "uas_busy.xml", 0, "486 Busy Here"},
		{"redirect-inside", "uac_expect_redirect.xml", "uas_redirect_inside.xml", 0, "Contact: <sip:2000@" + SBCIP},
		{"register", "uac_register.xml", "uas_register.xml", 0, "SIP/2.0 200 OK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			capt := startCapture(t, "host "+callerIP)
			r := Call{UAC: tc.uac, UAS: tc.uas, CallerIP: callerIP, UACPause: 200 * time.Millisecond, RingTimeout: tc.ring}.Run(t, Transports[0])
			if t.Failed() {
				return
			}
			time.Sleep(300 * time.Millisecond)
			pcap := capt.stop()
			if !bytes.Contains(pcap, []byte(tc.want)) {
				t.Errorf("outside capture (%d bytes) lacks %q", len(pcap), tc.want)
			}
			for _, leak := range []string{PBXIP, ":" + strconv.Itoa(r.Callee.Port), "Asterisk", "Warning"} {
				if i := bytes.Index(pcap, []byte(leak)); i >= 0 {
					lo, hi := max(0, i-200), min(len(pcap), i+100)
					t.Errorf("outside capture holds %q: ...%q...", leak, pcap[lo:hi])
				}
			}
		})
	}
}
