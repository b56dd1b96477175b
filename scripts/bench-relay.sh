#!/usr/bin/env bash
# Media relay benchmark (sbc/media) on the loopback network, in packets
# per second per CPU core:
#
#   phones 127.0.0.5 <-> relay 127.0.0.1 (both sides) <-> PBX 127.0.0.6
#
# bench/relayload runs as two processes: "serve" holds the media.Manager
# with STREAMS calls set up through real SDP offers and answers, "send"
# is the load generator (a phone socket and a PBX socket per call, bound
# on the addresses of the SDP). For each offered rate a fresh serve
# process is started; its CPU time (utime+stime, fields 14 and 15 of
# /proc/PID/stat, in CLK_TCK ticks) is read before and after the send run,
# so the generator's CPU is not counted. Both share the machine's CPUs.
#
# Modes (MODES), each a fresh serve process per rate:
#   userspace  the relay's sockets carry every packet (the default relay)
#   fastpath   the kernel fast path (bpf/media.c, TC on loopback): after the
#              first packet each way latches, the TC program forwards in
#              place; serve counts the program's own run time with the
#              kernel's BPF run statistics (prog ns)
#   direct     no relay: phones and PBXs send to each other (the baseline)
#   rtpengine  the reference relay: a fresh rtpengine-daemon (Debian's, in
#              userspace only: --table=-1, no kernel module) on RELAY_IP with
#              its own port range above the relay's, its ng control
#              protocol on a free port; "relayload ng" sets up the same
#              calls through it (offer from the phone, answer from the PBX)
#              and prints the lines serve prints, with rtpengine's PID, so
#              the same send run drives it and its CPU (all its threads:
#              /proc/PID/stat of the process) is read the same way; the
#              packets it relayed come from its replies to "delete"
#              (totals.RTP), its log is kept with BENCH_KEEP=1
# As root (needed for fastpath) everything runs in a network namespace made
# for the run (its own loopback, nothing else on it), deleted at exit.
# After the table, per rate, one line each:
#   relay_ns_per_pkt userspace=U fastpath=F rtpengine=R
#     U: the relay's CPU per relayed packet (serve's utime+stime);
#     F: the same with the fast path, plus the program's run time: the
#        kernel forwards in the sender's softirq, charged to the generator,
#        so serve's CPU alone would flatter it;
#     R: rtpengine's CPU per packet it relayed, like U;
#   relay_extra_ns_per_pkt userspace=U fastpath=F rtpengine=R (with direct)
#     serve's and the generator's CPU minus the generator's in the direct
#     run, per packet: all the CPU relaying adds, noisier (the generator's
#     CPU varies from run to run on a shared machine).
#
# Columns:
#   offered pps        aggregate rate asked of the generator (both
#                      directions, all calls); STREAMS*100 is G.711 at
#                      20 ms, 50 packets/s each way per call
#   sent pps           what the generator managed to send
#   relayed pps        packets received at the far sockets / send window
#   loss %             (sent - received) / sent
#   relay CPU %        relay CPU seconds / send window, of one core
#   pkts per CPU-s     packets the relay relayed (its own Stats; rtpengine's:
#                      the RTP packets its delete replies count) / its
#                      CPU seconds: the packets per second one core carries
#   ns CPU/pkt         the inverse, in nanoseconds
#   latency            generator send to receive through the relay, p50/p99
#   relay drops        the Manager's Dropped counters summed (by reason in
#                      the serve output, kept with BENCH_KEEP=1);
#                      rtpengine's RTP errors
#   UDP rcvbuf errors  host-wide /proc/net/snmp Udp RcvbufErrors during
#                      the run: datagrams lost to full socket buffers
#                      (relay's or generator's), the usual cause of loss
#   generator CPU-s    the generator's own CPU over its send window
#   kernel fwd         packets the fast path forwarded / BPF program ns
#                      per run
#
# Environment:
#   STREAMS=100          calls (one audio stream, four relay sockets each)
#   PPS=STREAMS*100      offered aggregate packets/s (10000 for 100 calls)
#   PPS_LIST="$PPS"      several rates, one row each: "10000 20000 40000 80000"
#   DURATION=10          seconds of sending per rate
#   SENDERS=1            sending goroutines of the generator
#   PORT_MIN=42000       first relay port (the range is sized to STREAMS)
#   PEER_PORT_MIN=30000  first RTP port of the phones and the PBX
#   MODES                "direct userspace fastpath" as root, else "userspace";
#                        then "rtpengine" when the rtpengine command is
#                        installed (scripts/install-test-tools.sh --bench),
#                        else a note in the results says it was skipped
#   BENCH_KEEP=1         keep the work directory (serve and send output)
#
# The table goes to stdout and is appended to
# bench/results/relay-<UTC date>.md. Every process has a deadline
# (timeout(1) and serve's -deadline) and only the processes this script
# started are killed, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

STREAMS=${STREAMS:-100}
PPS=${PPS:-$((STREAMS * 100))}
PPS_LIST=${PPS_LIST:-$PPS}
DURATION=${DURATION:-10}
SENDERS=${SENDERS:-1}
PORT_MIN=${PORT_MIN:-42000}
PEER_PORT_MIN=${PEER_PORT_MIN:-30000}
note=""
if [ -z "${MODES:-}" ]; then
	if [ "$(id -u)" = 0 ]; then
		MODES="direct userspace fastpath"
	else
		MODES=userspace
	fi
	if command -v rtpengine >/dev/null; then
		MODES="$MODES rtpengine"
	else
		note="rtpengine: not installed, skipped (scripts/install-test-tools.sh --bench installs rtpengine-daemon)"
	fi
fi
for m in $MODES; do
	case $m in
	direct | userspace) ;;
	fastpath) [ "$(id -u)" = 0 ] || {
		echo "bench-relay: mode fastpath needs root" >&2
		exit 2
	} ;;
	rtpengine) command -v rtpengine >/dev/null || {
		echo "bench-relay: mode rtpengine needs rtpengine (Debian package rtpengine-daemon)" >&2
		exit 2
	} ;;
	*)
		echo "bench-relay: unknown mode $m (direct, userspace, fastpath, rtpengine)" >&2
		exit 2
		;;
	esac
done

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
for v in STREAMS DURATION SENDERS PORT_MIN PEER_PORT_MIN; do
	if ! is_uint "${!v}" || [ "${!v}" -lt 1 ]; then
		echo "bench-relay: $v must be a positive integer" >&2
		exit 2
	fi
done
for r in $PPS_LIST; do
	if ! is_uint "$r" || [ "$r" -lt 1 ]; then
		echo "bench-relay: rates in PPS_LIST must be positive integers (got $r)" >&2
		exit 2
	fi
done
if [ -z "${PPS_LIST// /}" ]; then
	echo "bench-relay: PPS_LIST is empty" >&2
	exit 2
fi
# External and internal sockets share 127.0.0.1 and so the range: two
# RTP/RTCP pairs per call, plus slack for ports other processes hold.
PORT_MAX=$((PORT_MIN + 4 * STREAMS + 199))
# rtpengine's range, as large, right above: it too takes two RTP/RTCP
# pairs per call.
RTPE_PORT_MIN=$((PORT_MAX + 1))
RTPE_PORT_MAX=$((RTPE_PORT_MIN + 4 * STREAMS + 199))
if [ "$RTPE_PORT_MAX" -gt 65535 ] || [ $((PEER_PORT_MIN + 2 * STREAMS)) -gt 65535 ]; then
	echo "bench-relay: STREAMS=$STREAMS does not fit the port ranges" >&2
	exit 2
fi
command -v go >/dev/null || {
	echo "bench-relay: go not found" >&2
	exit 1
}

RELAY_IP=127.0.0.1
PHONE_IP=127.0.0.5
PBX_IP=127.0.0.6

work=$(mktemp -d "${TMPDIR:-/tmp}/sipwall-bench-relay.XXXXXX")
pids=()
bench_name=bench-relay
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"
netns=""
in_ns=()
cleanup() {
	bench_cleanup
	[ -z "$netns" ] || ip netns del "$netns" 2>/dev/null || true
}
trap cleanup EXIT
if [ "$(id -u)" = 0 ] && command -v ip >/dev/null; then
	netns="swbench-relay-$$"
	ip netns add "$netns"
	ip -n "$netns" link set lo up
	in_ns=(ip netns exec "$netns")
fi

echo "== bench-relay: building bench/relayload"
version=${BENCH_VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}
go build -o "$work/relayload" ./bench/relayload
clk=$(getconf CLK_TCK)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)
machine="$(nproc) CPUs, ${cpu_model:-unknown}"

rows=""
summary=""
for rate in $PPS_LIST; do
declare -A ns_pkt=() extra_pkt=() gen_cpu=()
for mode in $MODES; do
	echo "== bench-relay: $mode, $STREAMS calls, $rate packets/s for ${DURATION}s"
	sout="$work/serve-$rate-$mode.out"
	serve_flags=()
	[ "$mode" = fastpath ] && serve_flags=(-fastpath)
	send_flags=()
	[ "$mode" = direct ] && send_flags=(-direct)
	epid="" # timeout(1) around rtpengine
	if [ "$mode" = rtpengine ]; then
		# Userspace only (--table=-1), in the foreground, no configuration
		# file: the flags are all of it.
		elog="$work/rtpengine-$rate.log"
		epidfile="$work/rtpengine-$rate.pid"
		ng_port=$(free_block)
		timeout $((DURATION + 120)) "${in_ns[@]}" rtpengine --config-file=none --foreground --table=-1 \
			--interface="$RELAY_IP" --listen-ng="$RELAY_IP:$ng_port" \
			--port-min="$RTPE_PORT_MIN" --port-max="$RTPE_PORT_MAX" \
			--pidfile="$epidfile" --log-stderr --log-level=6 >"$elog" 2>&1 &
		epid=$!
		pids+=("$epid")
		for _ in $(seq 1 100); do
			grep -q 'Startup complete' "$elog" 2>/dev/null && [ -s "$epidfile" ] && break
			kill -0 "$epid" 2>/dev/null || break
			sleep 0.1
		done
		if ! grep -q 'Startup complete' "$elog" 2>/dev/null || [ ! -s "$epidfile" ]; then
			echo "bench-relay: rtpengine did not start" >&2
			cat "$elog" >&2
			exit 1
		fi
		pids+=("$(cat "$epidfile")")
		# relayload ng deletes its calls at the deadline if this script
		# cannot tell it to; timeout(1) is the backstop.
		timeout $((DURATION + 90)) "${in_ns[@]}" "$work/relayload" ng -ng "$RELAY_IP:$ng_port" \
			-pid "$(cat "$epidfile")" -streams "$STREAMS" \
			-outside-peer "$PHONE_IP" -inside-peer "$PBX_IP" -peer-port-min "$PEER_PORT_MIN" \
			-deadline "$((DURATION + 60))s" >"$sout" 2>"$work/serve-$rate-$mode.err" &
	else
		# serve's own deadline ends it if this script cannot; timeout(1) is
		# the backstop.
		timeout $((DURATION + 90)) "${in_ns[@]}" "$work/relayload" serve -streams "$STREAMS" \
			-addr "$RELAY_IP" -outside-peer "$PHONE_IP" -inside-peer "$PBX_IP" \
			-port-min "$PORT_MIN" -port-max "$PORT_MAX" -peer-port-min "$PEER_PORT_MIN" \
			-deadline "$((DURATION + 60))s" "${serve_flags[@]}" >"$sout" 2>"$work/serve-$rate-$mode.err" &
	fi
	tpid=$!
	pids+=("$tpid")
	for _ in $(seq 1 300); do
		grep -qx ready "$sout" 2>/dev/null && break
		kill -0 "$tpid" 2>/dev/null || break
		sleep 0.1
	done
	if ! grep -qx ready "$sout" 2>/dev/null; then
		echo "bench-relay: $mode: the calls were not set up" >&2
		cat "$work/serve-$rate-$mode.err" >&2
		[ -z "$epid" ] || tail -n 30 "$elog" >&2
		exit 1
	fi
	# timeout(1) is serve's parent: measure serve itself (it prints its
	# pid), or rtpengine (relayload ng prints rtpengine's).
	rpid=$(kv "$sout" pid)
	pids+=("$rpid")

	load_before=$(cut -d' ' -f1 /proc/loadavg)
	rcvbuf_before=$(udp_rcvbuf_errors "$netns")
	ticks_before=$(cpu_ticks "$rpid")
	send_rc=0
	timeout $((DURATION + 30)) "${in_ns[@]}" "$work/relayload" send -pps "$rate" -duration "${DURATION}s" \
		-senders "$SENDERS" -streams-file "$sout" "${send_flags[@]}" \
		>"$work/send-$rate-$mode.out" 2>"$work/send-$rate-$mode.err" || send_rc=$?
	if ! kill -0 "$rpid" 2>/dev/null; then
		echo "bench-relay: the relay ($mode) died during the run" >&2
		cat "$work/serve-$rate-$mode.err" >&2
		[ -z "$epid" ] || tail -n 30 "$elog" >&2
		exit 1
	fi
	ticks_after=$(cpu_ticks "$rpid")
	rcvbuf_after=$(udp_rcvbuf_errors "$netns")
	load_after=$(cut -d' ' -f1 /proc/loadavg)
	if [ "$send_rc" != 0 ]; then
		echo "bench-relay: send failed (exit $send_rc)" >&2
		cat "$work/send-$rate-$mode.err" >&2
		exit 1
	fi

	# Stop serve; it prints its Stats and exits. relayload ng (timeout(1)
	# passes the signal on) deletes its calls and prints what rtpengine
	# said about them; then rtpengine is stopped.
	if [ -n "$epid" ]; then
		kill -TERM "$tpid" 2>/dev/null || true
	else
		kill -TERM "$rpid" 2>/dev/null || true
	fi
	for _ in $(seq 1 100); do
		kill -0 "$tpid" 2>/dev/null || break
		sleep 0.1
	done
	wait "$tpid" 2>/dev/null || true
	if [ -n "$epid" ]; then
		kill -TERM "$rpid" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$epid" 2>/dev/null || break
			sleep 0.1
		done
		wait "$epid" 2>/dev/null || true
	fi
	pids=() # all have exited: nothing of this rate left to kill
	if ! grep -q '^packets ' "$sout"; then
		echo "bench-relay: $mode printed no stats" >&2
		cat "$work/serve-$rate-$mode.err" >&2
		exit 1
	fi

	so="$work/send-$rate-$mode.out"
	relayed=$(kv "$sout" packets)
	drops=$(kv "$sout" dropped)
	if [ "$mode" = direct ]; then
		relayed=$(kv "$so" received) # no relay: the packets delivered
	fi
	prog_ns=$(kv "$sout" prog_ns)
	fast_pkts=$(kv "$sout" fastpath_packets)
	gen_cpu[$mode]=$(kv "$so" cpu_s)
	ns_pkt[$mode]=$(awk -v t=$((ticks_after - ticks_before)) -v clk="$clk" -v p="${prog_ns:-0}" -v n="$relayed" \
		'BEGIN { if (n > 0) printf "%.0f", (t / clk * 1e9 + p) / n; else print "n/a" }')
	extra_pkt[$mode]=$(awk -v t=$((ticks_after - ticks_before)) -v clk="$clk" -v g="${gen_cpu[$mode]}" -v d="${gen_cpu[direct]:-}" -v n="$relayed" \
		'BEGIN { if (n > 0 && d != "") printf "%.0f", (t / clk + g - d) * 1e9 / n; else print "n/a" }')
	fwd="–"
	[ "$mode" = fastpath ] && fwd=$(awk -v f="${fast_pkts:-0}" -v p="${prog_ns:-0}" -v r="$(kv "$sout" prog_runs)" \
		'BEGIN { printf "%d / %s ns", f, (r > 0 ? sprintf("%.0f", p / r) : "n/a") }')
	row=$(awk -v mode="$mode" -v gen="${gen_cpu[$mode]}" -v fwd="$fwd" -v offered="$rate" -v sent_pps="$(kv "$so" sent_pps)" -v recv_pps="$(kv "$so" received_pps)" \
		-v loss="$(kv "$so" loss_pct)" -v window="$(kv "$so" window_s)" \
		-v ticks=$((ticks_after - ticks_before)) -v clk="$clk" -v relayed="$relayed" \
		-v p50="$(kv "$so" latency_p50_us)" -v p99="$(kv "$so" latency_p99_us)" \
		-v drops="$drops" -v rcvbuf=$((rcvbuf_after - rcvbuf_before)) \
		-v machine="$machine" -v load="$load_before / $load_after" '
		BEGIN {
			cpu = ticks / clk
			pct = (window > 0 ? 100 * cpu / window : 0)
			per_cpu = (cpu > 0 ? sprintf("%.0f", relayed / cpu) : "n/a (under one tick)")
			ns = (relayed > 0 ? sprintf("%.0f", cpu * 1e9 / relayed) : "n/a")
			printf "| %s | %d | %.0f | %.0f | %.3f | %.1f | %s | %s | %.0f / %.0f µs | %d | %d | %.2f | %s | %s | %s |\n",
				mode, offered, sent_pps, recv_pps, loss, pct, per_cpu, ns, p50, p99, drops, rcvbuf, gen, fwd, machine, load
		}')
	rows+=$row$'\n'
	echo "$row"
done
line="relay_ns_per_pkt userspace=${ns_pkt[userspace]:-n/a} fastpath=${ns_pkt[fastpath]:-n/a} rtpengine=${ns_pkt[rtpengine]:-n/a} (rate $rate)"
summary+=$line$'\n'
echo "$line"
if [ -n "${gen_cpu[direct]:-}" ]; then
	line="relay_extra_ns_per_pkt userspace=${extra_pkt[userspace]:-n/a} fastpath=${extra_pkt[fastpath]:-n/a} rtpengine=${extra_pkt[rtpengine]:-n/a} (rate $rate)"
	summary+=$line$'\n'
	echo "$line"
fi
unset ns_pkt extra_pkt gen_cpu
done

now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
table=$(
	cat <<MD
| mode | offered pps | sent pps | relayed pps | loss % | relay CPU % of one core | relayed packets per CPU-second | ns CPU per packet | latency p50 / p99 | relay drops | UDP rcvbuf errors | generator CPU-s | kernel fwd / prog ns | machine | load average (1 min) before / after |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |
${rows%$'\n'}
MD
)
heading="$now, $STREAMS calls, ${DURATION} s per rate, $SENDERS sender(s), sipwall $version, $(go env GOVERSION)"

echo
echo "## $heading"
echo
echo "$table"
echo
printf '%s' "$summary"
[ -z "$note" ] || printf '\n%s\n' "$note"

mkdir -p bench/results
out="bench/results/relay-$(date -u +%Y-%m-%d).md"
if [ ! -f "$out" ]; then
	printf '# sipwall media relay bench results, %s\n\nWritten by scripts/bench-relay.sh; one section per run.\n' "$(date -u +%Y-%m-%d)" >"$out"
fi
{
	printf '\n## %s\n\n%s\n\n```\n%s```\n' "$heading" "$table" "$summary"
	[ -z "$note" ] || printf '\n%s\n' "$note"
} >>"$out"
echo
echo "bench-relay: appended to $out"
