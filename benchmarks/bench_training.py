"""Benchmark: end-to-end training throughput (actors + replay + learner).

Usage: python benchmarks/bench_training.py [--config normal] [--profile users]
       [--seconds 120] [--num-envs 64] [--alternate]

Runs ``simfish_rl.training.train`` in a temporary run directory for a fixed
wall time and reports, from its metrics.csv, the environment steps/s and
learner steps/s once learning has started (the first log interval, which
includes compilation and filling the replay to its minimum, is dropped).
Like ``simfish train`` it restarts once with glibc's huge pages where they
help (``simfish.tools.cli.huge_pages_environment``); ``--no-huge-pages``
measures without.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import jax

from simfish.config import load_config
from simfish.tools.cli import huge_pages_on, restart_with_huge_pages
from simfish_rl.config import training_profile
from simfish_rl.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="normal")
    parser.add_argument("--profile", default="users", choices=["users", "quick"])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--alternate", action="store_true",
                        help="alternate acting and learning instead of overlapping them")
    parser.add_argument("--device-loop", action="store_true",
                        help="the one-device loop (simfish_rl.device_loop) instead")
    parser.add_argument("--no-huge-pages", action="store_true",
                        help="do not restart with glibc's huge pages (as simfish train does)")
    args = parser.parse_args()
    if not args.no_huge_pages:
        restart_with_huge_pages("train", [sys.executable, *sys.argv])

    training = training_profile(
        args.profile, {"num_envs": args.num_envs, "log_every_seconds": 10.0}
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        if args.device_loop:
            from simfish_rl.device_loop import train_device_loop

            summary = train_device_loop(Path(tmp) / "run", load_config(args.config), training,
                                        num_steps=10**12, progress=False,
                                        max_seconds=args.seconds)
        else:
            summary = train(Path(tmp) / "run", load_config(args.config), training,
                            num_steps=10**12, progress=False, overlap=not args.alternate,
                            max_seconds=args.seconds)
        wall = time.time() - t0
        with open(Path(tmp) / "run" / "metrics.csv") as f:
            rows = [r for r in csv.DictReader(f) if float(r["learner_steps"]) > 0][1:]
    print(f"bench_training: {args.config}, profile {args.profile}, {args.num_envs} worlds, "
          f"{'device loop' if args.device_loop else f'overlap={not args.alternate}'}, backend {jax.default_backend()}, "
          f"malloc huge pages: {'on' if huge_pages_on() else 'off'}")
    print(f"  wall {wall:.0f} s: {summary['env_steps']} env steps, "
          f"{summary['learner_steps']} learner steps, {summary['episodes']} episodes")
    if not rows:
        print("  not enough log intervals after learning started: raise --seconds")
        return
    env_sps = sum(float(r["env_steps_per_second"]) for r in rows) / len(rows)
    learn_sps = sum(float(r["learner_steps_per_second"]) for r in rows) / len(rows)
    print(f"  steady state over {len(rows)} intervals: {env_sps:,.0f} env steps/s, "
          f"{learn_sps:.2f} learner steps/s (each = regular + mirrored SGD step)")


if __name__ == "__main__":
    main()
