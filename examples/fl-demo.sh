#!/usr/bin/env bash
# Federated learning on the embedded defaults: a standalone manager, three
# proplets, and the digits softmax-regression client trained for five
# rounds with FedAvg; prints each round's accuracy as it closes. Used by
# `make fl-demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
source examples/lib.sh

start_manager
for i in 1 2 3; do start_proplet "fl-$i"; done
wait_alive 3
go run ./examples/fl/initmodel >"$DIR/zero.safetensors"
"$BIN" fl create -f examples/fl/job.yaml --model "$DIR/zero.safetensors" --wasm bin/wasm/fl.wasm --watch "${conn[@]}"
