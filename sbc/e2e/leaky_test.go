package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Addresses of TestLeakyPBX: the outside party has its own, so that the
// capture holds this test's outside traffic only; the relay's inside
// sockets bind one of their own, so that the test knows where the PBX's
// RTCP goes.
const (
	leakyOutsideIP = "127.0.0.13"
	leakyRelayInIP = "127.0.0.20"
)

// What the leaky PBX says about itself (testdata/sipp/uas_leaky_pbx.xml
// and the RTCP below): none of it may reach the outside.
var leakyWords = []string{
	PBXIP, "10.20.30.40", "10%2E20", "pbx.corp.local", "pbx%2Ecorp", "Asterisk", "asterisk", "FPBX",
	"18.2.1", "X-Asterisk", "P-Charging", "In-Reply-To", "Warning", "Error-Info",
	"Reception desk", "rack 4", "hung up", "LEAK",
}

// TestLeakyPBX runs a PBX that leaks the way real ones do (its product,
// version, host name, its address and an inside one in reason phrases,
// Reason, Warning, Subject, display names, URI users, parameters and
// headers, SDP attributes, sipfrag, RTCP SDES and BYE) through sipwall's
// default topology hiding, with every class of message: a call with
// in-dialog INFO, OPTIONS, re-INVITE, REFER (with a Replaces) and NOTIFY
// from the PBX, an INFO the PBX refuses (415) and its BYE; a call it
// refuses with 486 and one with 500; its own OPTIONS qualify of a phone;
// RTCP from the PBX's side through the relay. Every transaction completes
// as it would without sipwall (both sipp sides check every step and the
// RFC reason phrases), and the capture of everything the outside
// receives holds no byte naming the inside, the PBX's name or its
// product. The guard never has to act: the sanitisers did the work, and
// the leak report counts it.
func TestLeakyPBX(t *testing.T) {
	SkipIfShort(t)
	RequireSipp(t)
	capt := startCapture(t, "host "+leakyOutsideIP)
	tr := Transports[0]

	pbx := Sipp{Name: "pbx", Scenario: "uas_leaky_pbx.xml", IP: PBXIP, Transport: tr, Calls: 3, RTPEcho: true, Timeout: 40 * time.Second}.Start(t)
	phone := Sipp{Name: "phone", Scenario: "uas_options.xml", IP: leakyOutsideIP, Transport: tr, Timeout: 40 * time.Second}.Start(t)
	media := AllocPorts(t, leakyRelayInIP) // a block of six: two pairs on each side
	media -= media % 2
	sbc := StartSBC(t, SBCConfig{Transport: tr, PBXPort: pbx.Port, Extra: fmt.Sprintf(
		"topology: {internal_nets: [10.0.0.0/8], internal_names: [pbx.corp.local]}\n"+
			"media: {external_ip: %q, internal_ip: %q, port_min: %d, port_max: %d}\n"+
			"outbound: {uri: \"sip:%s:%d\"}\n",
		SBCIP, leakyRelayInIP, media, media+3, leakyOutsideIP, phone.Port)})

	// The outside party's RTCP receiver, named in its SDP (a=rtcp).
	rtcpIn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(leakyOutsideIP)})
	if err != nil {
		t.Fatal(err)
	}
	defer rtcpIn.Close()
	// The PBX's RTCP sender.
	rtcpOut, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(PBXIP)})
	if err != nil {
		t.Fatal(err)
	}
	defer rtcpOut.Close()

	caller := Sipp{Name: "caller", Scenario: "uac_leaky_peer.xml", IP: leakyOutsideIP, Remote: sbc.Addr, Transport: tr,
		Service: "answer", Timeout: 30 * time.Second,
		Args: []string{"-key", "rtcp_port", strconv.Itoa(rtcpIn.LocalAddr().(*net.UDPAddr).Port)}}.Start(t)

	// While the call is up (the PBX waits 2 s after the ACK), RTCP from
	// the PBX's side: the relay's inside RTCP socket is on the first pair
	// of the range (or the second, if a port was taken).
	pkt := leakyRTCP()
	var got [][]byte
	buf := make([]byte, 4096)
	deadline := time.Now().Add(15 * time.Second)
	for len(got) < 3 && time.Now().Before(deadline) {
		for _, p := range []int{media + 1, media + 3} {
			_, _ = rtcpOut.WriteToUDP(pkt, &net.UDPAddr{IP: net.ParseIP(leakyRelayInIP), Port: p})
		}
		_ = rtcpIn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, from, err := rtcpIn.ReadFromUDP(buf); err == nil {
			if from.IP.String() != SBCIP {
				t.Errorf("RTCP came from %s, not the relay", from)
			}
			got = append(got, append([]byte(nil), buf[:n]...))
		}
	}
	if len(got) == 0 {
		t.Errorf("no RTCP reached the outside through the relay in 15 s")
	}
	var cname []byte
	for _, p := range got {
		c, err := checkHiddenRTCP(p)
		if err != nil {
			t.Errorf("RTCP toward the outside %x: %v", p, err)
			continue
		}
		if cname != nil && !bytes.Equal(c, cname) {
			t.Errorf("CNAME changed within the call: %q then %q", cname, c)
		}
		cname = c
	}

	uac := caller.Wait(40 * time.Second)
	check := func(who string, r SippResult, calls int) {
		t.Helper()
		if !r.Finished || r.ExitCode != 0 || r.Count("SuccessfulCall(C)") != calls || r.Count("FailedCall(C)") != 0 {
			t.Errorf("%s: finished %v, exit %d, %d successful and %d failed calls; want %d and 0",
				who, r.Finished, r.ExitCode, r.Count("SuccessfulCall(C)"), r.Count("FailedCall(C)"), calls)
		}
	}
	check("caller (uac_leaky_peer)", uac, 1)

	// The transfer's Replaces names the caller's own dialog.
	if refer := MessageHeader(caller.Messages(), "REFER ", "Refer-To"); len(refer) != 1 || !strings.Contains(refer[0], "Replaces=") {
		t.Errorf("REFER reached the caller with Refer-To %q", refer)
	}

	rejecter := Sipp{Name: "rejected", Scenario: "uac_leaky_reject.xml", IP: leakyOutsideIP, Remote: sbc.Addr, Transport: tr,
		Calls: 2, Limit: 1, Timeout: 20 * time.Second}.Start(t)
	check("caller (uac_leaky_reject)", rejecter.Wait(30*time.Second), 2)
	check("PBX (uas_leaky_pbx)", pbx.Wait(uasGrace), 3)

	qualify := Sipp{Name: "qualify", Scenario: "uac_leaky_options.xml", IP: PBXIP, Remote: sbc.Addr, Transport: tr, Timeout: 10 * time.Second}.Start(t)
	check("PBX qualify (uac_leaky_options)", qualify.Wait(15*time.Second), 1)
	check("phone (uas_options)", phone.Wait(uasGrace), 1)

	// The leak report counted what the sanitisers did, and the guard had
	// nothing left to do.
	m := metrics(t, sbc)
	for _, series := range []string{
		`{action="rewritten",item="reason-phrase"}`, `{action="rewritten",item="Reason"}`,
		`{action="removed",item="Subject"}`, `{action="removed",item="In-Reply-To"}`,
		`{action="removed",item="display-name"}`, `{action="rewritten",item="uri-user"}`,
		`{action="removed",item="uri-param"}`, `{action="removed",item="uri-header"}`,
		`{action="removed",item="header-param"}`, `{action="rewritten",item="Retry-After"}`,
		`{action="removed",item="sdp:tool"}`, `{action="removed",item="sdp:ssrc"}`, `{action="removed",item="sdp:i"}`,
		`{action="rewritten",item="sipfrag"}`,
		`{action="rewritten",item="rtcp:cname"}`, `{action="removed",item="rtcp:tool"}`,
		`{action="removed",item="rtcp:bye-reason"}`, `{action="removed",item="rtcp:app"}`,
	} {
		if !strings.Contains(m, "sipwall_topology_leaks_total"+series+" ") {
			t.Errorf("leak report lacks sipwall_topology_leaks_total%s", series)
		}
	}
	for line := range strings.SplitSeq(m, "\n") {
		if strings.HasPrefix(line, "sipwall_topology_leaks_total{") && strings.Contains(line, `action="guard_`) {
			t.Errorf("the guard had to act: %s", line)
		}
	}

	time.Sleep(300 * time.Millisecond) // the last packets reach the capture
	pcap := capt.stop()
	t.Logf("outside capture: %d bytes, %d RTCP packets relayed, CNAME %q", len(pcap), len(got), cname)
	for _, want := range []string{"SIP/2.0 180 Ringing\r\n", "SIP/2.0 486 Busy Here\r\n", "SIP/2.0 500 Server Internal Error\r\n",
		"REFER sip:", "NOTIFY sip:", "OPTIONS sip:phone@", "SIP/2.0 415 Unsupported Media Type\r\n"} {
		if !bytes.Contains(pcap, []byte(want)) {
			t.Errorf("outside capture (%d bytes) lacks %q", len(pcap), want)
		}
	}
	for _, leak := range append(leakyWords, ":"+strconv.Itoa(pbx.Port), " "+strconv.Itoa(pbx.Port+2)+" ") {
		if i := bytes.Index(pcap, []byte(leak)); i >= 0 {
			t.Errorf("outside capture holds %q: ...%q...", leak, pcap[max(0, i-200):min(len(pcap), i+100)])
		}
	}
}

// leakyRTCP is what a PBX sends: an SR, an SDES with its user@address as
// CNAME, its product as TOOL and more, a BYE with a reason and an APP.
func leakyRTCP() []byte {
	var b []byte
	pkt := func(count int, pt byte, body []byte) {
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
		h := []byte{0x80 | byte(count), pt, 0, 0}
		binary.BigEndian.PutUint16(h[2:], uint16(len(body)/4))
		b = append(append(b, h...), body...)
	}
	ssrc := binary.BigEndian.AppendUint32(nil, 0x5157a11)
	pkt(0, 200, append(append([]byte(nil), ssrc...), make([]byte, 20)...))
	sdes := append([]byte(nil), ssrc...)
	for _, it := range []struct {
		typ  byte
		text string
	}{{1, "asterisk@10.20.30.40"}, {2, "Reception desk"}, {3, "pbx@pbx.corp.local"}, {5, "rack 4, 10.20.30.40"}, {6, "Asterisk PBX 18.2.1"}, {7, "LEAK note"}} {
		sdes = append(append(sdes, it.typ, byte(len(it.text))), it.text...)
	}
	pkt(1, 202, append(sdes, 0))
	reason := "Asterisk PBX 18.2.1 hung up"
	pkt(1, 203, append(append(append([]byte(nil), ssrc...), byte(len(reason))), reason...))
	pkt(0, 204, append(append([]byte(nil), ssrc...), "LEAKAsterisk"...))
	return b
}

// checkHiddenRTCP checks RTCP as it reaches the outside: valid compound
// packets, SDES with a CNAME of 16 characters and nothing else, a BYE
// without reason, no APP. It returns the CNAME.
func checkHiddenRTCP(b []byte) ([]byte, error) {
	var cname []byte
	for off := 0; off < len(b); {
		if len(b)-off < 4 || b[off]>>6 != 2 {
			return nil, fmt.Errorf("not RTCP at %d", off)
		}
		count, pt := int(b[off]&0x1f), b[off+1]
		size := (int(binary.BigEndian.Uint16(b[off+2:])) + 1) * 4
		if off+size > len(b) {
			return nil, fmt.Errorf("packet of %d bytes at %d runs past %d", size, off, len(b))
		}
		body := b[off+4 : off+size]
		switch pt {
		case 200, 201:
		case 202:
			if count != 1 || len(body) < 8 || body[4] != 1 {
				return nil, fmt.Errorf("SDES %x", body)
			}
			n := int(body[5])
			cname = body[6 : 6+n]
			if n != 16 || body[6+n] != 0 {
				return nil, fmt.Errorf("SDES %x: want one CNAME of 16 characters and nothing else", body)
			}
		case 203:
			if len(body) != 4*count {
				return nil, fmt.Errorf("BYE with a reason: %x", body)
			}
		default:
			return nil, fmt.Errorf("packet type %d crossed", pt)
		}
		off += size
	}
	if cname == nil {
		return nil, fmt.Errorf("no SDES")
	}
	return cname, nil
}
