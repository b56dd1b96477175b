package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sipwall/sipwall/sbc/config"
)

// TestEncryptedPhones: baresip (Debian) with SDES-SRTP mandatory, and
// with DTLS-SRTP, calls through sipwall's default configuration to a
// plain-RTP PBX (sipp echoing RTP): the call is set up, the PBX gets an
// offer without SRTP and plain RTP that it echoes, the phone's side of
// the wire carries no clear audio, and sipwall decrypted and encrypted
// without a failure. Then, with media.encryption.require, a phone
// offering plain RTP is refused with 488 and a Warning saying why.
func TestEncryptedPhones(t *testing.T) {
	SkipIfShort(t)
	RequireSipp(t)
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	users := filepath.Join(dir, "users.yaml")
	passwdUser(t, users, config.Default().Auth.Realm, phoneUser, phonePassword)
	for i, enc := range []string{"srtp-mand", "dtls_srtp"} {
		t.Run(enc, func(t *testing.T) {
			ip := []string{"127.0.0.41", "127.0.0.42"}[i]
			pbx := Sipp{Name: "pbx", Scenario: "uas_pbx.xml", IP: PBXIP, Transport: Transports[0], RTPEcho: true,
				Calls: 10, Timeout: 60 * time.Second, Args: []string{"-deadcall_wait", "0"}}.Start(t)
			sbc := startDefaultSBC(t, pbx.Port, users, pki)
			// The relay's ports (the default range): the phone's side, and
			// the PBX's (the packets to or from the PBX's address).
			relay := startCapture(t, "udp and portrange 40000-44999")
			ph := startBaresip(t, phoneAccount{IP: ip, Transport: "udp", Registrar: sbc.ListenAddr("udp"),
				User: phoneUser, Password: phonePassword, CAFile: pki.CAFile, MediaEnc: enc})
			ph.Register(t)
			ph.Dial(t, "1000")
			time.Sleep(3 * time.Second) // audio both ways through the relay and the PBX's echo
			m := metrics(t, sbc.SBC)
			ph.Hangup(t)
			ph.Quit(t)
			// Only this call's datagrams: other tests' relays may use the
			// same ports on other addresses, or on this one.
			phonePort := func(ap netip.AddrPort) bool {
				return int(ap.Port()) >= ph.rtpPort && int(ap.Port()) < ph.rtpPort+portBlock
			}
			pbxMedia := func(ap netip.AddrPort) bool { // sipp's -mp (base+2) and the port above
				return ap.Addr().String() == PBXIP && (int(ap.Port()) == pbx.Port+2 || int(ap.Port()) == pbx.Port+3)
			}
			var in, out [][]byte
			var odd []string
			for _, d := range udpPayloads(relay.stop()) {
				switch {
				case pbxMedia(d.src) || pbxMedia(d.dst):
					in = append(in, d.payload)
				case !phonePort(d.src) && !phonePort(d.dst):
				default:
					out = append(out, d.payload)
					if len(d.payload) == 172 && len(odd) < 5 {
						odd = append(odd, fmt.Sprintf("%s -> %s %x", d.src, d.dst, d.payload[:16]))
					}
				}
			}

			for _, l := range strings.Split(m, "\n") {
				if strings.HasPrefix(l, "sipwall_media_packets") || strings.HasPrefix(l, "sipwall_media_dropped") && !strings.HasSuffix(l, " 0") {
					t.Log(l)
				}
			}
			t.Logf("captured on the relay's ports: %d datagrams on the phone's side, %d on the PBX's", len(out), len(in))
			msgs := sippTrace(pbx.Messages())
			if inv, _ := findMsg(msgs, 0, func(m traceMsg) bool { return !m.Sent && m.IsRequest("INVITE") }); inv.Start == "" {
				t.Fatal("the PBX got no INVITE")
			}
			offer := requestBody(pbx.Messages(), "INVITE ")
			if !strings.Contains(offer, "m=audio ") {
				t.Fatalf("no SDP offer read from the PBX's log:\n%s", offer)
			}
			for _, bad := range []string{"a=crypto", "a=fingerprint", "SAVP", "a=setup"} {
				if strings.Contains(offer, bad) {
					t.Errorf("the plain PBX's offer holds %q:\n%s", bad, offer)
				}
			}
			// The PBX's side carries plain RTP (the tone one way, its echo
			// the other); none of those payloads crosses the phone's side
			// of the wire in clear.
			plain := rtpPayloads(in, 172)
			if len(plain) < 50 {
				t.Fatalf("%d plain RTP packets inside in 3 s, want 50 or more", len(plain))
			}
			if len(out) < 50 {
				t.Fatalf("%d datagrams on the phone's side in 3 s, want 50 or more", len(out))
			}
			seen := bytes.Join(out, nil)
			for _, p := range plain {
				if bytes.Contains(seen, p) {
					t.Fatalf("a plain RTP payload of the inside crossed the phone's side in clear: %x", p)
				}
			}
			if n := len(rtpPayloads(out, 172)); n != 0 {
				t.Errorf("%d plain-sized RTP datagrams (172 bytes) on the phone's side: not SRTP; first: %q", n, odd)
			}
			relayed := metricValue(m, "sipwall_media_packets_total")
			if relayed < 100 {
				t.Errorf("sipwall relayed %v media packets in 3 s, want 100 or more", relayed)
			}
			// baresip sends one plain RTCP APP ("PINGPONG") before its
			// first SRTCP, as a keepalive: refused, rightly. Nothing else.
			if v := metricValue(m, `sipwall_media_dropped_total{reason="srtp"}`); v > 2 {
				t.Errorf("%v SRTP packets failed authentication or replay checks", v)
			}
		})
	}

	t.Run("plain refused when required", func(t *testing.T) {
		pbx := Sipp{Name: "pbx", Scenario: "uas_pbx.xml", IP: PBXIP, Transport: Transports[0],
			Calls: 10, Timeout: 60 * time.Second, Args: []string{"-deadcall_wait", "0"}}.Start(t)
		sbc := startDefaultSBC(t, pbx.Port, users, pki, "media: {encryption: {require: true}}\n")
		ph := startBaresip(t, phoneAccount{IP: "127.0.0.43", Transport: "udp", Registrar: sbc.ListenAddr("udp"),
			User: phoneUser, Password: phonePassword, CAFile: pki.CAFile})
		ph.Register(t)
		ph.command(t, "dial", "sip:1000@"+ph.acct.Registrar)
		ph.waitEvent(t, "CALL_CLOSED", "CALL_ESTABLISHED")
		var refused traceMsg
		for _, m := range ph.Trace() {
			if !m.Sent && m.IsResponse(488, "INVITE") {
				refused = m
			}
		}
		if refused.Start == "" {
			t.Fatal("the plain offer was not answered 488")
		}
		if w := refused.Header("Warning"); !strings.Contains(w, "Encrypted media required") {
			t.Errorf("488 Warning %q does not say why", w)
		}
		for _, m := range sippTrace(pbx.Messages()) {
			if m.IsRequest("INVITE") {
				t.Error("the refused INVITE reached the PBX")
			}
		}
		ph.Quit(t)
	})
}

// datagram is one UDP datagram of a capture.
type datagram struct {
	src, dst netip.AddrPort
	payload  []byte
}

// udpPayloads reads the IPv4 UDP datagrams of a classic pcap file
// captured on loopback (Ethernet framing).
func udpPayloads(pcap []byte) []datagram {
	var out []datagram
	if len(pcap) < 24 {
		return nil
	}
	for p := pcap[24:]; len(p) >= 16; {
		n := int(binary.LittleEndian.Uint32(p[8:12]))
		if len(p) < 16+n {
			break
		}
		frame := p[16 : 16+n]
		p = p[16+n:]
		if len(frame) < 14+20 || frame[12] != 0x08 || frame[13] != 0 {
			continue
		}
		ip := frame[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 17 || len(ip) < ihl+8 {
			continue
		}
		u := ip[ihl:]
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[12:16])), binary.BigEndian.Uint16(u[0:2]))
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(ip[16:20])), binary.BigEndian.Uint16(u[2:4]))
		out = append(out, datagram{src: src, dst: dst, payload: u[8:]})
	}
	return out
}

// rtpPayloads returns the RTP payloads (after a 12-byte header, version
// 2) of the datagrams of size bytes.
func rtpPayloads(ds [][]byte, size int) [][]byte {
	var out [][]byte
	for _, d := range ds {
		if len(d) == size && d[0] == 0x80 {
			out = append(out, d[12:])
		}
	}
	return out
}

// TestAnswerRefusedWhenPlain: where encryption is required from outside,
// the PBX calling out gets an SDES offer sent to the party outside (a
// sipp UAS answering with plain RTP); the plain answer is not a call
// with media: sipwall ACKs and ends that dialog and answers the PBX 488
// with a Warning, instead of passing a 200 without its answer.
func TestAnswerRefusedWhenPlain(t *testing.T) {
	SkipIfShort(t)
	RequireSipp(t)
	tr := Transports[0]
	trunk := Sipp{Name: "outside", Scenario: "uas_answer.xml", IP: TrunkIP, Transport: tr, Timeout: 30 * time.Second}.Start(t)
	pbx := Sipp{Name: "pbx", Scenario: "uas_pbx.xml", IP: PBXIP, Transport: tr, Timeout: 30 * time.Second}.Start(t)
	sbc := StartSBC(t, SBCConfig{Transport: tr, PBXPort: pbx.Port, TrunkPort: trunk.Port,
		Extra: "media: {encryption: {require: true}}\n"})
	caller := Sipp{Name: "pbx-caller", Scenario: "uac_answer_refused.xml", IP: PBXIP, Remote: sbc.Addr, Transport: tr,
		Service: "5551234", Timeout: 20 * time.Second}.Start(t)
	mustSucceed(t, caller, 1)
	r := trunk.Wait(25 * time.Second)
	if r.Count("SuccessfulCall(C)") != 1 {
		t.Errorf("the party outside: %d calls completed (INVITE, 200, ACK, BYE), want 1", r.Count("SuccessfulCall(C)"))
	}
	offer := requestBody(trunk.Messages(), "INVITE ")
	if !strings.Contains(offer, " RTP/SAVP ") || !strings.Contains(offer, "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:") {
		t.Errorf("offer toward the outside, encryption required, is not SDES:\n%s", offer)
	}
}

// requestBody is the body of the first request starting with start in a
// sipp message log.
func requestBody(log, start string) string {
	i := strings.Index(log, start)
	if i < 0 {
		return ""
	}
	rest := strings.ReplaceAll(log[i:], "\r\n", "\n")
	j := strings.Index(rest, "\n\n")
	if j < 0 {
		return ""
	}
	body := rest[j+2:]
	if k := strings.Index(body, "-----------------------------------------------"); k >= 0 {
		body = body[:k]
	}
	return body
}

var metricLine = regexp.MustCompile(`(?m)^(\S+) (\S+)$`)

// metricValue sums the samples of a series (a name, or a name with
// labels) in a Prometheus text page.
func metricValue(page, series string) float64 {
	var sum float64
	for _, m := range metricLine.FindAllStringSubmatch(page, -1) {
		name := m[1]
		if name == series || !strings.Contains(series, "{") && strings.HasPrefix(name, series+"{") {
			var v float64
			if _, err := fmt.Sscan(m[2], &v); err == nil {
				sum += v
			}
		}
	}
	return sum
}
