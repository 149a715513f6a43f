#!/usr/bin/env bash
# Arize Phoenix, the OTLP trace receiver of the dev services and of the trace
# tests (issue 17), and a trace UI: http://127.0.0.1:6006 (OTLP/HTTP on
# /v1/traces, REST on /v1/projects/...). Called by services.sh.
#
#   deploy/dev/phoenix.sh up|down|status
#
# Installed from PyPI (arize-phoenix, pinned) into a venv under the state dir
# (about 850 MB, 2 minutes the first time); runs as a plain process on
# loopback (deploy/dev/phoenix_serve.py keeps its gRPC port there too), its
# SQLite data in the state dir.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=deploy/dev/pyvenv.sh
. "$HERE/pyvenv.sh"
PHOENIX_VERSION=${O2C_PHOENIX_VERSION:-20.26.1}
VENV=$STATE_DIR/phoenix-venv
DATA=$STATE_DIR/phoenix
PID_FILE=$STATE_DIR/phoenix.pid
LOG=$STATE_DIR/phoenix.log
HOST=127.0.0.1
PORT=${O2C_PHOENIX_PORT:-6006}
GRPC_PORT=${O2C_PHOENIX_GRPC_PORT:-4317}

ok() { python3 "$HERE/probe.py" phoenix "$HOST" "$PORT" >/dev/null 2>&1; }

pid() {
  [[ -f $PID_FILE ]] || return 1
  local p
  p=$(cat "$PID_FILE")
  [[ -n $p ]] && kill -0 "$p" 2>/dev/null || return 1
  echo "$p"
}

install() {
  pyvenv_install "$VENV" arize-phoenix "$PHOENIX_VERSION" "about 2 minutes"
}

up() {
  if ok; then
    log "phoenix: answering on $HOST:$PORT"
    return
  fi
  install
  mkdir -p "$DATA"
  log "phoenix: starting on $HOST:$PORT (data $DATA, log $LOG)"
  (
    export PHOENIX_HOST=$HOST PHOENIX_PORT=$PORT PHOENIX_GRPC_PORT=$GRPC_PORT \
      PHOENIX_WORKING_DIR=$DATA PHOENIX_TELEMETRY_ENABLED=false
    exec setsid "$VENV/bin/python3" "$HERE/phoenix_serve.py" serve </dev/null >>"$LOG" 2>&1
  ) &
  echo $! >"$PID_FILE"
  local deadline=$((SECONDS + 120))
  until ok; do
    if ((SECONDS >= deadline)) || ! pid >/dev/null; then
      tail -n 30 "$LOG" >&2 || true
      die "Phoenix does not answer on $HOST:$PORT (see $LOG)"
    fi
    sleep 0.5
  done
  log "phoenix is answering"
}

down() {
  local p
  if p=$(pid); then
    log "phoenix: stopping pid $p"
    kill -TERM "$p" 2>/dev/null || true
    local deadline=$((SECONDS + 20))
    while kill -0 "$p" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -KILL "$p" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
}

status() {
  if ok; then
    local owner=external
    pid >/dev/null && owner="pid $(pid)"
    printf '%-10s %-16s %s\n' phoenix "$HOST:$PORT" "up ($owner)"
  else
    printf '%-10s %-16s %s\n' phoenix "$HOST:$PORT" down
    return 1
  fi
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 64
    ;;
esac
