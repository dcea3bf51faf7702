#!/usr/bin/env bash
# Runs every fuzz target for FUZZTIME each (make fuzz FUZZTIME=20000x) and
# prints the executions per target. A crash fails the run and leaves its
# input under the package's testdata/fuzz/<Target>/: commit it, and it is
# a regression test that every `go test` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# A count (Nx) rather than a duration: with a duration, go1.26's fuzz
# coordinator can fail the run with "context deadline exceeded" at the end
# of -fuzztime when a worker is mid-input (golang/go#75804, fixed in go1.27).
FUZZTIME=${FUZZTIME:-20000x}
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
	summary+=("$(printf '%-22s %-16s %10s execs (-fuzztime %s)' "$pkg" "$name" "${execs:-?}" "$FUZZTIME")")
done
printf '%s\n' "${summary[@]}"
exit $status
