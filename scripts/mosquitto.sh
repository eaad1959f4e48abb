#!/usr/bin/env bash
# Start / stop a Mosquitto broker for tests and benchmarks, on loopback only.
#
#   scripts/mosquitto.sh start DIR [PORT] [OPTIONS]   start a broker (free port if PORT omitted) with its
#                                           config, persistence and log in DIR; prints the port
#   scripts/mosquitto.sh stop DIR           stop it gracefully (SIGTERM: the broker saves its queues)
#   scripts/mosquitto.sh kill DIR           stop it hard (SIGKILL)
#   scripts/mosquitto.sh reload DIR         make it re-read its password and ACL files (SIGHUP)
#   scripts/mosquitto.sh status DIR         "running PORT" or "stopped"
#
# Security (anonymous access is off unless --anonymous is given):
#   --auth ADIR   accounts of a workspace: ADIR/passwd and ADIR/acl as written by
#                 `citytwin twin devices broker-files --out ADIR`; each client's id is its username
#                 (use_username_as_clientid), so no account can take over another's session
#   (no --auth)   a single full-access account from $CITYTWIN_MQTT_USERNAME / $CITYTWIN_MQTT_PASSWORD
#                 (development and tests; client ids are not tied to it); neither given: refused
#   --tls         also a TLS listener on a second port (written to DIR/tls_port) with a self-signed CA
#                 and server certificate made by openssl in DIR/tls (clients trust DIR/tls/ca.crt)
#   --tls-port N  that port (default: a free one)
#   --anonymous   allow clients without credentials (never for a broker others can reach)
# A restart (`start DIR` again without options) reuses the options of the first start.
#
# Settings that make QoS 1 ingest lossless: persistence (queued messages and sessions survive a
# restart), no cap on queued messages for offline persistent sessions (mosquitto's default is 1000
# and drops the rest), no cap on in-flight messages (the ingest acknowledges in batches).
# Mosquitto is Debian's `mosquitto` package (scripts/setup.sh --test installs it).
set -euo pipefail
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|kill|reload|status DIR [PORT] [OPTIONS]" >&2; exit 2; }
shift 2
port_arg=""
if [ $# -gt 0 ] && [[ $1 != --* ]]; then port_arg=$1; shift; fi
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
    # options: given now, else those of the first start (kept in DIR/options)
    if [ $# -eq 0 ] && [ -s "$dir/options" ]; then mapfile -t opts < "$dir/options"; set -- "${opts[@]}"; fi
    auth=""; tls=0; tls_port=""; anonymous=0; bind_id=""
    while [ $# -gt 0 ]; do
      case "$1" in
        --auth) auth=$(cd "${2:?--auth needs a folder}" && pwd); shift 2 ;;
        --tls) tls=1; shift ;;
        --tls-port) tls=1; tls_port=${2:?--tls-port needs a port}; shift 2 ;;
        --anonymous) anonymous=1; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
      esac
    done
    {  # kept for a restart, with absolute paths
      [ -n "$auth" ] && printf '%s\n' --auth "$auth"
      [ "$tls" = 1 ] && printf '%s\n' --tls
      [ -n "$tls_port" ] && printf '%s\n' --tls-port "$tls_port"
      [ "$anonymous" = 1 ] && printf '%s\n' --anonymous
      true
    } > "$dir/options"
    port=${port_arg:-$( [ -f "$dir/port" ] && cat "$dir/port" || free_port )}
    echo "$port" > "$dir/port"
    mkdir -p "$dir/data"
    if [ "$anonymous" = 1 ]; then
      security="allow_anonymous true"
    elif [ -n "$auth" ]; then
      for f in passwd acl; do
        [ -f "$auth/$f" ] || { echo "$auth/$f missing: run citytwin twin devices broker-files --out $auth" >&2; exit 2; }
      done
      security="allow_anonymous false
password_file $auth/passwd
acl_file $auth/acl"
      bind_id="use_username_as_clientid true"
    elif [ -n "${CITYTWIN_MQTT_USERNAME:-}" ] && [ -n "${CITYTWIN_MQTT_PASSWORD:-}" ]; then
      mkdir -p "$dir/auth"; chmod 700 "$dir/auth"
      python3 - "$dir/auth" <<'PY'
import base64, hashlib, os, re, secrets, sys
user, pw = os.environ["CITYTWIN_MQTT_USERNAME"], os.environ["CITYTWIN_MQTT_PASSWORD"]
if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", user):
    sys.exit(f"CITYTWIN_MQTT_USERNAME {user!r}: use letters, digits, '.', '_' and '-'")
salt = secrets.token_bytes(12)
dk = hashlib.pbkdf2_hmac("sha512", pw.encode(), salt, 101)
old = os.umask(0o077)
with open(os.path.join(sys.argv[1], "passwd"), "w") as f:
    f.write(f"{user}:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}\n")
with open(os.path.join(sys.argv[1], "acl"), "w") as f:
    f.write(f"user {user}\ntopic readwrite #\ntopic read $SYS/broker/#\n")  # and the broker statistics (doctor)
os.umask(old)
PY
      security="allow_anonymous false
password_file $dir/auth/passwd
acl_file $dir/auth/acl"
    else
      echo "no MQTT accounts: pass --auth DIR (citytwin twin devices broker-files --out DIR), set" \
           "CITYTWIN_MQTT_USERNAME and CITYTWIN_MQTT_PASSWORD for one development account, or --anonymous" >&2
      exit 2
    fi
    tls_conf=""
    if [ "$tls" = 1 ]; then
      command -v openssl >/dev/null || { echo "--tls needs openssl" >&2; exit 3; }
      t="$dir/tls"
      if [ ! -f "$t/server.crt" ]; then
        mkdir -p "$t"; chmod 700 "$t"
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=citytwin test CA" \
          -keyout "$t/ca.key" -out "$t/ca.crt" >/dev/null 2>&1
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$t/server.key" \
          -out "$t/server.csr" >/dev/null 2>&1
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$t/san.ext"
        openssl x509 -req -in "$t/server.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" -CAcreateserial -days 30 \
          -extfile "$t/san.ext" -out "$t/server.crt" >/dev/null 2>&1
      fi
      tls_port=${tls_port:-$( [ -f "$dir/tls_port" ] && cat "$dir/tls_port" || free_port )}
      echo "$tls_port" > "$dir/tls_port"
      tls_conf="listener $tls_port 127.0.0.1
$bind_id
cafile $t/ca.crt
certfile $t/server.crt
keyfile $t/server.key
tls_version tlsv1.2"
    else
      rm -f "$dir/tls_port"
    fi
    cat > "$dir/mosquitto.conf" <<CONF
$security
listener $port 127.0.0.1
$bind_id
$tls_conf
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
  reload)
    running || { echo "not running" >&2; exit 1; }
    kill -HUP "$(cat "$pidfile")" ;;
  status)
    if running; then echo "running $(cat "$dir/port")"; else echo stopped; fi ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
