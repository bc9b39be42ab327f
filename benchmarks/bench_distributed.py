"""Benchmark: distributed training throughput on this machine (local Ray) vs one process.

Usage: python benchmarks/bench_distributed.py [--config small] [--profile quick]
       [--seconds 60] [--envs-per-actor 16] [--actors 1 2 4]

For each actor count N, runs ``simfish_rl.distributed.train_distributed`` with
N actor processes of E worlds, then the single-process trainer
(``simfish_rl.training.train``) with E worlds. Each run is done twice in the
same run directory with a shared JAX compilation cache: a warm-up of
``--warmup-rounds`` rounds (compiles, fills the replay), then a resumed run for
``--seconds`` that is measured. Reported, from the measured run's
metrics.csv: env steps/s (log intervals once learning has started, the first
dropped), per-actor env steps/s and the bytes the actors send per second. On a machine with fewer cores than processes expect
no gain: the numbers say what the processes and the object store cost.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import jax

from simfish.config import load_config
from simfish_rl.config import training_profile
from simfish_rl.distributed import RayOptions, train_distributed
from simfish_rl.training import train


def steady_rows(run_dir: Path, after: float) -> list[dict]:
    """metrics.csv rows written after time ``after`` once learning started, the first dropped."""
    with open(run_dir / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f)
                if float(r["time"]) > after and float(r["learner_steps"]) > 0]
    return rows[1:]


def mean(rows: list[dict], name: str) -> float:
    """Mean of a metrics column over rows (nan without rows)."""
    return sum(float(r[name]) for r in rows) / len(rows) if rows else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small")
    parser.add_argument("--profile", default="quick", choices=["users", "quick"])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--envs-per-actor", type=int, default=16)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--log-every", type=float, default=5.0)
    parser.add_argument("--warmup-rounds", type=int, default=12)
    args = parser.parse_args()

    env_config = load_config(args.config)
    e = args.envs_per_actor
    # One sample per insert, as the users train and as docs/distributed.md measured:
    # the quick profile's 8 would make the learner, not the actors, the bound.
    training = training_profile(args.profile, {"num_envs": e, "samples_per_insert": 1.0,
                                               "log_every_seconds": args.log_every})
    print(f"bench_distributed: {args.config}, profile {args.profile}, {e} worlds per actor, "
          f"{args.seconds:.0f} s per run")
    print(f"  {'trainer':<24} {'env steps/s':>12} {'per actor':>22} {'MB/s sent':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        jax.config.update("jax_compilation_cache_dir", str(Path(tmp) / "jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        round_steps = training.sequence_period * e
        for n in args.actors:
            run_dir = Path(tmp) / f"ray_{n}"
            options = RayOptions(num_actors=n, envs_per_actor=e,
                                 jax_cache_dir=str(Path(tmp) / "jax_cache"))
            warm = args.warmup_rounds * round_steps * n
            train_distributed(run_dir, env_config, training, num_steps=warm, options=options,
                              progress=False)
            t0 = time.time()
            summary = train_distributed(run_dir, num_steps=10**12, options=options,
                                        progress=False, max_seconds=args.seconds)
            rows = steady_rows(run_dir, t0)
            per_actor = ", ".join(f"{mean(rows, f'actor_{k}_env_steps_per_second'):.0f}"
                                  for k in range(n))
            bytes_per_step = (mean(rows, "actor_bytes_per_second")
                              / mean(rows, "env_steps_per_second"))
            print(f"  {f'ray, {n} actors':<24} {mean(rows, 'env_steps_per_second'):>12.0f} "
                  f"{per_actor:>22} {mean(rows, 'actor_bytes_per_second') / 1e6:>10.2f}"
                  f"   ({len(rows)} intervals; {bytes_per_step:.0f} B/env step; "
                  f"{summary['learner_steps']} learner steps)")
        run_dir = Path(tmp) / "single"
        train(run_dir, env_config, training, num_steps=args.warmup_rounds * round_steps,
              progress=False)
        t0 = time.time()
        summary = train(run_dir, num_steps=10**12, progress=False, max_seconds=args.seconds)
        rows = steady_rows(run_dir, t0)
        print(f"  {'single process':<24} {mean(rows, 'env_steps_per_second'):>12.0f} "
              f"{'-':>22} {'-':>10}   ({len(rows)} intervals; "
              f"{summary['learner_steps']} learner steps)")

if __name__ == "__main__":
    main()
