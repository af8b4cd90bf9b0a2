#!/usr/bin/env bash
# The cost of one call of a compiled scalar function through the runtime (`Entry::call_into`,
# checked dtypes and shapes): grad(f, argnums=(0, 1)) of benches/workloads.py, compiled into
# a shared library. Run from the repository root after `cargo build --release`.
set -euo pipefail
folder=$(mktemp -d)
trap 'rm -rf "$folder"' EXIT
target/release/ferrax compile benches/workloads.py grad_f --sig "x1: f32[], x2: f32[]" \
  --emit lib -o "$folder/libgradf.so"
target/release/ferrax-rust-example bench "$folder/libgradf.so" grad_f 10000000
