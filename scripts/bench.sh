#!/usr/bin/env bash
# Runs the benchmarks and writes one JSON file per package under bench/out/
# (pkg-<name>.json; the goal files such as rewrite.json come from the
# bench-* targets),
# so that speed goals are read from numbers rather than asserted in tests.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
for pkg in $(go list ./... ); do
	files=$(go list -f '{{range .TestGoFiles}}{{$.Dir}}/{{.}} {{end}}' "$pkg")
	[ -n "$files" ] && grep -q '^func Benchmark' $files || continue
	name=$(basename "$pkg")
	echo "== $pkg"
	go test -run='^$' -bench=. -benchmem -count=1 "$pkg" | tee "bench/out/pkg-$name.txt" |
		awk -v pkg="$pkg" '
			BEGIN { printf "{\"package\": \"%s\", \"results\": [", pkg; n = 0 }
			/^Benchmark/ {
				line = sprintf("{\"name\": \"%s\", \"iterations\": %s", $1, $2)
				for (i = 3; i < NF; i += 2) {
					unit = $(i + 1); gsub("/", "_per_", unit)
					line = line sprintf(", \"%s\": %s", unit, $i)
				}
				printf "%s%s}", (n++ ? ", " : ""), line
			}
			END { print "]}" }' >"bench/out/pkg-$name.json"
done
echo "results in bench/out/"
