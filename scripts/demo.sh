#!/usr/bin/env bash
# The main job: build ferrax, then compile and run examples/selu.py on an input.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --bin ferrax
target/release/ferrax run examples/selu.py selu "[-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0]"
