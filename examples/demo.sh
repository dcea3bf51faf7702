#!/usr/bin/env bash
# Runs the whole system on this machine: a standalone manager with its
# embedded MQTT broker, one proplet, and sample tasks (a command module, an
# exported function, a runaway module). Everything lives in a temporary
# directory and is stopped on exit. Used by `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
source examples/lib.sh
WASM=${WASM:-bin/wasm}

start_manager
start_proplet demo-proplet --labels zone=demo
wait_alive 1

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
code=0
"$BIN" task create loop --file "$WASM/loop.wasm" --timeout 1s --max-attempts 1 --wait "${conn[@]}" || code=$?
echo "exit code $code: a script sees that the task Failed (docs/cli.md)"
[ "$code" = 3 ]
