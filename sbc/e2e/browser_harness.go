package e2e

// The harness of browser_test.go: `sipwall demo` with a WSS listener, an
// HTTP server for the page in testdata/browser (JsSIP) that takes its
// report, headless Chromium, and the reading of a loopback capture with
// tshark.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds of the browser test.
const (
	browserRun      = 40 * time.Second // Chromium: start to report
	browserPageRun  = 30 * time.Second // the page's own bound (its timeout parameter)
	browserHold     = 4 * time.Second  // the call stays up this long
	browserMaxBody  = 1 << 20          // one report or event posted by the page
	tsharkReadBound = 60 * time.Second // reading the capture
)

// Addresses of the browser test.
const (
	// DemoPBXIP is the address of the demo PBX `sipwall demo` embeds.
	DemoPBXIP = "127.0.0.10"
	// BrowserSBCIP is the demo's own address (SIP and the relay's both
	// sides). Not SBCIP: Chromium's loopback candidate is 127.0.0.1 with
	// an ephemeral port, which may fall in the relay's port range, and
	// the relay refuses a source on its own address in that range (a
	// loop between two of its sockets, as far as it can tell).
	BrowserSBCIP = "127.0.0.50"
)

// chromiumFlags run Chromium headless and self-contained on loopback
// (user-data-dir is added per run): the fake microphone (a beep) granted
// without a prompt, the demo's self-signed WSS certificate accepted, the
// page's console on stderr. --allow-loopback-in-peer-connection is the
// one WebRTC needs here: without it Chromium gathers no candidate on a
// host with only lo (gathering never completes, JsSIP never sends its
// INVITE); with another interface it gathers that one's address, which
// reaches the demo over loopback just as well. Neither mDNS nor autoplay
// need a flag: with the microphone granted, Chromium puts raw addresses
// in its candidates and plays the remote audio out (into its fake output
// without a sound card), so inbound-rtp's audio energy is measured.
var chromiumFlags = []string{
	"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
	"--ignore-certificate-errors",
	"--allow-loopback-in-peer-connection",
	"--enable-logging=stderr", "--log-level=0",
}

// ---------------------------------------------------------------------------
// sipwall demo with a WSS listener

// DemoWSS is a running `sipwall demo` with UDP+TCP on Port and WSS on
// WSSPort, both on BrowserSBCIP.
type DemoWSS struct {
	*SBC
	WSSPort int
}

// StartDemoWSS starts `sipwall demo -listen BrowserSBCIP:P -wss
// BrowserSBCIP:P+1 -admin "" -log debug` (its self-signed certificate,
// made for 127.0.0.1 and localhost: Chromium is told to accept any
// certificate) and waits until it
// answers OPTIONS and its WSS port listens. It is stopped, and its stderr
// checked for panics and races, when the test ends.
func StartDemoWSS(t testing.TB) *DemoWSS {
	t.Helper()
	bin := SipwallBinary(t)
	dir := t.TempDir()
	port := AllocPorts(t, BrowserSBCIP)
	d := &DemoWSS{SBC: &SBC{Port: port, Addr: net.JoinHostPort(BrowserSBCIP, strconv.Itoa(port)), Dir: dir}, WSSPort: port + 1}
	wss := net.JoinHostPort(BrowserSBCIP, strconv.Itoa(d.WSSPort))
	p, err := startProc(t, "sipwall-demo", dir, bin, "demo", "-listen", d.Addr, "-wss", wss, "-admin", "", "-log", "debug")
	if err != nil {
		t.Fatalf("starting sipwall demo: %v", err)
	}
	d.p = p
	t.Cleanup(func() { d.stop(t) })
	if err := d.waitReady(readyTimeout); err != nil {
		t.Fatalf("sipwall demo not ready: %v\nstderr:\n%s", err, tailFile(p.stderr, logTail))
	}
	if !waitListening("tcp", BrowserSBCIP, d.WSSPort, readyTimeout) {
		t.Fatalf("sipwall demo does not listen on wss %s within %s\nstderr:\n%s", wss, readyTimeout, tailFile(p.stderr, logTail))
	}
	return d
}

// WSSURL is the WebSocket URL of the demo's WSS listener.
func (d *DemoWSS) WSSURL() string {
	return "wss://" + net.JoinHostPort(BrowserSBCIP, strconv.Itoa(d.WSSPort))
}

// Banner is what the demo printed on its standard output.
func (d *DemoWSS) Banner() string {
	data, _ := os.ReadFile(d.p.stdout)
	return string(data)
}

// consoleColors are the CSS arguments of the debug module's colored
// output (JsSIP's log), noise on a terminal.
var consoleColors = regexp.MustCompile(`%c| ?color: (#[0-9A-Fa-f]{6}|inherit)`)

var latchedRE = regexp.MustCompile(`msg="media latched[^"]*".*\bside=(\w+).*\bpeer=(\S+)`)

// Latched returns the peers the relay latched onto, per side
// ("external", "internal"), from the demo's debug log.
func (d *DemoWSS) Latched() map[string][]netip.AddrPort {
	out := map[string][]netip.AddrPort{}
	for _, m := range latchedRE.FindAllStringSubmatch(d.Log(), -1) {
		if ap, err := netip.ParseAddrPort(m[2]); err == nil {
			out[m[1]] = append(out[m[1]], ap)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// The page and its report

// BrowserReport is what testdata/browser/call.js posts to /report.
type BrowserReport struct {
	JsSIP      string `json:"jssip"`
	UserAgent  string `json:"userAgent"`
	Target     string `json:"target"`
	Outcome    string `json:"outcome"`
	Registered bool   `json:"registered"`
	Register   *struct {
		Status int    `json:"status"`
		Reason string `json:"reason"`
		Cause  string `json:"cause"`
	} `json:"register"`
	Call struct {
		Progress  []string `json:"progress"`
		Accepted  bool     `json:"accepted"`
		Confirmed bool     `json:"confirmed"`
		Ended     *struct {
			Originator string `json:"originator"`
			Cause      string `json:"cause"`
		} `json:"ended"`
		Failed *struct {
			Originator string `json:"originator"`
			Cause      string `json:"cause"`
			Status     int    `json:"status"`
			Reason     string `json:"reason"`
			Warning    string `json:"warning"`
		} `json:"failed"`
	} `json:"call"`
	PC struct {
		States     []map[string]any `json:"states"`
		Candidates []string         `json:"candidates"`
		Errors     []string         `json:"errors"`
	} `json:"pc"`
	SDP struct {
		Local  string `json:"local"`
		Remote string `json:"remote"`
		Answer string `json:"answer"` // the body of the INVITE's 2xx
	} `json:"sdp"`
	Stats     *BrowserStats    `json:"stats"`
	Timeline  []map[string]any `json:"timeline"`
	Events    []PageEvent      `json:"events"`
	Errors    []string         `json:"errors"`
	ElapsedMs int              `json:"elapsedMs"`
}

// BrowserStats is the part of RTCPeerConnection.getStats() the page
// reports.
type BrowserStats struct {
	Inbound *struct {
		SSRC             uint32  `json:"ssrc"`
		PacketsReceived  int     `json:"packetsReceived"`
		BytesReceived    int64   `json:"bytesReceived"`
		PacketsLost      int     `json:"packetsLost"`
		TotalAudioEnergy float64 `json:"totalAudioEnergy"`
		AudioLevel       float64 `json:"audioLevel"`
		Codec            string  `json:"codec"`
	} `json:"inbound"`
	Outbound *struct {
		SSRC        uint32 `json:"ssrc"`
		PacketsSent int    `json:"packetsSent"`
		BytesSent   int64  `json:"bytesSent"`
		Codec       string `json:"codec"`
	} `json:"outbound"`
	Transport *struct {
		DTLSState  string `json:"dtlsState"`
		ICEState   string `json:"iceState"`
		ICERole    string `json:"iceRole"`
		DTLSRole   string `json:"dtlsRole"`
		SRTPCipher string `json:"srtpCipher"`
		DTLSCipher string `json:"dtlsCipher"`
		TLSVersion string `json:"tlsVersion"`
	} `json:"transport"`
	Pair *struct {
		State     string `json:"state"`
		Nominated bool   `json:"nominated"`
	} `json:"pair"`
	Local  *Candidate `json:"local"`
	Remote *Candidate `json:"remote"`
}

// Candidate is one end of the selected ICE candidate pair.
type Candidate struct {
	Address       string `json:"address"`
	Port          int    `json:"port"`
	Protocol      string `json:"protocol"`
	CandidateType string `json:"candidateType"`
}

// AddrPort is the candidate's address; invalid when it has none.
func (c *Candidate) AddrPort() netip.AddrPort {
	if c == nil {
		return netip.AddrPort{}
	}
	a, err := netip.ParseAddr(c.Address)
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(c.Port))
}

// PageEvent is one step of the page, posted to /event as it happens and
// repeated in the report.
type PageEvent struct {
	T      int    `json:"t"` // ms since the page started
	Kind   string `json:"kind"`
	Detail any    `json:"detail"`
}

func (e PageEvent) String() string {
	d, _ := json.Marshal(e.Detail)
	return fmt.Sprintf("%6d ms  %s %s", e.T, e.Kind, d)
}

// LastState returns the last value the page saw of an RTCPeerConnection
// state ("iceConnectionState", "connectionState", ...), or "".
func (r *BrowserReport) LastState(name string) string {
	v := ""
	for _, s := range r.PC.States {
		if x, ok := s[name].(string); ok {
			v = x
		}
	}
	return v
}

// PageServer serves testdata/browser over HTTP on SBCIP and collects
// what the page posts.
type PageServer struct {
	URL     string // http://SBCIP:port/
	srv     *http.Server
	reports chan []byte

	mu     sync.Mutex
	events []string
}

// ServePage starts the page's HTTP server; it is closed when the test
// ends. http://127.0.0.1 is a secure context: getUserMedia works there.
func ServePage(t testing.TB) *PageServer {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(SBCIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	ps := &PageServer{URL: "http://" + ln.Addr().String() + "/", reports: make(chan []byte, 1)}
	mux := http.NewServeMux()
	mux.Handle("GET /", http.FileServer(http.Dir(filepath.Join(root, "testdata", "browser"))))
	mux.HandleFunc("POST /event", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, browserMaxBody))
		if err != nil {
			return
		}
		var e PageEvent
		line := string(body)
		if json.Unmarshal(body, &e) == nil {
			line = e.String()
		}
		ps.mu.Lock()
		if len(ps.events) < 1000 {
			ps.events = append(ps.events, line)
		}
		ps.mu.Unlock()
	})
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, browserMaxBody))
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		select {
		case ps.reports <- body:
		default: // one report per run; a second is dropped
		}
	})
	ps.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second}
	go ps.srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		ps.srv.Shutdown(ctx)
	})
	return ps
}

// CallURL is the page's address with its parameters.
func (ps *PageServer) CallURL(wss string) string {
	q := url.Values{}
	q.Set("wss", wss)
	q.Set("domain", BrowserSBCIP)
	q.Set("user", "alice")
	q.Set("password", "demo")
	q.Set("target", "1000")
	q.Set("hold", strconv.FormatInt(browserHold.Milliseconds(), 10))
	q.Set("timeout", strconv.FormatInt(browserPageRun.Milliseconds(), 10))
	return ps.URL + "call.html?" + q.Encode()
}

// Events returns the page's progress as it was posted to /event.
func (ps *PageServer) Events() string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return strings.Join(ps.events, "\n")
}

// WaitReport waits up to d for the page's report. The raw JSON is
// returned too, for the test log. A browser that exits first ends the
// wait.
func (ps *PageServer) WaitReport(d time.Duration, browser *Chromium) (*BrowserReport, []byte, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case body := <-ps.reports:
		var r BrowserReport
		if err := json.Unmarshal(body, &r); err != nil {
			return nil, body, fmt.Errorf("report: %w", err)
		}
		return &r, body, nil
	case <-browser.p.done:
		return nil, nil, fmt.Errorf("chromium exited (%v) before the page reported", browser.p.err)
	case <-timer.C:
		return nil, nil, fmt.Errorf("no report within %s", d)
	}
}

// ---------------------------------------------------------------------------
// Chromium

// Chromium is a running headless Chromium.
type Chromium struct {
	p *proc
}

// RequireChromium returns the path of Debian's chromium, skipping the
// test without it (failing it under CI), like RequireTool.
func RequireChromium(t testing.TB) string {
	t.Helper()
	return RequireTool(t, "chromium", "chromium")
}

// StartChromium opens pageURL in headless Chromium (chromiumFlags, a
// fresh profile). Chromium forks: it runs in a process group of its own,
// and is ended by its PID when the test ends (SIGTERM to that group,
// SIGKILL to it after killGrace).
func StartChromium(t testing.TB, bin, pageURL string) *Chromium {
	t.Helper()
	dir := t.TempDir()
	args := append(append([]string{}, chromiumFlags...), "--user-data-dir="+filepath.Join(dir, "profile"), pageURL)
	p, err := launch(dir, "chromium", true, bin, args...)
	if err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	c := &Chromium{p: p}
	t.Cleanup(c.Stop)
	return c
}

// Stop ends Chromium and the processes it forked (its process group;
// the main process is not reaped before they are signalled, so the
// group id is still its own).
func (c *Chromium) Stop() {
	if c.p.exited() {
		return
	}
	pid := c.p.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-c.p.done:
	case <-time.After(killGrace):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-c.p.done
	}
}

// Console returns the page's console messages (JsSIP's debug log among
// them) from Chromium's stderr, the last n bytes of them.
func (c *Chromium) Console(n int) string {
	data, err := os.ReadFile(c.p.stderr)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), ":CONSOLE") {
			b.WriteString(consoleColors.ReplaceAllString(sc.Text(), ""))
			b.WriteByte('\n')
		}
	}
	out := b.Bytes()
	if len(out) > n {
		out = append([]byte("...\n"), out[len(out)-n:]...)
	}
	return string(out)
}

// Stderr returns the tail of Chromium's stderr.
func (c *Chromium) Stderr(n int) string { return tailFile(c.p.stderr, n) }

// ---------------------------------------------------------------------------
// Reading a capture

// UDPPacket is one captured UDP datagram.
type UDPPacket struct {
	Src, Dst netip.AddrPort
	Payload  []byte
}

// ReadUDPCapture reads the UDP datagrams over IPv4 in a capture file
// with tshark.
func ReadUDPCapture(file string) ([]UDPPacket, error) {
	bin, err := exec.LookPath("tshark")
	if err != nil {
		return nil, errors.New("tshark not found (Debian package tshark)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), tsharkReadBound)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-r", file, "-n", "-Y", "ip && udp", "-T", "fields", "-E", "separator=/t",
		"-e", "ip.src", "-e", "udp.srcport", "-e", "ip.dst", "-e", "udp.dstport", "-e", "udp.payload")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("tshark -r %s: %v: %s", file, err, stderr.String())
	}
	var pkts []UDPPacket
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 5 {
			continue
		}
		src, err1 := parseAddrPort(f[0], f[1])
		dst, err2 := parseAddrPort(f[2], f[3])
		payload, err3 := hex.DecodeString(strings.ReplaceAll(f[4], ":", ""))
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("tshark line %q: %w", line, err)
		}
		pkts = append(pkts, UDPPacket{Src: src, Dst: dst, Payload: payload})
	}
	return pkts, nil
}

func parseAddrPort(ip, port string) (netip.AddrPort, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.AddrPort{}, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}
