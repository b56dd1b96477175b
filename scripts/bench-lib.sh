# Helpers shared by the benchmark scripts (bench.sh, bench-kamailio.sh,
# bench-suite.sh, bench-relay.sh, bench-xdp.sh); sourced, not run.
# The sourcing script sets `work` (its work directory), `pids` (an array of
# the PIDs it started) and `bench_name` (prefix of its messages) before it
# calls bench_cleanup.

# bench_cleanup stops the processes the script started (TERM, then KILL
# after 3 s), by PID, and removes the work directory unless BENCH_KEEP=1.
bench_cleanup() {
	local p
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.3
		done
		kill -KILL "$p" 2>/dev/null || true
	done
	if [ "${BENCH_KEEP:-}" = 1 ]; then
		echo "$bench_name: logs kept in $work"
	else
		rm -rf "$work"
	fi
}

# free_block: a port P such that P..P+5 are unused (TCP and UDP, any
# address).
free_block() {
	local p i busy
	for _ in $(seq 1 100); do
		p=$((20000 + (RANDOM % 2000) * 6))
		busy=0
		for i in 0 1 2 3 4 5; do
			if [ -n "$(ss -Htuan "( sport = :$((p + i)) )" 2>/dev/null)" ]; then
				busy=1
				break
			fi
		done
		if [ "$busy" = 0 ]; then
			echo "$p"
			return 0
		fi
	done
	echo "$bench_name: no free ports" >&2
	return 1
}

# wait_listen PROTO PORT: until a socket is bound (udp) or listening (tcp).
wait_listen() {
	local proto=$1 port=$2 flag
	[ "$proto" = tcp ] && flag=-Hltn || flag=-Hlun
	for _ in $(seq 1 100); do
		if [ -n "$(ss $flag "( sport = :$port )" 2>/dev/null)" ]; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# cpu_ticks PID: utime+stime of the process in clock ticks (0 if gone).
cpu_ticks() {
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || {
		echo 0
		return
	}
	s=${s##*) } # drop "pid (comm) "; field 1 is now the state (3rd overall)
	set -- $s
	echo $((${12} + ${13}))
}

# stat_col FILE NAME: the value of column NAME in the last row of sipp's CSV.
stat_col() {
	awk -F';' -v name="$2" '
		NR == 1 { for (i = 1; i <= NF; i++) if ($i == name) col = i; next }
		NF > 1 { last = $col }
		END { print (col && last != "" ? last : "?") }' "$1"
}

# rtt_percentiles FILE: "p50 p99" of the response times (ms) in a sipp
# -trace_rtt file (Date_ms;response_time_ms;rtd_no), "? ?" when empty.
rtt_percentiles() {
	awk -F';' 'NR > 1 && $2 != "" { print $2 }' "$1" | sort -g |
		awk '{ v[NR] = $1 } END {
			if (NR == 0) { print "? ?"; exit }
			i50 = int(NR * 0.50 + 0.999); i99 = int(NR * 0.99 + 0.999)
			printf "%.2f %.2f\n", v[i50], v[i99] }'
}

# kv FILE KEY: the value of the last "key value" line with KEY, or "?".
kv() {
	awk -v k="$2" '$1 == k { v = $2 } END { print (v != "" ? v : "?") }' "$1" 2>/dev/null || echo "?"
}

# udp_rcvbuf_errors [NETNS]: the Udp RcvbufErrors counter of /proc/net/snmp
# (of the network namespace NETNS if given).
udp_rcvbuf_errors() {
	local run=()
	[ -n "${1:-}" ] && run=(ip netns exec "$1")
	"${run[@]}" awk '$1 == "Udp:" { if (!h) { for (i = 2; i <= NF; i++) c[$i] = i; h = 1 } else { print $(c["RcvbufErrors"]); exit } }' /proc/net/snmp
}

# sipp_figures: created, ok and failed calls of the caller (work/uac_stat.csv)
# and ok/failed of the PBX side (work/uas_stat.csv, "?" without it), into
# the variables of those names; exits when the caller wrote nothing.
sipp_figures() {
	local stat="$work/uac_stat.csv"
	if [ ! -s "$stat" ]; then
		echo "$bench_name: sipp wrote no statistics (exit ${uac_rc:-?})" >&2
		tail -n 20 "$work/uac.stderr" >&2
		exit 1
	fi
	created=$(stat_col "$stat" "TotalCallCreated")
	ok=$(stat_col "$stat" "SuccessfulCall(C)")
	failed=$(stat_col "$stat" "FailedCall(C)")
	uas_ok="?" uas_failed="?"
	if [ -s "$work/uas_stat.csv" ]; then
		uas_ok=$(stat_col "$work/uas_stat.csv" "SuccessfulCall(C)")
		uas_failed=$(stat_col "$work/uas_stat.csv" "FailedCall(C)")
	fi
}

# start_pbx SCENARIO RECV_MS: the sipp UAS standing for the PBX on
# PBX_IP:pbx_port (uses run_s, sipp_t, CALLS, scen, work, proto); sets
# uas_pid. -m is only a bound: a stray message (an ACK arriving after the
# BYE that ended its call, say) opens a "call" of its own, and with -m CALLS
# the PBX would stop before the last real calls. It is told to quit
# (SIGUSR1) once the caller is done.
start_pbx() {
	timeout $((run_s + 30)) sipp -sf "$scen/$1" -t "$sipp_t" \
		-i "$PBX_IP" -p "$pbx_port" -ci "$PBX_IP" -cp $((pbx_port + 1)) \
		-mi "$PBX_IP" -mp $((pbx_port + 2)) \
		-m $((CALLS * 2)) -nostdin -timeout "${run_s}s" -recv_timeout "$2" \
		-watchdog_minor_maxtriggers 1000000 -watchdog_major_maxtriggers 1000000 \
		-trace_stat -stf "$work/uas_stat.csv" -fd 1 \
		-trace_err -error_file "$work/uas_errors.log" \
		>"$work/uas.stdout" 2>"$work/uas.stderr" &
	uas_pid=$!
	pids+=("$uas_pid")
	wait_listen "$proto" "$pbx_port" || {
		echo "$bench_name: PBX sipp did not start" >&2
		cat "$work/uas.stderr" >&2
		exit 1
	}
}

# setup_latency: p50 and p99 (ms, "?" without data) of the caller's
# -trace_rtt file in the work directory, into the variables of those names.
setup_latency() {
	local rtt
	p50="?" p99="?"
	rtt=$(ls "$work"/*_rtt.csv 2>/dev/null | head -n 1 || true)
	if [ -n "$rtt" ] && [ -s "$rtt" ]; then
		read -r p50 p99 < <(rtt_percentiles "$rtt")
	fi
}

# write_summary [KEY VALUE]...: the run's figures as "key value" lines into
# BENCH_SUMMARY (when set), the common ones and then the pairs given.
write_summary() {
	[ -n "${BENCH_SUMMARY:-}" ] || return 0
	{
		printf '%s %s\n' created "$created" ok "$ok" failed "$failed" uas_ok "$uas_ok" \
			elapsed "$elapsed" cps "$cps" cpu_s "$cpu_s" cpu_per_k "$cpu_per_k" p50_ms "$p50" p99_ms "$p99"
		[ "$#" -gt 0 ] && printf '%s %s\n' "$@"
	} >"$BENCH_SUMMARY"
}

# machine: CPU count and model.
machine() {
	echo "$(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)"
}
