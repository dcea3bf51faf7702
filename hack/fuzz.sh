#!/usr/bin/env bash
# Runs every fuzz target for FUZZTIME each (make fuzz FUZZTIME=10s) and
# prints the executions per target. A crash fails the run and leaves its
# input under the package's testdata/fuzz/<Target>/: commit it, and it is
# a regression test that every `go test` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}
targets=(
	"./api/wire FuzzDecode"
	"./api/wire FuzzTopics"
	"./api/safetensors FuzzDecode"
	"./manager/rest FuzzCreateTask"
	"./proplet/artifact FuzzWasmLayer"
	"./proplet/runtime FuzzRun"
)
summary=()
status=0
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	out=$(go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -parallel 2 "$pkg" 2>&1) || { status=1; echo "$out"; }
	execs=$(grep -o 'execs: [0-9]*' <<<"$out" | tail -1 | cut -d' ' -f2)
	summary+=("$(printf '%-22s %-16s %10s execs in %s' "$pkg" "$name" "${execs:-?}" "$FUZZTIME")")
done
printf '%s\n' "${summary[@]}"
exit $status
