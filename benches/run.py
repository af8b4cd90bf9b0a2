#!/usr/bin/env python3
"""Times the workloads of workloads.py under Ferrax (`ferrax bench`) and, when JAX is
installed, under `jax.jit` in the same run, and prints a table with the ratio Ferrax/JAX.

Usage: python3 benches/run.py [--ferrax target/release/ferrax] [--iterations N] [--rounds R]

Each side makes the same calls: a warm-up of a tenth of the timed calls (at least 10), then
N timed calls (N x 20 for SELU, `dist` and `x + 1`, N x 100 for the scalar `grad`). Every
workload is measured in each of R rounds (3 by default; a round runs all the workloads, so
that a workload's rounds lie tens of seconds apart), Ferrax and JAX taking turns, each
compiling afresh (a new `ferrax bench` process; new functions for `jax.jit`). Per call, the
table shows each side's best round (its lowest median), so that a burst of load on this
shared machine during one side's turn does not decide a ratio. For compile times it shows
the median of Ferrax's rounds, each a cold process, and JAX's first round: in later rounds
JAX reuses what it traced and compiled for the functions that the workload calls (its MLP
step's first call drops from about 225 ms to 160), so only the first is a fresh compile.
"""
import argparse
import os
import re
import runpy
import subprocess
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS = os.path.join(HERE, "workloads.py")


def inputs():
    """name -> (function, list of float32 arrays)."""
    rng = np.random.default_rng(0)
    f32 = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    x1m, y1m = f32(1_000_000), f32(1_000_000)
    x16m = np.repeat(x1m, 16)
    mlp = [f32(784, 512) * 0.05, f32(512) * 0.0, f32(512, 512) * 0.05, f32(512) * 0.0, f32(512, 10) * 0.05, f32(10) * 0.0]
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 128)]
    return {
        "x + 1 on 1M (8 MB moved, in cache)": ("stream", [x1m]),
        "x + 1 on 16M (128 MB moved, from memory)": ("stream", [x16m]),
        "SELU 1M": ("selu", [x1m]),
        "grad f (scalars)": ("grad_f", [np.float32(7.0), np.float32(2.0)]),
        "dist order 1, 1M": ("dist1", [x1m, y1m]),
        "dist order 2, 1M": ("dist2", [x1m, y1m]),
        "dist order 3, 1M": ("dist3", [x1m, y1m]),
        "dense 256x1024 @ 1024x1024": ("dense", [f32(256, 1024), f32(1024, 1024) * 0.03, f32(1024)]),
        "grad dense w.r.t. w": ("dense_grad_w", [f32(256, 1024), f32(1024, 1024) * 0.03, f32(1024)]),
        "MLP 784-512-512-10 SGD step, batch 128": ("mlp_step", mlp + [f32(128, 784), labels]),
    }


# Timed calls per workload, in units of --iterations: the short calls are repeated more, so
# that each side's timed calls take a good fraction of a second.
SCALE = {"grad_f": 100, "stream": 20, "selu": 20, "dist1": 20, "dist2": 20, "dist3": 20}

UNITS = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0}


def warmup(iterations):
    """Untimed calls before the timed ones, on both sides: a tenth of them, at least 10 (so
    that threads and caches are warm however short each call is)."""
    return max(10, iterations // 10)


def ferrax_time(ferrax, function, arrays, iterations, folder):
    args = []
    for i, a in enumerate(arrays):
        path = os.path.join(folder, f"{function}_{i}.npy")
        np.save(path, np.asarray(a, dtype=np.float32))
        args.append("@" + path)
    out = subprocess.run([ferrax, "bench", WORKLOADS, function, *args, "--iterations", str(iterations),
                          "--warmup", str(warmup(iterations)), "--no-cache"],
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        return None, None, (out.stderr.strip().splitlines() or ["failed"])[-1]
    m = re.search(r"compile ([\d.]+) (\S+); \d+ calls: median ([\d.]+) ([^,\s]+)", out.stdout)
    return float(m.group(1)) * UNITS[m.group(2)], float(m.group(3)) * UNITS[m.group(4)], None


def jax_time(function, arrays, iterations):
    import jax

    # A fresh module each time: new functions, which `jax.jit` traces and compiles anew.
    module = runpy.run_path(WORKLOADS)
    jitted = jax.jit(module[function])
    args = [jax.numpy.asarray(a) for a in arrays]
    start = time.perf_counter()
    jax.block_until_ready(jitted(*args))
    first = time.perf_counter() - start
    for _ in range(warmup(iterations)):
        jax.block_until_ready(jitted(*args))
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        jax.block_until_ready(jitted(*args))
        times.append(time.perf_counter() - start)
    return first, float(np.median(times))


def show(seconds):
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def values(rounds, index):
    """The rounds' values at `index`, leaving out rounds that failed."""
    return [r[index] for r in rounds if r[index] is not None]


def best(rounds, index):
    found = values(rounds, index)
    return min(found) if found else None


def median(rounds, index):
    found = values(rounds, index)
    return float(np.median(found)) if found else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ferrax", default=os.path.join(HERE, "..", "target", "release", "ferrax"))
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    try:
        import jax  # noqa: F401
        have_jax = True
    except ImportError:
        have_jax = False
    workloads = inputs()
    rounds = {name: ([], []) for name in workloads}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.rounds):
            for name, (function, arrays) in workloads.items():
                iterations = args.iterations * SCALE.get(function, 1)
                compile_s, call_s, error = ferrax_time(args.ferrax, function, arrays, iterations, folder)
                rounds[name][0].append((compile_s, call_s, error))
                if have_jax:
                    rounds[name][1].append(jax_time(function, arrays, iterations))
    print(f"| workload | Ferrax compile | Ferrax per call | JAX first call | JAX per call | Ferrax/JAX |")
    print(f"| --- | --- | --- | --- | --- | --- |")
    per_call = {}
    for name, (ferrax_rounds, jax_rounds) in rounds.items():
        compile_s, call_s = median(ferrax_rounds, 0), best(ferrax_rounds, 1)
        first, jax_call = (jax_rounds[0][0], best(jax_rounds, 1)) if have_jax else (None, None)
        ratio = f"{call_s / jax_call:.2g}" if call_s and jax_call else "-"
        ferrax_call = show(call_s) if call_s is not None else f"error: {ferrax_rounds[-1][2][:60]}"
        print(f"| {name} | {show(compile_s)} | {ferrax_call} | {show(first)} | {show(jax_call)} | {ratio} |")
        per_call[name] = call_s
    selu = per_call.get("SELU 1M")
    in_cache = per_call.get("x + 1 on 1M (8 MB moved, in cache)")
    from_memory = per_call.get("x + 1 on 16M (128 MB moved, from memory)")
    if selu and in_cache and from_memory:
        print(f"\nFerrax's SELU against its x + 1 on the same 8 MB: {selu / in_cache:.2f} times the time in cache, "
              f"{selu / (from_memory / 16):.2f} times the time from memory ({show(from_memory / 16)} per 8 MB)")


if __name__ == "__main__":
    main()
