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

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=deploy/dev/pyvenv.sh
. "$HERE/pyvenv.sh"
SCHEMATHESIS_VERSION=${O2C_SCHEMATHESIS_VERSION:-4.32.5}
VENV=$STATE_DIR/schemathesis-venv

case ${1:-} in
  install) pyvenv_install "$VENV" schemathesis "$SCHEMATHESIS_VERSION" ;;
  path) echo "$VENV/bin/st" ;;
  *)
    echo "usage: $0 install|path" >&2
    exit 64
    ;;
esac
