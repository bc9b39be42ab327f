"""How the step's cost grows with prey count and arena size (a small sweep on ``normal``).

For each (prey count, arena side) pair the full step (``--what env``: with
vision) or the dynamics alone (``--what sim``) of ``--batch`` worlds is timed
like ``simfish bench`` (random actions in jitted ``lax.scan`` chunks whose
time steps stay in the carry, compiled and warmed up before the timer)::

    python benchmarks/bench_sweep.py --what env --prey 30 120 480 --size 1250 2500 5000
"""

from __future__ import annotations

import argparse

from simfish.config import load_config
from simfish.io.actions import Actions
from simfish.tools.bench import time_steps
from simfish.world.env import SimFishEnv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=["sim", "env"], default="env")
    parser.add_argument("--prey", type=int, nargs="+", default=[30, 120, 480])
    parser.add_argument("--size", type=int, nargs="+", default=[1250, 2500, 5000])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    print(f"{args.what}, batch {args.batch}: world-steps/s (chunk = prey per sub-step loop chunk)")
    print(f"{'prey':>6} {'side px':>8} {'chunk':>6} {'world-steps/s':>14}")
    for prey in args.prey:
        for size in args.size:
            config = load_config("normal", {"prey.num": prey, "arena.width": size,
                                            "arena.height": size})
            env = SimFishEnv(config, Actions.default(), vision=(args.what == "env"))
            row = time_steps(env, args.batch, args.steps)
            print(f"{prey:>6} {size:>8} {env.static.n_near_prey:>6} "
                  f"{row['steps_per_second']:>14,.0f}", flush=True)


if __name__ == "__main__":
    main()
