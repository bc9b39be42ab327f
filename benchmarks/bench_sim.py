"""World-steps/s of the SimFish dynamics (no vision) or of the full step, and memory per world.

Usage:
  python benchmarks/bench_sim.py [--what sim|env] [--config normal] [--batch 1 64 256] [--steps 200]

The same measurement as ``simfish bench``: for each batch size, random-action
steps of vectorised worlds in jitted ``lax.scan`` chunks (compiled and warmed
up first, excluded from the rate), then the state size per world, XLA's
memory estimate per world and the process's peak RSS.
"""

from __future__ import annotations

import argparse

from simfish.config import load_config
from simfish.tools import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=bench.KINDS, default="sim")
    parser.add_argument("--config", default="normal", help="preset name or YAML path")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = bench.run(args.what, load_config(args.config), args.batch, args.steps, args.seed)
    print(bench.format_table(args.what, rows))


if __name__ == "__main__":
    main()
