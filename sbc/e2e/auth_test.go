package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
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

var demoUsers = map[string]string{"alice": "s3cret-alice", "bob": "s3cret-bob", "105": "4711-not-in-range"}

// TestAuthCallMD5: a caller authenticates with sipp's MD5 digest (sipp 3.6
// knows no other) over UDP and TCP; the PBX gets the asserted identity
// and no credentials.
func TestAuthCallMD5(t *testing.T) {
	eachTransport(t, func(t *testing.T, tr Transport) {
		r := Call{
			UAC: "uac_auth_call.xml", UAS: "uas_answer.xml", UACPause: 200 * time.Millisecond,
			Users: demoUsers, Auth: "algorithms: [MD5, SHA-256], assert_identity: P-Asserted-Identity",
			AuthUser: "alice", AuthPass: demoUsers["alice"],
		}.Run(t, tr)
		if t.Failed() {
			return
		}
		pbx := r.Callee.Messages()
		if got := MessageHeader(pbx, "INVITE ", "P-Asserted-Identity"); len(got) != 1 || got[0] != "<sip:alice@sipwall>" {
			t.Errorf("PBX's INVITE P-Asserted-Identity = %q, want <sip:alice@sipwall>", got)
		}
		if got := MessageHeader(pbx, "INVITE ", "Proxy-Authorization"); len(got) != 0 {
			t.Errorf("credentials reached the PBX: %q", got)
		}
		// Over UDP the unauthenticated caller is sent no more bytes than
		// it sent (sbc edge budget): the second challenge may be cut.
		caller := r.Caller.Messages()
		got := MessageHeader(caller, "SIP/2.0 407", "Proxy-Authenticate")
		switch {
		case len(got) == 0 || !strings.Contains(got[0], "algorithm=MD5"):
			t.Errorf("challenges = %q, want MD5 first", got)
		case tr.Name == "tcp" && (len(got) != 2 || !strings.Contains(got[1], "algorithm=SHA-256")):
			t.Errorf("challenges over TCP = %q, want MD5 then SHA-256", got)
		}
	})
}

// TestAuthWrongPassword: sipp with a wrong password gets a second 407 and
// its call fails; the PBX never sees an INVITE.
func TestAuthWrongPassword(t *testing.T) {
	SkipIfShort(t)
	sbc := StartSBC(t, SBCConfig{Transport: Transports[0], PBXPort: AllocPorts(t, PBXIP), Users: demoUsers, Auth: "algorithms: [MD5]"})
	caller := Sipp{
		Name: "caller", Scenario: "uac_auth_call.xml", IP: OutsideIP, Remote: sbc.Addr,
		Transport: Transports[0], Service: "1000", AuthUser: "alice", AuthPass: "wrong",
		AuthURI: "1000@" + sbc.Addr, Timeout: 10 * time.Second,
	}.Start(t)
	res := caller.Wait(20 * time.Second)
	if res.ExitCode == 0 {
		t.Fatal("call with a wrong password succeeded")
	}
	if n := strings.Count(caller.Messages(), "SIP/2.0 407"); n < 2 {
		t.Errorf("caller saw %d 407s, want the retry challenged again", n)
	}
}

// TestAuthRegisterMD5: a phone registers through the relay registrar with
// digest; a REGISTER of someone else's AOR is refused.
func TestAuthRegisterMD5(t *testing.T) {
	SkipIfShort(t)
	tr := Transports[0]
	pbx := Sipp{Name: "pbx", Scenario: "uas_register.xml", IP: PBXIP, Transport: tr, Timeout: 20 * time.Second}.Start(t)
	sbc := StartSBC(t, SBCConfig{Transport: tr, PBXPort: pbx.Port, Users: demoUsers, Auth: "algorithms: [MD5]"})
	phone := Sipp{
		Name: "phone", Scenario: "uac_register_auth.xml", IP: OutsideIP, Remote: sbc.Addr,
		Transport: tr, Service: "alice", AuthUser: "alice", AuthPass: demoUsers["alice"],
	}.Start(t)
	mustSucceed(t, phone, 1)
	if got := MessageHeader(pbx.Messages(), "REGISTER ", "Authorization"); len(got) != 0 {
		t.Errorf("credentials reached the PBX: %q", got)
	}
	// bob's credentials for alice's AOR: authenticated, but not allowed.
	thief := Sipp{
		Name: "thief", Scenario: "uac_register_auth.xml", IP: OutsideIP, Remote: sbc.Addr,
		Transport: tr, Service: "alice", AuthUser: "bob", AuthPass: demoUsers["bob"], Timeout: 10 * time.Second,
	}.Start(t)
	thief.Wait(20 * time.Second)
	if got := thief.Messages(); !strings.Contains(got, "SIP/2.0 403") {
		t.Errorf("REGISTER of alice's AOR with bob's credentials was not refused with 403")
	}
}

// TestAuthSHA256Register: a client using SHA-256 (the default's first offer)
// registers; the same Authorization replayed from another address, or
// again from the same one, is refused.
func TestAuthSHA256Register(t *testing.T) {
	SkipIfShort(t)
	tr := Transports[0]
	pbx := Sipp{Name: "pbx", Scenario: "uas_register.xml", IP: PBXIP, Transport: tr, Timeout: 20 * time.Second}.Start(t)
	sbc := StartSBC(t, SBCConfig{Transport: tr, PBXPort: pbx.Port, Users: demoUsers})

	phone := newRawPhone(t, OutsideIP, sbc.Addr)
	first := phone.roundTrip(t, phone.register("alice", 1, ""))
	if code(first) != 401 {
		t.Fatalf("first REGISTER got %q, want 401", startLine(first))
	}
	chal := headerValues(first, "WWW-Authenticate")
	if len(chal) == 0 || !strings.Contains(chal[0], "algorithm=SHA-256") || (len(chal) > 1 && !strings.Contains(chal[1], "algorithm=MD5")) {
		t.Fatalf("challenges %q, want SHA-256 then MD5 (the default; MD5 may be cut over UDP)", chal)
	}
	authz := digestSHA256(t, chal[0], "alice", demoUsers["alice"], "REGISTER", "sip:"+sbc.Addr)
	ok := phone.roundTrip(t, phone.register("alice", 2, authz))
	if code(ok) != 200 {
		t.Fatalf("authenticated REGISTER got %q, want 200", startLine(ok))
	}
	// Replayed as is (same nonce count) from the same address.
	if c := code(phone.roundTrip(t, phone.register("alice", 3, authz))); c != 401 {
		t.Errorf("replayed Authorization got %d, want 401", c)
	}
	// Replayed from another address: the nonce is bound to the first.
	other := newRawPhone(t, "127.0.0.5", sbc.Addr)
	if c := code(other.roundTrip(t, other.register("alice", 1, authz))); c != 401 {
		t.Errorf("Authorization replayed from another address got %d, want 401", c)
	}
}

// TestSvmapSeesNoProduct: SIPVicious svmap identifies nothing. With the
// scanner list on (default), its friendly-scanner User-Agent is banned on
// first sight and it gets no answer at all; with the list off, the
// challenge to its probe would be larger than the probe, so it gets none
// either; whatever it might see carries no product or version.
func TestSvmapSeesNoProduct(t *testing.T) {
	svmap := requireTool(t, "svmap", "sipvicious")
	for _, tc := range []struct {
		name, bans       string
		answered, banned bool
	}{
		{"scanner list on", "", false, true},
		// Unbanned, svmap's one OPTIONS (to sip:100@...) is challenged;
		// the challenge is larger than the probe, and an unauthenticated
		// source over UDP is never sent more bytes than it sent (sbc edge
		// budget): svmap sees nothing at all.
		{"scanner list off", "scanner_agents: [none]", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sbc := StartSBC(t, SBCConfig{Transport: Transports[0], PBXPort: AllocPorts(t, PBXIP), Users: demoUsers, Bans: tc.bans})
			out := runTool(t, svmap, "-b", OutsideIP, "-p", strconv.Itoa(sbc.Port), SBCIP)
			t.Logf("svmap:\n%s", out)
			found := strings.Contains(out, SBCIP+":"+strconv.Itoa(sbc.Port))
			if found != tc.answered {
				t.Errorf("svmap found the SBC: %v, want %v\n%s", found, tc.answered, out)
			}
			for _, leak := range []string{"sipgo", "sipwall", "Asterisk", "FreeSWITCH", "dev"} {
				if strings.Contains(rowOf(out, SBCIP), leak) {
					t.Errorf("svmap's row names %q:\n%s", leak, out)
				}
			}
			if tc.banned && !strings.Contains(sbc.Log(), "scanner") {
				t.Errorf("no scanner ban logged")
			}
		})
	}
}

// TestSvwarFindsNoUsers: SIPVicious svwar over a range holding two valid
// users (105 and, via REGISTER and INVITE, any other) finds none: unknown
// and known users get the same challenge.
func TestSvwarFindsNoUsers(t *testing.T) {
	svwar := requireTool(t, "svwar", "sipvicious")
	sbc := StartSBC(t, SBCConfig{Transport: Transports[0], PBXPort: AllocPorts(t, PBXIP), Users: demoUsers, Bans: "scanner_agents: [none]"})
	for _, method := range []string{"REGISTER", "INVITE"} {
		out := runTool(t, svwar, "-b", OutsideIP, "-p", strconv.Itoa(sbc.Port), "-e", "100-110", "-m", method, SBCIP)
		t.Logf("svwar -m %s:\n%s", method, out)
		if m := regexp.MustCompile(`\|\s*10[0-9]\s*\|`).FindString(out); m != "" || strings.Contains(out, "105") {
			t.Errorf("svwar -m %s listed an extension:\n%s", method, out)
		}
		// Forced on, it can only list every extension alike: the valid
		// one (105) is not told apart from the others.
		out = runTool(t, svwar, "--force", "-p", strconv.Itoa(sbc.Port), "-e", "100-110", "-m", method, SBCIP)
		t.Logf("svwar --force -m %s:\n%s", method, out)
		rows := map[string]string{}
		for _, m := range regexp.MustCompile(`\|\s*(10[0-9]|110)\s*\|\s*([^|]*?)\s*\|`).FindAllStringSubmatch(out, -1) {
			rows[m[1]] = m[2]
		}
		if len(rows) != 0 && len(rows) != 11 {
			t.Errorf("svwar --force -m %s listed %d of 11 extensions: it told some apart\n%s", method, len(rows), out)
		}
		for ext, status := range rows {
			if status != rows["100"] {
				t.Errorf("svwar --force: extension %s is %q but 100 is %q", ext, status, rows["100"])
			}
		}
	}
}

// TestSvcrackBanned: SIPVicious svcrack on a valid user is banned after
// bans.threshold wrong answers to our challenge (well before 20 tries),
// finds nothing, and a legitimate phone on another address still
// registers meanwhile.
func TestSvcrackBanned(t *testing.T) {
	svcrack := requireTool(t, "svcrack", "sipvicious")
	tr := Transports[0]
	pbx := Sipp{Name: "pbx", Scenario: "uas_register.xml", IP: PBXIP, Transport: tr, Timeout: 40 * time.Second}.Start(t)
	// The scanner list is off so that the ban comes from digest evidence,
	// not from svcrack's User-Agent.
	sbc := StartSBC(t, SBCConfig{Transport: tr, PBXPort: pbx.Port, Users: demoUsers, Auth: "algorithms: [MD5]", Bans: "scanner_agents: [none]"})
	// svcrack 0.3.3 ignores -b (it never passes the binding address on),
	// so it sends from the address the kernel picks toward SBCIP on
	// loopback: 127.0.0.1 itself.
	const attackerIP = SBCIP
	out := runTool(t, svcrack, "-p", strconv.Itoa(sbc.Port), "-u", "105", "-r", "1000-1100", "--maximumtime", "3", SBCIP)
	if strings.Contains(out, "4711") {
		t.Errorf("svcrack found the password:\n%s", out)
	}
	log := sbc.Log()
	m := regexp.MustCompile(`msg=banned [^\n]*prefix=` + regexp.QuoteMeta(attackerIP) + `/32 reason=auth-failures evidence="(\d+) failed`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no digest ban of %s logged\n%s", attackerIP, tailFile(sbc.p.stderr, 6000))
	}
	if n, _ := strconv.Atoi(m[1]); n >= 20 {
		t.Errorf("banned after %d failures, want fewer than 20", n)
	}
	// The banned address gets no answer any more.
	attacker := newRawPhone(t, attackerIP, sbc.Addr)
	if res := attacker.tryRoundTrip(attacker.register("105", 1, ""), time.Second); res != "" {
		t.Errorf("banned address answered: %q", startLine(res))
	}
	// A legitimate phone elsewhere still registers.
	phone := Sipp{
		Name: "phone", Scenario: "uac_register_auth.xml", IP: "127.0.0.5", Remote: sbc.Addr,
		Transport: tr, Service: "alice", AuthUser: "alice", AuthPass: demoUsers["alice"],
	}.Start(t)
	mustSucceed(t, phone, 1)
}

// requireTool finds a program of a Debian package or skips (CI installs
// it with scripts/install-test-tools.sh, so it never skips there).
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	SkipIfShort(t)
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not installed (Debian package %s; scripts/install-test-tools.sh installs it)", name, pkg)
		}
		t.Skipf("%s not installed (Debian package %s; run scripts/install-test-tools.sh)", name, pkg)
	}
	return p
}

// runTool runs a SIPVicious tool with a bounded time and returns its
// output. A non-zero exit is not a failure: the tools exit 1 when they
// find nothing.
func runTool(t *testing.T, bin string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("timeout", append([]string{"60", bin}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	out, _ := cmd.CombinedOutput()
	_ = os.WriteFile(filepath.Join(dir, "out.txt"), out, 0o644)
	return string(out)
}

func rowOf(out, needle string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, needle) {
			return l
		}
	}
	return ""
}

// rawPhone sends hand-written requests over UDP from a chosen address.
type rawPhone struct {
	c      *net.UDPConn
	dst    *net.UDPAddr
	callID string
	local  string
}

func newRawPhone(t *testing.T, ip, sbcAddr string) *rawPhone {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	dst, err := net.ResolveUDPAddr("udp", sbcAddr)
	if err != nil {
		t.Fatal(err)
	}
	return &rawPhone{c: c, dst: dst, callID: "raw-" + rand.Text() + "@" + ip, local: c.LocalAddr().String()}
}

func (p *rawPhone) register(user string, cseq int, authz string) string {
	lines := []string{
		"REGISTER sip:" + p.dst.String() + " SIP/2.0",
		"Via: SIP/2.0/UDP " + p.local + ";rport;branch=z9hG4bK-" + rand.Text(),
		"Max-Forwards: 70",
		"From: <sip:" + user + "@" + p.dst.IP.String() + ">;tag=raw" + strconv.Itoa(cseq),
		"To: <sip:" + user + "@" + p.dst.IP.String() + ">",
		"Call-ID: " + p.callID,
		"CSeq: " + strconv.Itoa(cseq) + " REGISTER",
		"Contact: <sip:" + user + "@" + p.local + ">",
		"Expires: 120",
		"User-Agent: sipwall-e2e raw",
	}
	if authz != "" {
		lines = append(lines, "Authorization: "+authz)
	}
	lines = append(lines, "Content-Length: 0", "", "")
	return strings.Join(lines, "\r\n")
}

// tryRoundTrip sends msg and returns the first final response within d,
// or "" when none came.
func (p *rawPhone) tryRoundTrip(msg string, d time.Duration) string {
	deadline := time.Now().Add(d)
	buf := make([]byte, 65535)
	for try := 0; time.Now().Before(deadline) && try < 4; try++ {
		if _, err := p.c.WriteToUDP([]byte(msg), p.dst); err != nil {
			return ""
		}
		_ = p.c.SetReadDeadline(time.Now().Add(d / 4))
		for {
			n, err := p.c.Read(buf)
			if err != nil {
				break
			}
			res := string(buf[:n])
			if code(res) >= 200 {
				return res
			}
		}
	}
	return ""
}

func (p *rawPhone) roundTrip(t *testing.T, msg string) string {
	t.Helper()
	res := p.tryRoundTrip(msg, 4*time.Second)
	if res == "" {
		t.Fatalf("no final response to:\n%s", msg)
	}
	return res
}

func startLine(msg string) string { l, _, _ := strings.Cut(msg, "\r\n"); return l }

func code(msg string) int {
	f := strings.Fields(startLine(msg))
	if len(f) < 2 || f[0] != "SIP/2.0" {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

func headerValues(msg, name string) []string {
	var out []string
	head, _, _ := strings.Cut(msg, "\r\n\r\n")
	for _, l := range strings.Split(head, "\r\n")[1:] {
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// digestSHA256 answers a SHA-256 challenge (RFC 7616 3.4.1, qop=auth).
func digestSHA256(t *testing.T, challenge, user, pass, method, uri string) string {
	t.Helper()
	param := func(name string) string {
		m := regexp.MustCompile(name + `="?([^",]*)"?`).FindStringSubmatch(challenge)
		if m == nil {
			t.Fatalf("challenge %q has no %s", challenge, name)
		}
		return m[1]
	}
	realm, nonce, opaque := param("realm"), param("nonce"), param("opaque")
	h := func(s string) string { x := sha256.Sum256([]byte(s)); return hex.EncodeToString(x[:]) }
	ha1 := h(user + ":" + realm + ":" + pass)
	ha2 := h(method + ":" + uri)
	cnonce, nc := "0a4f113b", "00000001"
	resp := h(ha1 + ":" + nonce + ":" + nc + ":" + cnonce + ":auth:" + ha2)
	return fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=SHA-256, qop=auth, nc=%s, cnonce="%s", opaque="%s"`,
		user, realm, nonce, uri, resp, nc, cnonce, opaque)
}
