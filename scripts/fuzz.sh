#!/usr/bin/env bash
# Runs every Fuzz* target in the module for a short while each (argument:
# a -fuzztime such as 10s). Go fuzzes one target per invocation.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-10s}
status=0
while read -r file; do
	pkg=./$(dirname "$file")
	for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)' "$file" | awk '{print $2}'); do
		echo "== $pkg $target ($fuzztime)"
		go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg" || status=1
	done
done < <(grep -rl --include='*_test.go' '^func Fuzz' pkg cmd 2>/dev/null | sort)
exit $status
