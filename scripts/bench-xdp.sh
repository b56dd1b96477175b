#!/usr/bin/env bash
# Flood benchmark of the XDP prefilter (package bpf) against the other ways
# of applying the same per-source limit, on a veth pair between two network
# namespaces created for the run (nothing leaves them):
#
#   ns gen: xdpflood flood (SIP INVITE flood) + sipp UAC (legitimate calls)
#      | veth
#   ns sut: filter under test -> xdpflood recv (the SIP listener on
#           SUT_IP:5060; relays the legitimate source to a sipp UAS; in
#           the XDP setups it also holds the prefilter, as sipwall does)
#
# Setups (SETUPS):
#   xdp-native   bpf.Open with the sut veth (in the listener's process):
#                the prefilter in the veth's native XDP path
#   xdp-generic  the same program attached with XDP_FLAGS_SKB_MODE
#                (link.XDPGenericMode): runs after the skb is built
#   iptables     no XDP; an iptables (nf_tables backend) raw PREROUTING
#                rule: a hashlimit per source address (same rate and burst)
#                and a global hashlimit of CAP packets/s (no
#                --hashlimit-mode: one bucket for all sources), both on the
#                one ACCEPT rule, then DROP; the legitimate source has
#                rules of its own before them (see LEGIT)
#   userspace    no kernel filter; the listener judges every datagram with
#                the Go model (bpf.NewModel + Admit), as sipwall does when
#                XDP is unavailable
# Flood modes (MODES): single (one source address) and rotating (ROTATE
# sources cycling, the generator rewrites the IPv4 source of every frame).
#
# The flood is sent with BPF_PROG_RUN in live-frames mode (XDP_TX out of
# the generator's veth, so frames arrive in the sut veth's NAPI receive
# path as from a NIC). A veth accepts XDP-transmitted frames only when its
# NAPI is on: the sut veth has GRO on (ethtool -K) for every setup, and
# threaded NAPI, whose kernel thread is pinned to SUT_CPU. The generator
# and the sipp UAC run on GEN_CPU; the listener (which holds the XDP
# prefilter in the XDP setups) and the sipp UAS on SUT_CPU.
#
# Per run: offered pps (frames the generator's program ran), pps that
# reached the sut veth (its rx_packets) and that its ring refused (its
# rx_dropped: the veth ring was full, the "NIC" dropped them), pps dropped
# and passed by the filter (XDP counters, iptables rule counters, or the
# model's decisions), pps lost at the listener's socket (UDP RcvbufErrors),
# the sut CPU (run time of the NAPI thread, the listener and the UAS,
# from /proc/PID/schedstat, as % of one CPU over the flood) and the legitimate calls completed (sipp UAC statistics). The
# legitimate source is a verified phone or allow-listed (LEGIT). The table
# goes to stdout and is appended to bench/results/xdp-<UTC date>.md.
#
# Environment:
#   SETUPS="xdp-native xdp-generic iptables userspace"
#   FLOOD_PPS=50000    flood frames/s, the same for every setup: the
#                      generator's program spaces the frames evenly
#                      (xdpflood flood -pps; after a stall of the generator
#                      at most 128 back to back), so the sut veth's
#                      256-frame ring is not what drops the flood (a flood
#                      beyond the "NIC" ring tests the ring, not the
#                      filter). The offered column says what was sent (less
#                      when the generator's CPU is taken by other work).
#                      0: unpaced, as fast as the generator runs (the ring
#                      then refuses most frames, legitimate ones included).
#   MODES="single rotating"
#   LEGIT=verified     how the legitimate source (the sipp UAC) is known:
#                      verified  a phone that authenticated: not allow-
#                                listed, judged like every source, but the
#                                listener (xdpflood recv -verify answer)
#                                marks it verified with the bpf package's
#                                Verify (Model.Verify, Filter.Verify: what
#                                sipwall calls after a successful
#                                authentication, for verified_ttl 1h) when
#                                the first 2xx answer to it comes back, so
#                                it gets the VERIFIED_SHARE of the cap that
#                                the flood cannot take. iptables has no
#                                share: the source gets its own per-source
#                                hashlimit rule (same budget) before the
#                                global one, i.e. it is exempt from the cap
#                                (an ipset of verified addresses would do
#                                that).
#                      allow     allow-listed (Config.Allow; iptables: an
#                                ACCEPT rule first): passes every check
#   VERIFY=answer      LEGIT=verified: when the listener marks the source
#                      verified: answer (the first 2xx answer to it: its
#                      first call stands in for its first authenticated
#                      request, made during the flood) or start (before
#                      the flood: a phone that registered before it)
#   CALLS=200 RATE=20  legitimate calls and calls/s (sipp -sn uac)
#   DURATION           flood seconds (default CALLS/RATE+1: the calls
#                      overlap the flood)
#   LIMIT_RATE LIMIT_BURST   per-source budget of every class, packets/s
#                      and burst. LEGIT=verified: 200 and 400, sipwall's
#                      default for the request class
#                      (prefilter.rates.request), the only class sent to
#                      the port here (flood INVITEs; the UAC's INVITE, ACK,
#                      BYE: 3 × RATE requests/s plus retransmissions, well
#                      under it at RATE ≤ 60). LEGIT=allow: 1 and 2 (so
#                      that each source of an unpaced rotating flood,
#                      ~10 frames/s, is mostly over it; a paced one at
#                      50,000/s sends 0.5/s per source)
#   CAP=20000          requests/s per CPU from all sources together (the
#                      prefilter's class cap, Config.Cap[ClassRequest];
#                      sipwall's default); 0: no cap. The sut judges every
#                      packet on SUT_CPU, so per CPU = global here.
#   VERIFIED_SHARE     percent of CAP kept for verified sources
#                      (Config.VerifiedShare): LEGIT=verified 20, sipwall's
#                      default prefilter.verified_share; LEGIT=allow 0
#   ROTATE=100000      sources in the rotating mode
#   GEN_CPU=0 SUT_CPU=1
#   BENCH_KEEP=1       keep the work directory (logs) after the run
#
# Needs root. Every process has a deadline (its own -duration or -timeout
# plus timeout(1)); a watchdog ends the whole script after
# runs × (DURATION + 20) + 60 s, at most 600 s. Only the
# processes this script started are killed, by PID; the namespaces are
# deleted on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bench_name=bench-xdp
# stat_col, udp_rcvbuf_errors, machine (the cleanup here is its own).
# shellcheck source=scripts/bench-lib.sh
. "$root/scripts/bench-lib.sh"

if [ "$(id -u)" != 0 ]; then
	echo "bench-xdp: needs root (network namespaces, XDP, iptables); run: sudo make bench-xdp" >&2
	exit 1
fi
PATH=$PATH:/usr/sbin:/sbin

SETUPS=${SETUPS:-xdp-native xdp-generic iptables userspace}
MODES=${MODES:-single rotating}
LEGIT=${LEGIT:-verified}
VERIFY=${VERIFY:-answer}
CALLS=${CALLS:-200}
FLOOD_PPS=${FLOOD_PPS:-50000}
RATE=${RATE:-20}
DURATION=${DURATION:-$(((CALLS + RATE - 1) / RATE + 1))}
case "$LEGIT" in
verified)
	LIMIT_RATE=${LIMIT_RATE:-200}
	LIMIT_BURST=${LIMIT_BURST:-400}
	VERIFIED_SHARE=${VERIFIED_SHARE:-20}
	;;
allow)
	LIMIT_RATE=${LIMIT_RATE:-1}
	LIMIT_BURST=${LIMIT_BURST:-2}
	VERIFIED_SHARE=${VERIFIED_SHARE:-0}
	;;
*)
	echo "bench-xdp: LEGIT=$LEGIT: verified or allow" >&2
	exit 2
	;;
esac
ROTATE=${ROTATE:-100000}
CAP=${CAP:-20000}
GEN_CPU=${GEN_CPU:-0}
SUT_CPU=${SUT_CPU:-1}
for s in $SETUPS; do
	case "$s" in
	xdp-native | xdp-generic | iptables | userspace) ;;
	*)
		echo "bench-xdp: unknown setup $s" >&2
		exit 2
		;;
	esac
done
for m in $MODES; do
	case "$m" in
	single | rotating) ;;
	*)
		echo "bench-xdp: unknown mode $m" >&2
		exit 2
		;;
	esac
done
if ! [[ "$FLOOD_PPS" =~ ^[0-9]+$ ]]; then
	echo "bench-xdp: FLOOD_PPS=$FLOOD_PPS: not a non-negative integer" >&2
	exit 2
fi
if ! [[ "$CAP" =~ ^[0-9]+$ ]]; then
	echo "bench-xdp: CAP=$CAP: not a non-negative integer" >&2
	exit 2
fi
case "$VERIFY" in
answer | start) ;;
*)
	echo "bench-xdp: VERIFY=$VERIFY: answer or start" >&2
	exit 2
	;;
esac
if ! [[ "$VERIFIED_SHARE" =~ ^[0-9]+$ ]] || [ "$VERIFIED_SHARE" -gt 100 ]; then
	echo "bench-xdp: VERIFIED_SHARE=$VERIFIED_SHARE: not a percentage" >&2
	exit 2
fi
runs=$(($(echo $SETUPS | wc -w) * $(echo $MODES | wc -w)))
limit=$((runs * (DURATION + 20) + 60))
if [ "$limit" -gt 600 ]; then
	echo "bench-xdp: $runs runs of ${DURATION} s do not fit in 600 s; lower DURATION or CALLS" >&2
	exit 2
fi
if [ "$(nproc)" -lt 2 ] || [ "$GEN_CPU" = "$SUT_CPU" ]; then
	echo "bench-xdp: needs two CPUs (GEN_CPU and SUT_CPU differ)" >&2
	exit 1
fi

# Debian packages of the commands used; installed only when missing.
# iptables in every setup: a rule without target counts the legitimate
# source's datagrams that reach the IP stack (after XDP).
declare -A pkg=([ip]=iproute2 [sipp]=sip-tester [ethtool]=ethtool [taskset]=util-linux [timeout]=coreutils [iptables]=iptables)
missing=()
for c in "${!pkg[@]}"; do
	command -v "$c" >/dev/null 2>&1 || missing+=("${pkg[$c]}")
done
if [ "${#missing[@]}" -gt 0 ]; then
	echo "== bench-xdp: installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || {
	echo "bench-xdp: go not found" >&2
	exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/sipwall-bench-xdp.XXXXXX")
tag=$$
pids=()
namespaces=()
watchdog=""
cleanup() {
	local p n
	for p in "${pids[@]}"; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$p" 2>/dev/null || true
	done
	pids=()
	for n in "${namespaces[@]}"; do
		ip netns del "$n" 2>/dev/null || true
	done
	namespaces=()
}
on_exit() {
	cleanup
	[ -n "$watchdog" ] && kill "$watchdog" 2>/dev/null || true
	if [ "${BENCH_KEEP:-}" = 1 ]; then
		echo "bench-xdp: logs kept in $work"
	else
		rm -rf "$work"
	fi
}
trap on_exit EXIT
trap 'echo "bench-xdp: interrupted" >&2; exit 1' INT TERM
(
	sleep "$limit"
	echo "bench-xdp: watchdog: $limit s reached, stopping" >&2
	kill -TERM $$
) &
watchdog=$!

echo "== bench-xdp: building bench/xdpflood"
go build -o "$work/xdpflood" ./bench/xdpflood
flood_bin="$work/xdpflood"

NET=10.251.0
GEN_IP=$NET.1
LEGIT_IP=$NET.9
SUT_IP=$NET.2
FLOOD_SRC=10.252.0.1 # rotating: 10.252.0.1 + i, i < ROTATE
SIP_PORT=5060
UAS_ADDR=127.0.0.1:5070

# val FILE KEY: the value of a "key value" line.
val() { awk -v k="$2" '$1 == k { v = $2 } END { print (v != "" ? v : 0) }' "$1"; }

# snmp NETNS PROTO FIELD: a counter of /proc/net/snmp in NETNS.
snmp() {
	ip netns exec "$1" awk -v p="$2:" -v f="$3" '$1 == p { if (!h) { for (i = 2; i <= NF; i++) c[$i] = i; h = 1 } else { print $(c[f]); exit } }' /proc/net/snmp
}

# arp_failed: address resolutions that failed (res_failed of
# /proc/net/stat/arp_cache, all CPUs: the packets queued for the address
# are dropped). The ARP table's statistics are not per namespace, but
# little else resolves addresses on a bench machine.
arp_failed() {
	awk 'NR > 1 { n += strtonum("0x" $7) } END { print n + 0 }' /proc/net/stat/arp_cache 2>/dev/null || echo 0
}

# run_ns_ns PIDS...: total run time in ns of every task of the processes.
run_ns() {
	local p t sum=0
	for p in "$@"; do
		[ -n "$p" ] || continue
		for t in /proc/"$p"/task/*/schedstat; do
			[ -r "$t" ] || continue
			read -r ns _ <"$t" || continue
			sum=$((sum + ns))
		done
	done
	echo "$sum"
}

# child PID NAME: the process NAME started by timeout(1) PID (or PID).
child() {
	local c
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		c=$(pgrep -P "$1" -x "$2" 2>/dev/null | head -n1 || true)
		[ -n "$c" ] && break
		sleep 0.1
	done
	echo "${c:-$1}"
}

# wait_line FILE TEXT: until FILE has a line TEXT (5 s).
wait_line() {
	for _ in $(seq 1 50); do
		grep -qx "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}


rows=""
lrows=""
declare -A drop_pps ns_per_pkt calls_ok calls_total

# run SETUP MODE: one measurement; appends a row to $rows.
run() {
	local setup=$1 mode=$2 n=$3
	local d="$work/$setup-$mode"
	mkdir -p "$d"
	local G="swgen-$tag-$n" S="swsut-$tag-$n" vg="g$tag$n" vs="s$tag$n"
	vg=${vg:0:12} vs=${vs:0:12}
	namespaces+=("$G" "$S")
	ip netns add "$G"
	ip netns add "$S"
	ip link add "$vg" netns "$G" type veth peer name "$vs" netns "$S"
	ip -n "$G" addr add "$GEN_IP/24" dev "$vg"
	ip -n "$G" addr add "$LEGIT_IP/24" dev "$vg"
	ip -n "$S" addr add "$SUT_IP/24" dev "$vs"
	ip -n "$G" link set lo up
	ip -n "$S" link set lo up
	ip -n "$G" link set "$vg" up
	ip -n "$S" link set "$vs" up
	ip -n "$S" route add default via "$GEN_IP"
	ip netns exec "$S" sysctl -qw net.ipv4.conf.all.rp_filter=0 "net.ipv4.conf.$vs.rp_filter=0"
	# No IPv6 (router solicitations, MLD): the generator veth's skb
	# counters then count only the legitimate source's traffic and ARP.
	ip netns exec "$G" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	ip netns exec "$S" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	# NAPI on the sut veth: without it the veth refuses XDP_TX frames
	# (ndo_xdp_xmit) unless an XDP program is attached natively.
	ip netns exec "$S" ethtool -K "$vs" gro on >/dev/null
	# The generator veth without TSO, in every setup: its skbs (the sipp
	# UAC, ARP) then go through the sut veth's NAPI ring like the flood,
	# as every frame shares a NIC's receive ring. With TSO on, a veth
	# hands skbs it cannot aggregate to netif_rx on the sender's CPU,
	# around the ring, and attaching XDP to the sut veth turns the peer's
	# TSO off: before this line the legitimate source met the ring only
	# under XDP.
	ip netns exec "$G" ethtool -K "$vg" tso off >/dev/null
	ip netns exec "$S" sh -c "echo 1 >/sys/class/net/$vs/threaded"
	local napi
	napi=$(ps -eo pid=,comm= | awk -v p="napi/$vs-" 'index($2, p) == 1 { print $1; exit }')
	if [ -z "$napi" ]; then
		echo "bench-xdp: no NAPI thread for $vs (threaded NAPI unsupported?)" >&2
		return 1
	fi
	taskset -pc "$SUT_CPU" "$napi" >/dev/null
	local mac
	mac=$(ip netns exec "$S" cat "/sys/class/net/$vs/address")
	local limits=(-port "$SIP_PORT" -rate "$LIMIT_RATE" -burst "$LIMIT_BURST" -cap "$CAP" -verified-share "$VERIFIED_SHARE")
	local verify=()
	if [ "$LEGIT" = allow ]; then
		limits+=(-allow "$LEGIT_IP/32")
	elif [ "$setup" != iptables ]; then
		verify=(-verify "$VERIFY")
	fi
	local life=$((DURATION + 14))

	timeout $((life + 10)) ip netns exec "$S" taskset -c "$SUT_CPU" \
		sipp -sn uas -i 127.0.0.1 -p 5070 -m $((CALLS * 4)) -nostdin \
		-timeout "${life}s" -trace_stat -stf "$d/uas_stat.csv" -fd 1 \
		>"$d/uas.stdout" 2>"$d/uas.stderr" &
	local uas_pid=$!
	pids+=("$uas_pid")

	local model_args=()
	case "$setup" in
	xdp-native | xdp-generic)
		# The listener holds the prefilter (bpf.Open), as sipwall does:
		# it marks the verified source in the program's map itself.
		model_args=(-xdp "${setup#xdp-}" -iface "$vs" "${limits[@]}")
		;;
	iptables)
		# Accepted when both the per-source budget and the global cap
		# allow it; everything else to the port is dropped. The global
		# cap is a hashlimit without --hashlimit-mode (one bucket for all
		# sources: "acts like limit"), because -m limit refuses rates
		# above 10000/s ("Rate too fast"). The legitimate source's rules
		# come first (their counters are its verdicts): allow-listed, an
		# ACCEPT; verified, its own per-source hashlimit (no global cap:
		# iptables has no share of a limit kept for some sources), then
		# DROP.
		local global=()
		if [ "$CAP" -gt 0 ]; then
			global=(-m hashlimit --hashlimit-upto "$CAP/sec" --hashlimit-burst "$CAP" --hashlimit-name sipcap)
		fi
		if [ "$LEGIT" = allow ]; then
			ip netns exec "$S" iptables -t raw -A PREROUTING -p udp --dport "$SIP_PORT" -s "$LEGIT_IP" -j ACCEPT
		else
			ip netns exec "$S" iptables -t raw -A PREROUTING -p udp --dport "$SIP_PORT" -s "$LEGIT_IP" \
				-m hashlimit --hashlimit-mode srcip --hashlimit-upto "$LIMIT_RATE/sec" \
				--hashlimit-burst "$LIMIT_BURST" --hashlimit-name sipverified -j ACCEPT
			ip netns exec "$S" iptables -t raw -A PREROUTING -p udp --dport "$SIP_PORT" -s "$LEGIT_IP" -j DROP
		fi
		ip netns exec "$S" iptables -t raw -A PREROUTING -p udp --dport "$SIP_PORT" \
			-m hashlimit --hashlimit-mode srcip --hashlimit-upto "$LIMIT_RATE/sec" \
			--hashlimit-burst "$LIMIT_BURST" --hashlimit-name sip \
			--hashlimit-htable-size 131072 --hashlimit-htable-max 262144 \
			"${global[@]}" -j ACCEPT
		ip netns exec "$S" iptables -t raw -A PREROUTING -p udp --dport "$SIP_PORT" -j DROP
		;;
	userspace)
		model_args=(-model "${limits[@]}")
		;;
	esac
	if [ "$setup" != iptables ]; then
		# Counts (no target) the legitimate source's datagrams that
		# reach the IP stack: under XDP, those the program passed.
		ip netns exec "$S" iptables -t raw -A PREROUTING -p udp --dport "$SIP_PORT" -s "$LEGIT_IP"
	fi

	timeout $((life + 10)) ip netns exec "$S" taskset -c "$SUT_CPU" \
		"$flood_bin" recv -listen "$SUT_IP:$SIP_PORT" -duration "${life}s" \
		-legit "$LEGIT_IP" -uas "$UAS_ADDR" "${model_args[@]}" "${verify[@]}" \
		>"$d/recv.out" 2>"$d/recv.err" &
	local recv_pid=$!
	pids+=("$recv_pid")
	if ! wait_line "$d/recv.out" ready; then
		echo "bench-xdp: $setup: listener did not start" >&2
		cat "$d/recv.err" >&2
		return 1
	fi
	local recv_p uas_p
	recv_p=$(child "$recv_pid" xdpflood)
	uas_p=$(child "$uas_pid" sipp)
	# taskset/ip netns exec exec the program: child() finds it under timeout.

	# The neighbour entries exist before the flood (a phone that talks
	# regularly is known): the sut's answers do not wait for an ARP reply
	# that has to come through the flooded ring.
	ip netns exec "$S" ping -c 1 -W 1 -I "$SUT_IP" "$LEGIT_IP" >/dev/null 2>&1 || true
	ip netns exec "$S" ping -c 1 -W 1 -I "$SUT_IP" "$GEN_IP" >/dev/null 2>&1 || true

	local rotate=0
	[ "$mode" = rotating ] && rotate=$ROTATE
	# The legitimate source's path, counted per stage. The generator
	# veth's skb counters see only the sipp UAC (and ARP): the flood
	# leaves it by XDP_TX, which they do not count. tx_dropped: skbs the
	# sut veth's ring refused.
	# sent: UDP datagrams sent in the generator's namespace (only the sipp
	# UAC sends UDP there: the flood leaves by XDP_TX); answers: UDP
	# datagrams sipp received there, and those its socket refused.
	# legit_snapshot WHEN: those counters now, as one line, and the links'
	# state into the run directory's *-WHEN.txt.
	legit_snapshot() {
		echo "$(snmp "$G" Udp OutDatagrams) $(snmp "$G" Udp SndbufErrors)" \
			"$(snmp "$G" Udp InDatagrams) $(snmp "$G" Udp RcvbufErrors) $(arp_failed)"
		ip netns exec "$S" ethtool -S "$vs" >"$d/ethtool-$1.txt" 2>&1 || true
		ip netns exec "$S" ip -s -s link show "$vs" >"$d/link-$1.txt" 2>&1 || true
		ip netns exec "$G" ip -s -s link show "$vg" >>"$d/link-$1.txt" 2>&1 || true
	}
	local lout0 lsbe0 lin0 lrbe0 arp0
	read -r lout0 lsbe0 lin0 lrbe0 arp0 <<<"$(legit_snapshot before)"
	local rx0 rxd0 sock0 cpu0
	rx0=$(ip netns exec "$S" cat "/sys/class/net/$vs/statistics/rx_packets")
	rxd0=$(ip netns exec "$S" cat "/sys/class/net/$vs/statistics/rx_dropped")
	sock0=$(udp_rcvbuf_errors "$S")
	cpu0=$(run_ns "$napi" "$recv_p" "$uas_p")
	local t0 t1
	t0=$(date +%s%N)
	timeout $((DURATION + 10)) ip netns exec "$G" taskset -c "$GEN_CPU" \
		"$flood_bin" flood -iface "$vg" -dst-mac "$mac" -src "$FLOOD_SRC" -dst "$SUT_IP" \
		-dport "$SIP_PORT" -rotate "$rotate" -duration "${DURATION}s" -cpus "$GEN_CPU" -pps "$FLOOD_PPS" \
		>"$d/flood.out" 2>"$d/flood.err" &
	local flood_pid=$!
	pids+=("$flood_pid")
	sleep 0.3
	local uac_rc=0
	timeout $((life + 10)) ip netns exec "$G" taskset -c "$GEN_CPU" \
		sipp "$SUT_IP:$SIP_PORT" -sn uac -i "$LEGIT_IP" -p 5061 \
		-r "$RATE" -m "$CALLS" -l $((RATE * 5)) -d 0 -nostdin \
		-timeout "$((DURATION + 10))s" -recv_timeout 8000 \
		-trace_stat -stf "$d/uac_stat.csv" -fd 1 \
		>"$d/uac.stdout" 2>"$d/uac.stderr" &
	local uac_pid=$!
	pids+=("$uac_pid")
	local flood_rc=0
	wait "$flood_pid" || flood_rc=$?
	t1=$(date +%s%N)
	local rx1 rxd1 sock1 cpu1
	cpu1=$(run_ns "$napi" "$recv_p" "$uas_p")
	rx1=$(ip netns exec "$S" cat "/sys/class/net/$vs/statistics/rx_packets")
	rxd1=$(ip netns exec "$S" cat "/sys/class/net/$vs/statistics/rx_dropped")
	sock1=$(udp_rcvbuf_errors "$S")
	if [ "$flood_rc" != 0 ]; then
		echo "bench-xdp: $setup/$mode: generator failed (exit $flood_rc)" >&2
		cat "$d/flood.err" >&2
		return 1
	fi
	wait "$uac_pid" || uac_rc=$?
	local lout1 lsbe1 lin1 lrbe1 arp1
	read -r lout1 lsbe1 lin1 lrbe1 arp1 <<<"$(legit_snapshot after)"
	ip netns exec "$S" ip -s neigh >"$d/neigh.txt" 2>&1 || true

	# Stop the listener (and the prefilter it holds): it prints its
	# counts on SIGTERM.
	[ -n "$recv_p" ] && kill -TERM "$recv_p" 2>/dev/null || true
	wait "$recv_pid" 2>/dev/null || true
	kill -USR1 "$uas_p" 2>/dev/null || true
	ip netns exec "$S" iptables -t raw -L PREROUTING -v -x -n >"$d/iptables.txt" 2>&1 || true

	local secs offered dropped passed lpass ldrop lstack
	secs=$(val "$d/flood.out" seconds)
	offered=$(val "$d/flood.out" frames)
	# The legitimate source's verdicts: lpass passed, ldrop dropped by
	# the filter. lstack: its datagrams that reached the IP stack (the
	# counting rule; XDP: what the program passed).
	lstack=$(awk -v a="$LEGIT_IP" '$3 != "ACCEPT" && $3 != "DROP" && $7 == a { n += $1 } END { print n + 0 }' "$d/iptables.txt")
	case "$setup" in
	xdp-*)
		dropped=$(val "$d/recv.out" dropped)
		passed=$(val "$d/recv.out" reason_pass)
		lpass=$lstack
		ldrop="" # sent - ring refused - lpass, below
		;;
	iptables)
		# Rules: pkts bytes target prot opt in out source destination.
		passed=$(awk -v a="$LEGIT_IP" '$3 == "ACCEPT" && $8 != a && /limit:/ { print $1 }' "$d/iptables.txt")
		dropped=$(awk -v a="$LEGIT_IP" '$3 == "DROP" && $8 != a { print $1 }' "$d/iptables.txt")
		lpass=$(awk -v a="$LEGIT_IP" '$3 == "ACCEPT" && $8 == a { n += $1 } END { print n + 0 }' "$d/iptables.txt")
		ldrop=$(awk -v a="$LEGIT_IP" '$3 == "DROP" && $8 == a { n += $1 } END { print n + 0 }' "$d/iptables.txt")
		lstack=$((lpass + ldrop))
		;;
	userspace)
		dropped=$(val "$d/recv.out" dropped)
		passed=$(val "$d/recv.out" reason_pass)
		lpass=$(val "$d/recv.out" legit_admitted)
		ldrop=$(($(val "$d/recv.out" legit_received) - lpass))
		;;
	esac
	local ok total retrans="?"
	ok="?" total="$CALLS"
	if [ -s "$d/uac_stat.csv" ]; then
		ok=$(stat_col "$d/uac_stat.csv" "SuccessfulCall(C)")
		total=$(stat_col "$d/uac_stat.csv" "TotalCallCreated")
		retrans=$(stat_col "$d/uac_stat.csv" "Retransmissions(C)")
		[ "$total" -lt "$CALLS" ] 2>/dev/null && total=$CALLS
	fi
	local uas_retrans="?"
	[ -s "$d/uas_stat.csv" ] && uas_retrans=$(stat_col "$d/uas_stat.csv" "Retransmissions(C)")
	# A datagram the sut veth's ring refuses fails in the sender's
	# dev_queue_xmit: counted as SndbufErrors, not OutDatagrams (sipp is
	# told nothing: no IP_RECVERR).
	local lsbe=$((lsbe1 - lsbe0))
	local lsent=$((lout1 - lout0 + lsbe))
	local answered lrecv=$((lin1 - lin0 + lrbe1 - lrbe0)) lread
	answered=$(val "$d/recv.out" answered)
	lread=$(val "$d/recv.out" legit_received)
	# lost: neither refused by the ring, nor dropped by the filter, nor
	# read by the listener (the socket, or the stack).
	local lost
	case "$setup" in
	xdp-*)
		ldrop=$((lsent - lsbe - lstack))
		lost=$((lstack - lread))
		;;
	iptables) lost=$((lsent - lsbe - ldrop - lread)) ;;
	userspace) lost=$((lsent - lsbe - lread)) ;;
	esac
	local verified="–"
	if [ "$LEGIT" = verified ] && [ "$setup" != iptables ]; then
		verified=$(awk -v v="$(grep -c '^verified_after_s ' "$d/recv.out")" -v t="$(val "$d/recv.out" verified_after_s)" 'BEGIN { if (v > 0) printf "%.2f s", t; else print "never" }')
		[ "$setup" = userspace ] && verified+=" ($(val "$d/recv.out" legit_dropped_after_verified) dropped after)"
	fi
	local lrow="| $setup | $mode | $(fmt "$lsent") | $(fmt "$lsbe") | $(fmt "$ldrop") | $(fmt "$lpass") | $(fmt "$lost") | $(fmt "$lread") | $(fmt "$(val "$d/recv.out" relayed)") | $(fmt "$answered") | $(fmt $((answered - lrecv))) | $((arp1 - arp0)) | $((lrbe1 - lrbe0)) | $retrans | $uas_retrans | $verified | $ok/$total |"
	echo "  legit: $lrow"
	lrows+="$lrow"$'\n'
	local wall
	wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
	local r
	r=$(awk -v s="$secs" -v w="$wall" -v off="$offered" -v rx=$((rx1 - rx0)) -v rxd=$((rxd1 - rxd0)) \
		-v dr="$dropped" -v pa="$passed" -v so=$((sock1 - sock0)) -v cpu=$((cpu1 - cpu0)) '
		function k(x) { return sprintf("%.0f", x / s) }
		BEGIN {
			printf "%s|%s|%s|%s|%s|%s|%.0f|%.0f", k(off), k(rx), k(rxd), k(dr), k(pa), k(so), cpu / (w * 1e7), (rx > 0 ? cpu / rx : 0)
		}')
	IFS='|' read -r o_pps rx_pps rxd_pps dr_pps pa_pps so_pps cpu_pct ns_pkt <<<"$r"
	drop_pps[$setup/$mode]=$dr_pps
	ns_per_pkt[$setup/$mode]=$ns_pkt
	calls_ok[$setup/$mode]=$ok
	calls_total[$setup/$mode]=$total
	local row="| $setup | $mode | $(fmt "$o_pps") | $(fmt "$rx_pps") | $(fmt "$rxd_pps") | $(fmt "$dr_pps") | $(fmt "$pa_pps") | $(fmt "$so_pps") | $cpu_pct | $ns_pkt | $ok/$total |"
	echo "$row"
	rows+="$row"$'\n'
	if [ "$uac_rc" != 0 ]; then
		echo "bench-xdp: $setup/$mode: sipp UAC exit $uac_rc" >&2
	fi
	cleanup
}

# fmt N: thousands separated by commas.
fmt() { echo "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }

load_before=$(cut -d' ' -f1 /proc/loadavg)
if [ "$CAP" -gt 0 ]; then
	cap_text="Request cap $CAP packets/s per CPU from all sources (XDP, Go
model; VerifiedShare $VERIFIED_SHARE %: unverified sources together get
$((CAP - CAP * VERIFIED_SHARE / 100))/s); iptables: a global hashlimit of $CAP/s, burst
$CAP, on the same ACCEPT rule as the per-source one (iptables' limit is
global, not per CPU: the sut judges on one CPU, so they are equivalent)."
else
	cap_text="No request cap."
fi
if [ "$FLOOD_PPS" -gt 0 ]; then
	flood_text="paced at $FLOOD_PPS frames/s in every setup (evenly spaced)"
else
	flood_text="unpaced (as fast as the generator runs: the offered load differs per setup)"
fi
if [ "$LEGIT" = verified ]; then
	when="when the first 2xx answer to it comes back (its first call
stands in for its first authenticated request, made during the flood)"
	[ "$VERIFY" = start ] && when="when it starts, before the flood (a phone
that authenticated, e.g. registered, before the flood)"
	legit_text="a verified phone, not allow-listed: the listener marks it
verified (bpf Model.Verify / Filter.Verify, for 1 h, sipwall's
verified_ttl), as sipwall does after a successful authentication,
$when;
iptables: its own per-source hashlimit rule, exempt from the global one"
else
	legit_text="allow-listed (judged first)"
fi
echo "== bench-xdp: $runs runs of ${DURATION} s; flood $flood_text; legitimate load $CALLS calls at $RATE/s ($LEGIT); per-source limit $LIMIT_RATE/s burst $LIMIT_BURST; cap ${CAP}/s per CPU (0: none), verified share $VERIFIED_SHARE %"
header="| setup | flood | offered pps | reached sut pps | veth ring overflow pps | filter dropped pps | filter passed pps | socket overflow pps | sut CPU % | sut CPU ns/pkt reached | legit calls ok/total |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
lheader="| setup | flood | legit sent | ring refused | filter dropped | filter passed | lost elsewhere | listener read | relayed to UAS | answers sent | answers lost on the way back | ARP failures | UAC socket overflow | UAC retrans | UAS retrans | verified after | calls ok/offered |
| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
echo "$header"
n=0
for mode in $MODES; do
	for setup in $SETUPS; do
		n=$((n + 1))
		run "$setup" "$mode" "$n"
	done
done
load_after=$(cut -d' ' -f1 /proc/loadavg)

# The goals: XDP native drops at least twice the packets/s iptables drops,
# and at least 99.9 % of the legitimate calls complete under XDP.
goals=""
for mode in $MODES; do
	x=${drop_pps[xdp-native/$mode]:-}
	i=${drop_pps[iptables/$mode]:-}
	if [ -n "$x" ] && [ -n "$i" ] && [ "$FLOOD_PPS" -gt 0 ]; then
		goals+="- $mode flood: drop rates not compared (the flood is paced below what every setup drops: XDP native drops $(fmt "$x") pps, iptables $(fmt "$i") pps; the 2× goal needs FLOOD_PPS=0);"
		goals+=" sut CPU per packet reached: XDP native ${ns_per_pkt[xdp-native/$mode]} ns, iptables ${ns_per_pkt[iptables/$mode]} ns"$'\n'
	elif [ -n "$x" ] && [ -n "$i" ]; then
		verdict=$(awk -v x="$x" -v i="$i" 'BEGIN { r = (i > 0 ? x / i : 0); printf "%.2f× — %s", r, (i > 0 && x >= 2 * i ? "met" : "NOT met") }')
		goals+="- $mode flood: XDP native drops $(fmt "$x") pps, iptables $(fmt "$i") pps: $verdict (goal ≥ 2×);"
		goals+=" sut CPU per packet reached: XDP native ${ns_per_pkt[xdp-native/$mode]} ns, iptables ${ns_per_pkt[iptables/$mode]} ns"$'\n'
	fi
	for s in xdp-native xdp-generic userspace iptables; do
		okc=${calls_ok[$s/$mode]:-}
		[ -n "$okc" ] || continue
		tot=${calls_total[$s/$mode]}
		verdict=$(awk -v o="$okc" -v t="$tot" 'BEGIN { if (o !~ /^[0-9]+$/ || t == 0) { print "unknown"; exit } p = 100 * o / t; printf "%.2f %% — %s", p, (p >= 99.9 ? "met" : "NOT met") }')
		goals+="- $mode flood, $s: legitimate calls completed / offered $okc/$tot: $verdict (goal ≥ 99.9 %)"$'\n'
	done
done

now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
version=${BENCH_VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}
cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)
report=$(
	cat <<MD
Machine: $cpu_model, $(nproc) CPUs, kernel $(uname -r); sipwall $version.
Generator and sipp UAC on CPU $GEN_CPU, sut (NAPI thread, listener with
the filter, sipp UAS) on CPU $SUT_CPU. Flood $flood_text, ${DURATION} s of $(val "$work/$(echo $SETUPS | cut -d' ' -f1)-$(echo $MODES | cut -d' ' -f1)/flood.out" frame_bytes)-byte
frames (UDP SIP INVITE to port $SIP_PORT); rotating: $ROTATE sources.
Per-source limit $LIMIT_RATE packets/s, burst $LIMIT_BURST, every class;
$CALLS legitimate calls at $RATE/s during the flood from a source that is
$legit_text.
$cap_text
Load average (1 min) before / after: $load_before / $load_after (other work
on the machine disturbs the numbers).

$header
${rows%$'\n'}

The legitimate source (sipp UAC, $LEGIT_IP) per stage, whole run: SIP
messages it sent (UDP OutDatagrams + SndbufErrors of the generator's
namespace, where only sipp sends UDP), refused by the sut veth's ring
(SndbufErrors there: the veth's transmit fails when the peer's ring is
full), dropped and let through by the filter (XDP: a rule without target
in iptables' raw PREROUTING counts what reached the IP stack, i.e. what
the program passed, the rest of what the ring took it dropped; iptables:
the counters of the source's own rules; userspace: the model's verdicts
on what the listener read), lost elsewhere (neither refused, dropped nor
read: the listener's socket, mostly), read by the listener, relayed to
the sipp UAS, answers sent back,
answers lost on the way back (sent − received by sipp, UDP InDatagrams +
RcvbufErrors there), failed ARP resolutions (their queued answers are
dropped; the ARP replies cross the same ring), answers sipp's socket
refused, sipp retransmissions (UAC, UAS), when the listener marked the
source verified (seconds after the listener started; the flood starts
0.3 s before the calls; in the single flood, which never reaches the cap,
this is about when the first call began; userspace: the model's drops of
the source after that):

$lheader
${lrows%$'\n'}

Goals (XDP native ≥ 2× the iptables drop rate; ≥ 99.9 % legitimate calls
completed, XDP and userspace floods, per flood shape):

${goals%$'\n'}
MD
)
echo
echo "$report"

mkdir -p bench/results
out="bench/results/xdp-$(date -u +%Y-%m-%d).md"
if [ ! -f "$out" ]; then
	printf '# sipwall XDP prefilter flood benchmark, %s\n\nWritten by scripts/bench-xdp.sh; one section per run.\n' "$(date -u +%Y-%m-%d)" >"$out"
fi
printf '\n## %s\n\n%s\n' "$now" "$report" >>"$out"
echo
echo "bench-xdp: appended to $out"
