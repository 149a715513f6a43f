#!/usr/bin/env bash
# The o2c end-to-end demo, on this machine: two store agents selling through
# simulated terminals, MQTT (Mosquitto), the cloud ingest, Kafka (Tansu).
# One store's link is cut for a while and restored; a table per store is
# printed every second; at the end Kafka is checked: every captured order is
# there exactly once after dedup by event_id (exit 1 otherwise).
#
#   deploy/dev/demo.sh [--duration-secs 30] [--rate 40] [--outage-at-secs 8] [--outage-secs 10]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

deploy/dev/services.sh up
echo "[demo] building release binaries (first run: a few minutes)"
cargo build --release --locked -p o2c-agent -p o2c-cloud -p o2c-tests --bins
exec target/release/o2c-demo "$@"
