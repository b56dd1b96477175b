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
# CHAIN picks the layers at once (and overrides AUTH, HIDING, POLICY and
# FRAUD): plain (B2BUA relay only: no auth, no media relay, no outbound
# guard, no policy, no fraud rules), hiding (+ media relay and guard),
# auth (+ digest MD5), full (+ the built-in OPA policy and fraud rules).
#
# Environment:
#   MODE=call       call or register
#   AUTH=0          1: digest authentication on (see above)
#   HIDING=on       off: media relay off (SDP crosses unchanged) and the
#                   outbound guard off, to measure what hiding costs
#   POLICY          on: the OPA policy (built-in) decides; default on with
#                   AUTH=1, off without (it denies unauthenticated calls)
#   FRAUD=0         1: anti-fraud rules (bench/rules.yaml: rate, concurrency
#                   and daily counters per user, destination lists)
#   RATE=200        calls (registrations) per second offered
#   CALLS=5000      calls placed (register mode: 10000 distinct users)
#   TRANSPORT=udp   udp or tcp, on both sides of sipwall
#   LIMIT           sipp's limit of simultaneous calls (default 5*RATE)
#   BACKEND=embedded  redis: store.backend redis against a redis-server
#                   started for the run on 127.0.0.1 (no persistence); its
#                   CPU is reported next to sipwall's
#   HOLD_MS=0       talk time of each call (sipp -d), for concurrency runs
#   MEM_AT          seconds after the load starts at which sipwall's RSS and
#                   the calls in progress are sampled (with HOLD_MS: when
#                   every call is up); the baseline is sampled just before
#   SAMPLE_EVERY    seconds: sipwall's RSS and goroutines are read this
#                   often during the load; the table and the summary get
#                   their range after the first minute (or the first
#                   tenth of the run if shorter) and their change from then
#                   to the end: is memory flat over a long run
#   PROFILE         a directory: CPU profile of sipwall (admin.pprof) from
#                   2 s into the load for PROFILE_SECONDS (default 10), and
#                   an allocation profile at the end, with `go tool pprof
#                   -top` summaries
#   BENCH_BIN       a sipwall binary to use instead of building one
#   BENCH_RESULTS   file the table is appended to (default
#                   bench/results/<date>.md); "-" for none
#   BENCH_SUMMARY   file to write the figures to as "key value" lines
#                   (used by scripts/bench-suite.sh)
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
HOLD_MS=${HOLD_MS:-0}
if [ "$HOLD_MS" -gt 0 ]; then
	LIMIT=${LIMIT:-$CALLS}
else
	LIMIT=${LIMIT:-$((RATE * 5))}
fi
# sipp fails a call whose next message takes longer than this.
recv_ms=$((HOLD_MS + 10000))
AUTH=${AUTH:-0}
HIDING=${HIDING:-on}
FRAUD=${FRAUD:-0}
case "${CHAIN:-}" in
"") ;;
plain) AUTH=0 HIDING=off POLICY=off FRAUD=0 ;;
hiding) AUTH=0 HIDING=on POLICY=off FRAUD=0 ;;
auth) AUTH=1 HIDING=on POLICY=off FRAUD=0 ;;
full) AUTH=1 HIDING=on POLICY=on FRAUD=1 ;;
*)
	echo "bench: CHAIN must be plain, hiding, auth or full" >&2
	exit 2
	;;
esac
if [ -z "${POLICY:-}" ]; then
	[ "$AUTH" = 1 ] && POLICY=on || POLICY=off
fi
case "$POLICY" in
on | off) ;;
*)
	echo "bench: POLICY must be on or off" >&2
	exit 2
	;;
esac
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
run_s=$(((CALLS + RATE - 1) / RATE + HOLD_MS / 1000 + 60))

work=$(mktemp -d "${TMPDIR:-/tmp}/sipwall-bench.XXXXXX")
pids=()
bench_name=bench
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"
trap bench_cleanup EXIT

version=${BENCH_VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}
if [ -n "${BENCH_BIN:-}" ]; then
	cp "$BENCH_BIN" "$work/sipwall"
else
	echo "== bench: building sipwall"
	go build -ldflags "-X 'main.version=$version'" -o "$work/sipwall" ./cmd/sipwall
fi
if [ "$loadgen" = regload ]; then
	echo "== bench: building bench/regload"
	go build -o "$work/regload" ./bench/regload
fi

pbx_port=$(free_block)
sbc_port=$(free_block)
uac_port=$(free_block)
proto=udp
[ "$TRANSPORT" = tcp ] && proto=tcp

echo "== bench: PBX (sipp UAS) on $PBX_IP:$pbx_port/$TRANSPORT"
start_pbx "$uas_scen" "$recv_ms"

mkdir -p "$work/store"
BACKEND=${BACKEND:-embedded}
store_yaml="store: {path: \"$work/store\"}"
redis_pid=""
if [ "$BACKEND" = redis ]; then
	redis_port=$((sbc_port + 4))
	timeout $((run_s + 60)) redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no \
		--dir "$work" >"$work/redis.log" 2>&1 &
	pids+=("$!")
	wait_listen tcp "$redis_port" || {
		echo "bench: redis-server did not start" >&2
		exit 1
	}
	redis_pid=$(pgrep -P "$!" -x redis-server || echo "$!")
	store_yaml="store: {path: \"$work/store\", backend: redis, redis: {addrs: [\"127.0.0.1:$redis_port\"], node: bench}}"
elif [ "$BACKEND" != embedded ]; then
	echo "bench: BACKEND must be embedded or redis" >&2
	exit 2
fi
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
	auth_yaml='auth: {mode: "off"}'
fi
if [ "$POLICY" = on ]; then
	policy_yaml='policy: {mode: enforce}'
else
	policy_yaml='policy: {mode: "off"}'
fi
# One sipp stands for many callers: the built-in rules' per-user limits
# would refuse it, so they are off; FRAUD=1 measures bench/rules.yaml.
rules_yaml="rules: {builtin: false}"
if [ "$FRAUD" = 1 ]; then
	rules_yaml="rules: {builtin: false, file: \"$root/bench/rules.yaml\"}"
fi
# Long calls: the relay must not end silent calls (sipp sends no RTP) and
# needs a port pair per call and side.
if [ "$HOLD_MS" -gt 0 ] && [ "$HIDING" = on ]; then
	hiding_yaml="media: {port_min: 10000, port_max: 64999, max_sessions: $((CALLS + 100)), inactivity: $((HOLD_MS / 1000 + 120))s}"
fi
admin_port=$((sbc_port + 3))
pprof=false
[ -n "${PROFILE:-}" ] || [ -n "${MEM_AT:-}" ] && pprof=true
cat >"$work/sipwall.yaml" <<YAML
listen:
  - {transport: udp, addr: "$SBC_IP:$sbc_port"}
  - {transport: tcp, addr: "$SBC_IP:$sbc_port"}
upstreams:
  - {name: pbx, uri: "sip:$PBX_IP:$pbx_port$uri_param"}
health: {interval: 0s}
# One sipp stands for many callers: no caps of calls in progress per user
# or per address.
calls: {ring_timeout: 30s, drain_timeout: 1s, max_per_user: 0, max_per_source: 0}
$store_yaml
log: {level: warn}
admin: {addr: "127.0.0.1:$admin_port", pprof: $pprof}
limits: {max_dialogs: $((CALLS > 20000 ? CALLS + 100 : 20000))}
# One sipp instance stands for a whole customer base behind one address:
# the userspace prefilter stays on (its cost is measured), without a
# per-source budget on requests and responses.
prefilter: {rates: {request: {rate: 0}, response: {rate: 0}}, caps: {request: 0, response: 0}}
$auth_yaml
$policy_yaml
$rules_yaml
$hiding_yaml
YAML
# A socket per relay port: more than the usual 1,024 descriptors.
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

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
# Stopped by PID at the end too: killing timeout(1) alone can leave it.
pids+=("$sw_pid")
ticks_before=$(cpu_ticks "$sw_pid")
redis_before=0
[ -n "$redis_pid" ] && redis_before=$(cpu_ticks "$redis_pid")
# Other work on the machine disturbs the numbers: keep the 1-minute load.
load_before=$(cut -d' ' -f1 /proc/loadavg)

echo "== bench: $CALLS $unit at $RATE/s over $TRANSPORT (auth: $auth_label, limit $LIMIT)"
t0=$(date +%s.%N)
uac_rc=0
admin_url="http://127.0.0.1:$admin_port"
# rss_kib: sipwall's resident set now.
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$sw_pid/status"; }
# calls_active: calls in progress, from the admin API.
calls_active() {
	curl -fsS --max-time 5 "$admin_url/api/status" 2>/dev/null |
		sed -n 's/.*"calls_active": *\([0-9]*\).*/\1/p'
}
bg=()
if [ -n "${MEM_AT:-}" ]; then
	# live_bytes: the Go heap still reachable after a collection (the
	# heap profile with gc=1 forces one), from the metrics.
	live_bytes() {
		curl -fsS --max-time 20 -o /dev/null "$admin_url/debug/pprof/heap?gc=1" 2>/dev/null || true
		curl -fsS --max-time 5 "$admin_url/metrics" 2>/dev/null |
			awk '$1 == "go_memstats_heap_alloc_bytes" { printf "%.0f\n", $2 }'
	}
	echo "rss_before_kib $(rss_kib)" >"$work/mem.txt"
	curl -fsS --max-time 5 "$admin_url/metrics" 2>/dev/null |
		awk '$1 == "go_memstats_heap_inuse_bytes" { print "heap_before_bytes", $2 }' >>"$work/mem.txt" || true
	echo "live_before_bytes $(live_bytes)" >>"$work/mem.txt"
	(
		sleep "$MEM_AT"
		echo "rss_at_kib $(rss_kib)"
		echo "calls_at $(calls_active)"
		if [ -n "${PROFILE:-}" ]; then
			mkdir -p "$PROFILE"
			curl -fsS --max-time 20 -o "$PROFILE/heap.pprof" "$admin_url/debug/pprof/heap" || true
		fi
		echo "live_at_bytes $(live_bytes)"
		curl -fsS --max-time 5 "$admin_url/metrics" 2>/dev/null |
			awk '$1 == "go_memstats_heap_inuse_bytes" { print "heap_inuse_bytes", $2 }
			     $1 == "go_goroutines" { print "goroutines", $2 }'
	) >>"$work/mem.txt" &
	bg+=("$!")
	pids+=("$!")
fi
sampler=""
if [ -n "${SAMPLE_EVERY:-}" ]; then
	# "seconds-into-the-load rss-kib goroutines" lines until stopped
	# after the load (or sipwall ends).
	(
		s0=$(date +%s)
		while kill -0 "$sw_pid" 2>/dev/null; do
			g=$(curl -fsS --max-time 5 "$admin_url/metrics" 2>/dev/null | awk '$1 == "go_goroutines" { print $2 }')
			echo "$(($(date +%s) - s0)) $(rss_kib) ${g:-?}"
			sleep "$SAMPLE_EVERY"
		done
	) >"$work/samples.txt" 2>/dev/null &
	sampler=$!
	pids+=("$sampler")
fi
if [ -n "${PROFILE:-}" ]; then
	mkdir -p "$PROFILE"
	(
		sleep 2
		curl -fsS --max-time $((${PROFILE_SECONDS:-10} + 10)) -o "$PROFILE/cpu.pprof" \
			"$admin_url/debug/pprof/profile?seconds=${PROFILE_SECONDS:-10}"
	) &
	bg+=("$!")
	pids+=("$!")
fi
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
	# In the work directory: -trace_rtt writes <scenario>_<pid>_rtt.csv
	# there, each call's time from its first INVITE to the 200 (rtd).
	(cd "$work" && exec timeout $((run_s + 30)) sipp "$SBC_IP:$sbc_port" -sf "$scen/$uac_scen" -t "$sipp_t" -s "$uac_user" \
		-i "$UAC_IP" -p "$uac_port" -ci "$UAC_IP" -cp $((uac_port + 1)) \
		-mi "$UAC_IP" -mp $((uac_port + 2)) \
		-r "$RATE" -m "$CALLS" -l "$LIMIT" -d "$HOLD_MS" -nostdin \
		"${auth_args[@]}" \
		-timeout "${run_s}s" -recv_timeout "$recv_ms" \
		-watchdog_minor_maxtriggers 1000000 -watchdog_major_maxtriggers 1000000 \
		-trace_stat -stf "$work/uac_stat.csv" -fd 1 \
		-trace_err -error_file "$work/uac_errors.log" -trace_rtt -rtt_freq 1 \
		>"$work/uac.stdout" 2>"$work/uac.stderr") || uac_rc=$?
fi
t1=$(date +%s.%N)
if [ -n "$sampler" ]; then
	kill "$sampler" 2>/dev/null || true
	wait "$sampler" 2>/dev/null || true
fi
for p in "${bg[@]}"; do
	wait "$p" 2>/dev/null || true
done
if [ -n "${PROFILE:-}" ]; then
	curl -fsS --max-time 20 -o "$PROFILE/allocs.pprof" "$admin_url/debug/pprof/allocs" || true
	cp "$work/sipwall" "$PROFILE/sipwall"
fi

if ! kill -0 "$sw_pid" 2>/dev/null; then
	echo "bench: sipwall died during the run" >&2
	tail -n 50 "$work/sipwall.stderr" >&2
	exit 1
fi
ticks_after=$(cpu_ticks "$sw_pid")
# The policy's decision times in the running server (its histogram,
# sipwall_policy_decision_seconds): p50 and p99 as the upper bound of the
# bucket holding them, in µs.
policy_q=$(curl -fsS --max-time 5 "$admin_url/metrics" 2>/dev/null | awk '
	/^sipwall_policy_decision_seconds_bucket/ {
		le = $1; sub(/.*le="/, "", le); sub(/".*/, "", le)
		n++; b[n] = le; c[n] = $2
	}
	END {
		if (n == 0 || c[n] == 0) { print "? ?"; exit }
		total = c[n]
		for (i = 1; i <= n; i++) if (p50 == "" && c[i] >= 0.5 * total) p50 = b[i]
		for (i = 1; i <= n; i++) if (p99 == "" && c[i] >= 0.99 * total) p99 = b[i]
		f = "%.0f"
		printf (p50 == "+Inf" ? "%s" : f) " " (p99 == "+Inf" ? "%s" : f) "\n", (p50 == "+Inf" ? ">50000" : p50 * 1e6), (p99 == "+Inf" ? ">50000" : p99 * 1e6)
	}' || echo "? ?")
read -r policy_p50 policy_p99 <<<"$policy_q"
redis_cpu_per_k="–"
if [ -n "$redis_pid" ]; then
	redis_cpu_per_k=$(awk -v d=$(($(cpu_ticks "$redis_pid") - redis_before)) -v c="$(getconf CLK_TCK)" -v n="$CALLS" \
		'BEGIN { printf "%.3f", d / c * 1000 / n }')
fi
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
	sipp_figures
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

# Setup latency: sipp's response times (first INVITE to 200) of the
# successful calls, in ms.
setup_latency
if [ "$p50" != "?" ]; then
	extra_rows=$extra_rows$'\n'"| setup latency (first INVITE → 200, sipp) | p50 $p50 ms, p99 $p99 ms |"
fi
if [ "${policy_p99:-?}" != "?" ]; then
	extra_rows=$extra_rows$'\n'"| policy decision in the server (histogram bucket bounds) | p50 ≤ $policy_p50 µs, p99 ≤ $policy_p99 µs |"
fi
# Memory per concurrent call (MEM_AT): RSS growth over the calls up then.
mem_per_call="?"
if [ -s "$work/mem.txt" ]; then
	mem_val() { awk -v k="$1" '$1 == k { v = $2 } END { print (v != "" ? v : "?") }' "$work/mem.txt"; }
	rss0=$(mem_val rss_before_kib) rss1=$(mem_val rss_at_kib) calls_at=$(mem_val calls_at)
	heap=$(mem_val heap_inuse_bytes) heap0=$(mem_val heap_before_bytes) gor=$(mem_val goroutines)
	live_per_call=$(awk -v a="$(mem_val live_before_bytes)" -v b="$(mem_val live_at_bytes)" -v n="$calls_at" 'BEGIN {
		if (n + 0 > 0 && a != "?" && b != "?" && b != "") printf "%.1f", (b - a) / 1024 / n; else print "?" }')
	mem_per_call=$(awk -v a="$rss0" -v b="$rss1" -v n="$calls_at" 'BEGIN {
		if (n + 0 > 0 && b != "?" && a != "?") printf "%.1f", (b - a) / n; else print "?" }')
	heap_per_call=$(awk -v h="$heap" -v h0="$heap0" -v n="$calls_at" 'BEGIN {
		if (n + 0 > 0 && h != "?" && h0 != "?") printf "%.1f", (h - h0) / 1024 / n; else print "?" }')
	extra_rows=$extra_rows$'\n'"| calls in progress at ${MEM_AT} s | $calls_at (goroutines $gor) |"
	extra_rows=$extra_rows$'\n'"| RSS before / at ${MEM_AT} s | $rss0 KiB / $rss1 KiB |"
	extra_rows=$extra_rows$'\n'"| memory per call in progress | $mem_per_call KiB RSS, $heap_per_call KiB Go heap in use, $live_per_call KiB live after a GC (growth / calls) |"
fi
# Memory over a long run (SAMPLE_EVERY): the range after the warm-up (the
# first minute, or the first tenth of a shorter run) and the change from
# its first sample to the last.
samples_summary=()
if [ -s "$work/samples.txt" ]; then
	read -r rss_lo rss_hi rss_chg gor_lo gor_hi gor_chg n_samples < <(awk -v run="$((CALLS / RATE))" '
		BEGIN { warm = (run >= 600 ? 60 : run / 10) }
		$1 >= warm && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9.e+]+$/ {
			r = $2 / 1024; g = $3 + 0; n++
			if (n == 1) { r0 = r; g0 = g; rlo = rhi = r; glo = ghi = g }
			if (r < rlo) rlo = r; if (r > rhi) rhi = r
			if (g < glo) glo = g; if (g > ghi) ghi = g
			r1 = r; g1 = g
		}
		END {
			if (n == 0) { print "? ? ? ? ? ? 0"; exit }
			printf "%.0f %.0f %+.0f %d %d %+d %d\n", rlo, rhi, r1 - r0, glo, ghi, g1 - g0, n
		}' "$work/samples.txt")
	extra_rows=$extra_rows$'\n'"| after the warm-up ($n_samples samples): RSS / goroutines, range and change to the end | $rss_lo–$rss_hi MiB ($rss_chg MiB) / $gor_lo–$gor_hi ($gor_chg) |"
	samples_summary=(rss_warm_min_mib "$rss_lo" rss_warm_max_mib "$rss_hi" rss_change_mib "$rss_chg"
		goroutines_min "$gor_lo" goroutines_max "$gor_hi" goroutines_change "$gor_chg")
fi
if [ -n "${PROFILE:-}" ] && [ -s "$PROFILE/cpu.pprof" ]; then
	go tool pprof -top -nodecount=25 "$PROFILE/sipwall" "$PROFILE/cpu.pprof" >"$PROFILE/cpu-top.txt" 2>/dev/null || true
	go tool pprof -top -cum -nodecount=40 "$PROFILE/sipwall" "$PROFILE/cpu.pprof" >"$PROFILE/cpu-cum.txt" 2>/dev/null || true
	[ -s "$PROFILE/allocs.pprof" ] && go tool pprof -sample_index=alloc_space -top -nodecount=25 \
		"$PROFILE/sipwall" "$PROFILE/allocs.pprof" >"$PROFILE/allocs-top.txt" 2>/dev/null || true
fi

store_fs=$(stat -f -c %T "$work/store" 2>/dev/null || echo unknown)
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
table=$(
	cat <<MD
| metric | value |
| --- | --- |
| time (UTC) | $now |
| sipwall | $version |
| mode | $MODE |
| transport | $TRANSPORT |
| chain | ${CHAIN:-custom} |
| auth | $auth_label |
| hiding (media relay, guard) | $HIDING |
| policy (built-in Rego) | $POLICY |
| fraud rules | $([ "$FRAUD" = 1 ] && echo bench/rules.yaml || echo off) |
| talk time | $HOLD_MS ms |
| store backend | $BACKEND (redis-server CPU per 1,000: $redis_cpu_per_k s) |
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
| machine | $(machine) |
| load average (1 min) before / after | $load_before / $load_after |
MD
)

echo
echo "$table"

if [ -n "${BENCH_SUMMARY:-}" ]; then
	write_summary rss_mib "$rss_mib" mem_per_call_kib "$mem_per_call" redis_cpu_per_k "$redis_cpu_per_k" \
		policy_p50_us "${policy_p50:-?}" policy_p99_us "${policy_p99:-?}" \
		heap_per_call_kib "${heap_per_call:-?}" live_per_call_kib "${live_per_call:-?}" "${samples_summary[@]}"
	if [ -s "$work/mem.txt" ]; then cat "$work/mem.txt" >>"$BENCH_SUMMARY"; fi
	if [ "$loadgen" = regload ]; then
		for k in auth_p50_ms auth_p99_ms register_p50_ms register_p99_ms; do
			echo "$k $(regload_val "$k")" >>"$BENCH_SUMMARY"
		done
	fi
fi
if [ "${BENCH_RESULTS:-}" = - ]; then
	exit 0
fi
mkdir -p bench/results
out=${BENCH_RESULTS:-"bench/results/$(date -u +%Y-%m-%d).md"}
if [ ! -f "$out" ]; then
	printf '# sipwall bench results, %s\n\nWritten by scripts/bench.sh; one section per run.\n' "$(date -u +%Y-%m-%d)" >"$out"
fi
heading_auth=""
[ "$AUTH" = 1 ] && heading_auth=", auth $auth_alg"
printf '\n## %s, %s, %s %s at %s/s%s\n\n%s\n' "$now" "$TRANSPORT" "$CALLS" "$unit" "$RATE" "$heading_auth" "$table" >>"$out"
echo
echo "bench: appended to $out"
