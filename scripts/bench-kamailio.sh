#!/usr/bin/env bash
# Call-rate benchmark of Kamailio on the loopback network, the counterpart
# of scripts/bench.sh (MODE=call) for comparing sipwall with Kamailio:
#
#   sipp UAC (outside, 127.0.0.2) -> Kamailio (127.0.0.1) -> sipp UAS (PBX, 127.0.0.3)
#
# Kamailio runs bench/kamailio/kamailio.cfg (stateful proxy with
# record-routing, topology hiding, pike, sanity, maxfwd, dialog tracking;
# digest auth with AUTH=1; no media relay). sipp runs exactly as in
# bench.sh's call run: the same scenarios (uac_basic.xml, or
# uac_auth_call.xml as "alice" with AUTH=1; uas_answer.xml as the PBX), the
# same flags, no talk time.
#
# Reports calls placed, successful and failed (sipp's statistics file), what
# the PBX completed, calls/s achieved, and Kamailio's CPU: utime+stime of
# all its processes (the main one and every child) from /proc/PID/stat
# before and after the run, in CPU-seconds per 1,000 calls; also the sum of
# their PSS at the end of the run (shared memory counted once). One Markdown
# table row is printed and appended to bench/results/kamailio-<UTC date>.md.
#
# Environment:
#   AUTH=0          1: digest authentication (MD5, realm "sipwall", user alice)
#   DIALOG=1        0: no dialog tracking (dialog module not loaded)
#   TOPOH=1         0: no topology hiding (topoh not loaded): a plain
#                   stateful relay
#   RATE=200        calls per second offered
#   CALLS=5000      calls placed
#   TRANSPORT=udp   udp or tcp, on both sides of Kamailio
#   LIMIT           sipp's limit of simultaneous calls (default 5*RATE)
#   CHILDREN=2      Kamailio worker processes (UDP, and TCP with tcp): one per
#                   core here. Several workers read the same UDP socket, so
#                   messages sent back to back (180 then 200, ACK then BYE)
#                   can be relayed out of order; sipp fails such calls.
#                   CHILDREN=1 keeps the order.
#   SHM_MB=256      Kamailio shared memory, MiB
#   BENCH_KEEP=1    keep the work directory (logs, stats) after the run
#   BENCH_RESULTS   file the row is appended to (default
#                   bench/results/kamailio-<date>.md); "-" for none
#   BENCH_SUMMARY   file to write the figures to as "key value" lines
#
# Every process has a deadline (sipp -timeout plus timeout(1)); the trap
# stops only the processes this script started, by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

RATE=${RATE:-200}
CALLS=${CALLS:-5000}
TRANSPORT=${TRANSPORT:-udp}
LIMIT=${LIMIT:-$((RATE * 5))}
AUTH=${AUTH:-0}
DIALOG=${DIALOG:-1}
TOPOH=${TOPOH:-1}
CHILDREN=${CHILDREN:-2}
SHM_MB=${SHM_MB:-256}
REALM=sipwall
auth_pass=bench-alice-secret

case "$AUTH" in
0 | "") AUTH=0 uac_scen=uac_basic.xml auth_label=off ;;
1) uac_scen=uac_auth_call.xml auth_label="digest MD5 (sipp -au alice)" ;;
*)
	echo "bench-kamailio: AUTH must be 0 or 1" >&2
	exit 2
	;;
esac
case "$DIALOG" in
0 | 1) ;;
*)
	echo "bench-kamailio: DIALOG must be 0 or 1" >&2
	exit 2
	;;
esac
case "$TRANSPORT" in
udp) sipp_t=u1 uri_param="" proto=udp ;;
tcp) sipp_t=t1 uri_param=";transport=tcp" proto=tcp ;;
*)
	echo "bench-kamailio: TRANSPORT must be udp or tcp" >&2
	exit 2
	;;
esac
PATH=$PATH:/usr/sbin:/sbin
for c in sipp ss kamailio md5sum; do
	if ! command -v "$c" >/dev/null 2>&1; then
		echo "bench-kamailio: $c not found (kamailio: apt-get install -y --no-install-recommends kamailio; sipp: scripts/install-test-tools.sh)" >&2
		exit 1
	fi
done

SBC_IP=127.0.0.1
UAC_IP=127.0.0.2
PBX_IP=127.0.0.3
scen="$root/testdata/sipp"
cfg="$root/bench/kamailio/kamailio.cfg"
uac_user=service

# Expected run time plus generous slack bounds every process.
run_s=$(((CALLS + RATE - 1) / RATE + 60))

work=$(mktemp -d "${TMPDIR:-/tmp}/kamailio-bench.XXXXXX")
pids=()
bench_name=bench-kamailio
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"
trap bench_cleanup EXIT

# kam_pids: the Kamailio main process and all its descendants.
kam_pids() {
	local todo=("$kam_main") p c
	while [ "${#todo[@]}" -gt 0 ]; do
		p=${todo[0]}
		todo=("${todo[@]:1}")
		echo "$p"
		for c in $(pgrep -P "$p" || true); do
			todo+=("$c")
		done
	done
}

pbx_port=$(free_block)
sbc_port=$(free_block)
uac_port=$(free_block)

echo "== bench-kamailio: PBX (sipp UAS) on $PBX_IP:$pbx_port/$TRANSPORT"
start_pbx uas_answer.xml 10000

# Kamailio's defines; see the head of kamailio.cfg.
defs=(-A "SBC_LISTEN=$TRANSPORT:$SBC_IP:$sbc_port" -A "SBC_IP=\"$SBC_IP\""
	-A "PBX_IP=\"$PBX_IP\"" -A "PBX_URI=\"sip:$PBX_IP:$pbx_port$uri_param\""
	-A "CHILDREN=$CHILDREN")
if [ "$TRANSPORT" = tcp ]; then
	defs+=(-A "SBC_LISTEN_TCP=tcp:$SBC_IP:$sbc_port")
fi
[ "$DIALOG" = 1 ] && defs+=(-A WITH_DIALOG)
[ "$TOPOH" = 1 ] && defs+=(-A WITH_TOPOH)
if [ "$AUTH" = 1 ]; then
	# The users "file": a db_text table (plain text) of one user, alice,
	# with the MD5 HA1 of her password, loaded into an htable at start.
	mkdir -p "$work/users"
	ha1=$(printf '%s' "alice:$REALM:$auth_pass" | md5sum | cut -d' ' -f1)
	printf 'username(str) ha1(str)\nalice:%s\n' "$ha1" >"$work/users/users"
	defs+=(-A WITH_AUTH -A "USERS_DIR=\"text://$work/users\"")
fi
mkdir -p "$work/run"
if ! kamailio -c -f "$cfg" "${defs[@]}" >"$work/kamailio-check.log" 2>&1; then
	echo "bench-kamailio: kamailio rejects the configuration" >&2
	tail -n 20 "$work/kamailio-check.log" >&2
	exit 1
fi

echo "== bench-kamailio: kamailio on $SBC_IP:$sbc_port/$TRANSPORT"
timeout $((run_s + 60)) kamailio -f "$cfg" "${defs[@]}" -DD -E \
	-m "$SHM_MB" -M 16 -Y "$work/run" -w "$work" -P "$work/kamailio.pid" \
	>"$work/kamailio.stdout" 2>"$work/kamailio.stderr" &
kam_timeout_pid=$!
pids+=("$kam_timeout_pid")
if ! wait_listen "$proto" "$sbc_port"; then
	echo "bench-kamailio: kamailio did not start" >&2
	tail -n 50 "$work/kamailio.stderr" >&2
	exit 1
fi
sleep 1
# timeout(1) is the parent of Kamailio's main process.
kam_main=$(pgrep -P "$kam_timeout_pid" -x kamailio || true)
if [ -z "$kam_main" ]; then
	echo "bench-kamailio: kamailio main process not found" >&2
	tail -n 50 "$work/kamailio.stderr" >&2
	exit 1
fi
declare -A before
for p in $(kam_pids); do
	before[$p]=$(cpu_ticks "$p")
done
nprocs=${#before[@]}
load_before=$(cut -d' ' -f1 /proc/loadavg)

echo "== bench-kamailio: $CALLS calls at $RATE/s over $TRANSPORT (auth: $auth_label, dialog: $DIALOG, $nprocs kamailio processes, limit $LIMIT)"
auth_args=()
if [ "$AUTH" = 1 ]; then
	auth_args=(-au alice -ap "$auth_pass" -auth_uri "$uac_user@$SBC_IP:$sbc_port")
fi
t0=$(date +%s.%N)
uac_rc=0
# In the work directory: -trace_rtt writes <scenario>_<pid>_rtt.csv there.
(cd "$work" && exec timeout $((run_s + 30)) sipp "$SBC_IP:$sbc_port" -sf "$scen/$uac_scen" -t "$sipp_t" -s "$uac_user" \
	-i "$UAC_IP" -p "$uac_port" -ci "$UAC_IP" -cp $((uac_port + 1)) \
	-mi "$UAC_IP" -mp $((uac_port + 2)) \
	-r "$RATE" -m "$CALLS" -l "$LIMIT" -d 0 -nostdin \
	"${auth_args[@]}" \
	-timeout "${run_s}s" -recv_timeout 10000 \
	-watchdog_minor_maxtriggers 1000000 -watchdog_major_maxtriggers 1000000 \
	-trace_stat -stf "$work/uac_stat.csv" -fd 1 \
	-trace_err -error_file "$work/uac_errors.log" -trace_rtt -rtt_freq 1 \
	>"$work/uac.stdout" 2>"$work/uac.stderr") || uac_rc=$?
t1=$(date +%s.%N)

if ! kill -0 "$kam_main" 2>/dev/null; then
	echo "bench-kamailio: kamailio died during the run" >&2
	tail -n 50 "$work/kamailio.stderr" >&2
	exit 1
fi
ticks=0 pss_kb=0 nprocs_after=0
for p in $(kam_pids); do
	a=$(cpu_ticks "$p")
	ticks=$((ticks + a - ${before[$p]:-0}))
	k=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
	pss_kb=$((pss_kb + ${k:-0}))
	nprocs_after=$((nprocs_after + 1))
done
load_after=$(cut -d' ' -f1 /proc/loadavg)
clk=$(getconf CLK_TCK)

uas_sipp=$(pgrep -P "$uas_pid" -x sipp || true)
[ -n "$uas_sipp" ] && kill -USR1 "$uas_sipp" 2>/dev/null || true
for _ in $(seq 1 50); do
	kill -0 "$uas_pid" 2>/dev/null || break
	sleep 0.2
done

sipp_figures
if [ "$created" = 0 ] || [ "$created" = "?" ]; then
	echo "bench-kamailio: the UAC placed no calls (exit $uac_rc)" >&2
	tail -n 20 "$work/uac.stderr" >&2
	exit 1
fi
elapsed=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
cps=$(awk -v n="$ok" -v s="$elapsed" 'BEGIN { printf "%.1f", (s > 0 ? n / s : 0) }')
cpu_s=$(awk -v d="$ticks" -v c="$clk" 'BEGIN { printf "%.2f", d / c }')
cpu_per_k=$(awk -v s="$cpu_s" -v n="$created" 'BEGIN { printf "%.3f", (n > 0 ? s * 1000 / n : 0) }')
pss_mib=$(awk -v k="$pss_kb" 'BEGIN { printf "%.1f", k / 1024 }')
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
kam_version=$(kamailio -v 2>/dev/null | awk '/^version:/ { print $3; exit }')
machine=$(machine)
setup_latency
write_summary pss_mib "$pss_mib"

row="| $now | $kam_version | $TRANSPORT | $auth_label | $DIALOG | $TOPOH | $CHILDREN ($nprocs_after procs) | $RATE/s | $created of $CALLS | $ok | $failed | $uas_ok (sipp: $uas_failed failed) | $elapsed s | $cps/s | $cpu_s s | $cpu_per_k s | $pss_mib MiB | $p50 / $p99 ms | $uac_rc | $machine | $load_before / $load_after |"
header="| time (UTC) | kamailio | transport | auth | dialog | topoh | children | offered | calls placed | successful | failed | completed at the PBX | elapsed | achieved | kamailio CPU | CPU per 1,000 calls | PSS at end | setup p50 / p99 | sipp exit | machine | load 1 min before / after |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"

if [ "${BENCH_RESULTS:-}" = - ]; then
	printf '%s\n%s\n' "$header" "$row"
	exit 0
fi
mkdir -p bench/results
out=${BENCH_RESULTS:-"bench/results/kamailio-$(date -u +%Y-%m-%d).md"}
if [ ! -f "$out" ]; then
	{
		printf '# Kamailio bench results, %s\n\n' "$(date -u +%Y-%m-%d)"
		printf 'Written by scripts/bench-kamailio.sh (bench/kamailio/kamailio.cfg); one row per run.\n'
		printf 'CPU is utime+stime of all Kamailio processes over the run.\n\n'
		printf '%s\n' "$header"
	} >"$out"
fi
printf '%s\n' "$row" >>"$out"
echo
printf '%s\n%s\n' "$header" "$row"
echo
echo "bench-kamailio: appended to $out"
