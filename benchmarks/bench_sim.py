"""World-steps/s of the SimFish dynamics (no vision) and memory per world.

Usage:
  python benchmarks/bench_sim.py [--preset normal] [--batch 1 64 256] [--steps 100]

Runs ``simfish.env.bench_sim``: for each batch size, ``steps`` vectorised
random-action steps inside one jitted ``lax.scan`` (compiled and warmed up
first), and prints world-steps/s, compile time, the state size per world and
XLA's memory estimate (arguments + outputs + temporaries) of one vectorised
step per world.
"""

from __future__ import annotations

import argparse

import jax

from simfish.config import load_config
from simfish.env import bench_sim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="normal", help="preset name or YAML path")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = load_config(args.preset)
    rows = bench_sim(config, args.batch, args.steps, seed=args.seed)
    print(
        f"SimFish dynamics, preset {args.preset!r}, backend {jax.default_backend()}, "
        f"{args.steps} steps per batch"
    )
    print(
        f"{'batch':>6} {'world-steps/s':>14} {'compile s':>10} {'state KB/world':>15} "
        f"{'peak KB/world':>14}"
    )
    for r in rows:
        peak = r["peak_bytes_per_world"]
        peak_s = f"{peak / 1024:>14.1f}" if peak is not None else f"{'n/a':>14}"
        print(
            f"{r['batch']:>6} {r['world_steps_per_s']:>14,.0f} {r['compile_s']:>10.1f} "
            f"{r['state_bytes_per_world'] / 1024:>15.1f} {peak_s}"
        )


if __name__ == "__main__":
    main()
