#!/usr/bin/env bash
# Runs every Go fuzz target of the module in turn, FUZZTIME (default 60s)
# each. Targets are found by grep, so new ones are picked up without
# editing anything:
#
#   scripts/fuzz.sh            fuzz all targets
#   scripts/fuzz.sh --list     print "package-dir target" pairs
#   FUZZTIME=10s scripts/fuzz.sh
#
# Stops at the first target that finds a failure (go test writes the
# failing input under the package's testdata/fuzz/).
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-60s}

# "dir name" for each `func FuzzXxx(` in a _test.go file, outside testdata
# and .git.
targets() {
	grep -rHoE --include='*_test.go' --exclude-dir=testdata --exclude-dir=.git \
		'^func Fuzz[A-Za-z0-9_]*\(' . |
		sed -E 's#^\./##; s#^(.*)/[^/]*:func (Fuzz[A-Za-z0-9_]*)\($#\1 \2#; s#^[^/ ]*:func (Fuzz[A-Za-z0-9_]*)\($#. \1#' |
		sort -u
}

list=$(targets)
if [ "${1:-}" = "--list" ]; then
	printf '%s\n' "$list"
	exit 0
fi
if [ -z "$list" ]; then
	echo "fuzz: no Fuzz targets found"
	exit 0
fi

n=0
while read -r dir name; do
	n=$((n + 1))
	echo "== fuzz: $name in ./$dir for $FUZZTIME"
	"$GO" test -run='^$' -fuzz="^${name}\$" -fuzztime="$FUZZTIME" -fuzzminimizetime="${FUZZMINTIME:-10s}" "./$dir"
done <<<"$list"
echo "fuzz: $n target(s) done"
