// Command relayload measures the media relay (sbc/media) in packets per
// second per CPU core. It runs as two processes, so that the relay's CPU
// time can be read apart from the load generator's (scripts/bench-relay.sh
// reads /proc/<pid>/stat of the serve process around a send run):
//
//	relayload serve -streams 100 -addr 127.0.0.1 -port-min 42000 -port-max 42999 > streams.txt &
//	relayload send -pps 10000 -duration 10s -streams-file streams.txt
//
// serve creates a media.Manager bound on -addr (and -internal-addr, by
// default the same address) and sets up -streams calls through the real
// SDP path: for call i, Rewrite of an offer from the outside (peer
// -outside-peer, RTP port -peer-port-min+2i) toward the inside, then of an
// answer from the inside (peer -inside-peer, the same port number) toward
// the outside. A relay bound to a loopback address accepts loopback peers
// (media's address policy), so all of it runs on 127.0.0.0/8. It prints,
// one per line:
//
//	pid <pid of serve>
//	addrs <external bind> <internal bind> <outside peer> <inside peer>
//	stream <outside relay port> <inside relay port> <outside peer port> <inside peer port>   (one per call)
//	ready
//
// the relay ports parsed out of the rewritten SDP bodies. It then relays
// until SIGTERM or SIGINT or -deadline, prints the Manager's Stats as
// "key value" lines (packets, bytes, dropped_<reason>...) and exits.
// With -fastpath (root) the relay has the kernel fast path
// (bpf.OpenMedia on -fastpath-dev, loopback by default): once a call has
// latched both ways its RTP is forwarded by the TC program, and serve
// also prints fastpath_packets and the program's own run time
// (prog_runs, prog_ns, counted with the kernel's BPF run statistics).
//
// send reads those lines (-streams-file, "-" for stdin) and, per stream,
// binds the phone's socket on <outside peer>:<outside peer port> and the
// PBX's on <inside peer>:<inside peer port>: exactly the addresses of the
// SDP, since the relay sends to them before it latches. Phones send to the
// relay's outside port, PBXs to its inside port: 172-byte RTP packets
// (12-byte header, 160 bytes of G.711 payload, timestamp +160 per packet,
// the 20 ms packetisation), round-robin over all sockets, at -pps packets
// per second in all (both directions together), paced in 1 ms steps, for
// -duration. Each socket's reader counts what arrives from the relay port
// it expects; after -drain the sockets close. It prints "key value" lines:
// sent, received, loss, the achieved rates and the latency through the
// relay (each payload carries its send time), and cpu_s, its own CPU time
// (user and system) from the start of sending to the end of the drain:
// with the fast path the kernel forwards in the sender's context, so the
// relay's cost shows there. With -direct the phones and the PBXs send to
// each other, not through the relay: the same packets and sockets, the
// baseline that relaying adds to.
//
// ng sets up the same calls through a running rtpengine-daemon instead,
// over its ng control protocol (bencoded dictionaries over UDP, each
// after a cookie and a space) at -ng: for call i an "offer" with the
// phone's SDP (call-id, from-tag), then an "answer" with the PBX's (to-tag).
// It prints the lines serve prints, the pid line carrying rtpengine's
// process id (-pid, found by the caller) and the addrs and stream lines
// the address and ports rtpengine wrote into the SDP it returned, so that
// send drives rtpengine unchanged. At SIGTERM, SIGINT or -deadline it
// sends "delete" for every call and prints packets, bytes and dropped:
// the RTP rtpengine received for them and its errors (totals of the
// delete replies).
//
// Exit status: 0 on success (send: even with loss), 2 on a usage or setup
// error.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sipwall/sipwall/bpf"
	"github.com/sipwall/sipwall/sbc"
	"github.com/sipwall/sipwall/sbc/media"
	"github.com/sipwall/sipwall/sbc/media/sdp"
)

const (
	packetSize  = 172 // 12-byte RTP header + 160 bytes of G.711 (20 ms)
	rtpHeader   = 12
	samplesPerP = 160 // RTP timestamp step: 20 ms at 8 kHz
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "send":
		err = send(os.Args[2:])
	case "ng":
		err = ngMain(os.Args[2:])
	case "-h", "-help", "--help", "help":
		usage()
		return
	default:
		usage()
		os.Exit(2)
	}
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "relayload:", err)
		}
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  relayload serve [-streams N] [-addr IP] [-port-min P] [-port-max Q] [-deadline D] ...
  relayload send  [-pps R] [-duration D] [-streams-file F] ...
  relayload ng    -pid PID [-ng ADDR] [-streams N] [-deadline D] ...
Run "relayload serve -h", "relayload send -h" or "relayload ng -h" for the flags.`)
}

// ---- serve ----

// callFlags are the flags of the calls serve and ng set up, the same for
// both: how many, and the two peers' addresses and ports.
type callFlags struct {
	streams, peerPort int
	outside, inside   string
	deadline          time.Duration
}

func (c *callFlags) register(fs *flag.FlagSet, deadlineHelp string) {
	fs.IntVar(&c.streams, "streams", 100, "calls to set up, one audio stream each")
	fs.StringVar(&c.outside, "outside-peer", "127.0.0.5", "address of the phones (outside peers) written in the offers")
	fs.StringVar(&c.inside, "inside-peer", "127.0.0.6", "address of the PBX (inside peer) written in the answers")
	fs.IntVar(&c.peerPort, "peer-port-min", 30000, "RTP port of call 0 at both peers; call i uses this + 2i (RTCP + 1)")
	fs.DurationVar(&c.deadline, "deadline", 120*time.Second, deadlineHelp)
}

// check validates the flags after parsing (cmd names the subcommand in
// errors) and returns the two peers' addresses.
func (c *callFlags) check(fs *flag.FlagSet, cmd string) (phone, pbx netip.Addr, err error) {
	switch {
	case fs.NArg() > 0:
		return phone, pbx, fmt.Errorf("%s: unexpected argument %q", cmd, fs.Arg(0))
	case c.streams < 1:
		return phone, pbx, fmt.Errorf("%s: -streams must be at least 1", cmd)
	case c.deadline <= 0:
		return phone, pbx, fmt.Errorf("%s: -deadline must be positive", cmd)
	case c.peerPort < 1 || c.peerPort+2*c.streams > 65535:
		return phone, pbx, fmt.Errorf("%s: peer ports %d + 2*%d do not fit below 65536", cmd, c.peerPort, c.streams)
	}
	if phone, err = parseAddr("-outside-peer", c.outside); err != nil {
		return phone, pbx, err
	}
	pbx, err = parseAddr("-inside-peer", c.inside)
	return phone, pbx, err
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var cf callFlags
	cf.register(fs, "exit after this long even without a signal")
	addr := fs.String("addr", "127.0.0.1", "bind address of the relay's outside-facing (external) sockets")
	internal := fs.String("internal-addr", "", "bind address of the inside-facing sockets (default: -addr; the two then share the port range)")
	portMin := fs.Int("port-min", media.DefaultPortMin, "first UDP port of the relay range")
	portMax := fs.Int("port-max", media.DefaultPortMax, "last UDP port of the relay range")
	fast := fs.Bool("fastpath", false, "forward latched RTP in the kernel (TC program on -fastpath-dev; needs root)")
	fastDev := fs.String("fastpath-dev", "lo", "interface the fast path attaches to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	phone, pbx, err := cf.check(fs, "serve")
	if err != nil {
		return err
	}
	streams, peerPort, deadline := &cf.streams, &cf.peerPort, &cf.deadline
	if *internal == "" {
		*internal = *addr
	}
	ext, err := parseAddr("-addr", *addr)
	if err != nil {
		return err
	}
	in, err := parseAddr("-internal-addr", *internal)
	if err != nil {
		return err
	}
	// media refuses loopback peers unless that side is bound to loopback,
	// and any of its own addresses on a relay port: say so rather than
	// relay nothing.
	for _, c := range []struct {
		name       string
		peer, bind netip.Addr
	}{{"-outside-peer", phone, ext}, {"-inside-peer", pbx, in}} {
		if c.peer.IsLoopback() && !c.bind.IsLoopback() {
			return fmt.Errorf("serve: %s %s is loopback but the relay side is bound to %s: media refuses loopback peers then", c.name, c.peer, c.bind)
		}
		if (c.peer == ext || c.peer == in) && *peerPort <= *portMax && *peerPort+2*(*streams) > *portMin {
			return fmt.Errorf("serve: %s %s is a relay address and the peer ports overlap the relay range: media refuses such peers", c.name, c.peer)
		}
	}

	mc := media.Config{External: ext, Internal: in, PortMin: *portMin, PortMax: *portMax, MaxSessions: *streams}
	var fp *bpf.MediaPath
	if *fast {
		if fp, err = bpf.OpenMedia(bpf.MediaOptions{Interfaces: []string{*fastDev}, PortMin: uint16(*portMin), PortMax: uint16(*portMax)}); err != nil {
			return fmt.Errorf("serve: fast path: %w", err)
		}
		defer fp.Close()
		stats, err := bpf.EnableRunStats()
		if err != nil {
			return fmt.Errorf("serve: BPF run statistics: %w", err)
		}
		defer stats.Close()
		mc.FastPath = fp
	}
	m, err := media.New(mc)
	if err != nil {
		return err
	}
	defer m.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *deadline)
	defer cancel()
	go m.Run(ctx, func(string) {}) // renews the kernel routes' leases

	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "pid %d\naddrs %s %s %s %s\n", os.Getpid(), ext, in, phone, pbx)
	for i := range *streams {
		key := fmt.Sprintf("relayload-%d", i)
		pp := *peerPort + 2*i
		toIn, err := m.Rewrite(key, sbc.Internal, audioSDP(phone, pp))
		if err != nil {
			return fmt.Errorf("serve: offer of call %d: %w", i, err)
		}
		inPort, err := relayPort(toIn)
		if err != nil {
			return fmt.Errorf("serve: rewritten offer of call %d: %w", i, err)
		}
		toExt, err := m.Rewrite(key, sbc.External, audioSDP(pbx, pp))
		if err != nil {
			return fmt.Errorf("serve: answer of call %d: %w", i, err)
		}
		extPort, err := relayPort(toExt)
		if err != nil {
			return fmt.Errorf("serve: rewritten answer of call %d: %w", i, err)
		}
		fmt.Fprintf(out, "stream %d %d %d %d\n", extPort, inPort, pp, pp)
	}
	fmt.Fprintln(out, "ready")
	if err := out.Flush(); err != nil {
		return err
	}

	<-ctx.Done()

	st := m.Stats()
	fmt.Fprintf(out, "sessions %d\nstreams %d\nports_in_use %d\npackets %d\nbytes %d\n",
		st.Sessions, st.Streams, st.PortsInUse, st.Packets, st.Bytes)
	reasons := make([]string, 0, len(st.Dropped))
	var dropped uint64
	for r, n := range st.Dropped {
		reasons = append(reasons, r)
		dropped += n
	}
	slices.Sort(reasons)
	fmt.Fprintf(out, "dropped %d\n", dropped)
	for _, r := range reasons {
		fmt.Fprintf(out, "dropped_%s %d\n", strings.ReplaceAll(r, "-", "_"), st.Dropped[r])
	}
	fmt.Fprintf(out, "full %d\nno_ports %d\nbind_failures %d\n", st.Full, st.NoPorts, st.BindFailures)
	fmt.Fprintf(out, "fastpath_streams %d\nfastpath_packets %d\nfastpath_errors %d\n", st.FastPathStreams, st.FastPathPackets, st.FastPathErrors)
	if fp != nil {
		runs, total, err := fp.RunStats()
		if err == nil {
			fmt.Fprintf(out, "prog_runs %d\nprog_ns %d\n", runs, total.Nanoseconds())
		}
	}
	return out.Flush()
}

func parseAddr(name, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, fmt.Errorf("%s: %w", name, err)
	}
	if !a.Unmap().Is4() {
		return a, fmt.Errorf("%s: %s: IPv4 only", name, s)
	}
	return a.Unmap(), nil
}

// audioSDP is a G.711 offer or answer with one audio stream at addr:port.
func audioSDP(addr netip.Addr, port int) []byte {
	return []byte(strings.Join([]string{
		"v=0",
		fmt.Sprintf("o=- 1 1 IN IP4 %s", addr),
		"s=relayload",
		fmt.Sprintf("c=IN IP4 %s", addr),
		"t=0 0",
		fmt.Sprintf("m=audio %d RTP/AVP 0 8 101", port),
		"a=rtpmap:0 PCMU/8000",
		"a=rtpmap:8 PCMA/8000",
		"a=rtpmap:101 telephone-event/8000",
		"a=ptime:20",
		"",
	}, "\r\n"))
}

// relayPort is the port of the single m= line of a rewritten body.
func relayPort(body []byte) (int, error) {
	s, err := sdp.Parse(body)
	if err != nil {
		return 0, err
	}
	md := s.Media()
	if len(md) != 1 || md[0].Port == 0 {
		return 0, fmt.Errorf("want one active m= line, got %d", len(md))
	}
	return md[0].Port, nil
}

// ---- send ----

// streamSpec is one "stream" line of serve.
type streamSpec struct {
	extPort, inPort, phonePort, pbxPort int
}

// setup is what serve printed.
type setup struct {
	ext, in, phone, pbx netip.Addr
	streams             []streamSpec
}

func readSetup(r io.Reader) (*setup, error) {
	s := &setup{
		ext: netip.MustParseAddr("127.0.0.1"), in: netip.MustParseAddr("127.0.0.1"),
		phone: netip.MustParseAddr("127.0.0.5"), pbx: netip.MustParseAddr("127.0.0.6"),
	}
	sc := bufio.NewScanner(r)
	ready := false
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "addrs":
			if len(f) != 5 {
				return nil, fmt.Errorf("bad line %q", sc.Text())
			}
			for i, dst := range []*netip.Addr{&s.ext, &s.in, &s.phone, &s.pbx} {
				a, err := netip.ParseAddr(f[i+1])
				if err != nil {
					return nil, fmt.Errorf("bad line %q: %w", sc.Text(), err)
				}
				*dst = a
			}
		case "stream":
			if len(f) != 5 {
				return nil, fmt.Errorf("bad line %q", sc.Text())
			}
			var p [4]int
			for i := range p {
				n, err := strconv.Atoi(f[i+1])
				if err != nil || n < 1 || n > 65535 {
					return nil, fmt.Errorf("bad port in %q", sc.Text())
				}
				p[i] = n
			}
			s.streams = append(s.streams, streamSpec{p[0], p[1], p[2], p[3]})
		case "ready":
			ready = true
		}
		if ready {
			break // serve's stats follow later; not ours
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(s.streams) == 0 {
		return nil, errors.New("no stream lines")
	}
	return s, nil
}

// endpoint is one generator socket: a phone or a PBX of one stream.
type endpoint struct {
	conn *net.UDPConn
	dst  netip.AddrPort // the relay port it sends to and expects packets from
	out  bool           // a phone: its packets go outside to inside
	ssrc uint32
	seq  uint16
	ts   uint32
	// Written by the endpoint's reader only, read after it exited.
	received, stray uint64
	lat             []uint32 // latency histogram, see bucket
	// Written by the endpoint's sender only.
	sent, sendErrs uint64
}

func send(args []string) error {
	fs := flag.NewFlagSet("send", flag.ContinueOnError)
	pps := fs.Float64("pps", 10000, "packets per second offered, both directions and all streams together")
	duration := fs.Duration("duration", 10*time.Second, "how long to send")
	file := fs.String("streams-file", "-", "serve's output (pid, addrs, stream and ready lines); - for stdin")
	drain := fs.Duration("drain", 500*time.Millisecond, "how long to wait for packets after the last send")
	senders := fs.Int("senders", 1, "sending goroutines, each pacing its share of the sockets")
	rcvbuf := fs.Int("rcvbuf", 1<<20, "receive buffer of each generator socket, bytes (0: system default)")
	direct := fs.Bool("direct", false, "phones and PBXs send to each other, not through the relay (the baseline)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("send: unexpected argument %q", fs.Arg(0))
	}
	if *pps <= 0 || *duration <= 0 || *drain < 0 || *senders < 1 {
		return errors.New("send: -pps and -duration must be positive, -drain not negative, -senders at least 1")
	}
	var r io.Reader = os.Stdin
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	set, err := readSetup(r)
	if err != nil {
		return fmt.Errorf("send: %s: %w", *file, err)
	}

	// Sockets in round-robin order: phone 0, PBX 0, phone 1, PBX 1...
	eps := make([]*endpoint, 0, 2*len(set.streams))
	defer func() {
		for _, e := range eps {
			e.conn.Close()
		}
	}()
	for i, s := range set.streams {
		pair := []*endpoint{
			{dst: netip.AddrPortFrom(set.ext, uint16(s.extPort)), out: true},
			{dst: netip.AddrPortFrom(set.in, uint16(s.inPort))},
		}
		if *direct {
			pair[0].dst = netip.AddrPortFrom(set.pbx, uint16(s.pbxPort))
			pair[1].dst = netip.AddrPortFrom(set.phone, uint16(s.phonePort))
		}
		for _, e := range pair {
			local := netip.AddrPortFrom(set.pbx, uint16(s.pbxPort))
			if e.out {
				local = netip.AddrPortFrom(set.phone, uint16(s.phonePort))
			}
			c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(local))
			if err != nil {
				return fmt.Errorf("send: stream %d: %w", i, err)
			}
			if *rcvbuf > 0 {
				_ = c.SetReadBuffer(*rcvbuf) // capped by net.core.rmem_max
			}
			e.conn = c
			e.ssrc = uint32(0x5157_0000 + len(eps))
			e.lat = make([]uint32, nBuckets)
			eps = append(eps, e)
		}
	}

	cpu0 := cpuTime()
	start := time.Now()
	var readers sync.WaitGroup
	for _, e := range eps {
		readers.Add(1)
		go func() {
			defer readers.Done()
			e.read(start)
		}()
	}

	n := min(*senders, len(eps))
	var wg sync.WaitGroup
	for k := range n {
		var mine []*endpoint
		for i := k; i < len(eps); i += n {
			mine = append(mine, eps[i])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pace(mine, *pps*float64(len(mine))/float64(len(eps)), start, *duration)
		}()
	}
	wg.Wait()
	window := time.Since(start)
	time.Sleep(*drain)
	for _, e := range eps {
		e.conn.Close()
	}
	readers.Wait()
	cpu := cpuTime() - cpu0

	var sent, sendErrs, recv, stray [2]uint64 // [0] outside to inside, [1] inside to outside
	lat := make([]uint64, nBuckets)
	for _, e := range eps {
		d := 1
		if e.out {
			d = 0
		}
		sent[d] += e.sent
		sendErrs[d] += e.sendErrs
		stray[d^1] += e.stray // e receives the other direction
		recv[d^1] += e.received
		for i, v := range e.lat {
			lat[i] += uint64(v)
		}
	}
	totalSent, totalRecv := sent[0]+sent[1], recv[0]+recv[1]
	loss := 0.0
	if totalSent > 0 && totalSent > totalRecv {
		loss = 100 * float64(totalSent-totalRecv) / float64(totalSent)
	}
	secs := window.Seconds()
	fmt.Printf("streams %d\nsockets %d\nsenders %d\ngomaxprocs %d\n", len(set.streams), len(eps), n, runtime.GOMAXPROCS(0))
	fmt.Printf("offered_pps %.0f\nwindow_s %.3f\n", *pps, secs)
	fmt.Printf("sent %d\nsent_out_in %d\nsent_in_out %d\nsend_errors %d\n", totalSent, sent[0], sent[1], sendErrs[0]+sendErrs[1])
	fmt.Printf("received %d\nreceived_out_in %d\nreceived_in_out %d\nstray %d\n", totalRecv, recv[0], recv[1], stray[0]+stray[1])
	fmt.Printf("lost %d\nloss_pct %.3f\n", totalSent-min(totalSent, totalRecv), loss)
	fmt.Printf("sent_pps %.0f\nreceived_pps %.0f\n", float64(totalSent)/secs, float64(totalRecv)/secs)
	fmt.Printf("cpu_s %.3f\n", cpu.Seconds())
	fmt.Printf("latency_p50_us %.1f\nlatency_p99_us %.1f\nlatency_p999_us %.1f\nlatency_max_us %.1f\n",
		quantile(lat, 0.5), quantile(lat, 0.99), quantile(lat, 0.999), quantile(lat, 1))
	return nil
}

// pace sends rate packets per second round-robin over eps until duration
// has passed since start: every step it sends the packets due by then, so
// a slow step is caught up in the next one, and nothing is sent after the
// end (the achieved rate shows a generator that could not keep up).
func pace(eps []*endpoint, rate float64, start time.Time, duration time.Duration) {
	const step = time.Millisecond
	buf := make([]byte, packetSize)
	for i := rtpHeader; i < packetSize; i++ {
		buf[i] = 0xff // mu-law silence
	}
	var sent int64
	next := 0
	end := start.Add(duration)
	for {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		due := int64(now.Sub(start).Seconds() * rate)
		for ; sent < due; sent++ {
			e := eps[next]
			next++
			if next == len(eps) {
				next = 0
			}
			e.packet(buf, time.Since(start))
			if _, err := e.conn.WriteToUDPAddrPort(buf, e.dst); err != nil {
				e.sendErrs++
				continue
			}
			e.sent++
		}
		time.Sleep(step)
	}
}

// cpuTime is the process's CPU time so far, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// packet fills buf's RTP header and the send time for e's next packet.
func (e *endpoint) packet(buf []byte, at time.Duration) {
	buf[0] = 0x80 // version 2
	buf[1] = 0    // PCMU
	binary.BigEndian.PutUint16(buf[2:], e.seq)
	binary.BigEndian.PutUint32(buf[4:], e.ts)
	binary.BigEndian.PutUint32(buf[8:], e.ssrc)
	binary.BigEndian.PutUint64(buf[rtpHeader:], uint64(at))
	e.seq++
	e.ts += samplesPerP
}

// read counts the packets that come from the relay port e sends to, until
// e's socket is closed.
func (e *endpoint) read(start time.Time) {
	buf := make([]byte, 2048)
	for {
		n, src, err := e.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		now := time.Since(start)
		if src != e.dst || n != packetSize {
			e.stray++
			continue
		}
		e.received++
		sentAt := time.Duration(binary.BigEndian.Uint64(buf[rtpHeader:]))
		if d := now - sentAt; d >= 0 {
			e.lat[bucket(uint64(d))]++
		}
	}
}

// Latency histogram: log-linear buckets, 16 per power of two (within
// 1/16 of the value), values below 16 ns exact.
const nBuckets = (63-3)*16 + 16

func bucket(v uint64) int {
	if v < 16 {
		return int(v)
	}
	e := bits.Len64(v) - 1 // >= 4
	return (e-3)*16 + int(v>>(e-4)&15)
}

// bucketLow is the smallest value of bucket i.
func bucketLow(i int) uint64 {
	if i < 16 {
		return uint64(i)
	}
	e := i/16 + 3
	return uint64(16+i%16) << (e - 4)
}

// quantile is the lower bound of the bucket holding quantile q, in µs.
func quantile(h []uint64, q float64) float64 {
	var total uint64
	for _, v := range h {
		total += v
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q * float64(total))
	rank = max(rank, 1)
	var acc uint64
	for i, v := range h {
		acc += v
		if acc >= rank {
			return float64(bucketLow(i)) / 1e3
		}
	}
	return float64(bucketLow(len(h)-1)) / 1e3
}
