"""Where the vectorised world step's time goes, fusion by fusion (XLA on CPU).

Usage:
  python benchmarks/profile_step.py [--config normal] [--batch 1024] [--cpu-devices 2]
      [--chunks 3] [--top 40] [--dump step.hlo.txt]

Compiles the same program as ``bench_side_by_side.py --what env`` (random
actions, ``lax.scan`` chunks of 20 steps, worlds spread over the CPU devices),
runs ``--chunks`` chunks under ``jax.profiler``, and prints, for each XLA
operation of the compiled program (fusions, loops, library calls), its time
per call, how often the trace saw it run (the trace may keep only part of
the run), its output shape and the JAX operation it came
from. The profiler adds a few microseconds per executed operation, so loops of
many small operations (the sub-step loops) read far slower than they run; the
figures for large fusions are sound. ``--dump`` writes the optimised HLO, whose
fusion bodies show what XLA fused (docs/performance.md, "Work computed once").
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import tempfile
import time

import jax
from bench_side_by_side import vector_program

CHUNK = 20


def compiled_chunk(config: str, batch: int):
    """(compiled program, initial state, key): ``CHUNK`` vmapped steps under random actions."""
    run, state, key = vector_program(config, "env", batch, CHUNK)
    return run.lower(state, key).compile(), state, key


def op_table(hlo: str) -> dict[str, tuple[str, str]]:
    """``{instruction name: (output shape, JAX op name)}`` from optimised HLO text."""
    table = {}
    for m in re.finditer(r'^\s+%([\w.\-]+) = (\S+) .*?op_name="([^"]*)"', hlo, re.M):
        table[m.group(1)] = (m.group(2), m.group(3))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="normal")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--cpu-devices", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=3, help="chunks of 20 steps profiled")
    parser.add_argument("--top", type=int, default=40, help="operations listed")
    parser.add_argument("--dump", default=None, help="write the optimised HLO text here")
    args = parser.parse_args()
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)

    compiled, state, key = compiled_chunk(args.config, args.batch)
    hlo = compiled.as_text()
    if args.dump:
        with open(args.dump, "w") as f:
            f.write(hlo)
    for _ in range(2):  # warm-up
        state = jax.block_until_ready(compiled(state, key))
    keys = jax.block_until_ready(list(jax.random.split(key, args.chunks)))
    with tempfile.TemporaryDirectory() as trace_dir:
        t0 = time.perf_counter()
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for k in keys:
                state = compiled(state, k)
            jax.block_until_ready(state)
        wall = time.perf_counter() - t0
        trace_file = sorted(glob.glob(f"{trace_dir}/**/*.json.gz", recursive=True))[-1]
        with gzip.open(trace_file) as f:
            trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    total, calls = collections.Counter(), collections.Counter()
    for event in events:
        if event.get("ph") == "X":
            total[event["name"]] += event.get("dur", 0)
            calls[event["name"]] += 1
    table = op_table(hlo)
    print(f"{args.config}, {args.batch} worlds on {len(jax.devices())} device(s): "
          f"{args.chunks * CHUNK} steps in {wall:.2f} s under the profiler")
    print(f"{'ms/call':>8} {'calls':>6}  {'operation':30} {'output':28} from")
    rows = sorted(((total[n], n) for n in total if n in table), reverse=True)[: args.top]
    for us, name in rows:
        shape, op = table[name]
        op = op.split("closed_call/", 1)[-1]
        print(f"{us / 1e3 / calls[name]:8.3f} {calls[name]:6d}  "
              f"{name[:30]:30} {shape[:28]:28} {op[:70]}")


if __name__ == "__main__":
    main()
