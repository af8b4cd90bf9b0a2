#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests (snapshots must match),
# and the conformance cross-check of the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
INSTA_UPDATE=no cargo test --workspace
cargo build --release --bin ferrax
python3 tests/conformance/check.py --ferrax target/release/ferrax
python3 tests/conformance/check.py --ferrax target/release/ferrax examples/mlp.py
