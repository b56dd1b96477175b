package media

import "github.com/sipwall/sipwall/sbc"

// Names under which Stats are to be exported.
const (
	MetricSessions      = "sipwall_media_sessions"            // gauge: Stats.Sessions
	MetricStreams       = "sipwall_media_streams"             // gauge: Stats.Streams
	MetricPortsInUse    = "sipwall_media_ports_in_use"        // gauge: Stats.PortsInUse
	MetricPacketsTotal  = "sipwall_media_packets_total"       // Stats.Packets
	MetricBytesTotal    = "sipwall_media_bytes_total"         // Stats.Bytes
	MetricDroppedTotal  = "sipwall_media_dropped_total"       // label reason: Stats.Dropped
	MetricRefusedTotal  = "sipwall_media_refused_total"       // label reason full|no-ports: Stats.Full, Stats.NoPorts
	MetricBindFailTotal = "sipwall_media_bind_failures_total" // Stats.BindFailures
	MetricPortsWarm     = "sipwall_media_ports_warm"          // gauge: Stats.PortsWarm
	MetricBindsTotal    = "sipwall_media_binds_total"         // Stats.Binds
	MetricReusedTotal   = "sipwall_media_reused_total"        // Stats.Reused
	MetricDrainedTotal  = "sipwall_media_drained_total"       // Stats.Drained
	// The kernel fast path (Config.FastPath).
	MetricFastStreams      = "sipwall_media_fastpath_streams"       // gauge: Stats.FastPathStreams
	MetricFastPacketsTotal = "sipwall_media_fastpath_packets_total" // Stats.FastPathPackets
	MetricFastErrorsTotal  = "sipwall_media_fastpath_errors_total"  // Stats.FastPathErrors
	MetricDTLSFailedTotal  = "sipwall_media_dtls_failures_total"    // Stats.DTLSFailures
	MetricICEChecksTotal   = "sipwall_media_ice_checks_total"       // Stats.ICEChecks
)

// Drop reasons, the keys of Stats.Dropped.
const (
	DropUnlatched = "unlatched" // source is not the latched peer
	DropNoPeer    = "no-peer"   // the other side has no address yet (no SDP, hold, refused)
	DropTooLarge  = "too-large" // datagram over MaxDatagram bytes
	DropStopped   = "stopped"   // stream disabled by port 0, or not relayable (TCP)
	DropRefused   = "refused"   // would latch to our own relay port, loopback or another family
	DropError     = "error"     // a read or a write failed
	// DropRTCP: RTCP toward the outside that is not valid compound RTCP,
	// holds nothing once hidden, or that Config.GuardRTCP refused.
	DropRTCP = "rtcp"
	// DropNoKey: SRTP the SBC terminates, before its keys are agreed
	// (the DTLS handshake under way, or an SDES answer not yet seen).
	DropNoKey = "no-key"
	// DropCrypto: SRTP or SRTCP that failed authentication or the
	// replay check, or that could not be encrypted.
	DropCrypto = "srtp"
)

var dropNames = [nDrops]string{
	dropUnlatched: DropUnlatched,
	dropNoPeer:    DropNoPeer,
	dropTooLarge:  DropTooLarge,
	dropStopped:   DropStopped,
	dropRefused:   DropRefused,
	dropError:     DropError,
	dropRTCP:      DropRTCP,
	dropNoKey:     DropNoKey,
	dropCrypto:    DropCrypto,
}

// Stats is a snapshot of the relay. Counters are monotonic over the
// Manager's life, released sessions included.
type Stats struct {
	Sessions   int    // calls with relay state
	Streams    int    // relayed streams (four sockets each)
	PortsInUse int    // relay ports held by streams, RTP and RTCP, both sides
	PortsWarm  int    // relay ports bound and idle, kept for reuse (free for capacity)
	Packets    uint64 // datagrams relayed, either direction
	Bytes      uint64 // UDP payload bytes relayed
	// ICEChecks counts the ICE connectivity checks (consent freshness
	// included) the relay answered on the sides it terminates DTLS-SRTP
	// with: not media, so neither in Packets nor in Bytes.
	ICEChecks uint64
	// Dropped counts datagrams not relayed, by reason (Drop… constants;
	// every reason present).
	Dropped      map[string]uint64
	Full         uint64 // Rewrites refused with ErrFull
	NoPorts      uint64 // Rewrites refused with ErrNoPorts
	BindFailures uint64 // port pairs skipped because another process held a port
	Binds        uint64 // port pairs bound (two sockets each)
	Reused       uint64 // warm port pairs handed out again, without a bind
	Drained      uint64 // datagrams that reached a warm pair, discarded before its reuse
	// FastPathStreams are the streams whose RTP the kernel forwards now;
	// FastPathPackets the packets it forwarded (part of Packets, and
	// their bytes of Bytes); FastPathErrors the routes it refused or that
	// could not be removed (those streams stay in userspace).
	FastPathStreams int
	FastPathPackets uint64
	FastPathErrors  uint64
	// DTLSFailures counts DTLS-SRTP handshakes that failed (a timeout, a
	// certificate that does not match the fingerprint, an alert); the
	// endpoint's next attempt makes a new one.
	DTLSFailures uint64
	// RTCP counts what the rewriting of RTCP toward the outside changed,
	// by item (RTCPItems; every item present): CNAMEs rewritten, other
	// SDES items, BYE reasons, APP and unknown packets removed, packets
	// refused as malformed.
	RTCP map[string]uint64
}

// counters are summed socket counters.
type counters struct {
	packets, bytes uint64
	checks         uint64 // ICE checks answered
	drops          [nDrops]uint64
	fastPackets    uint64 // of packets, forwarded by the kernel
	fastStreams    int    // streams with kernel routes (live streams only)
}

// Stats returns a snapshot. It sums the counters of every live socket
// under the Manager's lock: for scrapes, not for a hot path.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.total
	s := Stats{Sessions: len(m.sessions), Full: m.full, NoPorts: m.noPorts}
	for _, sess := range m.sessions {
		for _, st := range sess.streams {
			if st != nil {
				s.Streams++
				st.counters(&c)
			}
		}
	}
	s.Packets, s.Bytes, s.ICEChecks = c.packets, c.bytes, c.checks
	s.FastPathStreams, s.FastPathPackets, s.FastPathErrors = c.fastStreams, c.fastPackets, m.fastErrors.Load()
	s.DTLSFailures = m.dtlsFailed.Load()
	s.Dropped = make(map[string]uint64, nDrops)
	for i, name := range dropNames {
		s.Dropped[name] = c.drops[i]
	}
	s.RTCP = make(map[string]uint64, nRTCPItems)
	for i, name := range RTCPItems {
		s.RTCP[name] = m.rtcpSeen[i].Load()
	}
	for i, p := range m.pools {
		if i == 1 && p == m.pools[0] {
			break // shared
		}
		s.PortsInUse += 2 * p.inUse
		s.PortsWarm += 2 * p.nwarm
		s.BindFailures += p.bindFailures
		s.Binds += p.binds
		s.Reused += p.reused
		s.Drained += p.drained
	}
	return s
}

// CallStats is what the relay carried for the call key so far (the call
// log takes it before Release): packets and bytes by direction, the
// kernel's share, drops, and the encryption spoken with each side.
func (m *Manager) CallStats(key string) (sbc.MediaStats, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessions[key]
	if s == nil {
		return sbc.MediaStats{}, false
	}
	out := sbc.MediaStats{Outside: EncPass, Inside: EncPass}
	for _, st := range s.streams {
		if st == nil {
			continue
		}
		for side := range 2 {
			p, b, fast, dropped := st.sideCounters(side)
			if side == int(sbc.External) {
				out.PacketsIn += p
				out.BytesIn += b
			} else {
				out.PacketsOut += p
				out.BytesOut += b
			}
			out.FastPath += fast
			out.Dropped += dropped
		}
	}
	if len(s.streams) > 0 && s.streams[0] != nil {
		out.Outside = secName(s.streams[0].sec[sbc.External].Load())
		out.Inside = secName(s.streams[0].sec[sbc.Internal].Load())
	}
	return out, true
}

func secName(s *secSide) string {
	if s == nil {
		return EncPass
	}
	return [...]string{secPlain: "plain", secSDES: EncSDES, secDTLS: EncDTLS, secPending: "pending"}[s.kind]
}

// sideCounters are the counters of what arrived on side: relayed
// packets and bytes (the kernel's included), the kernel's packets, and
// datagrams dropped.
func (st *stream) sideCounters(side int) (packets, bytes, fast, dropped uint64) {
	for kind := range 2 {
		s := st.sock[side][kind]
		packets += s.packets.Load()
		bytes += s.bytes.Load()
		for i := range s.drops {
			dropped += s.drops[i].Load()
		}
	}
	fp := st.m.cfg.FastPath
	if fp == nil {
		return packets, bytes, 0, dropped
	}
	f := &st.fast
	f.mu.Lock()
	defer f.mu.Unlock()
	fast = f.done[side].Packets
	fb := f.done[side].Bytes
	if f.on.Load() {
		if s, err := fp.Stats(st.fastLocal(side)); err == nil {
			fast += s.Packets
			fb += s.Bytes
		}
	}
	return packets + fast, bytes + fb, fast, dropped
}
