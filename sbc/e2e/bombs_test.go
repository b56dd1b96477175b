package e2e

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// AttackerIP is the source of the Content-Length bombs: another host than
// the legitimate caller, so that the per-source TCP limit the bombs may
// hit is not the caller's.
const AttackerIP = "127.0.0.5"

// Bounds of the bomb test.
const (
	bombCount   = 1000
	bombWarmup  = 200                    // the first bombs, before the second RSS sample
	bombWorkers = 20                     // connections (or datagrams) in flight at once
	bombTCPRead = 300 * time.Millisecond // reading a bomb's connection before closing it
	bombUDPRead = 30 * time.Millisecond  // reading for an answer to a bomb datagram
	bombRSS     = 20 << 20               // allowed growth of sipwall's VmRSS
	bombSettle  = time.Second            // after the last bomb, before measuring
)

// bombBody is an SDP offer; a bomb carries it so that, were its
// Content-Length believed, it would be a complete, routable INVITE.
const bombBody = "v=0\r\no=attacker 1 1 IN IP4 " + AttackerIP + "\r\ns=-\r\nc=IN IP4 " + AttackerIP +
	"\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

// bombVariants are the Content-Length headers and bodies of the bombs, per
// sbc/sanity/README.md (bomb_test.go there decides the same cases without
// a network): all dropped over UDP; over TCP dropped or left waiting for a
// body that never comes until the client closes.
var bombVariants = []struct {
	name    string
	headers []string
	body    string
}{
	{"4294967295", []string{"Content-Length: 4294967295"}, bombBody},
	{"2147483648", []string{"l: 2147483648"}, bombBody},
	// Leading zeros are valid; the body is shorter than the 10 declared.
	{"leading zeros", []string{"Content-Length: 000000000000000000010"}, "v=0"},
	// Ambiguous framing (request smuggling); the second makes a stream
	// parser reserve room for 65000 bytes that never come.
	{"two headers", []string{"Content-Length: 0", "l: 65000"}, bombBody},
}

// bombMessage is bomb n: an INVITE from AttackerIP:port whose Via names
// that address (rport), so that any answer stays on the loopback.
func bombMessage(n int, tr Transport, port int, sbcAddr string) []byte {
	v := bombVariants[n%len(bombVariants)]
	from := net.JoinHostPort(AttackerIP, strconv.Itoa(port))
	lines := []string{
		"INVITE sip:bomb@" + sbcAddr + " SIP/2.0",
		fmt.Sprintf("Via: SIP/2.0/%s %s;rport;branch=z9hG4bK-bomb-%d-%d", strings.ToUpper(tr.Name), from, os.Getpid(), n),
		"Max-Forwards: 70",
		fmt.Sprintf("From: <sip:attacker@%s>;tag=bomb%d", AttackerIP, n),
		"To: <sip:bomb@" + sbcAddr + ">",
		fmt.Sprintf("Call-ID: bomb-%d-%d@%s", os.Getpid(), n, AttackerIP),
		"CSeq: 1 INVITE",
		"Contact: <sip:attacker@" + from + ">",
		"Subject: bomb",
		"Content-Type: application/sdp",
	}
	lines = append(lines, v.headers...)
	return []byte(strings.Join(lines, "\r\n") + "\r\n\r\n" + v.body)
}

// bombTally counts what the bombs got back, per transport and variant.
type bombTally struct {
	mu       sync.Mutex
	sent     map[string]int
	answered map[string][]int // statuses sipwall answered with
	closed   map[string]int   // TCP: sipwall closed the connection
	failed   map[string]int   // TCP: could not connect or write
	errs     []string
}

func (b *bombTally) add(key string, codes []int, closed, failed bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent[key]++
	b.answered[key] = append(b.answered[key], codes...)
	if closed {
		b.closed[key]++
	}
	if failed {
		b.failed[key]++
		if len(b.errs) < 5 {
			b.errs = append(b.errs, err.Error())
		}
	}
}

// sendBomb sends bomb n over tr and reads what comes back for a bounded
// time.
func sendBomb(n int, tr Transport, udp *net.UDPConn, sbcAddr string, tally *bombTally) {
	key := tr.Name + "/" + bombVariants[n%len(bombVariants)].name
	buf := make([]byte, 65536)
	if tr.Name == "udp" {
		dst, err := net.ResolveUDPAddr("udp", sbcAddr)
		if err == nil {
			_, err = udp.WriteToUDP(bombMessage(n, tr, udp.LocalAddr().(*net.UDPAddr).Port, sbcAddr), dst)
		}
		if err != nil {
			tally.add(key, nil, false, true, err)
			return
		}
		var codes []int
		udp.SetReadDeadline(time.Now().Add(bombUDPRead))
		// An answer to an earlier bomb of this worker counts all the same.
		for range 100 {
			m, _, err := udp.ReadFromUDP(buf)
			if err != nil {
				break
			}
			codes = append(codes, statusOf(buf[:m]))
		}
		tally.add(key, codes, false, false, nil)
		return
	}
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(AttackerIP)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", sbcAddr)
	if err != nil {
		tally.add(key, nil, false, true, err)
		return
	}
	defer conn.Close()
	port := conn.LocalAddr().(*net.TCPAddr).Port
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(bombMessage(n, tr, port, sbcAddr)); err != nil {
		tally.add(key, nil, false, true, err)
		return
	}
	var codes []int
	var data []byte
	closed := false
	conn.SetReadDeadline(time.Now().Add(bombTCPRead))
	for range 100 {
		m, err := conn.Read(buf)
		if len(data) < 64<<10 {
			data = append(data, buf[:m]...)
		}
		if err != nil {
			closed = !errors.Is(err, os.ErrDeadlineExceeded)
			break
		}
	}
	for {
		msg, rest, ok := frameMessage(data)
		if !ok {
			break
		}
		codes = append(codes, statusOf(msg))
		data = rest
	}
	if len(data) > 0 {
		codes = append(codes, -1) // bytes that are no whole message
	}
	tally.add(key, codes, closed, false, nil)
}

// sendBombs sends bombs from..to-1 with bombWorkers at a time, each
// worker from its own UDP socket so that answers come back to the worker
// that sent the bomb. Even bombs go over UDP, odd ones over TCP, in runs
// of all variants.
func sendBombs(t *testing.T, from, to int, sbcAddr string, tally *bombTally) {
	t.Helper()
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range bombWorkers {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(AttackerIP)})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer udp.Close()
			for n := range jobs {
				tr := Transports[(n/len(bombVariants))%2]
				sendBomb(n, tr, udp, sbcAddr, tally)
			}
		}()
	}
	for n := from; n < to; n++ {
		jobs <- n
	}
	close(jobs)
	wg.Wait()
}

// TestContentLengthBombs sends 1,000 Content-Length bombs, round-robin over
// the variants and UDP/TCP, to a running sipwall while a legitimate call
// over each transport goes through it to a sipp PBX. sipwall must stay up
// and within 20 MiB of its resident size, answer no bomb, forward none,
// and carry both calls.
func TestContentLengthBombs(t *testing.T) {
	SkipIfShort(t)
	RequireSipp(t)
	udpTr, tcpTr := Transports[0], Transports[1]
	pbx := Sipp{Name: "pbx", Scenario: "uas_answer.xml", IP: PBXIP, Transport: udpTr,
		Calls: 2, Timeout: 60 * time.Second}.Start(t)
	// Info, not debug: a thousand bombs' worth of debug lines would only
	// slow sipwall down.
	sbc := StartSBC(t, SBCConfig{Transport: udpTr, PBXPort: pbx.Port, LogLevel: "info"})
	rss := func(when string) int64 {
		t.Helper()
		n, err := sbc.RSS()
		if err != nil {
			t.Fatalf("reading sipwall's RSS %s: %v", when, err)
		}
		return n
	}
	tally := &bombTally{sent: map[string]int{}, answered: map[string][]int{}, closed: map[string]int{}, failed: map[string]int{}}

	rss0 := rss("before the bombs")
	sendBombs(t, 0, bombWarmup, sbc.Addr, tally)
	rssWarm := rss("after the warm-up")
	// The legitimate calls go through while the rest of the bombs fly: the
	// pause keeps them up for longer than the bombing takes.
	var callers []*SippProc
	for _, tr := range []Transport{udpTr, tcpTr} {
		callers = append(callers, Sipp{Name: "caller-" + tr.Name, Scenario: "uac_basic.xml", IP: OutsideIP,
			Remote: sbc.Addr, Transport: tr, Pause: 2 * time.Second, Timeout: 60 * time.Second}.Start(t))
	}
	sendBombs(t, bombWarmup, bombCount, sbc.Addr, tally)
	for _, c := range callers {
		r := c.Wait(70 * time.Second)
		if !r.Finished || r.ExitCode != 0 || r.Count("SuccessfulCall(C)") != 1 {
			t.Errorf("legitimate call %s: finished %v, exit %d, successful %d, failed %d",
				c.Name, r.Finished, r.ExitCode, r.Count("SuccessfulCall(C)"), r.Count("FailedCall(C)"))
		}
	}
	if r := pbx.Wait(uasGrace); !r.Finished || r.ExitCode != 0 || r.Count("SuccessfulCall(C)") != 2 {
		t.Errorf("PBX: finished %v, exit %d, successful %d, failed %d; want both calls",
			r.Finished, r.ExitCode, r.Count("SuccessfulCall(C)"), r.Count("FailedCall(C)"))
	}

	time.Sleep(bombSettle)
	rssEnd := rss("after the bombs")
	peak, _ := sbc.PeakRSS()
	race := buildRace()
	t.Logf("sipwall (race detector: %v) VmRSS: before %.1f MiB, after %d bombs %.1f MiB, after %d %.1f MiB; "+
		"growth %+.1f MiB in all, %+.1f MiB after the warm-up; peak %.1f MiB",
		race, mib(rss0), bombWarmup, mib(rssWarm), bombCount, mib(rssEnd), mib(rssEnd-rss0), mib(rssEnd-rssWarm), mib(peak))
	// What bombs leave behind shows after the warm-up. Over all 1,000 the
	// budget is asserted for sipwall as built for use (measured: +5 MiB).
	// A race-built sipwall (the default under go test -race) takes about
	// 16 MiB more for the race runtime while the first few hundred
	// connections run 20 at a time, and then stays flat (measured: +19.5,
	// +21 and +22 MiB for 500, 1,000 and 2,000 bombs), so there only the
	// growth after the warm-up is asserted and the total is logged.
	if rssEnd-rssWarm > bombRSS {
		t.Errorf("sipwall's RSS grew by %.1f MiB over bombs %d-%d, limit %.0f MiB", mib(rssEnd-rssWarm), bombWarmup+1, bombCount, mib(bombRSS))
	}
	if !race && rssEnd-rss0 > bombRSS {
		t.Errorf("sipwall's RSS grew by %.1f MiB over %d bombs, limit %.0f MiB", mib(rssEnd-rss0), bombCount, mib(bombRSS))
	}

	tally.mu.Lock()
	defer tally.mu.Unlock()
	keys := slices.Sorted(maps.Keys(tally.sent))
	total := 0
	for _, k := range keys {
		total += tally.sent[k]
		t.Logf("%-18s sent %3d, answered %v, closed by sipwall %d, connect/write failed %d",
			k, tally.sent[k], tally.answered[k], tally.closed[k], tally.failed[k])
		if len(tally.answered[k]) > 0 {
			t.Errorf("%s: sipwall answered bombs: %v (want silence: every bomb is dropped)", k, tally.answered[k])
		}
	}
	if total != bombCount {
		t.Errorf("%d bombs sent, want %d", total, bombCount)
	}
	if len(tally.errs) > 0 {
		t.Logf("connect/write errors (first %d): %q", len(tally.errs), tally.errs)
	}

	// sipwall is up and answers.
	if !sbc.Alive() {
		t.Fatalf("sipwall exited")
	}
	if err := sbc.waitReady(5 * time.Second); err != nil {
		t.Errorf("sipwall no longer answers OPTIONS: %v", err)
	}
	// The PBX got the two calls and no bomb.
	log := pbx.Messages()
	invites := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.HasPrefix(line, "INVITE ") {
			invites++
		}
	}
	if invites != 2 {
		t.Errorf("the PBX received %d INVITEs, want 2 (the legitimate calls)", invites)
	}
	if strings.Contains(log, "bomb") || strings.Contains(log, AttackerIP) {
		t.Errorf("a bomb reached the PBX:\n%s", log)
	}
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
