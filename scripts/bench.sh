#!/usr/bin/env bash
# Call-rate benchmark of sipwall on the loopback network:
#
#   sipp UAC (outside, 127.0.0.2) -> sipwall (127.0.0.1) -> sipp UAS (PBX, 127.0.0.3)
#
# A fixed number of calls at a fixed rate, each with no talk time
# (INVITE/100/180/200/ACK/BYE/200). Reports calls/s achieved, failed calls
# (from sipp's statistics file), sipwall's CPU seconds per 1,000 calls
# (utime+stime from /proc/PID/stat, in clock ticks) and its peak RSS
# (VmHWM); also how many calls the PBX side completed (it can fail calls
# the UAC saw succeed) and the 1-minute load average before and after the
# run (other work on the machine disturbs the numbers). The table goes to
# stdout and is appended to bench/results/<UTC date>.md.
#
# MODE=register measures registrations instead: each "call" is one
# REGISTER of a different user (user1, user2, ...), relayed by sipwall's
# registrar (relay mode) to a sipp registrar as the PBX and stored; the
# table reports REGISTER/s, failures and CPU per 1,000 registrations.
#
# AUTH=1 turns sipwall's digest authentication on (section auth, realm
# "sipwall"; users file written into the work directory):
#   - MODE=call: sipwall offers MD5 only (sipp 3.6 computes nothing else and
#     reads only the first challenge); the UAC runs uac_auth_call.xml as
#     "alice" (sipp -au/-ap/-auth_uri): INVITE, 407, ACK, INVITE with
#     Proxy-Authorization, then the call as above.
#   - MODE=register: sipp cannot take per-call credentials, so bench/regload
#     (built into the work directory) registers user1..userCALLS, each with
#     its own password, answering the 401 with SHA-256 (RFC 7616, qop=auth);
#     sipwall offers SHA-256 only. UDP only. The table adds regload's
#     latency of the authenticated round (REGISTER with Authorization to
#     200) and of the whole registration.
# Without AUTH, auth.mode is "off" (requests pass unchallenged).
#
# Environment:
#   MODE=call       call or register
#   AUTH=0          1: digest authentication on (see above)
#   HIDING=on       off: media relay off (SDP crosses unchanged) and the
#                   outbound guard off, to measure what hiding costs
#   RATE=200        calls (registrations) per second offered
#   CALLS=5000      calls placed (register mode: 10000 distinct users)
#   TRANSPORT=udp   udp or tcp, on both sides of sipwall
#   LIMIT           sipp's limit of simultaneous calls (default 5*RATE)
#   BENCH_KEEP=1    keep the work directory (logs, stats) after the run
#   BENCH_VERSION   sipwall version in the table (default: git describe),
#                   for a tree exported without .git (git archive)
#   TMPDIR          where the work directory, and so sipwall's store, lives;
#                   its filesystem type is in the table (disk and tmpfs
#                   give different numbers when the store syncs to disk)
#
# Every process has a deadline (sipp -timeout plus timeout(1)) and only the
# processes this script started are killed, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

MODE=${MODE:-call}
RATE=${RATE:-200}
case "$MODE" in
call)
	CALLS=${CALLS:-5000}
	uac_scen=uac_basic.xml uas_scen=uas_answer.xml unit=calls uac_user=service
	;;
register)
	CALLS=${CALLS:-10000}
	uac_scen=uac_register_load.xml uas_scen=uas_register.xml unit=registrations uac_user=user
	;;
*)
	echo "bench: MODE must be call or register" >&2
	exit 2
	;;
esac
TRANSPORT=${TRANSPORT:-udp}
LIMIT=${LIMIT:-$((RATE * 5))}
AUTH=${AUTH:-0}
HIDING=${HIDING:-on}
case "$HIDING" in
on) hiding_yaml="" ;;
off) hiding_yaml=$'topology: {guard: "off"}\nmedia: {mode: "off"}' ;;
*)
	echo "bench: HIDING must be on or off" >&2
	exit 2
	;;
esac
case "$AUTH" in
0 | "") AUTH=0 ;;
1) ;;
*)
	echo "bench: AUTH must be 0 or 1" >&2
	exit 2
	;;
esac
REALM=sipwall
# Load generator: sipp, or bench/regload for authenticated registrations.
loadgen=sipp
auth_alg=""
if [ "$AUTH" = 1 ]; then
	case "$MODE" in
	call)
		uac_scen=uac_auth_call.xml auth_alg=MD5
		auth_label="digest MD5 (sipp -au alice)"
		;;
	register)
		loadgen=regload auth_alg=SHA-256
		auth_label="digest SHA-256 (bench/regload, 8 UDP sockets)"
		if [ "$TRANSPORT" != udp ]; then
			echo "bench: MODE=register AUTH=1 runs over UDP only (bench/regload)" >&2
			exit 2
		fi
		;;
	esac
else
	auth_label=off
fi

case "$TRANSPORT" in
udp) sipp_t=u1 uri_param="" ;;
tcp) sipp_t=t1 uri_param=";transport=tcp" ;;
*)
	echo "bench: TRANSPORT must be udp or tcp" >&2
	exit 2
	;;
esac
for c in sipp ss go; do
	if ! command -v "$c" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$c" ]; then
		echo "bench: $c not found; run scripts/install-test-tools.sh" >&2
		exit 1
	fi
done
PATH=$PATH:/usr/sbin:/sbin

SBC_IP=127.0.0.1
UAC_IP=127.0.0.2
PBX_IP=127.0.0.3
scen="$root/testdata/sipp"

# Expected run time plus generous slack bounds every process.
run_s=$(((CALLS + RATE - 1) / RATE + 60))

work=$(mktemp -d "${TMPDIR:-/tmp}/sipwall-bench.XXXXXX")
pids=()
cleanup() {
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
		echo "bench: logs kept in $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT

# free_block IP: a port P such that P..P+5 are unused on IP (TCP and UDP).
free_block() {
	local ip=$1 p i busy
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
	echo "bench: no free ports" >&2
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

# cpu_ticks PID: utime+stime of the process in clock ticks.
cpu_ticks() {
	local s
	s=$(cat "/proc/$1/stat")
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

echo "== bench: building sipwall"
version=${BENCH_VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}
go build -ldflags "-X 'main.version=$version'" -o "$work/sipwall" ./cmd/sipwall
if [ "$loadgen" = regload ]; then
	echo "== bench: building bench/regload"
	go build -o "$work/regload" ./bench/regload
fi

pbx_port=$(free_block "$PBX_IP")
sbc_port=$(free_block "$SBC_IP")
uac_port=$(free_block "$UAC_IP")
proto=udp
[ "$TRANSPORT" = tcp ] && proto=tcp

echo "== bench: PBX (sipp UAS) on $PBX_IP:$pbx_port/$TRANSPORT"
# -m is only a bound: a stray message (an ACK arriving after the BYE that
# ended its call, say) opens a "call" of its own, and with -m CALLS the PBX
# would stop before the last real calls and make them time out. It is told
# to quit (SIGUSR1) once the UAC is done.
timeout $((run_s + 30)) sipp -sf "$scen/$uas_scen" -t "$sipp_t" \
	-i "$PBX_IP" -p "$pbx_port" -ci "$PBX_IP" -cp $((pbx_port + 1)) \
	-mi "$PBX_IP" -mp $((pbx_port + 2)) \
	-m $((CALLS * 2)) -nostdin -timeout "${run_s}s" -recv_timeout 10000 \
	-watchdog_minor_maxtriggers 1000000 -watchdog_major_maxtriggers 1000000 \
	-trace_stat -stf "$work/uas_stat.csv" -fd 1 \
	-trace_err -error_file "$work/uas_errors.log" \
	>"$work/uas.stdout" 2>"$work/uas.stderr" &
uas_pid=$!
pids+=("$uas_pid")
wait_listen "$proto" "$pbx_port" || {
	echo "bench: PBX sipp did not start" >&2
	cat "$work/uas.stderr" >&2
	exit 1
}

mkdir -p "$work/store"
# auth section of the configuration, and the users file it names.
auth_pass=bench-alice-secret
if [ "$AUTH" = 1 ]; then
	users="$work/users.yaml"
	if [ "$loadgen" = regload ]; then
		"$work/regload" -write-users "$users" -users "$CALLS" -realm "$REALM" -alg "$auth_alg"
	else
		echo "$auth_pass" | "$work/sipwall" passwd -file "$users" -realm "$REALM" -md5 alice >/dev/null
	fi
	auth_yaml="auth: {realm: $REALM, users_file: \"$users\", algorithms: [$auth_alg]}"
else
	# Explicit: the default is digest, which needs a users file.
	auth_yaml=$'auth: {mode: "off"}\npolicy: {mode: "off"}'
fi
cat >"$work/sipwall.yaml" <<YAML
listen:
  - {transport: udp, addr: "$SBC_IP:$sbc_port"}
  - {transport: tcp, addr: "$SBC_IP:$sbc_port"}
upstreams:
  - {name: pbx, uri: "sip:$PBX_IP:$pbx_port$uri_param"}
health: {interval: 0s}
calls: {ring_timeout: 30s}
store: {path: "$work/store"}
log: {level: warn}
admin: {addr: "127.0.0.1:0"}
# One sipp instance stands for a whole customer base behind one address:
# the userspace prefilter stays on (its cost is measured), without a
# per-source budget on requests and responses.
prefilter: {rates: {request: {rate: 0}, response: {rate: 0}}, caps: {request: 0, response: 0}}
$auth_yaml
$hiding_yaml
YAML

echo "== bench: sipwall on $SBC_IP:$sbc_port"
timeout $((run_s + 60)) "$work/sipwall" run -config "$work/sipwall.yaml" \
	>"$work/sipwall.stdout" 2>"$work/sipwall.stderr" &
sbc_pid=$!
pids+=("$sbc_pid")
if ! wait_listen udp "$sbc_port" || ! wait_listen tcp "$sbc_port"; then
	echo "bench: sipwall did not start" >&2
	tail -n 50 "$work/sipwall.stderr" >&2
	exit 1
fi
sleep 0.5
# timeout(1) is the parent of sipwall: measure sipwall itself.
sw_pid=$(pgrep -P "$sbc_pid" -x sipwall || true)
[ -n "$sw_pid" ] || sw_pid=$sbc_pid
ticks_before=$(cpu_ticks "$sw_pid")
# Other work on the machine disturbs the numbers: keep the 1-minute load.
load_before=$(cut -d' ' -f1 /proc/loadavg)

echo "== bench: $CALLS $unit at $RATE/s over $TRANSPORT (auth: $auth_label, limit $LIMIT)"
t0=$(date +%s.%N)
uac_rc=0
if [ "$loadgen" = regload ]; then
	# Its own deadline (-deadline) ends it; timeout(1) is the backstop.
	timeout $((run_s + 30)) "$work/regload" -sbc "$SBC_IP:$sbc_port" -src "$UAC_IP" \
		-users "$CALLS" -rate "$RATE" -sockets 8 -alg "$auth_alg" -deadline "${run_s}s" \
		>"$work/uac.stdout" 2>"$work/uac.stderr" || uac_rc=$?
else
	auth_args=()
	if [ "$AUTH" = 1 ]; then
		# -auth_uri gets "sip:" prepended: the digest uri is then the
		# Request-URI of uac_auth_call.xml, as sipwall requires.
		auth_args=(-au alice -ap "$auth_pass" -auth_uri "$uac_user@$SBC_IP:$sbc_port")
	fi
	timeout $((run_s + 30)) sipp "$SBC_IP:$sbc_port" -sf "$scen/$uac_scen" -t "$sipp_t" -s "$uac_user" \
		-i "$UAC_IP" -p "$uac_port" -ci "$UAC_IP" -cp $((uac_port + 1)) \
		-mi "$UAC_IP" -mp $((uac_port + 2)) \
		-r "$RATE" -m "$CALLS" -l "$LIMIT" -d 0 -nostdin \
		"${auth_args[@]}" \
		-timeout "${run_s}s" -recv_timeout 10000 \
		-watchdog_minor_maxtriggers 1000000 -watchdog_major_maxtriggers 1000000 \
		-trace_stat -stf "$work/uac_stat.csv" -fd 1 \
		-trace_err -error_file "$work/uac_errors.log" \
		>"$work/uac.stdout" 2>"$work/uac.stderr" || uac_rc=$?
fi
t1=$(date +%s.%N)

if ! kill -0 "$sw_pid" 2>/dev/null; then
	echo "bench: sipwall died during the run" >&2
	tail -n 50 "$work/sipwall.stderr" >&2
	exit 1
fi
ticks_after=$(cpu_ticks "$sw_pid")
load_after=$(cut -d' ' -f1 /proc/loadavg)
hwm_kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$sw_pid/status")
clk=$(getconf CLK_TCK)

# The UAC has its answer to every call, so the PBX has finished them too:
# tell it to quit (SIGUSR1: no new calls, exit when none is open; to sipp
# itself, not to timeout(1)), wait for it (bounded), then stop everything.
uas_sipp=$(pgrep -P "$uas_pid" -x sipp || true)
[ -n "$uas_sipp" ] && kill -USR1 "$uas_sipp" 2>/dev/null || true
for _ in $(seq 1 50); do
	kill -0 "$uas_pid" 2>/dev/null || break
	sleep 0.2
done

# regload_val KEY: a value of regload's summary ("key value" lines).
regload_val() {
	awk -v k="$1" '$1 == k { v = $2 } END { print (v != "" ? v : "?") }' "$work/uac.stdout"
}
extra_rows=""
if [ "$loadgen" = regload ]; then
	if ! grep -q '^attempted ' "$work/uac.stdout"; then
		echo "bench: regload printed no summary (exit $uac_rc)" >&2
		tail -n 20 "$work/uac.stderr" >&2
		exit 1
	fi
	created=$(regload_val attempted)
	ok=$(regload_val succeeded)
	failed=$(regload_val failed)
	extra_rows=$(
		cat <<MD
| authenticated round (REGISTER with Authorization → 200) | p50 $(regload_val auth_p50_ms) ms, p99 $(regload_val auth_p99_ms) ms |
| whole registration (first REGISTER → 200) | p50 $(regload_val register_p50_ms) ms, p99 $(regload_val register_p99_ms) ms |
| regload retransmissions | $(regload_val retransmissions) |
| regload failures | $(regload_val failures) |
MD
	)
	extra_rows=$'\n'$extra_rows
else
	stat="$work/uac_stat.csv"
	if [ ! -s "$stat" ]; then
		echo "bench: sipp wrote no statistics (exit $uac_rc)" >&2
		tail -n 20 "$work/uac.stderr" >&2
		exit 1
	fi
	created=$(stat_col "$stat" "TotalCallCreated")
	ok=$(stat_col "$stat" "SuccessfulCall(C)")
	failed=$(stat_col "$stat" "FailedCall(C)")
fi
if [ "$created" = 0 ] || [ "$created" = "?" ]; then
	echo "bench: the $loadgen UAC placed no $unit (exit $uac_rc)" >&2
	tail -n 20 "$work/uac.stderr" >&2
	exit 1
fi
# What the PBX completed: it may fail calls the UAC sees succeed (a BYE
# that overtook the ACK of its call: sipp answers the BYE with 200 and
# aborts its own side). Its failed count also holds the stray messages.
uas_ok="?" uas_failed="?"
if [ -s "$work/uas_stat.csv" ]; then
	uas_ok=$(stat_col "$work/uas_stat.csv" "SuccessfulCall(C)")
	uas_failed=$(stat_col "$work/uas_stat.csv" "FailedCall(C)")
fi
elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
cps=$(awk -v n="$ok" -v s="$elapsed" 'BEGIN { printf "%.1f", (s > 0 ? n / s : 0) }')
cpu_s=$(awk -v d=$((ticks_after - ticks_before)) -v c="$clk" 'BEGIN { printf "%.2f", d / c }')
cpu_per_k=$(awk -v s="$cpu_s" -v n="$created" 'BEGIN { printf "%.3f", (n > 0 ? s * 1000 / n : 0) }')
rss_mib=$(awk -v k="$hwm_kb" 'BEGIN { printf "%.1f", k / 1024 }')

store_fs=$(stat -f -c %T "$work/store" 2>/dev/null || echo unknown)
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)
table=$(
	cat <<MD
| metric | value |
| --- | --- |
| time (UTC) | $now |
| sipwall | $version |
| mode | $MODE |
| transport | $TRANSPORT |
| auth | $auth_label |
| hiding (media relay, guard) | $HIDING |
| offered rate | $RATE $unit/s |
| $unit placed | $created of $CALLS |
| successful $unit | $ok |
| failed $unit | $failed |
| $unit completed at the PBX (sipp UAS) | $uas_ok of $CALLS (sipp: $uas_failed failed, stray messages included) |
| elapsed | ${elapsed} s |
| $unit/s achieved | $cps |
| sipwall CPU | ${cpu_s} s (${cpu_per_k} s per 1,000 $unit) |
| sipwall peak RSS (VmHWM) | ${rss_mib} MiB |${extra_rows}
| $loadgen exit code | $uac_rc |
| store filesystem | $store_fs |
| machine | $(nproc) CPUs, $cpu_model |
| load average (1 min) before / after | $load_before / $load_after |
MD
)

echo
echo "$table"

mkdir -p bench/results
out="bench/results/$(date -u +%Y-%m-%d).md"
if [ ! -f "$out" ]; then
	printf '# sipwall bench results, %s\n\nWritten by scripts/bench.sh; one section per run.\n' "$(date -u +%Y-%m-%d)" >"$out"
fi
heading_auth=""
[ "$AUTH" = 1 ] && heading_auth=", auth $auth_alg"
printf '\n## %s, %s, %s %s at %s/s%s\n\n%s\n' "$now" "$TRANSPORT" "$CALLS" "$unit" "$RATE" "$heading_auth" "$table" >>"$out"
echo
echo "bench: appended to $out"
