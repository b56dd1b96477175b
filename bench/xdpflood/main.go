// Command xdpflood is the traffic side of the XDP prefilter benchmark
// (scripts/bench-xdp.sh, make bench-xdp). Linux only, root only. Every
// subcommand stops by itself after -duration.
//
//	xdpflood flood   sends a UDP SIP INVITE flood out of an interface with
//	                 BPF_PROG_RUN in live-frames mode: a tiny XDP program
//	                 (built here with cilium/ebpf/asm, no clang) returns
//	                 XDP_TX, so the kernel transmits each frame out of the
//	                 "ingress" interface (a veth: the frame lands in the
//	                 peer's XDP/NAPI receive path). -rotate N rewrites the
//	                 IPv4 source of every frame from a counter so N sources
//	                 cycle (header checksum fixed incrementally, UDP checksum
//	                 0). The program counts the frames it ran; that count is
//	                 the offered load. -pps paces the flood: the program
//	                 sends a frame only when its deadline has come, so the
//	                 frames leave evenly spaced.
//	xdpflood filter  loads the sipwall prefilter (package bpf) and attaches
//	                 it to an interface in native or generic mode, or loads
//	                 it for nothing ("none"), then prints its counters.
//	xdpflood recv    the SIP listener: a UDP receive loop on one socket that
//	                 counts datagrams, optionally judges each with the Go
//	                 model of the prefilter (-model: bpf.NewModel + Admit) or
//	                 holds the XDP prefilter itself (-xdp: bpf.Open, as
//	                 sipwall does in prefilter.mode xdp), and relays the
//	                 datagrams of one legitimate source to a SIP server (and
//	                 its answers back), so legitimate calls share the socket
//	                 and the loop with the flood; it counts that source's
//	                 datagrams read and admitted. -verify marks that source
//	                 verified through the prefilter's API (Model.Verify,
//	                 Filter.Verify), as sipwall does when a source
//	                 authenticates: at once, or when the first 2xx answer to
//	                 it comes back from the SIP server.
//
// Results are printed as "key value" lines on stdout.
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/sipwall/sipwall/bpf"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "flood":
		err = flood(os.Args[2:])
	case "filter":
		err = filter(os.Args[2:])
	case "recv":
		err = recv(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "xdpflood:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: xdpflood flood|filter|recv [flags] (-h for the flags)")
	os.Exit(2)
}

// limitFlags are the prefilter settings shared by filter and recv.
type limitFlags struct {
	port  uint
	rate  float64
	burst int
	cap   uint64
	share int
	allow string
}

func (l *limitFlags) register(fs *flag.FlagSet) {
	fs.UintVar(&l.port, "port", 5060, "SIP UDP port judged")
	fs.Float64Var(&l.rate, "rate", 5, "per-source budget of every class, packets/s")
	fs.IntVar(&l.burst, "burst", 10, "per-source burst")
	fs.Uint64Var(&l.cap, "cap", 0, "requests per second per CPU from all sources together (Config.Cap[ClassRequest]; 0: no cap)")
	fs.IntVar(&l.share, "verified-share", 0, "percent of the cap kept for verified sources (Config.VerifiedShare; sipwall's prefilter.verified_share, default 20 there)")
	fs.StringVar(&l.allow, "allow", "", "comma-separated allow-listed prefixes")
}

func (l *limitFlags) config() (bpf.Config, error) {
	cfg := bpf.Config{UDPPorts: []uint16{uint16(l.port)}}
	for c := range bpf.NumClasses {
		cfg.Source[c] = bpf.Limit{Rate: l.rate, Burst: l.burst}
	}
	cfg.Cap[bpf.ClassRequest] = l.cap
	cfg.VerifiedShare = l.share
	for _, s := range strings.Split(l.allow, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return cfg, err
		}
		cfg.Allow = append(cfg.Allow, p)
	}
	return cfg, cfg.Validate()
}

// untilDone returns a context ended by d or by SIGINT/SIGTERM.
func untilDone(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	return ctx, func() { stop(); cancel() }
}

// ---- flood ----

const (
	ethLen = 14
	ipLen  = 20
	udpLen = 8
)

// xdpMd is struct xdp_md, the context of an XDP program run.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

func flood(args []string) error {
	fs := flag.NewFlagSet("flood", flag.ExitOnError)
	iface := fs.String("iface", "", "interface the frames leave by (the generator's veth)")
	dstMAC := fs.String("dst-mac", "", "destination MAC (the peer veth)")
	src := fs.String("src", "10.200.0.1", "IPv4 source (first of the range with -rotate)")
	dst := fs.String("dst", "", "IPv4 destination")
	dport := fs.Uint("dport", 5060, "UDP destination port")
	sport := fs.Uint("sport", 5060, "UDP source port")
	rotate := fs.Uint("rotate", 0, "cycle through this many consecutive sources (0: one source)")
	duration := fs.Duration("duration", 5*time.Second, "how long to send")
	repeat := fs.Uint("repeat", 1<<16, "frames per BPF_PROG_RUN call")
	batch := fs.Uint("batch", 64, "live-frames batch size")
	threads := fs.Int("threads", 1, "sending threads")
	cpus := fs.String("cpus", "", "comma-separated CPUs the threads are pinned to, round robin")
	pps := fs.Uint64("pps", 0, "frames per second per thread (0: as fast as the generator runs, unpaced)")
	lag := fs.Uint("lag", 128, "with -pps: frames a thread that fell behind may send back to back (the largest burst; the rest of its debt is forgiven)")
	fs.Parse(args)
	if *pps > 1e9 || *lag == 0 || *lag > 256 {
		return errors.New("flood: -pps must be at most 1e9 and -lag 1..256")
	}
	if *iface == "" || *dst == "" || *dstMAC == "" {
		return errors.New("flood: -iface, -dst and -dst-mac are required")
	}
	ifc, err := net.InterfaceByName(*iface)
	if err != nil {
		return err
	}
	dmac, err := net.ParseMAC(*dstMAC)
	if err != nil {
		return err
	}
	sa, err := netip.ParseAddr(*src)
	if err != nil || !sa.Is4() {
		return fmt.Errorf("flood: -src %q: not an IPv4 address", *src)
	}
	da, err := netip.ParseAddr(*dst)
	if err != nil || !da.Is4() {
		return fmt.Errorf("flood: -dst %q: not an IPv4 address", *dst)
	}
	var pinned []int
	for _, s := range strings.Split(*cpus, ",") {
		if s = strings.TrimSpace(s); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				return fmt.Errorf("flood: -cpus: %w", err)
			}
			pinned = append(pinned, n)
		}
	}
	frame := buildFrame(ifc.HardwareAddr, dmac, sa, da, uint16(*sport), uint16(*dport))

	if err := rlimit.RemoveMemlock(); err != nil {
		return err
	}
	// Slot 0: frames transmitted; slot 1: the pacing deadline.
	count, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 2})
	if err != nil {
		return fmt.Errorf("flood: counter map: %w", err)
	}
	defer count.Close()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		License:      "GPL",
		Instructions: txProgram(count.FD(), uint32(*rotate), binary.BigEndian.Uint32(sa.AsSlice()), *pps, uint32(*lag)),
	})
	if err != nil {
		return fmt.Errorf("flood: load XDP program: %w", err)
	}
	defer prog.Close()

	opts := ebpf.RunOptions{
		Data:      frame,
		Repeat:    uint32(*repeat),
		Flags:     unix.BPF_F_TEST_XDP_LIVE_FRAMES,
		BatchSize: uint32(*batch),
		Context:   xdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifc.Index)},
	}
	// One trial run: live-frames mode and the context are checked here.
	if _, err := prog.Run(&ebpf.RunOptions{Data: frame, Repeat: 1, Flags: opts.Flags, Context: opts.Context}); err != nil {
		return fmt.Errorf("flood: BPF_PROG_RUN live frames: %w", err)
	}
	before, err := sumPerCPU(count)
	if err != nil {
		return err
	}
	ctx, cancel := untilDone(*duration)
	defer cancel()
	var wg sync.WaitGroup
	var calls atomic.Uint64
	errc := make(chan error, *threads)
	start := time.Now()
	for i := range *threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			if len(pinned) > 0 {
				var set unix.CPUSet
				set.Set(pinned[i%len(pinned)])
				if err := unix.SchedSetaffinity(0, &set); err != nil {
					errc <- fmt.Errorf("flood: pin to CPU %d: %w", pinned[i%len(pinned)], err)
					return
				}
			}
			o := opts
			for ctx.Err() == nil {
				if _, err := prog.Run(&o); err != nil {
					errc <- err
					return
				}
				calls.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errc)
	if err := <-errc; err != nil {
		return fmt.Errorf("flood: %w", err)
	}
	after, err := sumPerCPU(count)
	if err != nil {
		return err
	}
	sent := after - before
	fmt.Printf("frames %d\n", sent)
	fmt.Printf("frame_bytes %d\n", len(frame))
	fmt.Printf("calls %d\n", calls.Load())
	fmt.Printf("seconds %.3f\n", elapsed.Seconds())
	fmt.Printf("pps %.0f\n", float64(sent)/elapsed.Seconds())
	fmt.Printf("target_pps %d\n", *pps*uint64(*threads))
	return nil
}

func sumPerCPU(m *ebpf.Map) (uint64, error) {
	var per []uint64
	if err := m.Lookup(uint32(0), &per); err != nil {
		return 0, fmt.Errorf("flood: counter: %w", err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

// txProgram is the generator's XDP program: count the frame in the per-CPU
// counter (slot 0) and return XDP_TX.
//
// With pps > 0 it paces first: a frame is sent only when the CPU's deadline
// (slot 1, bpf_ktime_get_ns) has come, and the deadline then moves on by
// 1e9/pps ns; other frames return XDP_DROP and are not counted. The
// generator spins (BPF_PROG_RUN calls of many frames) and the frames leave
// one at a time, evenly spaced: a syscall per small burst would cost more
// than the gap (about 0.4 ms per live-frames call), and a few large bursts
// overflow the receiver's ring. A thread that fell behind (descheduled)
// catches up with at most lag frames back to back. With rotate > 0 it first sets the
// IPv4 source to base + (count mod rotate) and fixes the header checksum
// incrementally (RFC 1624: HC' = ~(~HC + ~m + m')).
//
// The one's complement sum does not depend on byte order, so the 16-bit
// words are summed as loaded (little-endian) and the new address is
// byte-swapped to network order before it is split into words.
func txProgram(counterFD int, rotate, base uint32, pps uint64, lag uint32) asm.Instructions {
	const (
		srcOff  = ethLen + 12
		csumOff = ethLen + 10
	)
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1), // ctx
	}
	if pps > 0 {
		gap := int64(1e9 / pps)
		lagNs := min(int64(lag)*gap, math.MaxInt32)
		insns = append(insns,
			asm.FnKtimeGetNs.Call(),
			asm.Mov.Reg(asm.R7, asm.R0), // now
			asm.StoreImm(asm.R10, -4, 1, asm.Word),
			asm.Mov.Reg(asm.R2, asm.R10),
			asm.Add.Imm(asm.R2, -4),
			asm.LoadMapPtr(asm.R1, counterFD),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "count"),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord), // next
			asm.JNE.Imm(asm.R1, 0, "started"),
			asm.Mov.Reg(asm.R1, asm.R7),
			asm.JLT.Reg(asm.R7, asm.R1, "early").WithSymbol("started"),
			// Behind by more than lag frames: forgive the rest.
			asm.Mov.Reg(asm.R2, asm.R7),
			asm.Sub.Reg(asm.R2, asm.R1),
			asm.JLE.Imm(asm.R2, int32(lagNs), "due"),
			asm.Mov.Reg(asm.R1, asm.R7),
			asm.Sub.Imm(asm.R1, int32(lagNs)),
			asm.Add.Imm(asm.R1, int32(gap)).WithSymbol("due"),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
			asm.Ja.Label("count"),
			asm.Mov.Imm(asm.R0, 1).WithSymbol("early"), // XDP_DROP
			asm.Return(),
		)
	}
	insns = append(insns,
		asm.StoreImm(asm.R10, -4, 0, asm.Word).WithSymbol("count"),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, counterFD),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "tx"),
		asm.LoadMem(asm.R8, asm.R0, 0, asm.DWord), // n = count
		asm.Mov.Reg(asm.R1, asm.R8),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
	)
	if rotate > 0 {
		insns = append(insns,
			asm.LoadMem(asm.R2, asm.R6, 0, asm.Word), // data
			asm.LoadMem(asm.R3, asm.R6, 4, asm.Word), // data_end
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, ethLen+ipLen),
			asm.JGT.Reg(asm.R4, asm.R3, "tx"),
			// r1 = htonl(base + n % rotate)
			asm.Mov.Reg(asm.R1, asm.R8),
			asm.Mod.Imm(asm.R1, int32(rotate)),
			asm.Add.Imm(asm.R1, int32(base)),
			asm.HostTo(asm.BE, asm.R1, asm.Word),
			// r4 = ~HC + ~m_lo + ~m_hi (16-bit each)
			asm.LoadMem(asm.R4, asm.R2, csumOff, asm.Half),
			asm.Xor.Imm(asm.R4, 0xffff),
			asm.LoadMem(asm.R3, asm.R2, srcOff, asm.Half),
			asm.Xor.Imm(asm.R3, 0xffff),
			asm.Add.Reg(asm.R4, asm.R3),
			asm.LoadMem(asm.R3, asm.R2, srcOff+2, asm.Half),
			asm.Xor.Imm(asm.R3, 0xffff),
			asm.Add.Reg(asm.R4, asm.R3),
			// + m'_lo + m'_hi
			asm.Mov.Reg(asm.R5, asm.R1),
			asm.And.Imm(asm.R5, 0xffff),
			asm.Add.Reg(asm.R4, asm.R5),
			asm.Mov.Reg(asm.R5, asm.R1),
			asm.RSh.Imm(asm.R5, 16),
			asm.And.Imm(asm.R5, 0xffff),
			asm.Add.Reg(asm.R4, asm.R5),
			// fold twice, complement
			asm.Mov.Reg(asm.R5, asm.R4),
			asm.RSh.Imm(asm.R5, 16),
			asm.And.Imm(asm.R4, 0xffff),
			asm.Add.Reg(asm.R4, asm.R5),
			asm.Mov.Reg(asm.R5, asm.R4),
			asm.RSh.Imm(asm.R5, 16),
			asm.And.Imm(asm.R4, 0xffff),
			asm.Add.Reg(asm.R4, asm.R5),
			asm.Xor.Imm(asm.R4, 0xffff),
			asm.StoreMem(asm.R2, srcOff, asm.R1, asm.Word),
			asm.StoreMem(asm.R2, csumOff, asm.R4, asm.Half),
		)
	}
	return append(insns,
		asm.Mov.Imm(asm.R0, 3).WithSymbol("tx"), // XDP_TX
		asm.Return(),
	)
}

// buildFrame is Ethernet + IPv4 + UDP (checksum 0) + a SIP INVITE.
func buildFrame(smac, dmac net.HardwareAddr, src, dst netip.Addr, sport, dport uint16) []byte {
	s4, d4 := src.As4(), dst.As4()
	payload := fmt.Sprintf("INVITE sip:bench@%[2]s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %[1]s:%[3]d;branch=z9hG4bK-xdpflood-1\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:flood@%[1]s>;tag=xdpflood\r\n"+
		"To: <sip:bench@%[2]s>\r\n"+
		"Call-ID: xdpflood-1@%[1]s\r\n"+
		"CSeq: 1 INVITE\r\n"+
		"Contact: <sip:flood@%[1]s:%[3]d>\r\n"+
		"User-Agent: xdpflood\r\n"+
		"Content-Length: 0\r\n\r\n", src, dst, sport)
	f := make([]byte, ethLen+ipLen+udpLen+len(payload))
	copy(f[0:6], dmac)
	copy(f[6:12], smac)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[ethLen:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(ipLen+udpLen+len(payload)))
	ip[8] = 64 // TTL
	ip[9] = 17 // UDP
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	var sum uint32
	for i := 0; i < ipLen; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := ip[ipLen:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(udpLen+len(payload)))
	copy(udp[udpLen:], payload)
	return f
}

// ---- filter ----

func filter(args []string) error {
	fs := flag.NewFlagSet("filter", flag.ExitOnError)
	iface := fs.String("iface", "", "interface to attach to")
	mode := fs.String("mode", "native", "native (bpf.Open with the interface), generic (link.XDPGenericMode), none (loaded only)")
	duration := fs.Duration("duration", 30*time.Second, "how long to stay attached")
	var lf limitFlags
	lf.register(fs)
	fs.Parse(args)
	cfg, err := lf.config()
	if err != nil {
		return err
	}
	f, closeFilter, err := openFilter(*iface, *mode, cfg)
	if err != nil {
		return err
	}
	defer closeFilter()
	fmt.Println("ready")
	ctx, cancel := untilDone(*duration)
	defer cancel()
	<-ctx.Done()
	c, err := f.Counters()
	if err != nil {
		return err
	}
	printCounters(c)
	fmt.Printf("dropped %d\n", c.TotalDropped())
	return nil
}

// openFilter loads the prefilter with cfg and attaches it to iface: mode
// native (bpf.Open with the interface, as sipwall's prefilter.mode xdp),
// generic (link.XDPGenericMode) or none (loaded only).
func openFilter(iface, mode string, cfg bpf.Config) (*bpf.Filter, func(), error) {
	opt := bpf.Options{Config: cfg}
	switch mode {
	case "native":
		opt.Interfaces = []string{iface}
	case "generic", "none":
	default:
		return nil, nil, fmt.Errorf("xdp mode %q: native, generic or none", mode)
	}
	f, err := bpf.Open(opt)
	if err != nil {
		return nil, nil, err
	}
	closeFilter := func() { f.Close() }
	if mode == "generic" {
		ifc, err := net.InterfaceByName(iface)
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: f.Program(), Interface: ifc.Index, Flags: link.XDPGenericMode})
		if err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("generic attach to %s: %w", iface, err)
		}
		closeFilter = func() { l.Close(); f.Close() }
	}
	for _, a := range f.Attachments() {
		fmt.Fprintf(os.Stderr, "xdpflood: attached to %s (%s)\n", a.Interface, a.Mode)
	}
	if mode == "generic" {
		fmt.Fprintf(os.Stderr, "xdpflood: attached to %s (generic)\n", iface)
	}
	return f, closeFilter, nil
}

// printCounters prints the prefilter's counters as "key value" lines.
func printCounters(c bpf.Counters) {
	for r := range bpf.NumReasons {
		fmt.Printf("reason_%s %d\n", r, c.Reasons[r])
	}
	for cl := range bpf.NumClasses {
		fmt.Printf("class_%s_passed %d\nclass_%s_dropped %d\n", cl, c.Passed[cl], cl, c.Dropped[cl])
	}
}

// ---- recv ----

func recv(args []string) error {
	fs := flag.NewFlagSet("recv", flag.ExitOnError)
	listen := fs.String("listen", "", "address:port of the SIP listener")
	duration := fs.Duration("duration", 30*time.Second, "how long to receive")
	model := fs.Bool("model", false, "judge every datagram with the Go model of the prefilter")
	xdpMode := fs.String("xdp", "", "hold the XDP prefilter in this process, attached to -iface: native (bpf.Open with the interface, as sipwall's prefilter.mode xdp) or generic (link.XDPGenericMode); its counters are printed at the end")
	iface := fs.String("iface", "", "interface for -xdp")
	verify := fs.String("verify", "", "mark -legit verified, as sipwall does when a source authenticates (Model.Verify and, with -xdp, Filter.Verify): start (at once), answer (when the first 2xx answer from -uas is relayed to it, before it is sent on); empty: never")
	verifyTTL := fs.Duration("verify-ttl", time.Hour, "how long a verification holds (sipwall's prefilter.verified_ttl, default 1h)")
	legit := fs.String("legit", "", "source address whose datagrams are relayed to -uas")
	uas := fs.String("uas", "", "address:port of the SIP server legitimate datagrams go to")
	rcvbuf := fs.Int("rcvbuf", 0, "SO_RCVBUF in bytes (0: system default)")
	var lf limitFlags
	lf.register(fs)
	fs.Parse(args)
	laddr, err := netip.ParseAddrPort(*listen)
	if err != nil {
		return fmt.Errorf("recv: -listen: %w", err)
	}
	var legitAddr netip.Addr
	var uasAddr netip.AddrPort
	if *legit != "" {
		if legitAddr, err = netip.ParseAddr(*legit); err != nil {
			return err
		}
		if uasAddr, err = netip.ParseAddrPort(*uas); err != nil {
			return fmt.Errorf("recv: -uas: %w", err)
		}
	}
	switch *verify {
	case "", "start", "answer":
	default:
		return fmt.Errorf("recv: -verify %q: start, answer or empty", *verify)
	}
	if *verify != "" && !legitAddr.IsValid() {
		return errors.New("recv: -verify needs -legit")
	}
	if *model && *xdpMode != "" {
		return errors.New("recv: -model and -xdp exclude each other")
	}
	var m *bpf.Model
	var xf *bpf.Filter
	if *model || *xdpMode != "" {
		cfg, err := lf.config()
		if err != nil {
			return err
		}
		if *model {
			if m, err = bpf.NewModel(cfg); err != nil {
				return err
			}
		} else {
			var closeFilter func()
			if xf, closeFilter, err = openFilter(*iface, *xdpMode, cfg); err != nil {
				return err
			}
			defer closeFilter()
		}
	}
	// markVerified is sipwall's prefilter.verified (cmd/sipwall): the model
	// and, when attached, the XDP program's verified map, until now + TTL.
	start := time.Now()
	var verifiedAfter atomic.Int64 // ns since start + 1; 0: not yet
	var verifyErr atomic.Pointer[error]
	markVerified := func() {
		until := time.Now().Add(*verifyTTL)
		if m != nil {
			m.Verify(legitAddr, bpf.Expiry(until))
		}
		if xf != nil {
			if err := xf.Verify(legitAddr, until); err != nil {
				verifyErr.Store(&err)
			}
		}
		verifiedAfter.Store(int64(time.Since(start)) + 1)
	}
	if *verify == "start" {
		markVerified()
	}
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(laddr))
	if err != nil {
		return err
	}
	defer conn.Close()
	if *rcvbuf > 0 {
		if err := conn.SetReadBuffer(*rcvbuf); err != nil {
			return err
		}
	}
	var relay *net.UDPConn
	var client atomic.Pointer[netip.AddrPort]
	var relayed, answered atomic.Uint64
	if legitAddr.IsValid() {
		relay, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(uasAddr.Addr(), 0)))
		if err != nil {
			return err
		}
		defer relay.Close()
		// Answers of the SIP server go back to the legitimate client from
		// the listener's socket.
		go func() {
			buf := make([]byte, 65536)
			for {
				n, _, err := relay.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				// The first 2xx answer stands in for sipwall's successful
				// authentication of the source: it is marked verified
				// before the answer goes back, so its next request (the
				// ACK) finds it so.
				if *verify == "answer" && verifiedAfter.Load() == 0 && bytes.HasPrefix(buf[:n], []byte("SIP/2.0 2")) {
					markVerified()
				}
				if c := client.Load(); c != nil {
					if _, err := conn.WriteToUDPAddrPort(buf[:n], *c); err == nil {
						answered.Add(1)
					}
				}
			}
		}()
	}
	fmt.Println("ready")
	end := time.Now().Add(*duration)
	ctx, cancel := untilDone(*duration)
	defer cancel()
	go func() {
		<-ctx.Done()
		conn.SetReadDeadline(time.Now())
	}()
	conn.SetReadDeadline(end)
	var received, admitted, dropped uint64
	// The legitimate source's datagrams read from the socket, and those
	// the model admitted: the listener's stage of its path.
	var legitReceived, legitAdmitted uint64
	// The model's drops of the legitimate source once it was verified.
	var legitDroppedVerified uint64
	var reasons, legitReasons [bpf.NumReasons]uint64
	buf := make([]byte, 65536)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil {
				break
			}
			return err
		}
		received++
		src := from.Addr().Unmap()
		isLegit := legitAddr.IsValid() && src == legitAddr
		if isLegit {
			legitReceived++
		}
		if m != nil {
			ok, r := m.Admit(src, bpf.Classify(buf[:n]), bpf.MonoNow())
			reasons[r]++
			if isLegit {
				legitReasons[r]++
				if !ok && verifiedAfter.Load() != 0 {
					legitDroppedVerified++
				}
			}
			if !ok {
				dropped++
				continue
			}
		}
		admitted++
		if isLegit {
			legitAdmitted++
		}
		if relay != nil && isLegit {
			fa := netip.AddrPortFrom(src, from.Port())
			if c := client.Load(); c == nil || *c != fa {
				client.Store(&fa)
			}
			if _, err := relay.WriteToUDPAddrPort(buf[:n], uasAddr); err == nil {
				relayed.Add(1)
			}
		}
	}
	fmt.Printf("received %d\n", received)
	fmt.Printf("admitted %d\n", admitted)
	switch {
	case m != nil:
		for r := range bpf.NumReasons {
			fmt.Printf("reason_%s %d\n", r, reasons[r])
		}
		for r := range bpf.NumReasons {
			fmt.Printf("legit_reason_%s %d\n", r, legitReasons[r])
		}
		fmt.Printf("legit_dropped_after_verified %d\n", legitDroppedVerified)
	case xf != nil:
		c, err := xf.Counters()
		if err != nil {
			return err
		}
		printCounters(c)
		dropped = c.TotalDropped()
	}
	fmt.Printf("dropped %d\n", dropped)
	if e := verifyErr.Load(); e != nil {
		return fmt.Errorf("recv: verify: %w", *e)
	}
	if v := verifiedAfter.Load(); v > 0 {
		fmt.Printf("verified_after_s %.3f\n", time.Duration(v-1).Seconds())
	}
	fmt.Printf("legit_received %d\n", legitReceived)
	fmt.Printf("legit_admitted %d\n", legitAdmitted)
	fmt.Printf("relayed %d\n", relayed.Load())
	fmt.Printf("answered %d\n", answered.Load())
	return nil
}
