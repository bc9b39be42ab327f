"""Observations per second of the vision model alone (jit + vmap, CPU by default).

Usage: python benchmarks/bench_vision.py [--preset normal] [--batches 1 64 256]
       [--prey 120] [--repeats 20] [--no-noise]

Each world has its own fish pose, prey (``--prey`` slots, all present), a
predator and a random sediment; compile time is excluded.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from simfish.config import load_config
from simfish.vision import make_sediment, make_vision


def make_worlds(config, batch: int, num_prey: int, key):
    """Random fish poses, prey near the fish, a predator and sediments for ``batch`` worlds."""
    k_f, k_a, k_p, k_s, k_q = jax.random.split(key, 5)
    size = jnp.array([config.arena.width, config.arena.height], jnp.float32)
    fish = jax.random.uniform(k_f, (batch, 2), minval=100.0, maxval=size - 100.0)
    angle = jax.random.uniform(k_a, (batch,), maxval=2 * jnp.pi)
    prey = fish[:, None, :] + jax.random.uniform(k_p, (batch, num_prey, 2), minval=-300, maxval=300)
    mask = jnp.ones((batch, num_prey), bool)
    predator = fish + jax.random.uniform(k_q, (batch, 2), minval=-150, maxval=150)
    present = jnp.ones((batch,), bool)
    sediment = jax.vmap(lambda k: make_sediment(k, config.arena))(jax.random.split(k_s, batch))
    return fish, angle, prey, mask, predator, present, sediment


def bench(vision, config, batch: int, num_prey: int, repeats: int) -> float:
    """Observations per second at ``batch`` worlds."""
    observe = jax.jit(jax.vmap(vision.observe))
    worlds = make_worlds(config, batch, num_prey, jax.random.key(0))
    keys = jax.random.split(jax.random.key(1), batch)
    observe(*worlds, keys).block_until_ready()  # compile
    start = time.perf_counter()
    for i in range(repeats):
        keys = jax.random.split(jax.random.key(i + 2), batch)
        observe(*worlds, keys).block_until_ready()
    return batch * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="normal")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--prey", type=int, default=None, help="prey slots (default: prey.num)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-noise", action="store_true", help="turn shot noise off")
    args = parser.parse_args()
    config = load_config(args.preset)
    vision = make_vision(config, shot_noise=False if args.no_noise else None)
    num_prey = config.prey.num if args.prey is None else args.prey
    print(f"device: {jax.devices()[0]}, preset {args.preset}, {num_prey} prey, "
          f"shot noise {vision.shot_noise}")
    for batch in args.batches:
        repeats = max(3, args.repeats * 64 // max(batch, 64)) if batch > 1 else args.repeats * 10
        rate = bench(vision, config, batch, num_prey, repeats)
        print(f"batch {batch:5d}: {rate:10.0f} observations/s")


if __name__ == "__main__":
    main()
