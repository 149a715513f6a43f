#!/usr/bin/env bash
# o2c dev services: Mosquitto on 127.0.0.1:1883, PostgreSQL on 127.0.0.1:5432,
# Tansu (Kafka protocol, SQLite storage) on 127.0.0.1:9092, and for analytics
# ClickHouse (HTTP 127.0.0.1:8123, native 127.0.0.1:9000) and Redis on
# 127.0.0.1:6379, and for traces Arize Phoenix on 127.0.0.1:6006
# (deploy/dev/phoenix.sh); and installs the tools tests start themselves:
# Schemathesis (deploy/dev/schemathesis.sh) and the aiosmtpd SMTP server
# (deploy/dev/aiosmtpd.sh).
#
#   deploy/dev/services.sh up      start whatever is down (idempotent), install
#                                  Tansu if missing, wait until each answers
#   deploy/dev/services.sh down    stop what this script started
#   deploy/dev/services.sh status  print each service's state (exit 1 if any is down)
#
# State lives in ${O2C_DEV_DIR:-$HOME/.local/state/o2c-dev}:
#   tansu/tansu.db, tansu.pid, tansu.log
#   tansu-o2c/bin/tansu: Tansu 0.6.0 with o2c's fetch patch
#     (deploy/dev/tansu/fetch.patch), and tansu-o2c/patch.sha256, the
#     patch it was built with; a changed patch rebuilds it
#   clickhouse/{config.xml,users.xml,data/,log/}, clickhouse.pid, clickhouse.log
#     (ClickHouse 18.16 from Debian, run as a plain process with its own config;
#     there is no systemd here)
#   redis/, redis.pid, redis.log (only when this script starts Redis; a Redis
#     already answering on 6379 is reused; nothing is persisted)
# Health checks speak each protocol (deploy/dev/probe.py); a TCP connect is not
# enough for Tansu.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE_DIR=${O2C_DEV_DIR:-$HOME/.local/state/o2c-dev}
TANSU_DIR=$STATE_DIR/tansu
TANSU_PID=$STATE_DIR/tansu.pid
TANSU_LOG=$STATE_DIR/tansu.log
# The patch applies to this exact tansu-storage, checked by its crates.io
# checksum (the one Tansu 0.6.0's own Cargo.lock pins).
TANSU_VERSION=0.6.0
TANSU_FEATURES=dynostore,libsql
TANSU_STORAGE_SHA256=720d2ed8e6010c70f7f06e5af5a7274ebbf6e42fdcd9e46de542b10dc4d2f35d
TANSU_PATCH=$HERE/tansu/fetch.patch
TANSU_ROOT=$STATE_DIR/tansu-o2c
HOST=127.0.0.1
MQTT_PORT=1883
PG_PORT=5432
KAFKA_PORT=9092
CH_HTTP_PORT=8123
CH_NATIVE_PORT=9000
CH_INTERSERVER_PORT=9009
REDIS_PORT=6379
export PATH="$PATH:/usr/sbin:/sbin:${CARGO_HOME:-$HOME/.cargo}/bin"

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

mqtt_ok() { python3 "$HERE/probe.py" mqtt "$HOST" "$MQTT_PORT" 2>/dev/null; }
kafka_ok() { python3 "$HERE/probe.py" kafka "$HOST" "$KAFKA_PORT" 2>/dev/null; }
redis_ok() { python3 "$HERE/probe.py" redis "$HOST" "$REDIS_PORT" 2>/dev/null; }
clickhouse_ok() { python3 "$HERE/probe.py" clickhouse "$HOST" "$CH_HTTP_PORT" "$CH_NATIVE_PORT" >/dev/null 2>&1; }
pg_ok() { psql -h "$HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; }

# wait_for NAME SECONDS CHECK: poll CHECK until it succeeds or the deadline passes.
wait_for() {
  local name=$1 seconds=$2 check=$3
  local deadline=$((SECONDS + seconds))
  until "$check"; do
    if ((SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.2
  done
  log "$name is answering"
}

# --- Mosquitto -------------------------------------------------------------
# o2c runs its own dev config on 1883: loopback only, anonymous, and
# set_tcp_nodelay (Mosquitto's default leaves Nagle on, which adds ~40 ms to
# every ack round trip). A broker already on 1883 that is not ours (e.g. the
# machine's, started with /etc/mosquitto/mosquitto.conf) is replaced; set
# O2C_DEV_REUSE_MOSQUITTO=1 to keep it instead. `down` stops ours; restart the
# system one with `mosquitto -d -c /etc/mosquitto/mosquitto.conf`.
MOSQ_CONF=$STATE_DIR/mosquitto.conf
MOSQ_PID=$STATE_DIR/mosquitto.pid

mosquitto_ours() { [[ -f $MOSQ_PID ]] && kill -0 "$(cat "$MOSQ_PID")" 2>/dev/null; }

mosquitto_up() {
  if mosquitto_ours && mqtt_ok; then
    log "mosquitto: reusing o2c's dev broker on $HOST:$MQTT_PORT"
    return
  fi
  if mqtt_ok; then
    if [[ ${O2C_DEV_REUSE_MOSQUITTO:-0} == 1 ]]; then
      log "mosquitto: reusing the broker on $HOST:$MQTT_PORT (O2C_DEV_REUSE_MOSQUITTO=1; acks may see Nagle delays)"
      return
    fi
    local pid
    pid=$(ss -ltnpH "sport = :$MQTT_PORT" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
    [[ -n $pid ]] || die "something answers MQTT on $MQTT_PORT but its pid is unknown; stop it or set O2C_DEV_REUSE_MOSQUITTO=1"
    log "mosquitto: replacing the broker on $HOST:$MQTT_PORT (pid $pid) with o2c's dev config"
    kill -TERM "$pid"
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
  fi
  command -v mosquitto >/dev/null || die "mosquitto is not installed (apt-get install mosquitto)"
  cat >"$MOSQ_CONF" <<CONF
# Written by deploy/dev/services.sh: o2c's dev broker.
listener $MQTT_PORT $HOST
allow_anonymous true
set_tcp_nodelay true
max_queued_messages 100000
user root
pid_file $MOSQ_PID
log_dest file $STATE_DIR/mosquitto.log
CONF
  log "mosquitto: starting (mosquitto -d -c $MOSQ_CONF)"
  mosquitto -d -c "$MOSQ_CONF"
  wait_for mosquitto 30 mqtt_ok || die "mosquitto does not answer MQTT on $HOST:$MQTT_PORT (see $STATE_DIR/mosquitto.log)"
}

mosquitto_down() {
  if mosquitto_ours; then
    log "mosquitto: stopping o2c's dev broker"
    kill -TERM "$(cat "$MOSQ_PID")" 2>/dev/null || true
    rm -f "$MOSQ_PID"
  else
    log "mosquitto: not started by this script; leaving it"
  fi
}

# --- PostgreSQL ------------------------------------------------------------
pg_version() {
  [[ -d /etc/postgresql ]] || die "PostgreSQL is not installed (apt-get install postgresql)"
  ls /etc/postgresql | sort -V | tail -n 1
}

postgres_up() {
  if pg_ok; then
    log "postgres: reusing the server on $HOST:$PG_PORT"
    return
  fi
  local version
  version=$(pg_version)
  log "postgres: starting cluster $version/main"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  touch "$STATE_DIR/postgres.started"
  wait_for postgres 60 pg_ok || die "PostgreSQL does not answer on $HOST:$PG_PORT"
}

postgres_down() {
  if [[ -f $STATE_DIR/postgres.started ]]; then
    log "postgres: stopping (started by this script)"
    pg_ctlcluster --skip-systemctl-redirect "$(pg_version)" main stop || true
    rm -f "$STATE_DIR/postgres.started"
  else
    log "postgres: leaving the system server running"
  fi
}

# --- Tansu -----------------------------------------------------------------
tansu_patch_sha() { sha256sum "$TANSU_PATCH" | cut -d' ' -f1; }

# The patched Tansu, if it is built from the patch as it is now.
tansu_bin() {
  [[ -x $TANSU_ROOT/bin/tansu && -f $TANSU_ROOT/patch.sha256 ]] || return 0
  [[ $(cat "$TANSU_ROOT/patch.sha256") == "$(tansu_patch_sha)" ]] || return 0
  echo "$TANSU_ROOT/bin/tansu"
}

# Builds Tansu 0.6.0 with deploy/dev/tansu/fetch.patch applied to its
# tansu-storage crate (a fetch answers when records land, not at max wait;
# SQLite reads a fetch's headers in one query; DescribeGroups decodes a
# stored group; the patch's header says why).
# The crate comes from crates.io and is checked against its checksum; cargo
# builds the rest of Tansu from its own lock file, with the patched crate in
# place of the published one.
tansu_install() {
  if [[ -n $(tansu_bin) ]]; then
    return
  fi
  command -v cargo >/dev/null || die "cargo is needed to install Tansu"
  command -v patch >/dev/null || die "patch is needed to build Tansu (apt-get install patch)"
  local src=$STATE_DIR/tansu-storage-src
  local crate=$STATE_DIR/tansu-storage-$TANSU_VERSION.crate
  log "tansu: building $TANSU_VERSION with o2c's fetch patch into $TANSU_ROOT (about 12-15 minutes the first time)"
  if ! echo "$TANSU_STORAGE_SHA256  $crate" | sha256sum -c --quiet - 2>/dev/null; then
    curl -sSfL --retry 3 -o "$crate" \
      "https://static.crates.io/crates/tansu-storage/$TANSU_VERSION/download" \
      || die "could not download tansu-storage $TANSU_VERSION from crates.io"
    echo "$TANSU_STORAGE_SHA256  $crate" | sha256sum -c --quiet - \
      || die "tansu-storage $TANSU_VERSION from crates.io does not match its checksum"
  fi
  rm -rf "$src"
  mkdir -p "$src"
  tar -xzf "$crate" -C "$src" --strip-components=1
  patch -d "$src" -p1 --quiet --forward <"$TANSU_PATCH" \
    || die "$TANSU_PATCH does not apply to tansu-storage $TANSU_VERSION"
  local out=$STATE_DIR/tansu-install.log
  if ! cargo install tansu --version "$TANSU_VERSION" --locked --features "$TANSU_FEATURES" \
    --root "$TANSU_ROOT" --force \
    --config "patch.crates-io.tansu-storage.path=\"$src\"" 2>&1 | tee "$out" >&2; then
    die "cargo install tansu failed (log $out)"
  fi
  if grep -q "was not used in the crate graph" "$out"; then
    die "cargo did not use the patched tansu-storage (log $out)"
  fi
  tansu_patch_sha >"$TANSU_ROOT/patch.sha256"
  [[ -n $(tansu_bin) ]] || die "no patched tansu in $TANSU_ROOT after cargo install"
}

# The pid of the Tansu this script started, if it still runs.
tansu_pid() {
  [[ -f $TANSU_PID ]] || return 1
  local pid
  pid=$(cat "$TANSU_PID")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && grep -q tansu "/proc/$pid/comm" 2>/dev/null || return 1
  echo "$pid"
}

tansu_start() {
  mkdir -p "$TANSU_DIR"
  local bin
  bin=$(tansu_bin)
  log "tansu: starting on $HOST:$KAFKA_PORT (data $TANSU_DIR/tansu.db, log $TANSU_LOG)"
  # Relative sqlite URL on purpose: Tansu resolves sqlite:///abs paths wrongly.
  # setsid + redirected stdio: the broker outlives this script and holds no pipe of it.
  (
    cd "$TANSU_DIR"
    exec setsid "$bin" broker \
      --listener-url "tcp://$HOST:$KAFKA_PORT" \
      --advertised-listener-url "tcp://$HOST:$KAFKA_PORT" \
      --storage-engine "sqlite://tansu.db" \
      </dev/null >>"$TANSU_LOG" 2>&1
  ) &
  echo $! >"$TANSU_PID"
  if ! wait_for tansu 60 kafka_ok; then
    tail -n 30 "$TANSU_LOG" >&2 || true
    die "Tansu does not answer Kafka metadata on $HOST:$KAFKA_PORT"
  fi
}

tansu_stop() {
  local pid
  pid=$(tansu_pid) || { rm -f "$TANSU_PID"; return 0; }
  log "tansu: stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 20))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "tansu: still running after 20 s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.1
  done
  rm -f "$TANSU_PID"
}

tansu_db_query() { sqlite3 "$TANSU_DIR/tansu.db" "$1" 2>/dev/null || true; }

tansu_needs_index() {
  [[ -f $TANSU_DIR/tansu.db ]] || return 1
  [[ $(tansu_db_query "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='header'") == 1 ]] || return 1
  [[ $(tansu_db_query "SELECT count(*) FROM sqlite_master WHERE type='index' AND name='header_topition_offset_id'") != 1 ]]
}

# Tansu 0.6's SQLite schema lacks this index; fetches from big topics crawl
# without it. It can only be added while Tansu is stopped.
tansu_apply_index() {
  command -v sqlite3 >/dev/null || die "sqlite3 is not installed (apt-get install sqlite3)"
  log "tansu: adding the header(topition, offset_id) index"
  tansu_stop
  sqlite3 "$TANSU_DIR/tansu.db" \
    'CREATE INDEX IF NOT EXISTS header_topition_offset_id ON header(topition, offset_id);'
  tansu_start
}

tansu_up() {
  tansu_install
  local pid
  if pid=$(tansu_pid) && [[ $(readlink "/proc/$pid/exe") != "$(tansu_bin)" ]]; then
    log "tansu: pid $pid runs $(readlink "/proc/$pid/exe"), not $(tansu_bin); restarting it"
    tansu_stop
  fi
  if kafka_ok; then
    if tansu_pid >/dev/null && tansu_needs_index; then
      tansu_apply_index
    else
      log "tansu: reusing the broker on $HOST:$KAFKA_PORT"
    fi
    return
  fi
  if tansu_pid >/dev/null; then
    log "tansu: our process runs but does not answer; restarting it"
    tansu_stop
  fi
  tansu_start
  if tansu_needs_index; then
    tansu_apply_index
  fi
}

tansu_state() {
  if kafka_ok; then
    local owner="external"
    tansu_pid >/dev/null && owner="pid $(tansu_pid)"
    local index="index missing"
    tansu_needs_index || index="index ok"
    [[ -f $TANSU_DIR/tansu.db ]] || index="no local db"
    echo "up ($owner, $index)"
  else
    echo "down"
  fi
}

# --- ClickHouse ------------------------------------------------------------
# Debian's clickhouse-server (18.16) as a plain process, with a config derived
# from the package's: every path under $CH_DIR, listening on 127.0.0.1 only.
CH_DIR=$STATE_DIR/clickhouse
CH_PID=$STATE_DIR/clickhouse.pid
CH_LOG=$STATE_DIR/clickhouse.log
CH_ETC=${O2C_CLICKHOUSE_ETC:-/etc/clickhouse-server}

# The server command: Debian ships clickhouse-server; upstream ships one
# `clickhouse` binary with a `server` subcommand.
clickhouse_cmd() {
  local bin
  if bin=$(command -v clickhouse-server); then
    echo "$bin"
  elif bin=$(command -v clickhouse); then
    echo "$bin server"
  fi
}

# The pid of the ClickHouse this script started, if it still runs.
clickhouse_pid() {
  [[ -f $CH_PID ]] || return 1
  local pid
  pid=$(cat "$CH_PID")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && grep -q clickhouse "/proc/$pid/comm" 2>/dev/null || return 1
  echo "$pid"
}

# Copies the package's config.xml and users.xml into $CH_DIR and rewrites the
# copy: data, tmp, user files, format schemas and logs under $CH_DIR, one
# listen_host (127.0.0.1) for HTTP, native and interserver ports alike.
clickhouse_write_config() {
  [[ -f $CH_ETC/config.xml && -f $CH_ETC/users.xml ]] \
    || die "no $CH_ETC/config.xml or users.xml (apt-get install -y --no-install-recommends clickhouse-server)"
  mkdir -p "$CH_DIR/data" "$CH_DIR/log"
  cp "$CH_ETC/users.xml" "$CH_DIR/users.xml"
  python3 - "$CH_ETC/config.xml" "$CH_DIR" "$HOST" "$CH_HTTP_PORT" "$CH_NATIVE_PORT" "$CH_INTERSERVER_PORT" <<'PY'
import sys
import xml.etree.ElementTree as ET

src, state, host, http_port, native_port, interserver_port = sys.argv[1:]
tree = ET.parse(src)
root = tree.getroot()


def put(path, text):
    node = root.find(path)
    if node is None:
        parent = root
        for part in path.split("/"):
            child = parent.find(part)
            parent = child if child is not None else ET.SubElement(parent, part)
        node = parent
    node.text = text


put("path", state + "/data/")
put("tmp_path", state + "/data/tmp/")
put("user_files_path", state + "/data/user_files/")
put("format_schema_path", state + "/data/format_schemas/")
put("logger/log", state + "/log/clickhouse-server.log")
put("logger/errorlog", state + "/log/clickhouse-server.err.log")
put("logger/size", "100M")
put("logger/count", "3")
put("users_config", state + "/users.xml")
put("http_port", http_port)
put("tcp_port", native_port)
put("interserver_http_port", interserver_port)
put("interserver_http_host", host)
# Ports that would bind more than the dev needs (TLS, MySQL/PostgreSQL
# protocols of newer servers) go; every remaining port binds listen_host only.
for tag in ("https_port", "tcp_port_secure", "mysql_port", "postgresql_port",
            "interserver_https_port", "listen_host"):
    for node in root.findall(tag):
        root.remove(node)
ET.SubElement(root, "listen_host").text = host
ET.SubElement(root, "listen_try").text = "0"
tree.write(state + "/config.xml", encoding="utf-8", xml_declaration=True)
PY
}

# Fails fast (with the log) when the server process has died while starting.
# (Only kill -0: until the exec, the pid is still the starting subshell's.)
clickhouse_ready() {
  if ! kill -0 "$(cat "$CH_PID")" 2>/dev/null; then
    tail -n 30 "$CH_LOG" "$CH_DIR/log/clickhouse-server.err.log" >&2 2>/dev/null || true
    die "ClickHouse exited while starting (see $CH_LOG and $CH_DIR/log/)"
  fi
  clickhouse_ok
}

clickhouse_start() {
  local cmd
  cmd=$(clickhouse_cmd)
  [[ -n $cmd ]] || die "ClickHouse is not installed (apt-get install -y --no-install-recommends clickhouse-server clickhouse-client)"
  clickhouse_write_config
  log "clickhouse: starting on $HOST:$CH_HTTP_PORT (HTTP) and $HOST:$CH_NATIVE_PORT (native) ($cmd --config-file=$CH_DIR/config.xml, data $CH_DIR/data, log $CH_LOG)"
  # setsid + redirected stdio, as for Tansu: the server outlives this script.
  # $cmd is word-split on purpose ("clickhouse server").
  (
    cd "$CH_DIR"
    # shellcheck disable=SC2086
    exec setsid $cmd --config-file="$CH_DIR/config.xml" </dev/null >>"$CH_LOG" 2>&1
  ) &
  echo $! >"$CH_PID"
  wait_for clickhouse 60 clickhouse_ready || {
    tail -n 30 "$CH_DIR/log/clickhouse-server.err.log" >&2 2>/dev/null || true
    die "ClickHouse does not answer on $HOST:$CH_HTTP_PORT (see $CH_LOG and $CH_DIR/log/)"
  }
}

clickhouse_stop() {
  local pid
  pid=$(clickhouse_pid) || { rm -f "$CH_PID"; return 0; }
  log "clickhouse: stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "clickhouse: still running after 30 s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.1
  done
  rm -f "$CH_PID"
}

clickhouse_up() {
  if clickhouse_ok; then
    if clickhouse_pid >/dev/null; then
      log "clickhouse: reusing o2c's dev server on $HOST:$CH_HTTP_PORT"
    else
      log "clickhouse: reusing the server on $HOST:$CH_HTTP_PORT"
    fi
    return
  fi
  if clickhouse_pid >/dev/null; then
    log "clickhouse: our process runs but does not answer; restarting it"
    clickhouse_stop
  fi
  clickhouse_start
}

clickhouse_down() {
  if clickhouse_pid >/dev/null; then
    clickhouse_stop
    log "clickhouse: stopped"
  else
    rm -f "$CH_PID"
    log "clickhouse: not started by this script; leaving it"
  fi
}

clickhouse_state() {
  local version
  if version=$(python3 "$HERE/probe.py" clickhouse "$HOST" "$CH_HTTP_PORT" "$CH_NATIVE_PORT" 2>/dev/null); then
    local owner="external"
    clickhouse_pid >/dev/null && owner="pid $(clickhouse_pid)"
    echo "up ($owner, $version, native :$CH_NATIVE_PORT)"
  else
    echo "down"
  fi
}

# --- Redis -----------------------------------------------------------------
# The machine usually runs a Redis on 6379 already; it is reused. Otherwise
# this script starts one on loopback that keeps nothing on disk.
REDIS_DIR=$STATE_DIR/redis
REDIS_PID=$STATE_DIR/redis.pid
REDIS_LOG=$STATE_DIR/redis.log

# The pid of the Redis this script started, if it still runs.
redis_pid() {
  [[ -f $REDIS_PID ]] || return 1
  local pid
  pid=$(cat "$REDIS_PID")
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && grep -q redis "/proc/$pid/comm" 2>/dev/null || return 1
  echo "$pid"
}

redis_up() {
  if redis_ok; then
    if redis_pid >/dev/null; then
      log "redis: reusing o2c's dev server on $HOST:$REDIS_PORT"
    else
      log "redis: reusing the server on $HOST:$REDIS_PORT"
    fi
    return
  fi
  command -v redis-server >/dev/null || die "redis-server is not installed (apt-get install redis-server)"
  mkdir -p "$REDIS_DIR"
  log "redis: starting on $HOST:$REDIS_PORT (no persistence, log $REDIS_LOG)"
  redis-server --bind "$HOST" --port "$REDIS_PORT" --save '' --appendonly no --daemonize yes \
    --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" --dir "$REDIS_DIR" </dev/null
  wait_for redis 30 redis_ok || die "Redis does not answer PING on $HOST:$REDIS_PORT (see $REDIS_LOG)"
}

redis_down() {
  local pid
  if pid=$(redis_pid); then
    log "redis: stopping pid $pid (started by this script)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    rm -f "$REDIS_PID"
  else
    rm -f "$REDIS_PID"
    log "redis: not started by this script; leaving it"
  fi
}

redis_state() {
  if redis_ok; then
    local owner="external"
    redis_pid >/dev/null && owner="pid $(redis_pid)"
    echo "up ($owner)"
  else
    echo "down"
  fi
}

# --- Commands ----------------------------------------------------------------
cmd_up() {
  command -v python3 >/dev/null || die "python3 is needed for the health probes"
  mkdir -p "$STATE_DIR"
  mosquitto_up
  postgres_up
  redis_up
  clickhouse_up
  "$HERE/phoenix.sh" up
  "$HERE/schemathesis.sh" install
  # The mail tests' SMTP server (aiosmtpd; tests/smtp/server.py).
  "$HERE/aiosmtpd.sh" install
  tansu_up
  cmd_status
}

cmd_down() {
  mkdir -p "$STATE_DIR"
  tansu_stop
  log "tansu: stopped"
  clickhouse_down
  "$HERE/phoenix.sh" down
  redis_down
  mosquitto_down
  postgres_down
}

cmd_status() {
  local down=0 state
  if mqtt_ok; then state=up; else state=down; down=1; fi
  printf '%-10s %-16s %s\n' mosquitto "$HOST:$MQTT_PORT" "$state"
  if pg_ok; then state=up; else state=down; down=1; fi
  printf '%-10s %-16s %s\n' postgres "$HOST:$PG_PORT" "$state"
  state=$(tansu_state)
  [[ $state == down ]] && down=1
  printf '%-10s %-16s %s\n' tansu "$HOST:$KAFKA_PORT" "$state"
  state=$(clickhouse_state)
  [[ $state == down ]] && down=1
  printf '%-10s %-16s %s\n' clickhouse "$HOST:$CH_HTTP_PORT" "$state"
  state=$(redis_state)
  [[ $state == down ]] && down=1
  printf '%-10s %-16s %s\n' redis "$HOST:$REDIS_PORT" "$state"
  "$HERE/phoenix.sh" status || down=1
  return "$down"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 64
    ;;
esac
