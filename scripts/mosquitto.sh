#!/usr/bin/env bash
# Start / stop a Mosquitto broker for tests and benchmarks, on loopback only.
#
#   scripts/mosquitto.sh start DIR [PORT]   start a broker (free port if PORT omitted) with its config,
#                                           persistence and log in DIR; prints the port
#   scripts/mosquitto.sh stop DIR           stop it gracefully (SIGTERM: the broker saves its queues)
#   scripts/mosquitto.sh kill DIR           stop it hard (SIGKILL)
#   scripts/mosquitto.sh status DIR         "running PORT" or "stopped"
#
# Settings that make QoS 1 ingest lossless: persistence (queued messages and sessions survive a
# restart), no cap on queued messages for offline persistent sessions (mosquitto's default is 1000
# and drops the rest), no cap on in-flight messages (the ingest acknowledges in batches).
# Mosquitto is Debian's `mosquitto` package (scripts/setup.sh --test installs it).
set -euo pipefail
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|kill|status DIR [PORT]" >&2; exit 2; }
BIN=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$BIN" ] || { echo "mosquitto not installed (apt-get install mosquitto, or scripts/setup.sh --test)" >&2; exit 3; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
pidfile="$dir/mosquitto.pid"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "$cmd" in
  start)
    if running; then echo "already running on port $(cat "$dir/port")" >&2; cat "$dir/port"; exit 0; fi
    port=${3:-$( [ -f "$dir/port" ] && cat "$dir/port" || free_port )}
    echo "$port" > "$dir/port"
    mkdir -p "$dir/data"
    cat > "$dir/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
user $(id -un)
persistence true
persistence_location $dir/data/
autosave_interval 30
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 0
set_tcp_nodelay true
message_size_limit 0
log_dest file $dir/mosquitto.log
log_type error
log_type warning
log_type notice
CONF
    "$BIN" -c "$dir/mosquitto.conf" > "$dir/stdout.log" 2>&1 &
    echo $! > "$pidfile"
    for _ in $(seq 1 100); do
      if python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.2); sys.exit(s.connect_ex(('127.0.0.1', $port)))" 2>/dev/null; then
        echo "$port"; exit 0
      fi
      running || { echo "mosquitto exited; see $dir/mosquitto.log" >&2; cat "$dir/stdout.log" >&2; exit 1; }
      sleep 0.05
    done
    echo "mosquitto did not open port $port" >&2; exit 1 ;;
  stop|kill)
    if running; then
      pid=$(cat "$pidfile")
      if [ "$cmd" = kill ]; then kill -KILL "$pid"; else kill -TERM "$pid"; fi
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    fi
    rm -f "$pidfile" ;;
  status)
    if running; then echo "running $(cat "$dir/port")"; else echo stopped; fi ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
