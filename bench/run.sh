#!/usr/bin/env bash
# Build bullhorn and the benchmark in release mode, then run the benchmark.
#   bench/run.sh            full run (100,000-event drains), writes bench/results.json
#   bench/run.sh --quick    smaller drains, for a smoke test
set -euo pipefail
cd "$(dirname "$0")/.."
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || {
  echo "mosquitto is needed: apt-get install -y mosquitto" >&2; exit 1; }
cargo build --release --locked --bin bullhorn -p bullhorn
cargo build --release --locked --bin bench -p bullhorn-bench
exec target/release/bench "$@"
