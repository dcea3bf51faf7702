#!/usr/bin/env bash
# Federated learning on the embedded defaults: a standalone manager, three
# proplets, and the digits softmax-regression client trained for five
# rounds with FedAvg; prints each round's accuracy as it closes. Used by
# `make fl-demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/propeller}
HTTP_PORT=${HTTP_PORT:-7070}
MQTT_PORT=${MQTT_PORT:-1883}
DIR=$(mktemp -d -t propeller-fl.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

"$BIN" manager standalone --data-dir "$DIR/manager" \
  --http-addr "127.0.0.1:$HTTP_PORT" --mqtt-addr "127.0.0.1:$MQTT_PORT" >"$DIR/manager.log" 2>&1 &
pids+=($!)
server="http://127.0.0.1:$HTTP_PORT"
for _ in $(seq 100); do curl -fs "$server/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
for i in 1 2 3; do
  "$BIN" proplet --broker "mqtt://127.0.0.1:$MQTT_PORT" --id "fl-$i" \
    --token "$(cat "$DIR/manager/join-token")" --cache-dir "$DIR/proplet-$i" >"$DIR/proplet-$i.log" 2>&1 &
  pids+=($!)
done
conn=(--server "$server" --data-dir "$DIR/manager")
for _ in $(seq 100); do
  [ "$("$BIN" proplet list -o json "${conn[@]}" | grep -c '"alive": true')" = 3 ] && break
  sleep 0.1
done
go run ./examples/fl/initmodel >"$DIR/zero.safetensors"
"$BIN" fl create -f examples/fl/job.yaml --model "$DIR/zero.safetensors" --wasm bin/wasm/fl.wasm --watch "${conn[@]}"
