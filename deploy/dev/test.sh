#!/usr/bin/env bash
# The o2c test suite, exactly as CI runs it:
#   1. dev services up (Mosquitto, PostgreSQL, Tansu), waiting until each answers;
#   2. every workspace binary built, so end-to-end tests find o2c-agent and
#      o2c-cloud next to them (o2c_tests::bin_path);
#   3. cargo test --workspace, with any extra arguments passed through,
#      e.g. deploy/dev/test.sh -- --nocapture, or a test-name filter:
#      deploy/dev/test.sh -- private_tansu (with --workspace, -p does not narrow).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

deploy/dev/services.sh up
cargo build --workspace --bins
cargo test --workspace "$@"
