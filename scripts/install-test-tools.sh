#!/usr/bin/env bash
# Installs the external programs the tests and tools use, and only those
# that are missing. Safe to run again: with everything present it installs
# nothing and does not touch the package lists.
#
#   command   Debian package   used by
#   sipp      sip-tester       sbc/e2e tests, scripts/bench.sh
#   svmap     sipvicious       scanner tests
#   tshark    tshark           packet captures
#   ip        iproute2         address and socket checks, network namespaces
#                              and veth pairs (bpf, cmd/sipwall prefilter tests)
#   pebble    pebble           ACME server for the tls tests
#   socat     socat            TLS in front of sipp (sipp has no TLS here)
#   redis-server redis-server  the shared store of the scale-out tests (sbc/cluster)
#   chromium  chromium         headless browser of the web console test
#   chromedriver chromium-driver  drives it (WebDriver) in cmd/sipwall
#   baresip   baresip-core     real softphone (sbc/e2e/phones_test.go)
#   linphone-daemon linphone-cli  real softphone (sbc/e2e/phones_test.go)
#   kamailio  kamailio         internal registrar and proxy behind sipwall
#                              (sbc/e2e/kamailio_test.go), and the reference
#                              proxy of scripts/bench-kamailio.sh
#
# With --bench, also what `make bench` uses:
#   curl      curl             admin API samples and profiles (scripts/bench.sh)
#   rtpengine rtpengine-daemon the reference media relay of
#                              scripts/bench-relay.sh (userspace only)
#
# As root it installs with apt-get; otherwise it prints what to install and
# exits non-zero when something is missing.
set -euo pipefail

cmds=(sipp svmap tshark ip pebble socat redis-server chromium chromedriver kamailio)
declare -A pkg=([sipp]=sip-tester [svmap]=sipvicious [tshark]=tshark [ip]=iproute2 [pebble]=pebble [socat]=socat
	[curl]=curl [rtpengine]=rtpengine-daemon [kamailio]=kamailio [redis-server]=redis-server [chromium]=chromium [chromedriver]=chromium-driver)
cmds+=(baresip linphone-daemon)
pkg+=([baresip]=baresip-core [linphone-daemon]=linphone-cli)
if [ "${1:-}" = --bench ]; then
	cmds+=(curl rtpengine)
fi

# have CMD: is CMD runnable? sbin directories count even when they are not
# in PATH (ip lives in /usr/sbin, which a non-root PATH may lack).
have() {
	command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]
}

where() {
	command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || echo "/sbin/$1"
}

missing=()
for c in "${cmds[@]}"; do
	if have "$c"; then
		echo "install-test-tools: $c present ($(where "$c"))"
	else
		echo "install-test-tools: $c missing (package ${pkg[$c]})"
		missing+=("${pkg[$c]}")
	fi
done

if [ "${#missing[@]}" -eq 0 ]; then
	echo "install-test-tools: nothing to install"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-test-tools: not root; install these packages, then run again:" >&2
	echo "  sudo apt-get install ${missing[*]}" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-test-tools: apt-get not found; install these packages by hand: ${missing[*]}" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-test-tools: apt-get update"
apt-get update -q
echo "install-test-tools: apt-get install ${missing[*]}"
apt-get install -y -q --no-install-recommends "${missing[@]}"
# rtpengine-daemon's package enables and starts its system service; the
# benchmark starts a daemon of its own and wants no other.
if [[ " ${missing[*]} " == *" rtpengine-daemon "* ]] && [ -d /run/systemd/system ]; then
	systemctl disable --now rtpengine-daemon.service || true
fi

failed=0
for c in "${cmds[@]}"; do
	if have "$c"; then
		echo "install-test-tools: $c ok ($(where "$c"))"
	else
		echo "install-test-tools: $c still missing after install" >&2
		failed=1
	fi
done
if [ "$failed" -ne 0 ]; then
	exit 1
fi
echo "install-test-tools: installed ${missing[*]}"
