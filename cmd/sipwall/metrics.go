package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sipwall/sipwall/bpf"
	"github.com/sipwall/sipwall/policy"
	"github.com/sipwall/sipwall/sbc/b2bua"
	"github.com/sipwall/sipwall/sbc/procs"
	"github.com/sipwall/sipwall/sbc/sanity/wire"
	"github.com/sipwall/sipwall/topology"
)

// metrics exposes the app's counters to Prometheus. Most are read from the
// layers' own counters at scrape time (nothing added to the hot path); the
// call setup histogram is fed by the B2BUA's call events.
type metrics struct {
	reg   *prometheus.Registry
	setup prometheus.Histogram
	a     *app
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.setup = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sipwall_call_setup_seconds",
		Help:    "Time from a call's INVITE to its answer.",
		Buckets: []float64{.005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	})
	m.reg.MustRegister(m.setup, (*appCollector)(m),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// appCollector reads the app's counters at scrape time.
type appCollector metrics

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	dRequests      = desc("sipwall_server_requests_total", "SIP requests that reached the chain.")
	dDropped       = desc("sipwall_server_dropped_total", "Datagrams, connections and requests dropped before or at the chain's root, by reason.", "reason")
	dVerdicts      = desc("sipwall_server_verdicts_total", "Requests by the chain's verdict.", "verdict")
	dEdgeTx        = desc("sipwall_edge_transactions", "Server transactions held by the edge transaction layer.")
	dEdge          = desc("sipwall_edge_events_total", "What the edge transaction layer did: retransmits (responses sent again), absorbed (request retransmissions answered without the chain), stateless (answers sent once without a transaction), trimmed and amplification (answers cut, or not sent, to stay within what the source sent over UDP), full (requests without a transaction, table full), cancel_matched, cancel_refused, ack_refused.", "event")
	dCallsActive   = desc("sipwall_calls_active", "Calls in the dialog table.")
	dCalls         = desc("sipwall_calls_total", "Calls by outcome (started counts every call).", "result")
	dCallsLimited  = desc("sipwall_calls_limited_total", "New calls refused with 486 at a cap of calls in progress (calls.max_per_*), by cap: user, source, trusted.", "cap")
	dSDPInbound    = desc("sipwall_sdp_inbound_total", "SDP bodies from outside changed by the inbound check: refused (488, or withheld from an ACK or a response) or sanitised (lines dropped).", "result")
	dSDPLines      = desc("sipwall_sdp_inbound_lines_dropped_total", "Lines dropped from SDP bodies from outside by the inbound check.")
	dRegs          = desc("sipwall_registrations_active", "Live registration bindings.")
	dAuth          = desc("sipwall_auth_total", "Digest authentication events.", "event")
	dAuthFail      = desc("sipwall_auth_failures_total", "Failed authentications by reason.", "reason")
	dBansActive    = desc("sipwall_bans_active", "Bans in force.")
	dBans          = desc("sipwall_bans_total", "Bans started, by reason.", "reason")
	dLocks         = desc("sipwall_user_locks_active", "User locks in force.")
	dPrefilter     = desc("sipwall_prefilter_packets_total", "Packets judged by the prefilter, by reason.", "reason", "where")
	dPrefClass     = desc("sipwall_prefilter_class_packets_total", "Judged packets by class and verdict.", "class", "verdict", "where")
	dPolicy        = desc("sipwall_policy_decisions_total", "Policy decisions by result.", "result")
	dPolicyReloads = desc("sipwall_policy_reloads_total", "Policy reloads by result.", "result")
	dPolicyTime    = desc("sipwall_policy_decision_seconds", "Time of a policy decision, input to decision.")
	dFraud         = desc("sipwall_fraud_actions_total", "Anti-fraud checks and actions.", "action")
	dFraudBlocked  = desc("sipwall_fraud_blocked_accounts", "Accounts blocked by the anti-fraud rules.")
	dTLSExpiry     = desc("sipwall_tls_certificate_expiry_timestamp_seconds", "Expiry of the certificate served (Unix time).")
	dTLSEvents     = desc("sipwall_tls_certificate_events_total", "Certificate upkeep: obtained, renewed, failures (ACME), reloads, reload_errors (files).", "event")
	dUpstreamUp    = desc("sipwall_upstream_up", "1 when the upstream passes its health checks.", "upstream")
	dMediaSessions = desc("sipwall_media_sessions_active", "Calls with relayed media.")
	dMediaPackets  = desc("sipwall_media_packets_total", "RTP/RTCP datagrams relayed.")
	dMediaDropped  = desc("sipwall_media_dropped_total", "Media datagrams not relayed, by reason.", "reason")
	dMediaPorts    = desc("sipwall_media_ports", "Relay ports bound, by state: in_use (held by calls) or warm (idle, kept for reuse).", "state")
	dMediaBinds    = desc("sipwall_media_binds_total", "Relay port pairs bound.")
	dMediaReused   = desc("sipwall_media_reused_total", "Relay port pairs handed to a new call without a new bind.")
	dMediaFastUp   = desc("sipwall_media_fastpath_up", "1 while the media fast path (media.fastpath) is attached, 0 when it was wanted but could not load or attach (the relay then carries media in userspace).")
	dMediaFastStr  = desc("sipwall_media_fastpath_streams", "Streams whose RTP the kernel forwards now.")
	dMediaFastPkts = desc("sipwall_media_fastpath_packets_total", "RTP packets forwarded by the kernel (part of sipwall_media_packets_total).")
	dMediaFastErrs = desc("sipwall_media_fastpath_errors_total", "Kernel routes refused or not removed (those streams stay in userspace).")
	dMediaDTLS     = desc("sipwall_media_dtls_failures_total", "DTLS-SRTP handshakes that failed (timeout, fingerprint mismatch, alert).")
	dMediaICE      = desc("sipwall_media_ice_checks_total", "ICE connectivity checks the relay answered (consent freshness included; not media, not in sipwall_media_packets_total).")
	dMediaFastDec  = desc("sipwall_media_fastpath_decisions_total", "Datagrams to a relay RTP socket with a kernel route, by what the kernel did: forward, or passed to the relay (source, expired, shape, not-rtp, rtcp, local, mtu), or error (dropped).", "reason")
	dLeaks         = desc("sipwall_topology_leaks_total", "The leak report: items of messages and RTCP toward the outside that topology hiding rewrote or removed, or the guard found naming the inside, by item (a header, reason-phrase, display-name, uri-user, uri-param, uri-header, header-param, request-uri, sipfrag, body, sdp:<attribute or line>, rtcp:<item>, from a fixed set) and action (rewritten, removed, guard_stripped, guard_replaced, guard_blocked, guard_logged).", "item", "action")
	dSharedUp      = desc("sipwall_store_shared_up", "1 while the shared store (store.backend redis) answers, else 0.")
	dSharedErrors  = desc("sipwall_store_shared_errors_total", "Shared store commands that failed.")
	dSharedBans    = desc("sipwall_store_shared_ban_events_total", "Ban events exchanged with the other nodes, by direction.", "direction")
	dSharedQueued  = desc("sipwall_store_shared_queued", "Ban events waiting for the shared store to come back.")
	dProcs         = desc("sipwall_procs_changes_total", "Changes of the Go processors by the controller (sbc/procs): to one (the load fits in one CPU) or to all.", "to")
	dProcsNarrow   = desc("sipwall_procs_narrow", "1 while the process runs on one Go processor (the controller's low-load mode), else 0.")
	dHEP           = desc("sipwall_hep_messages_total", "SIP messages copied to the HEP collector, by result.", "result")
)

func (c *appCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dRequests, dDropped, dVerdicts, dEdgeTx, dEdge, dCallsActive, dCalls, dCallsLimited, dSDPInbound, dSDPLines, dRegs, dAuth, dAuthFail,
		dBansActive, dBans, dLocks, dPrefilter, dPrefClass, dPolicy, dPolicyReloads, dPolicyTime, dFraud, dFraudBlocked,
		dTLSExpiry, dTLSEvents, dUpstreamUp, dMediaSessions, dMediaPackets, dMediaDropped, dMediaPorts, dMediaBinds, dMediaReused,
		dMediaFastUp, dMediaFastStr, dMediaFastPkts, dMediaFastErrs, dMediaDTLS, dMediaICE, dMediaFastDec, dLeaks, dSharedUp, dSharedErrors, dSharedBans, dSharedQueued, dHEP, dProcs, dProcsNarrow} {
		ch <- d
	}
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func (c *appCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	if a == nil {
		return
	}
	if ps := procs.Read(); ps.Running || ps.Narrowed > 0 {
		counter(ch, dProcs, float64(ps.Narrowed), "one")
		counter(ch, dProcs, float64(ps.Widened), "all")
		narrow := 0.0
		if ps.Narrow {
			narrow = 1
		}
		gauge(ch, dProcsNarrow, narrow)
	}
	st := &a.server.Stats
	counter(ch, dRequests, float64(st.Requests.Load()))
	for reason, v := range map[string]int64{
		"overload": st.Overload.Load(), "no_peer": st.Dropped.Load(), "banned": st.Blocked.Load(),
		"prefilter": st.Prefiltered.Load(), "conns_refused": st.ConnsRefused.Load(),
		"handshakes_refused": st.HandshakesRefused.Load(), "slow_message": st.SlowMessages.Load(),
		"outbound_guard": st.OutboundBlocked.Load(), "dials_refused": st.DialsRefused.Load(),
	} {
		counter(ch, dDropped, float64(v), reason)
	}
	for i := range st.PreParseDrops {
		if v := st.PreParseDrops[i].Load(); v > 0 {
			counter(ch, dDropped, float64(v), "preparse_"+wire.Reason(i).String())
		}
	}
	for verdict, v := range map[string]int64{
		"answered": st.Answered.Load(), "rejected": st.Rejected.Load(), "forwarded": st.Forwarded.Load(),
		"error": st.Errors.Load(), "panic": st.Panics.Load(),
	} {
		counter(ch, dVerdicts, float64(v), verdict)
	}
	es := a.server.EdgeStats()
	gauge(ch, dEdgeTx, float64(es.Transactions))
	for event, v := range map[string]int64{
		"retransmits": es.Retransmits, "absorbed": es.Absorbed, "stateless": es.Stateless, "trimmed": es.Trimmed,
		"amplification": es.Amplification, "full": es.Full, "cancel_matched": es.CancelsMatched,
		"cancel_refused": es.CancelsRefused, "ack_refused": es.AcksRefused,
	} {
		counter(ch, dEdge, float64(v), event)
	}
	bs := a.b2b.Stats()
	gauge(ch, dCallsActive, float64(a.b2b.Active()))
	for result, v := range map[string]int64{
		"started": bs.Calls.Load(), "answered": bs.Answered.Load(), "failed": bs.Failed.Load(),
		"cancelled": bs.Cancelled.Load(), "timeout": bs.Timeouts.Load(), "no_ack": bs.NoAck.Load(), "fork_ended": bs.Forks.Load(),
	} {
		counter(ch, dCalls, float64(v), result)
	}
	a.leaks.Counts(func(item string, act topology.Action, n int64) {
		counter(ch, dLeaks, float64(n), item, act.String())
	})
	cs := a.b2b.CapStats()
	counter(ch, dCallsLimited, float64(cs.User), b2bua.CapUser)
	counter(ch, dCallsLimited, float64(cs.Source), b2bua.CapSource)
	counter(ch, dCallsLimited, float64(cs.Trusted), b2bua.CapTrusted)
	ss := a.b2b.SDPStats()
	counter(ch, dSDPInbound, float64(ss.Refused.Load()), "refused")
	counter(ch, dSDPInbound, float64(ss.Sanitised.Load()), "sanitised")
	counter(ch, dSDPLines, float64(ss.Lines.Load()))
	if a.reg != nil {
		_, n := a.reg.Count()
		gauge(ch, dRegs, float64(n))
	}
	if a.sec.auth != nil {
		as := a.sec.auth.Stats()
		counter(ch, dAuth, float64(as.Challenges), "challenge")
		counter(ch, dAuth, float64(as.Successes), "success")
		counter(ch, dAuth, float64(as.Trusted), "trusted")
		counter(ch, dAuth, float64(as.Unanswered), "unanswered")
		for reason, v := range as.Failures {
			counter(ch, dAuthFail, float64(v), reason)
		}
	}
	ban := a.sec.bans.Stats()
	gauge(ch, dBansActive, float64(ban.Active))
	gauge(ch, dLocks, float64(ban.Locked))
	for reason, v := range ban.Bans {
		counter(ch, dBans, float64(v), reason)
	}
	if a.pf != nil {
		pc, where := a.pf.counters()
		for r := range bpf.NumReasons {
			counter(ch, dPrefilter, float64(pc.Reasons[r]), r.String(), where)
		}
		for cl := range bpf.NumClasses {
			counter(ch, dPrefClass, float64(pc.Passed[cl]), cl.String(), "pass", where)
			counter(ch, dPrefClass, float64(pc.Dropped[cl]), cl.String(), "drop", where)
		}
	}
	if a.pol != nil {
		ps := a.pol.Status().Stats
		for result, v := range map[string]uint64{
			"allow": ps.Allows, "deny": ps.Denies, "shadow_deny": ps.ShadowDenies, "redirect": ps.Redirects,
			"error": ps.Errors, "timeout": ps.Timeouts,
		} {
			counter(ch, dPolicy, float64(v), result)
		}
		counter(ch, dPolicyReloads, float64(ps.ReloadsOK), "ok")
		counter(ch, dPolicyReloads, float64(ps.ReloadsFailed), "failed")
		ch <- policyHistogram(ps.Latency)
	}
	if a.fraud != nil {
		fs := a.fraud.Stats()
		for action, v := range map[string]uint64{
			"check": fs.Checks, "reject": fs.Rejected, "blocked": fs.Blocked, "teardown": fs.Teardowns,
			"warning": fs.Warnings, "critical": fs.Criticals, "block_account": fs.AccountBlocks,
			"ban": fs.SourceBans, "shadow": fs.Shadowed,
		} {
			counter(ch, dFraud, float64(v), action)
		}
		gauge(ch, dFraudBlocked, float64(fs.BlockedAccounts))
	}
	if a.certs != nil {
		ts := a.certs.Stats()
		if !ts.NotAfter.IsZero() {
			gauge(ch, dTLSExpiry, float64(ts.NotAfter.Unix()))
		}
		for event, v := range map[string]uint64{
			"obtained": ts.Obtained, "renewed": ts.Renewed, "failure": ts.Failures,
			"reload": ts.Reloads, "reload_error": ts.ReloadErrors,
		} {
			counter(ch, dTLSEvents, float64(v), event)
		}
	}
	for _, u := range a.pool.Status() {
		up := 0.0
		if u.Up {
			up = 1
		}
		gauge(ch, dUpstreamUp, up, u.Name)
	}
	if a.relay != nil {
		ms := a.relay.Stats()
		gauge(ch, dMediaSessions, float64(ms.Sessions))
		counter(ch, dMediaPackets, float64(ms.Packets))
		for reason, v := range ms.Dropped {
			counter(ch, dMediaDropped, float64(v), reason)
		}
		gauge(ch, dMediaPorts, float64(ms.PortsInUse), "in_use")
		gauge(ch, dMediaPorts, float64(ms.PortsWarm), "warm")
		counter(ch, dMediaBinds, float64(ms.Binds))
		counter(ch, dMediaReused, float64(ms.Reused))
		counter(ch, dMediaDTLS, float64(ms.DTLSFailures))
		counter(ch, dMediaICE, float64(ms.ICEChecks))
		if up, ok := a.fast.up(); ok {
			gauge(ch, dMediaFastUp, up)
			gauge(ch, dMediaFastStr, float64(ms.FastPathStreams))
			counter(ch, dMediaFastPkts, float64(ms.FastPathPackets))
			counter(ch, dMediaFastErrs, float64(ms.FastPathErrors))
			if a.fast.path != nil {
				if fc, err := a.fast.path.Counters(); err == nil {
					for r, v := range fc {
						counter(ch, dMediaFastDec, float64(v), bpf.MediaReason(r).String())
					}
				}
			}
		}
	}
	if a.shared != nil {
		st := a.shared.Stats()
		up := 0.0
		if st.Up {
			up = 1
		}
		gauge(ch, dSharedUp, up)
		counter(ch, dSharedErrors, float64(st.Errors))
		counter(ch, dSharedBans, float64(st.Published), "published")
		counter(ch, dSharedBans, float64(st.Received), "received")
		gauge(ch, dSharedQueued, float64(st.Queued))
	}
	c.collectHEP(ch)
}

// observeSetup records a call's setup time.
func (m *metrics) observeSetup(d time.Duration) {
	if m != nil && d > 0 {
		m.setup.Observe(d.Seconds())
	}
}

// policyHistogram exports the policy's decision times as a histogram.
func policyHistogram(l policy.Latency) prometheus.Metric {
	buckets := make(map[float64]uint64, len(policy.LatencyBounds))
	var cum uint64
	for i, b := range policy.LatencyBounds {
		cum += l.Counts[i]
		buckets[b.Seconds()] = cum
	}
	cum += l.Counts[len(policy.LatencyBounds)]
	return prometheus.MustNewConstHistogram(dPolicyTime, cum, l.Sum.Seconds(), buckets)
}
