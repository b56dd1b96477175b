package main

// relayload ng: the calls of serve, set up through a running
// rtpengine-daemon instead of sipwall's media.Manager, so that send drives
// both relays with the same generator. rtpengine's control protocol ("ng")
// is one UDP datagram per message: a cookie, a space and a bencoded
// dictionary; the reply carries the same cookie, and rtpengine answers a
// retransmitted cookie from its cache instead of running the command again.

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sipwall/sipwall/sbc/media/sdp"
)

// ---- bencode ----

// Values: string (byte strings), int64, []any, map[string]any. rtpengine
// writes dictionary keys in no particular order, so the decoder does not
// insist on sorted keys; the encoder sorts them, as the format asks.

const bMaxDepth = 32

var errBencode = errors.New("bencode: malformed")

func bencode(v any) ([]byte, error) {
	return bappend(nil, v)
}

func bappend(b []byte, v any) ([]byte, error) {
	var err error
	switch v := v.(type) {
	case string:
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		b = append(b, v...)
	case []byte:
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		b = append(b, v...)
	case int:
		b = append(strconv.AppendInt(append(b, 'i'), int64(v), 10), 'e')
	case int64:
		b = append(strconv.AppendInt(append(b, 'i'), v, 10), 'e')
	case []string:
		b = append(b, 'l')
		for _, e := range v {
			b, _ = bappend(b, e)
		}
		b = append(b, 'e')
	case []any:
		b = append(b, 'l')
		for _, e := range v {
			if b, err = bappend(b, e); err != nil {
				return nil, err
			}
		}
		b = append(b, 'e')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, 'd')
		for _, k := range keys {
			b, _ = bappend(b, k)
			if b, err = bappend(b, v[k]); err != nil {
				return nil, err
			}
		}
		b = append(b, 'e')
	default:
		return nil, fmt.Errorf("bencode: cannot encode %T", v)
	}
	return b, nil
}

// bdecode decodes exactly one value filling all of b.
func bdecode(b []byte) (any, error) {
	v, n, err := bvalue(b, 0)
	if err != nil {
		return nil, err
	}
	if n != len(b) {
		return nil, fmt.Errorf("%w: %d bytes after the value", errBencode, len(b)-n)
	}
	return v, nil
}

// bvalue decodes the value at the start of b and returns its length.
func bvalue(b []byte, depth int) (any, int, error) {
	if len(b) == 0 {
		return nil, 0, fmt.Errorf("%w: truncated", errBencode)
	}
	if depth > bMaxDepth {
		return nil, 0, fmt.Errorf("%w: nested deeper than %d", errBencode, bMaxDepth)
	}
	switch c := b[0]; {
	case c == 'i':
		end := slices.Index(b, 'e')
		if end < 0 {
			return nil, 0, fmt.Errorf("%w: unterminated integer", errBencode)
		}
		s := string(b[1:end])
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || s == "-0" || (len(s) > 1 && (s[0] == '0' || strings.HasPrefix(s, "-0"))) {
			return nil, 0, fmt.Errorf("%w: integer %q", errBencode, s)
		}
		return n, end + 1, nil
	case c >= '0' && c <= '9':
		colon := slices.Index(b, ':')
		if colon < 0 {
			return nil, 0, fmt.Errorf("%w: string without a length", errBencode)
		}
		n, err := strconv.Atoi(string(b[:colon]))
		if err != nil || n < 0 || (colon > 1 && b[0] == '0') || n > len(b)-colon-1 {
			return nil, 0, fmt.Errorf("%w: string length %q", errBencode, b[:colon])
		}
		return string(b[colon+1 : colon+1+n]), colon + 1 + n, nil
	case c == 'l':
		l := []any{}
		for i := 1; ; {
			if i >= len(b) {
				return nil, 0, fmt.Errorf("%w: unterminated list", errBencode)
			}
			if b[i] == 'e' {
				return l, i + 1, nil
			}
			v, n, err := bvalue(b[i:], depth+1)
			if err != nil {
				return nil, 0, err
			}
			l = append(l, v)
			i += n
		}
	case c == 'd':
		d := map[string]any{}
		for i := 1; ; {
			if i >= len(b) {
				return nil, 0, fmt.Errorf("%w: unterminated dictionary", errBencode)
			}
			if b[i] == 'e' {
				return d, i + 1, nil
			}
			k, n, err := bvalue(b[i:], depth+1)
			if err != nil {
				return nil, 0, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, 0, fmt.Errorf("%w: dictionary key is not a string", errBencode)
			}
			if _, dup := d[ks]; dup {
				return nil, 0, fmt.Errorf("%w: key %q twice", errBencode, ks)
			}
			i += n
			v, n, err := bvalue(b[i:], depth+1)
			if err != nil {
				return nil, 0, err
			}
			d[ks] = v
			i += n
		}
	default:
		return nil, 0, fmt.Errorf("%w: unexpected byte %q", errBencode, c)
	}
}

// bpath follows dictionary keys from v; nil when one is missing.
func bpath(v any, keys ...string) any {
	for _, k := range keys {
		d, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = d[k]
	}
	return v
}

// ---- ng client ----

// ngClient sends ng commands over one connected UDP socket, one at a time.
type ngClient struct {
	conn    *net.UDPConn
	prefix  string        // of the cookies: unique per process
	seq     int           // last cookie number used
	timeout time.Duration // per try
	tries   int
	buf     []byte
}

func newNGClient(conn *net.UDPConn, timeout time.Duration, tries int) *ngClient {
	return &ngClient{
		conn: conn, prefix: fmt.Sprintf("rl%d_", os.Getpid()),
		timeout: timeout, tries: tries, buf: make([]byte, 64<<10),
	}
}

// ErrNG is a reply of rtpengine with a result other than "ok".
var ErrNG = errors.New("ng: command refused")

// do sends cmd and returns the reply's dictionary, retransmitting with the
// same cookie when no reply comes within the timeout.
func (c *ngClient) do(cmd map[string]any) (map[string]any, error) {
	c.seq++
	cookie := c.prefix + strconv.Itoa(c.seq)
	body, err := bencode(cmd)
	if err != nil {
		return nil, err
	}
	msg := append([]byte(cookie+" "), body...)
	for try := 0; try < c.tries; try++ {
		if _, err := c.conn.Write(msg); err != nil {
			return nil, fmt.Errorf("ng %s: %w", cmd["command"], err)
		}
		deadline := time.Now().Add(c.timeout)
		for {
			if err := c.conn.SetReadDeadline(deadline); err != nil {
				return nil, err
			}
			n, err := c.conn.Read(c.buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break // retransmit
			}
			if err != nil {
				return nil, fmt.Errorf("ng %s: %w", cmd["command"], err)
			}
			got, d, err := ngParse(c.buf[:n])
			if got != cookie {
				continue // a late reply to an earlier try or command
			}
			if err != nil {
				return nil, fmt.Errorf("ng %s: reply: %w", cmd["command"], err)
			}
			if r, _ := d["result"].(string); r != "ok" {
				reason, _ := d["error-reason"].(string)
				return d, fmt.Errorf("%w: %s: result %q: %q", ErrNG, cmd["command"], r, reason)
			}
			return d, nil
		}
	}
	return nil, fmt.Errorf("ng %s: no reply after %d tries of %s", cmd["command"], c.tries, c.timeout)
}

// ngParse splits an ng message into its cookie and its dictionary.
func ngParse(msg []byte) (cookie string, d map[string]any, err error) {
	cookie, rest, ok := strings.Cut(string(msg), " ")
	if !ok {
		return "", nil, errors.New("no cookie")
	}
	v, err := bdecode([]byte(rest))
	if err != nil {
		return cookie, nil, err
	}
	if d, ok = v.(map[string]any); !ok {
		return cookie, nil, fmt.Errorf("%w: not a dictionary", errBencode)
	}
	return cookie, d, nil
}

// ngCall is one call set up through rtpengine.
type ngCall struct {
	callID, fromTag, toTag string
}

// ngStats sums what rtpengine's delete replies say about the calls.
type ngStats struct {
	calls, deleteErrors             int
	packets, bytes, errors, rtcpPkt int64
}

// add counts one call's delete (or query) reply: its totals.RTP and
// totals.RTCP, what rtpengine received on the call's sockets.
func (s *ngStats) add(reply map[string]any) {
	num := func(keys ...string) int64 {
		n, _ := bpath(reply, keys...).(int64)
		return n
	}
	s.calls++
	s.packets += num("totals", "RTP", "packets")
	s.bytes += num("totals", "RTP", "bytes")
	s.errors += num("totals", "RTP", "errors")
	s.rtcpPkt += num("totals", "RTCP", "packets")
}

// offer and answer set up call i the way serve does: the phone offers
// from outside, the PBX answers from inside. They return the relay's
// address and port that rtpengine wrote into the SDP it returned: toward
// the PBX (inside) for the offer, toward the phone (outside) for the
// answer.
func (c *ngClient) offer(call *ngCall, body []byte) (netip.Addr, int, error) {
	r, err := c.do(map[string]any{
		"command": "offer", "call-id": call.callID, "from-tag": call.fromTag,
		"sdp": body, "flags": []string{"trust-address"}, "replace": []string{"origin"},
	})
	if err != nil {
		return netip.Addr{}, 0, err
	}
	return ngRelayAddr(r)
}

func (c *ngClient) answer(call *ngCall, body []byte) (netip.Addr, int, error) {
	r, err := c.do(map[string]any{
		"command": "answer", "call-id": call.callID, "from-tag": call.fromTag, "to-tag": call.toTag,
		"sdp": body, "flags": []string{"trust-address"}, "replace": []string{"origin"},
	})
	if err != nil {
		return netip.Addr{}, 0, err
	}
	return ngRelayAddr(r)
}

func (c *ngClient) delete(call *ngCall) (map[string]any, error) {
	// Without delete-delay 0, rtpengine keeps the call's ports for 30 s.
	return c.do(map[string]any{"command": "delete", "call-id": call.callID, "from-tag": call.fromTag, "delete-delay": 0})
}

// ngRelayAddr is the address and port of the single m= line of the SDP in
// an offer's or answer's reply.
func ngRelayAddr(reply map[string]any) (netip.Addr, int, error) {
	body, ok := reply["sdp"].(string)
	if !ok {
		return netip.Addr{}, 0, errors.New("reply without sdp")
	}
	s, err := sdp.Parse([]byte(body))
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("reply's sdp: %w", err)
	}
	md := s.Media()
	if len(md) != 1 || md[0].Port == 0 || !md[0].Addr.IsValid() {
		return netip.Addr{}, 0, fmt.Errorf("reply's sdp: want one active m= line with an address, got %d lines", len(md))
	}
	return md[0].Addr.Unmap(), md[0].Port, nil
}

func ngMain(args []string) error {
	fs := flag.NewFlagSet("ng", flag.ContinueOnError)
	ngAddr := fs.String("ng", "127.0.0.1:2223", "rtpengine's ng control address (its --listen-ng)")
	pid := fs.Int("pid", 0, "rtpengine's process id, printed on the pid line for the caller's CPU reading (required)")
	var cf callFlags
	cf.register(fs, "delete the calls and exit after this long even without a signal")
	timeout := fs.Duration("timeout", time.Second, "wait for each ng reply this long before sending again (3 tries)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	phone, pbx, err := cf.check(fs, "ng")
	if err != nil {
		return err
	}
	if *pid < 1 {
		return errors.New("ng: -pid (rtpengine's process id) is required")
	}
	if *timeout <= 0 {
		return errors.New("ng: -timeout must be positive")
	}
	streams, peerPort, deadline := &cf.streams, &cf.peerPort, &cf.deadline
	ap, err := netip.ParseAddrPort(*ngAddr)
	if err != nil {
		return fmt.Errorf("-ng: %w", err)
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return fmt.Errorf("ng: %w", err)
	}
	defer conn.Close()
	c := newNGClient(conn, *timeout, 3)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *deadline)
	defer cancel()

	out := bufio.NewWriter(os.Stdout)
	var calls []*ngCall
	var st ngStats
	// Every call offered is deleted, whatever happens after it.
	defer func() {
		for _, call := range calls {
			r, err := c.delete(call)
			if err != nil {
				st.deleteErrors++
				fmt.Fprintf(os.Stderr, "relayload: ng: delete %s: %v\n", call.callID, err)
				continue
			}
			st.add(r)
		}
		fmt.Fprintf(out, "calls_deleted %d\ndelete_errors %d\npackets %d\nbytes %d\ndropped %d\nrtcp_packets %d\n",
			st.calls, st.deleteErrors, st.packets, st.bytes, st.errors, st.rtcpPkt)
		out.Flush()
	}()

	var ext, in netip.Addr
	var lines []string
	for i := range *streams {
		if ctx.Err() != nil {
			return fmt.Errorf("ng: interrupted after %d calls", i)
		}
		call := &ngCall{
			callID:  fmt.Sprintf("relayload-%d-%d", os.Getpid(), i),
			fromTag: fmt.Sprintf("phone-%d", i), toTag: fmt.Sprintf("pbx-%d", i),
		}
		calls = append(calls, call)
		pp := *peerPort + 2*i
		inAddr, inPort, err := c.offer(call, audioSDP(phone, pp))
		if err != nil {
			return fmt.Errorf("ng: offer of call %d: %w", i, err)
		}
		extAddr, extPort, err := c.answer(call, audioSDP(pbx, pp))
		if err != nil {
			return fmt.Errorf("ng: answer of call %d: %w", i, err)
		}
		if i == 0 {
			ext, in = extAddr, inAddr
		} else if extAddr != ext || inAddr != in {
			// send takes one address per side.
			return fmt.Errorf("ng: call %d: rtpengine's addresses %s and %s differ from call 0's %s and %s", i, extAddr, inAddr, ext, in)
		}
		lines = append(lines, fmt.Sprintf("stream %d %d %d %d", extPort, inPort, pp, pp))
	}
	fmt.Fprintf(out, "pid %d\naddrs %s %s %s %s\n", *pid, ext, in, phone, pbx)
	for _, l := range lines {
		fmt.Fprintln(out, l)
	}
	fmt.Fprintln(out, "ready")
	if err := out.Flush(); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}
