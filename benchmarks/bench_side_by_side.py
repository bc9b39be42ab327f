"""World-steps/s through the public API only, so two code trees can be timed alike.

Usage (one process per tree, run one after the other in one sitting):
  PYTHONPATH=OLD/src python benchmarks/bench_side_by_side.py --what sim --batch 64 256
  PYTHONPATH=NEW/src python benchmarks/bench_side_by_side.py --what sim --batch 64 256

It uses nothing but ``simfish.SimFishEnv``, ``simfish.load_config`` and
``simfish.Actions`` plus ``jax.vmap``, which every version of the package
has, and the same harness as ``simfish bench``: random actions in jitted
``lax.scan`` chunks, compiled and warmed up before the timer, keys made
before it. ``--what env`` includes vision; ``--what base`` times the
one-world ``BaseEnvironment.step`` instead (``--batch`` is then ignored). ``--cpu-devices
2`` splits the CPU into two JAX devices and spreads the worlds over them.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import simfish


def vector_program(config: str, what: str, batch: int, chunk: int = 20):
    """(run, state, key): ``chunk`` vmapped steps of ``batch`` worlds under random actions.

    ``run(state, key)`` is jitted; with several devices the worlds are spread
    over them (what VectorEnv does), through the public jax API so that any
    tree can be timed alike.
    """
    env = simfish.SimFishEnv(config, simfish.Actions.default(), vision=(what == "env"))
    reset, step = jax.vmap(env.reset), jax.vmap(env.step)

    def body(carry, key):
        state, _ = carry
        k_act, k_env = jax.random.split(key)
        action = jax.random.randint(k_act, (batch,), 0, env.num_actions, jnp.int32)
        # The time step stays in the carry: were it dropped, XLA would skip the
        # observation (vision) entirely, since the state does not depend on it.
        return step(state, action, jax.random.split(k_env, batch)), None

    @jax.jit
    def run(state, key):
        return jax.lax.scan(body, state, jax.random.split(key, chunk))[0]

    key = jax.random.PRNGKey(0)
    state = jax.jit(reset)(jax.random.split(key, batch))
    if len(jax.devices()) > 1 and batch % len(jax.devices()) == 0:
        mesh = jax.sharding.Mesh(np.array(jax.devices()), ("worlds",))
        spread = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("worlds"))
        state = jax.device_put(state, spread)
    return run, state, key


def vector_rates(
    config: str, what: str, batch: int, steps: int, repeats: int, chunk: int = 20
) -> list[float]:
    """World-steps/s of ``batch`` vmapped worlds under random actions, ``repeats`` timings."""
    run, state, key = vector_program(config, what, batch, chunk)
    state = jax.block_until_ready(run(state, key))  # compile + warm-up
    n_chunks = max(1, steps // chunk)
    keys = jax.block_until_ready(list(jax.random.split(key, n_chunks)))
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for k in keys:
            state = run(state, k)
        jax.block_until_ready(state)
        rates.append(n_chunks * chunk * batch / (time.perf_counter() - t0))
    return rates


def base_rates(config: str, steps: int, repeats: int) -> list[float]:
    """Steps/s of one ``BaseEnvironment`` (dm_env) with vision, random actions."""
    env = simfish.BaseEnvironment(config)
    rng = np.random.default_rng(0)
    env.reset()
    actions = rng.integers(0, env.action_spec().num_values, size=steps + 20)
    for a in actions[:20]:  # compile + warm-up
        if env.step(int(a)).last():
            env.reset()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for a in actions[20:]:
            if env.step(int(a)).last():
                env.reset()
        rates.append(steps / (time.perf_counter() - t0))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--what", choices=["sim", "env", "base"], default="sim")
    parser.add_argument("--config", default="normal")
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    parser.add_argument("--cpu-devices", type=int, default=1,
                        help="split the CPU into this many JAX devices and spread the worlds")
    args = parser.parse_args()
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    where = simfish.__file__.rsplit("/src/", 1)[0]
    for batch in [1] if args.what == "base" else args.batch:
        if args.what == "base":
            rates = base_rates(args.config, args.steps, args.repeats)
        else:
            rates = vector_rates(args.config, args.what, batch, args.steps, args.repeats)
        print(f"{where} {args.what} {args.config} batch {batch} devices {len(jax.devices())}: "
              f"best {max(rates):,.0f} median {float(np.median(rates)):,.0f} world-steps/s")


if __name__ == "__main__":
    main()
