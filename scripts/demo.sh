#!/usr/bin/env bash
# Set up what is missing, build netledger, and run `netledger demo` (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet -p netledger-cli
exec ./target/release/netledger demo "$@"
