#!/usr/bin/env bash
# Runs the whole system on this machine: a standalone manager with its
# embedded MQTT broker, one proplet, and two sample tasks (a command module
# and an exported function). Everything lives in a temporary directory and
# is stopped on exit. Used by `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/propeller}
WASM=${WASM:-bin/wasm}
HTTP_PORT=${HTTP_PORT:-7070}
MQTT_PORT=${MQTT_PORT:-1883}
DIR=$(mktemp -d -t propeller-demo.XXXXXX)
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
for _ in $(seq 100); do
  curl -fs "$server/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "$server/readyz" >/dev/null || { cat "$DIR/manager.log"; exit 1; }

"$BIN" proplet --broker "mqtt://127.0.0.1:$MQTT_PORT" --id demo-proplet \
  --token "$(cat "$DIR/manager/join-token")" --labels zone=demo \
  --cache-dir "$DIR/proplet" >"$DIR/proplet.log" 2>&1 &
pids+=($!)
conn=(--server "$server" --data-dir "$DIR/manager")
for _ in $(seq 100); do
  "$BIN" proplet list -o json "${conn[@]}" 2>/dev/null | grep -q '"alive": true' && break
  sleep 0.1
done

echo "== proplets"
"$BIN" proplet list "${conn[@]}"
echo
echo "== a command module: args, env and stdout"
"$BIN" task create hello --file "$WASM/hello.wasm" --args edge,cloud --env GREETING=hello --wait "${conn[@]}"
echo
echo "== an exported function: add(2, 3)"
"$BIN" task create add --file "$WASM/add.wasm" --function add --inputs 2,3 --wait "${conn[@]}"
echo
echo "== a runaway module stopped by its deadline"
"$BIN" task create loop --file "$WASM/loop.wasm" --timeout 1s --max-attempts 1 --wait "${conn[@]}"
