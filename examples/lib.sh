# Shared by the demo scripts: start a standalone manager and proplets in a
# temporary directory, and stop everything on exit. Source it after `cd`
# to the repository root; it sets DIR, server and conn.
BIN=${BIN:-bin/propeller}

# taken PORT: something on this host listens on 127.0.0.1:PORT.
taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_port VAR DEFAULT: VAR as set by the caller, which must be free, or
# the first free port from DEFAULT on (another manager, a broker or an
# earlier demo may hold the usual ones).
pick_port() {
  local var=$1 port=${!1:-}
  if [ -n "$port" ]; then
    if taken "$port"; then
      echo "$var=$port: port $port is taken (another propeller manager or MQTT broker?); choose another" >&2
      exit 1
    fi
  else
    port=$2
    while taken "$port"; do port=$((port + 1)); done
    [ "$port" = "$2" ] || echo "port $2 is taken (another manager?); using $port for $var" >&2
  fi
  printf -v "$var" '%s' "$port"
}
pick_port HTTP_PORT 7070
pick_port MQTT_PORT 1883
DIR=$(mktemp -d -t propeller-demo.XXXXXX)
server="http://127.0.0.1:$HTTP_PORT"
conn=(--server "$server" --data-dir "$DIR/manager")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

# start_manager runs the manager with its embedded broker and waits until
# it serves.
start_manager() {
  "$BIN" manager standalone --data-dir "$DIR/manager" \
    --http-addr "127.0.0.1:$HTTP_PORT" --mqtt-addr "127.0.0.1:$MQTT_PORT" >"$DIR/manager.log" 2>&1 &
  local pid=$!
  pids+=($pid)
  for _ in $(seq 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "the manager exited:" >&2
      cat "$DIR/manager.log" >&2
      return 1
    fi
    curl -fs "$server/readyz" >/dev/null 2>&1 && [ -s "$DIR/manager/join-token" ] && return 0
    sleep 0.1
  done
  cat "$DIR/manager.log"
  return 1
}

# start_proplet ID [flags...] runs a proplet that joins with the join token.
start_proplet() {
  local id=$1
  shift
  "$BIN" proplet --broker "mqtt://127.0.0.1:$MQTT_PORT" --id "$id" \
    --token "$(cat "$DIR/manager/join-token")" --cache-dir "$DIR/proplet-$id" "$@" >"$DIR/proplet-$id.log" 2>&1 &
  pids+=($!)
}

# wait_alive N waits until the manager sees N live proplets.
wait_alive() {
  for _ in $(seq 100); do
    [ "$("$BIN" proplet list -o json "${conn[@]}" 2>/dev/null | grep -c '"alive": true')" = "$1" ] && return 0
    sleep 0.1
  done
  echo "proplets did not join" >&2
  return 1
}
