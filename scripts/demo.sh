#!/usr/bin/env bash
# The main job: build ferrax, compile and run examples/selu.py on an input, then compile SELU
# and its gradient into a library for any length and call it from the C example.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release --bin ferrax
cargo build --release -p ferrax-runtime
target/release/ferrax run examples/selu.py selu "[-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 3.0]"
mkdir -p build
target/release/ferrax compile examples/selu.py selu --sig "x: f32[?]" \
  --entry "dselu=jax.grad(lambda x: jnp.sum(selu(x)))" --emit lib -o build/libselu.so
cc -Wall -Werror -I build -I runtime/include examples/c/main.c -o build/selu_c \
  -L build -lselu -L target/release -lferrax_runtime \
  -Wl,-rpath,"$PWD/build:$PWD/target/release"
build/selu_c build/libselu.so
