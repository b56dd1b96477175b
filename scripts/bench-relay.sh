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
# Columns:
#   offered pps        aggregate rate asked of the generator (both
#                      directions, all calls); STREAMS*100 is G.711 at
#                      20 ms, 50 packets/s each way per call
#   sent pps           what the generator managed to send
#   relayed pps        packets received at the far sockets / send window
#   loss %             (sent - received) / sent
#   relay CPU %        relay CPU seconds / send window, of one core
#   pkts per CPU-s     packets the relay relayed (its own Stats) / its
#                      CPU seconds: the packets per second one core carries
#   ns CPU/pkt         the inverse, in nanoseconds
#   latency            generator send to receive through the relay, p50/p99
#   relay drops        the Manager's Dropped counters summed (by reason in
#                      the serve output, kept with BENCH_KEEP=1)
#   UDP rcvbuf errors  host-wide /proc/net/snmp Udp RcvbufErrors during
#                      the run: datagrams lost to full socket buffers
#                      (relay's or generator's), the usual cause of loss
#
# Environment:
#   STREAMS=100          calls (one audio stream, four relay sockets each)
#   PPS=STREAMS*100      offered aggregate packets/s (10000 for 100 calls)
#   PPS_LIST="$PPS"      several rates, one row each: "10000 20000 40000 80000"
#   DURATION=10          seconds of sending per rate
#   SENDERS=1            sending goroutines of the generator
#   PORT_MIN=42000       first relay port (the range is sized to STREAMS)
#   PEER_PORT_MIN=30000  first RTP port of the phones and the PBX
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
if [ "$PORT_MAX" -gt 65535 ] || [ $((PEER_PORT_MIN + 2 * STREAMS)) -gt 65535 ]; then
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
trap bench_cleanup EXIT

echo "== bench-relay: building bench/relayload"
version=${BENCH_VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}
go build -o "$work/relayload" ./bench/relayload
clk=$(getconf CLK_TCK)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)
machine="$(nproc) CPUs, ${cpu_model:-unknown}"

rows=""
for rate in $PPS_LIST; do
	echo "== bench-relay: $STREAMS calls, $rate packets/s for ${DURATION}s"
	sout="$work/serve-$rate.out"
	# serve's own deadline ends it if this script cannot; timeout(1) is
	# the backstop.
	timeout $((DURATION + 90)) "$work/relayload" serve -streams "$STREAMS" \
		-addr "$RELAY_IP" -outside-peer "$PHONE_IP" -inside-peer "$PBX_IP" \
		-port-min "$PORT_MIN" -port-max "$PORT_MAX" -peer-port-min "$PEER_PORT_MIN" \
		-deadline "$((DURATION + 60))s" >"$sout" 2>"$work/serve-$rate.err" &
	tpid=$!
	pids+=("$tpid")
	for _ in $(seq 1 300); do
		grep -qx ready "$sout" 2>/dev/null && break
		kill -0 "$tpid" 2>/dev/null || break
		sleep 0.1
	done
	if ! grep -qx ready "$sout" 2>/dev/null; then
		echo "bench-relay: serve did not get ready" >&2
		cat "$work/serve-$rate.err" >&2
		exit 1
	fi
	# timeout(1) is serve's parent: measure serve itself (it prints its pid).
	rpid=$(kv "$sout" pid)
	pids+=("$rpid")

	load_before=$(cut -d' ' -f1 /proc/loadavg)
	rcvbuf_before=$(udp_rcvbuf_errors)
	ticks_before=$(cpu_ticks "$rpid")
	send_rc=0
	timeout $((DURATION + 30)) "$work/relayload" send -pps "$rate" -duration "${DURATION}s" \
		-senders "$SENDERS" -streams-file "$sout" \
		>"$work/send-$rate.out" 2>"$work/send-$rate.err" || send_rc=$?
	if ! kill -0 "$rpid" 2>/dev/null; then
		echo "bench-relay: serve died during the run" >&2
		cat "$work/serve-$rate.err" >&2
		exit 1
	fi
	ticks_after=$(cpu_ticks "$rpid")
	rcvbuf_after=$(udp_rcvbuf_errors)
	load_after=$(cut -d' ' -f1 /proc/loadavg)
	if [ "$send_rc" != 0 ]; then
		echo "bench-relay: send failed (exit $send_rc)" >&2
		cat "$work/send-$rate.err" >&2
		exit 1
	fi

	# Stop serve; it prints its Stats and exits.
	kill -TERM "$rpid" 2>/dev/null || true
	for _ in $(seq 1 100); do
		kill -0 "$tpid" 2>/dev/null || break
		sleep 0.1
	done
	wait "$tpid" 2>/dev/null || true
	pids=() # both have exited: nothing of this rate left to kill
	if ! grep -q '^packets ' "$sout"; then
		echo "bench-relay: serve printed no stats" >&2
		cat "$work/serve-$rate.err" >&2
		exit 1
	fi

	so="$work/send-$rate.out"
	relayed=$(kv "$sout" packets)
	drops=$(kv "$sout" dropped)
	row=$(awk -v offered="$rate" -v sent_pps="$(kv "$so" sent_pps)" -v recv_pps="$(kv "$so" received_pps)" \
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
			printf "| %d | %.0f | %.0f | %.3f | %.1f | %s | %s | %.0f / %.0f µs | %d | %d | %s | %s |\n",
				offered, sent_pps, recv_pps, loss, pct, per_cpu, ns, p50, p99, drops, rcvbuf, machine, load
		}')
	rows+=$row$'\n'
	echo "$row"
done

now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
table=$(
	cat <<MD
| offered pps | sent pps | relayed pps | loss % | relay CPU % of one core | relayed packets per CPU-second | ns CPU per packet | latency p50 / p99 | relay drops | UDP rcvbuf errors | machine | load average (1 min) before / after |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |
${rows%$'\n'}
MD
)
heading="$now, $STREAMS calls, ${DURATION} s per rate, $SENDERS sender(s), sipwall $version, $(go env GOVERSION)"

echo
echo "## $heading"
echo
echo "$table"

mkdir -p bench/results
out="bench/results/relay-$(date -u +%Y-%m-%d).md"
if [ ! -f "$out" ]; then
	printf '# sipwall media relay bench results, %s\n\nWritten by scripts/bench-relay.sh; one section per run.\n' "$(date -u +%Y-%m-%d)" >"$out"
fi
printf '\n## %s\n\n%s\n' "$heading" "$table" >>"$out"
echo
echo "bench-relay: appended to $out"
