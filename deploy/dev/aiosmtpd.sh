#!/usr/bin/env bash
# aiosmtpd, the Python SMTP server the notification suites send their
# customer e-mail to (tests/smtp/server.py, driven by tests/src/smtp.rs).
# Called by services.sh up.
#
#   deploy/dev/aiosmtpd.sh install|path
#
# Installed from PyPI (aiosmtpd, pinned) into a venv under the state dir
# (a few MB, seconds the first time). `path` prints the venv's python3 the
# harness runs server.py with (override with O2C_AIOSMTPD_PYTHON).
set -euo pipefail

STATE_DIR=${O2C_DEV_DIR:-$HOME/.local/state/o2c-dev}
AIOSMTPD_VERSION=${O2C_AIOSMTPD_VERSION:-1.4.6}
VENV=$STATE_DIR/aiosmtpd-venv
PYTHON=$VENV/bin/python3

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

installed() {
  [[ -x $PYTHON ]] || return 1
  local have
  have=$("$PYTHON" -c \
    'import importlib.metadata as m; print(m.version("aiosmtpd"))' 2>/dev/null) || return 1
  [[ $have == "$AIOSMTPD_VERSION" ]]
}

install() {
  if installed; then
    log "aiosmtpd: $AIOSMTPD_VERSION installed ($PYTHON)"
    return
  fi
  log "aiosmtpd: installing aiosmtpd $AIOSMTPD_VERSION into $VENV"
  mkdir -p "$STATE_DIR"
  python3 -m venv "$VENV" || die "python3 cannot make a venv (apt-get install python3-venv)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "aiosmtpd==$AIOSMTPD_VERSION"
  installed || die "aiosmtpd $AIOSMTPD_VERSION did not install into $VENV"
  log "aiosmtpd: installed ($PYTHON)"
}

case ${1:-} in
  install) install ;;
  path) echo "$PYTHON" ;;
  *)
    echo "usage: $0 install|path" >&2
    exit 64
    ;;
esac
