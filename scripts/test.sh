#!/usr/bin/env bash
# Set up what is missing, then run every check: formatting, clippy, and all
# tests (unit, BPF_PROG_TEST_RUN on crafted frames, real packets through veth
# pairs in namespaces, coherence, CLI). Needs root: the tests load BPF programs.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "test: the tests load BPF programs and create namespaces; run as root (sudo $0)" >&2
    exit 1
fi
bash scripts/setup.sh --tests
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace --all-targets --no-fail-fast
