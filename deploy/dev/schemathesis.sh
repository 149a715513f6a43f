#!/usr/bin/env bash
# Schemathesis, the property-based API tester the OpenAPI suites run against
# the agent's and the cloud's documents (tests/src/schemathesis.rs). Called
# by services.sh up.
#
#   deploy/dev/schemathesis.sh install|path
#
# Installed from PyPI (schemathesis, pinned) into a venv under the state dir
# (about 60 MB, under a minute the first time). `path` prints the `st` CLI
# the harness runs (override with O2C_SCHEMATHESIS).
set -euo pipefail

STATE_DIR=${O2C_DEV_DIR:-$HOME/.local/state/o2c-dev}
SCHEMATHESIS_VERSION=${O2C_SCHEMATHESIS_VERSION:-4.32.5}
VENV=$STATE_DIR/schemathesis-venv
ST=$VENV/bin/st

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

installed() {
  [[ -x $ST ]] || return 1
  local have
  have=$("$VENV/bin/python3" -c \
    'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null) || return 1
  [[ $have == "$SCHEMATHESIS_VERSION" ]]
}

install() {
  if installed; then
    log "schemathesis: $SCHEMATHESIS_VERSION installed ($ST)"
    return
  fi
  log "schemathesis: installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  mkdir -p "$STATE_DIR"
  python3 -m venv "$VENV" || die "python3 cannot make a venv (apt-get install python3-venv)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION"
  installed || die "schemathesis $SCHEMATHESIS_VERSION did not install into $VENV"
  log "schemathesis: installed ($ST)"
}

case ${1:-} in
  install) install ;;
  path) echo "$ST" ;;
  *)
    echo "usage: $0 install|path" >&2
    exit 64
    ;;
esac
