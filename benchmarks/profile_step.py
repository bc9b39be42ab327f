"""Where the vectorised world step's (or the learner step's) time goes, fusion by fusion.

Usage:
  python benchmarks/profile_step.py [--config normal] [--batch 1024] [--cpu-devices 2]
      [--chunks 3] [--top 40] [--dump step.hlo.txt]
  python benchmarks/profile_step.py --what learner [--batch 32] [--chunks 3] [--dump ...]

``--what env`` (the default) compiles the same program as
``bench_side_by_side.py --what env`` (random actions, ``lax.scan`` chunks of 20
steps, worlds spread over the CPU devices) and runs ``--chunks`` chunks under
``jax.profiler``. ``--what learner`` compiles the learner step of
``bench_learner.py`` (regular + mirrored SGD step, ``--batch`` sequences of
84 steps, one device) and runs ``--chunks`` learner steps; it then also
prints the time per part of the network (retina, LSTM, ...). For each XLA operation of the compiled program (fusions, loops,
library calls) the script prints its time per call, how often the trace saw it
run (the trace may keep only part of the run), its output shape and the JAX
operation it came from. The profiler adds a few microseconds per executed operation, so loops of
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
from bench_learner import _make_learner, synthetic_batch
from bench_side_by_side import vector_program

from simfish_rl.simfish_r2d2_network import make_environment_spec, make_r2d2_networks

CHUNK = 20
# Parts of the learner's network: (part, module names in the JAX operation's
# name); the first that matches. ``eye_features`` lays out the retina's input.
NETWORK_PARTS = (("retina and its input", ("/retina", "/eye_features")),
                 ("LSTM", ("/lstm",)), ("duelling head", ("/duelling_mlp",)),
                 ("torso MLP", ("/mlp",)))


def compiled_chunk(config: str, batch: int):
    """(compiled program, initial state, key): ``CHUNK`` vmapped steps under random actions."""
    run, state, key = vector_program(config, "env", batch, CHUNK)
    return run.lower(state, key).compile(), state, key


def compiled_learner_step(batch_size: int):
    """(compiled program, training state, batch): one learner step of ``bench_learner.py``."""
    networks = make_r2d2_networks(make_environment_spec())
    batch = synthetic_batch(batch_size, 84, networks.num_actions)
    learner = _make_learner(networks, batch, argparse.Namespace(batch=batch_size, burn_in=8))
    step = jax.jit(learner.learner_step_fn)
    return step.lower(learner.state, batch).compile(), learner.state, batch


def network_part(op_name: str) -> str:
    """The network part (``NETWORK_PARTS``) a learner operation belongs to.

    Forward and backward are not told apart: XLA names some gradient
    operations (a convolution's weight gradient) after the forward ones.
    """
    if op_name == "(added by XLA)":
        return "copies and transposes added by XLA (mostly the retina's weight gradients)"
    return next((part for part, keys in NETWORK_PARTS if any(k in op_name for k in keys)),
                "other (loss, optimiser, layout)")


def op_table(hlo: str) -> dict[str, tuple[str, str]]:
    """``{instruction name: (output shape, JAX op name)}`` from optimised HLO text.

    Instructions that XLA added itself (the copies and transposes of layout
    assignment) have no JAX op name: they read ``(added by XLA)``.
    """
    table = {}
    for m in re.finditer(r'^\s+(?:ROOT )?%([\w.\-]+) = (\S+) (.*)$', hlo, re.M):
        op = re.search(r'op_name="([^"]*)"', m.group(3))
        table[m.group(1)] = (m.group(2), op.group(1) if op else "(added by XLA)")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="normal")
    parser.add_argument("--batch", type=int, default=None,
                        help="worlds (default 1024) or the learner's sequences (default 32)")
    parser.add_argument("--cpu-devices", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=3, help="chunks of 20 steps (or learner steps) profiled")
    parser.add_argument("--top", type=int, default=40, help="operations listed")
    parser.add_argument("--dump", default=None, help="write the optimised HLO text here")
    parser.add_argument("--what", choices=("env", "learner"), default="env")
    args = parser.parse_args()
    jax.config.update("jax_num_cpu_devices", 1 if args.what == "learner" else args.cpu_devices)

    if args.what == "env":
        args.batch = args.batch or 1024
        compiled, state, key = compiled_chunk(args.config, args.batch)
        inputs = list(jax.random.split(key, args.chunks))
        call = compiled
    else:
        args.batch = args.batch or 32
        compiled, state, batch = compiled_learner_step(args.batch)
        inputs = [batch] * args.chunks

        def call(state, batch):
            return compiled(state, batch)[0]
    hlo = compiled.as_text()
    if args.dump:
        with open(args.dump, "w") as f:
            f.write(hlo)
    for x in inputs[:2]:  # warm-up
        state = jax.block_until_ready(call(state, x))
    inputs = jax.block_until_ready(inputs)
    with tempfile.TemporaryDirectory() as trace_dir:
        t0 = time.perf_counter()
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for x in inputs:
                state = call(state, x)
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
    if args.what == "env":
        print(f"{args.config}, {args.batch} worlds on {len(jax.devices())} device(s): "
              f"{args.chunks * CHUNK} steps in {wall:.2f} s under the profiler")
    else:
        print(f"learner step, batch {args.batch} x 84 steps: {args.chunks} steps in "
              f"{wall:.2f} s under the profiler")
    print(f"{'ms/call':>8} {'calls':>6}  {'operation':30} {'output':28} from")
    rows = sorted(((total[n], n) for n in total if n in table), reverse=True)[: args.top]
    for us, name in rows:
        shape, op = table[name]
        op = op.split("closed_call/", 1)[-1]
        print(f"{us / 1e3 / calls[name]:8.3f} {calls[name]:6d}  "
              f"{name[:30]:30} {shape[:28]:28} {op[:70]}")
    if args.what == "learner":
        # A loop's own event spans its body's operations: count the body only.
        parts = collections.Counter()
        for name in total:
            if name in table and not name.startswith("while"):
                parts[network_part(table[name][1])] += total[name]
        print(f"\n{'ms/step':>8}  part of the network (operations outside loops and loop bodies)")
        for part, us in parts.most_common():
            print(f"{us / 1e3 / args.chunks:8.1f}  {part}")


if __name__ == "__main__":
    main()
