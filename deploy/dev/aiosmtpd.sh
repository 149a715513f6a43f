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

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=deploy/dev/pyvenv.sh
. "$HERE/pyvenv.sh"
AIOSMTPD_VERSION=${O2C_AIOSMTPD_VERSION:-1.4.6}
VENV=$STATE_DIR/aiosmtpd-venv

case ${1:-} in
  install) pyvenv_install "$VENV" aiosmtpd "$AIOSMTPD_VERSION" ;;
  path) echo "$VENV/bin/python3" ;;
  *)
    echo "usage: $0 install|path" >&2
    exit 64
    ;;
esac
