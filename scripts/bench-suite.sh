#!/usr/bin/env bash
# `make bench`: every figure users compare, in one bounded run on the
# loopback network, as one Markdown report (stdout and
# bench/results/<UTC date>.md):
#
#   - the highest call rate with 0 failed calls (sipp INVITE-200-ACK-BYE,
#     rates stepped by STEP from START until a step fails), and sipwall's
#     CPU per 1,000 calls and the setup latency p50/p99 at half that rate,
#     for four chains: plain relay, + topology hiding (media relay and
#     outbound guard), + digest auth (MD5), + OPA policy and fraud rules
#     (the full chain; bench/rules.yaml);
#   - the same runs against Kamailio (bench/kamailio/kamailio.cfg) when it is
#     installed, and the ratio sipwall/Kamailio per row;
#   - authenticated REGISTER/s for 10,000 users (SHA-256, bench/regload);
#   - a long run of the full chain at 80 % of its highest rate (10
#     minutes): failed calls, RSS and goroutines over the run;
#   - memory per concurrent call at 10,000 concurrent calls (RSS growth /
#     calls up), full chain with media relay and without it;
#   - media relay packets/s per core (scripts/bench-relay.sh);
#   - XDP drop rate (scripts/bench-xdp.sh, root only);
#   - a CPU and allocation profile of the full chain (admin.pprof), its
#     top entries in the report.
#
# Each part is scripts/bench.sh (or bench-kamailio.sh, ...) with the
# settings below; their own tables go to the work directory's log.
#
# Environment:
#   START=150 STEP=150 MAX_RATE=3000   rate search (calls/s)
#   STEP_SECONDS=15                    length of each search step (short
#                                      steps overstate the sustained rate:
#                                      queues absorb a burst)
#   HALF_SECONDS=20                    length of the half-rate runs
#   RATIO_ROUNDS=3                     full chain against Kamailio: this many
#                                      alternated half-rate runs of each, the
#                                      CPU ratio of their medians (one run
#                                      moves by ±10 % on a shared machine)
#   CHAINS="plain hiding auth full"
#   KAMAILIO=auto                      auto (if installed), 0 or 1
#   KAM_CHILDREN=1                     Kamailio workers (more reorder
#                                      back-to-back messages: failed calls)
#   REG_RATES="500 1000 1500"          REGISTER rates tried, 10,000 users
#   MEM_CALLS=10000 MEM_RATE=250       concurrency run
#   MEM_MEDIA_CALLS                    the same with media relay (default:
#                                      the descriptor limit / 5, at most
#                                      MEM_CALLS)
#   PARTS="calls soak register memory backend relay xdp policy"
#   SOAK_SECONDS=600 SOAK_SHARE=80     the long run: its length, and its rate
#                                      in % of the full chain's highest rate
#                                      (from the calls part; SOAK_RATE sets
#                                      the rate when that part is not run)
#   BACKEND_RATE=200                   full chain, embedded store vs Redis
#   RELAY_PPS="10000 40000 80000"         media relay rates (100 calls)
#   XDP_SETUPS="xdp-native userspace iptables", XDP_MODES="single rotating"
#                                      scripts/bench-xdp.sh SETUPS, MODES
#   BENCH_KEEP=1                       keep the work directory
#
# Every child run is bounded by its own deadlines; this script adds none of
# its own processes besides them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

START=${START:-150}
STEP=${STEP:-150}
MAX_RATE=${MAX_RATE:-3000}
STEP_SECONDS=${STEP_SECONDS:-15}
HALF_SECONDS=${HALF_SECONDS:-20}
RATIO_ROUNDS=${RATIO_ROUNDS:-3}
CHAINS=${CHAINS:-plain hiding auth full}
KAMAILIO=${KAMAILIO:-auto}
KAM_CHILDREN=${KAM_CHILDREN:-1}
REG_RATES=${REG_RATES:-500 1000 1500}
MEM_CALLS=${MEM_CALLS:-10000}
# With the media relay a call holds four sockets (and released pairs stay
# bound for reuse): size it to the descriptors the machine allows.
MEM_MEDIA_CALLS=${MEM_MEDIA_CALLS:-$(($(ulimit -Hn) / 5 < MEM_CALLS ? $(ulimit -Hn) / 5 : MEM_CALLS))}
MEM_RATE=${MEM_RATE:-250}
PARTS=${PARTS:-calls soak register memory backend relay xdp policy}
SOAK_SECONDS=${SOAK_SECONDS:-600}
SOAK_SHARE=${SOAK_SHARE:-80}
BACKEND_RATE=${BACKEND_RATE:-200}

work=$(mktemp -d "${TMPDIR:-/tmp}/sipwall-suite.XXXXXX")
pids=()
bench_name=bench-suite
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"
trap bench_cleanup EXIT
log="$work/suite.log"

if [ "$KAMAILIO" = auto ]; then
	if command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ]; then
		KAMAILIO=1
	else
		KAMAILIO=0
	fi
fi
PATH=$PATH:/usr/sbin:/sbin

has_part() { [[ " $PARTS " == *" $1 "* ]]; }

version=${BENCH_VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}
echo "== bench-suite: building sipwall ($version)"
go build -ldflags "-X 'main.version=$version'" -o "$work/sipwall" ./cmd/sipwall
export BENCH_BIN="$work/sipwall" BENCH_VERSION="$version" BENCH_RESULTS=-

# val FILE KEY: a figure of a summary file ("?" when absent).
val() { awk -v k="$2" '$1 == k { v = $2 } END { print (v != "" ? v : "?") }' "$1" 2>/dev/null || echo "?"; }

# passed FILE RATE: the run had 0 failures, every call completed at both
# ends, and reached 95 % of the offered rate.
passed() {
	local f=$1 rate=$2
	[ -s "$f" ] || return 1
	awk -v c="$(val "$f" created)" -v o="$(val "$f" ok)" -v x="$(val "$f" failed)" \
		-v u="$(val "$f" uas_ok)" -v cps="$(val "$f" cps)" -v r="$rate" 'BEGIN {
		exit !(x == 0 && o == c && o > 0 && (u == "?" || u == o) && cps >= 0.95 * r) }'
}

# run_target TARGET CHAIN RATE CALLS SUMMARY [ENV...]: one run.
run_target() {
	local target=$1 chain=$2 rate=$3 calls=$4 sum=$5
	shift 5
	rm -f "$sum"
	if [ "$target" = sipwall ]; then
		env "$@" CHAIN="$chain" RATE="$rate" CALLS="$calls" BENCH_SUMMARY="$sum" \
			bash scripts/bench.sh >>"$log" 2>&1 || true
	else
		local a=0 t=1
		case "$chain" in
		plain) t=0 ;;
		hiding) ;;
		auth | full) a=1 ;;
		esac
		env "$@" AUTH=$a TOPOH=$t CHILDREN="$KAM_CHILDREN" RATE="$rate" CALLS="$calls" \
			BENCH_SUMMARY="$sum" bash scripts/bench-kamailio.sh >>"$log" 2>&1 || true
	fi
}

# search TARGET CHAIN: the highest rate that passed (0 if none), rates
# stepping from START by STEP; after the first failure one half step above
# the last pass is tried.
search() {
	local target=$1 chain=$2 rate=$START best=0 sum
	while [ "$rate" -le "$MAX_RATE" ]; do
		sum="$work/$target-$chain-$rate.sum"
		run_target "$target" "$chain" "$rate" $((rate * STEP_SECONDS)) "$sum"
		if passed "$sum" "$rate"; then
			echo "   $target $chain: $rate/s passed (cpu $(val "$sum" cpu_per_k) s/1k)" >&2
			best=$rate
			rate=$((rate + STEP))
		else
			echo "   $target $chain: $rate/s failed (ok $(val "$sum" ok) of $(val "$sum" created), $(val "$sum" cps)/s)" >&2
			break
		fi
	done
	if [ "$best" -gt 0 ] && [ "$rate" -le "$MAX_RATE" ] && [ $((STEP / 2)) -ge 10 ]; then
		rate=$((best + STEP / 2))
		sum="$work/$target-$chain-$rate.sum"
		run_target "$target" "$chain" "$rate" $((rate * STEP_SECONDS)) "$sum"
		if passed "$sum" "$rate"; then
			echo "   $target $chain: $rate/s passed" >&2
			best=$rate
		else
			echo "   $target $chain: $rate/s failed" >&2
		fi
	fi
	echo "$best"
}

# last_table FILE: the last Markdown table of FILE (the scripts print their
# rows as they go, then the whole table).
last_table() {
	awk '/^\|/ { if (!in_t) buf = ""; in_t = 1; buf = buf $0 "\n"; next } { in_t = 0 } END { printf "%s", buf }' "$1"
}

ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "–" }'
}

# median NUMBER...: the median of the numeric arguments ("–" if none).
median() {
	printf '%s\n' "$@" | grep -E '^[0-9]+([.][0-9]+)?$' | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) print "–"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

declare -A label=([plain]="plain relay (B2BUA)" [hiding]="+ topology hiding (media relay, guard)"
	[auth]="+ digest auth (MD5)" [full]="+ OPA policy + fraud rules (full chain)")
rows=()
profile_dir="$work/profile"
t_start=$(date +%s)
load_start=$(cut -d' ' -f1 /proc/loadavg)

if has_part calls; then
	for chain in $CHAINS; do
		echo "== bench-suite: $chain: rate search (sipwall)"
		sw_max=$(search sipwall "$chain")
		[ "$chain" = full ] && full_max=$sw_max
		half=$((sw_max / 2))
		[ "$half" -lt 10 ] && half=10
		echo "== bench-suite: $chain: $half/s for ${HALF_SECONDS}s (sipwall)"
		extra=()
		[ "$chain" = full ] && extra=(PROFILE="$profile_dir" PROFILE_SECONDS=$((HALF_SECONDS > 14 ? 10 : HALF_SECONDS - 4)))
		sw_half="$work/sipwall-$chain-half.sum"
		run_target sipwall "$chain" "$half" $((half * HALF_SECONDS)) "$sw_half" "${extra[@]}"
		km_max="–" km_half=/dev/null
		if [ "$KAMAILIO" = 1 ] && [ "$chain" = full ] && [ -n "${km_auth_max:-}" ]; then
			# Kamailio's full chain is its auth configuration: same search.
			km_max=$km_auth_max
			echo "== bench-suite: $chain: $half/s for ${HALF_SECONDS}s (Kamailio)"
			km_half="$work/kamailio-$chain-half.sum"
			run_target kamailio "$chain" "$half" $((half * HALF_SECONDS)) "$km_half"
		elif [ "$KAMAILIO" = 1 ]; then
			echo "== bench-suite: $chain: rate search (Kamailio)"
			km_max=$(search kamailio "$chain")
			[ "$chain" = auth ] && km_auth_max=$km_max
			echo "== bench-suite: $chain: $half/s for ${HALF_SECONDS}s (Kamailio)"
			km_half="$work/kamailio-$chain-half.sum"
			run_target kamailio "$chain" "$half" $((half * HALF_SECONDS)) "$km_half"
		fi
		failed_half="$(val "$sw_half" failed)"
		rows+=("| max calls/s with 0 failures: ${label[$chain]} | $sw_max | $km_max | $(ratio "$sw_max" "$km_max") |")
		rows+=("| CPU-s per 1,000 calls at $half/s: ${label[$chain]} | $(val "$sw_half" cpu_per_k) ($failed_half failed) | $(val "$km_half" cpu_per_k) ($(val "$km_half" failed) failed) | $(ratio "$(val "$sw_half" cpu_per_k)" "$(val "$km_half" cpu_per_k)") |")
		rows+=("| setup latency p50 / p99 at $half/s (50 % of max): ${label[$chain]} | $(val "$sw_half" p50_ms) / $(val "$sw_half" p99_ms) ms | $(val "$km_half" p50_ms) / $(val "$km_half" p99_ms) ms | $(ratio "$(val "$sw_half" p99_ms)" "$(val "$km_half" p99_ms)") (p99) |")
		if [ "$KAMAILIO" = 1 ] && [ "$chain" = full ] && [ "$RATIO_ROUNDS" -gt 1 ]; then
			# The half-rate pair above is the first round; the rest
			# alternate the same way.
			sw_runs=("$(val "$sw_half" cpu_per_k)") km_runs=("$(val "$km_half" cpu_per_k)")
			for ((round = 2; round <= RATIO_ROUNDS; round++)); do
				echo "== bench-suite: $chain: $half/s, CPU round $round of $RATIO_ROUNDS (sipwall, Kamailio)"
				s="$work/sipwall-$chain-round$round.sum" k="$work/kamailio-$chain-round$round.sum"
				run_target sipwall "$chain" "$half" $((half * HALF_SECONDS)) "$s"
				run_target kamailio "$chain" "$half" $((half * HALF_SECONDS)) "$k"
				sw_runs+=("$(val "$s" cpu_per_k)")
				km_runs+=("$(val "$k" cpu_per_k)")
			done
			sw_med=$(median "${sw_runs[@]}") km_med=$(median "${km_runs[@]}")
			rows+=("| CPU-s per 1,000 calls at $half/s, median of $RATIO_ROUNDS alternated runs (${sw_runs[*]} / ${km_runs[*]}): ${label[$chain]} | $sw_med | $km_med | $(ratio "$sw_med" "$km_med") |")
		fi
	done
fi

if has_part soak; then
	soak_rate=${SOAK_RATE:-}
	if [ -z "$soak_rate" ] && [ "${full_max:-0}" -gt 0 ]; then
		soak_rate=$((full_max * SOAK_SHARE / 100))
	fi
	if [ "${soak_rate:-0}" -gt 0 ]; then
		echo "== bench-suite: full chain at $soak_rate/s for ${SOAK_SECONDS}s"
		sum="$work/soak.sum"
		run_target sipwall full "$soak_rate" $((soak_rate * SOAK_SECONDS)) "$sum" SAMPLE_EVERY=10
		rows+=("| ${SOAK_SECONDS} s at $soak_rate/s (full chain${full_max:+, $SOAK_SHARE % of its $full_max/s}): failed calls; RSS / goroutines after the warm-up (the first minute), range (change to the end); CPU-s per 1,000 calls; setup p99 | $(val "$sum" failed) of $(val "$sum" created); $(val "$sum" rss_warm_min_mib)–$(val "$sum" rss_warm_max_mib) MiB ($(val "$sum" rss_change_mib)) / $(val "$sum" goroutines_min)–$(val "$sum" goroutines_max) ($(val "$sum" goroutines_change)); $(val "$sum" cpu_per_k); $(val "$sum" p99_ms) ms | – | – |")
	else
		rows+=("| long run of the full chain | not run: no highest rate of the full chain (the calls part with CHAINS including full) and no SOAK_RATE | – | – |")
	fi
fi

if has_part register; then
	echo "== bench-suite: authenticated REGISTER, 10,000 users"
	best=0 best_sum=""
	for r in $REG_RATES; do
		sum="$work/register-$r.sum"
		rm -f "$sum"
		MODE=register AUTH=1 RATE="$r" CALLS=10000 BENCH_SUMMARY="$sum" bash scripts/bench.sh >>"$log" 2>&1 || true
		if passed "$sum" "$r"; then
			echo "   register: $r/s passed" >&2
			best=$r best_sum=$sum
		else
			echo "   register: $r/s failed (ok $(val "$sum" ok) of $(val "$sum" created))" >&2
			break
		fi
	done
	if [ -n "$best_sum" ]; then
		rows+=("| authenticated REGISTER/s, 10,000 users, SHA-256, 0 failures | $(val "$best_sum" cps) (offered $best/s; $(val "$best_sum" cpu_per_k) CPU-s per 1,000; round p50 / p99 $(val "$best_sum" auth_p50_ms) / $(val "$best_sum" auth_p99_ms) ms) | – | – |")
	else
		rows+=("| authenticated REGISTER/s, 10,000 users, SHA-256 | none of $REG_RATES/s passed | – | – |")
	fi
fi

if has_part memory; then
	# Every call is up MEM_CALLS/MEM_RATE seconds after the start. The
	# sample is taken 40 s after that: the transactions that set the calls
	# up have ended (64*T1 = 32 s after the 2xx), so what is left is what a
	# long call costs. Calls last until after the sample.
	for chain in full plain; do
		calls=$MEM_CALLS
		[ "$chain" = full ] && calls=$MEM_MEDIA_CALLS
		ramp=$(((calls + MEM_RATE - 1) / MEM_RATE))
		mem_at=$((ramp + 40))
		hold_ms=$(((ramp + 50) * 1000))
		echo "== bench-suite: $calls concurrent calls ($chain)"
		sum="$work/memory-$chain.sum"
		run_target sipwall "$chain" "$MEM_RATE" "$calls" "$sum" HOLD_MS="$hold_ms" MEM_AT="$mem_at"
		what="full chain, media relay"
		[ "$chain" = plain ] && what="plain relay, no media relay"
		rows+=("| memory per concurrent call, $(val "$sum" calls_at) calls up ($what) | $(val "$sum" mem_per_call_kib) KiB RSS, $(val "$sum" heap_per_call_kib) KiB Go heap in use, $(val "$sum" live_per_call_kib) KiB live after a GC ($(val "$sum" goroutines) goroutines; $(val "$sum" failed) failed) | – | – |")
	done
fi

if has_part backend && command -v redis-server >/dev/null 2>&1; then
	for be in embedded redis; do
		echo "== bench-suite: full chain at $BACKEND_RATE/s, store backend $be"
		run_target sipwall full "$BACKEND_RATE" $((BACKEND_RATE * HALF_SECONDS)) "$work/backend-$be.sum" BACKEND="$be"
	done
	e="$work/backend-embedded.sum" r="$work/backend-redis.sum"
	rows+=("| full chain at $BACKEND_RATE/s, store.backend redis vs embedded: sipwall CPU-s per 1,000 calls | $(val "$r" cpu_per_k) (+ redis-server $(val "$r" redis_cpu_per_k)) vs $(val "$e" cpu_per_k); failed $(val "$r" failed) / $(val "$e" failed) | – | $(ratio "$(val "$r" cpu_per_k)" "$(val "$e" cpu_per_k)") |")
	# What the shared store adds: sipwall's and redis-server's CPU
	# together against the embedded store's (goal: under 25 %).
	both=$(awk -v a="$(val "$r" cpu_per_k)" -v b="$(val "$r" redis_cpu_per_k)" 'BEGIN { if (a + 0 > 0) printf "%.3f", a + b; else print "?" }')
	added=$(awk -v a="$both" -v b="$(val "$e" cpu_per_k)" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%+.0f %%", (a / b - 1) * 100; else print "?" }')
	rows+=("| full chain at $BACKEND_RATE/s, CPU Redis adds (sipwall + redis-server vs embedded; goal < 25 %) | $both vs $(val "$e" cpu_per_k) CPU-s per 1,000 calls: $added | – | $(ratio "$both" "$(val "$e" cpu_per_k)") |")
	rows+=("| full chain at $BACKEND_RATE/s, setup latency p50 / p99, redis vs embedded (goal p99 < 20 ms) | $(val "$r" p50_ms) / $(val "$r" p99_ms) ms vs $(val "$e" p50_ms) / $(val "$e" p99_ms) ms | – | – |")
fi

relay_table=""
if has_part relay && [ -f scripts/bench-relay.sh ]; then
	echo "== bench-suite: media relay"
	relay_out="$work/relay.md"
	PPS_LIST="${RELAY_PPS:-10000 40000 80000}" bash scripts/bench-relay.sh >"$relay_out" 2>>"$log" || true
	relay_table=$(last_table "$relay_out")
	# relay_ns_per_pkt userspace=… fastpath=… (and the differential), per rate.
	relay_lines=$(grep -E '^relay_(extra_)?ns_per_pkt ' "$relay_out" || true)
	if [ -n "$relay_lines" ]; then
		relay_table=$relay_table$'\n\n```\n'$relay_lines$'\n```'
	fi
	# SRTP terminated by the relay against plain relaying: the CPU of the
	# hot path per packet, each way (sbc/media BenchmarkRelayOneSRTP).
	srtp_lines=$(go test -run XXX -bench BenchmarkRelayOneSRTP -benchtime 500000x ./sbc/media/ 2>>"$log" | grep -E '^BenchmarkRelayOneSRTP' || true)
	if [ -n "$srtp_lines" ]; then
		relay_table=$relay_table$'\n\nSRTP termination (SDES, AES_CM_128_HMAC_SHA1_80) against plain, per packet, without the sockets:\n\n```\n'$srtp_lines$'\n```'
	fi
fi

# The policy decision (default bundle, 30,000 decisions) under the two
# collector settings sipwall runs with: GOGC 100 with all processors, 200
# on one (sbc/procs).
if has_part policy; then
	echo "== bench-suite: policy decision"
	for gogc in 100 200; do
		line=$(GOGC=$gogc go test -run XXX -bench 'BenchmarkDecideDefault$' -benchtime 30000x ./policy/ 2>>"$log" |
			grep -E '^BenchmarkDecideDefault' || true)
		p50=$(awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "p50-ns") print $i / 1000 }' <<<"$line")
		p99=$(awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "p99-ns") print $i / 1000 }' <<<"$line")
		rows+=("| policy decision, default bundle, GOGC=$gogc: p50 / p99 (goal p99 < 50 µs) | ${p50:-?} / ${p99:-?} µs | – | – |")
	done
fi

xdp_table=""
if has_part xdp; then
	if [ "$(id -u)" = 0 ]; then
		echo "== bench-suite: XDP prefilter flood"
		xdp_out="$work/xdp.md"
		SETUPS="${XDP_SETUPS:-xdp-native userspace iptables}" MODES="${XDP_MODES:-single rotating}" \
			bash scripts/bench-xdp.sh >"$xdp_out" 2>>"$log" || true
		# Both tables (filters; the legitimate phone per stage) and the
		# goal lines: legitimate calls completed / offered per setup and
		# flood shape.
		xdp_table=$(awk '/^\| setup/ && n++ { print "" } /^Goals/ { print "" }
			/^\|/ { t++ } t && /^(\||- |Goals|completed)/ { print }' "$xdp_out")
	else
		xdp_table="(skipped: scripts/bench-xdp.sh needs root for network namespaces and XDP)"
	fi
fi

profile_md=""
if [ -s "$profile_dir/cpu-top.txt" ]; then
	profile_md=$(
		echo '### CPU profile, full chain (top 25 by own time)'
		echo
		echo '```'
		sed -n '/flat%/,$p' "$profile_dir/cpu-top.txt"
		echo '```'
		echo
		echo '### CPU profile, full chain (sipwall functions by cumulative time)'
		echo
		echo '```'
		go tool pprof -top -cum -nodecount=200 "$profile_dir/sipwall" "$profile_dir/cpu.pprof" 2>/dev/null |
			grep -E 'flat%|sipwall/' | head -n 26
		echo '```'
		if [ -s "$profile_dir/allocs-top.txt" ]; then
			echo
			echo '### Allocations, full chain (top 25 by bytes)'
			echo
			echo '```'
			sed -n '/flat%/,$p' "$profile_dir/allocs-top.txt"
			echo '```'
		fi
	)
fi

t_end=$(date +%s)
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
kam_version="–"
[ "$KAMAILIO" = 1 ] && kam_version=$(kamailio -v 2>/dev/null | awk '/^version:/ { print $3; exit }')
report=$(
	cat <<MD
| measure | sipwall | Kamailio | sipwall / Kamailio |
| --- | --- | --- | --- |
$(printf '%s\n' "${rows[@]}")

sipwall $version, Kamailio $kam_version (bench/kamailio/kamailio.cfg, $KAM_CHILDREN worker(s)); $(machine);
UDP on the loopback network, sipp UAC and UAS on the same CPUs; finished $now, $((t_end - t_start)) s;
load average (1 min) at the start / end: $load_start / $(cut -d' ' -f1 /proc/loadavg).
Rate search: from $START/s by $STEP/s, ${STEP_SECONDS} s per step, a step passes with 0 failed calls,
every call completed at the PBX and 95 % of the offered rate reached; half-rate runs last ${HALF_SECONDS} s.
The Kamailio "full chain" row is its auth configuration: it has no policy engine or fraud rules.
MD
)
if [ -n "$relay_table" ]; then
	report=$report$'\n\n### Media relay (scripts/bench-relay.sh)\n\n'$relay_table
fi
if [ -n "$xdp_table" ]; then
	report=$report$'\n\n### XDP prefilter (scripts/bench-xdp.sh)\n\n'$xdp_table
fi
if [ -n "$profile_md" ]; then
	report=$report$'\n\n'$profile_md
fi

echo
echo "$report"
mkdir -p bench/results
out="bench/results/$(date -u +%Y-%m-%d).md"
if [ ! -f "$out" ]; then
	printf '# sipwall bench results, %s\n\nWritten by scripts/bench-suite.sh (make bench) and scripts/bench.sh; one section per run.\n' "$(date -u +%Y-%m-%d)" >"$out"
fi
printf '\n## make bench, %s\n\n%s\n' "$now" "$report" >>"$out"
echo
echo "bench-suite: appended to $out (run log: $log, kept with BENCH_KEEP=1)"
