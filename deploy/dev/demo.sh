#!/usr/bin/env bash
# The o2c end-to-end demo, on this machine: two store agents selling through
# simulated tills (card, cash, a few declined cards, a few voids of paid
# orders), MQTT (Mosquitto), the cloud ingest, Kafka (Tansu), the saga
# services (`o2c-cloud saga --service all`, on a PostgreSQL database of the
# demo's own) and the processor simulator (`o2c-psp-sim`), and beside them
# a web shop selling through the cloud order API (`o2c-cloud api`: a few
# customers' web orders, a few declined cards, one cancelled once paid),
# and the customer notifications (`o2c-cloud notify`, mailing the customers
# who gave an address through an SMTP server of the demo's own, aiosmtpd).
# The stores use MQTT over mutual TLS (a fleet PKI and Mosquitto of the
# demo's own) and pull their catalog from the catalog service (`o2c-cloud
# catalog`); a price change imported part-way reaches each store.
# One store's link is cut for a while and restored; a table per store is
# printed every second (sync side and cloud statuses, with a row for the
# web channel); at the end it checks that every event the stores wrote and
# every web order's OrderCreated is in Kafka exactly once after dedup by
# event_id and that every order reached a final status at its store or at
# the API, and that each customer got exactly the mail its order's final
# status calls for, once (exit 1 otherwise).
#
#   deploy/dev/demo.sh [--duration-secs 35] [--rate 20] [--web-rate 2]
#                      [--outage-at-secs 8] [--outage-secs 10] [--settle-secs 120]
#                      [--price-change-at-secs 12]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

duration=35
settle=120
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --duration-secs) duration=${args[i + 1]:-$duration} ;;
    --duration-secs=*) duration=${args[i]#*=} ;;
    --settle-secs) settle=${args[i + 1]:-$settle} ;;
    --settle-secs=*) settle=${args[i]#*=} ;;
  esac
done

phase() { printf '[demo] %s\n' "$*"; }

phase "1/4 services: Mosquitto, PostgreSQL, Tansu (Tansu: ~11-12 min the first time on a fresh 2-core machine, cargo install tansu with o2c's fetch patch; cached after, then seconds) ..."
deploy/dev/services.sh up
phase "2/4 release build of o2c-agent, o2c-cloud, o2c-demo, o2c-psp-sim (about 7 min the first time on 2 cores; seconds when cached) ..."
cargo build --release --locked -p o2c-agent -p o2c-cloud -p o2c-tests --bins
phase "3/4 pipeline starting: fleet PKI and Mosquitto over mutual TLS, catalog service, ingest, processor simulator, saga, order API, analytics, notify and its SMTP server, 2 store agents (a few seconds with the services up) ..."
phase "4/4 then selling for ${duration} s and settling (a few seconds; at most ${settle} s); a table per store and the web channel every second ..."
exec target/release/o2c-demo "$@"
