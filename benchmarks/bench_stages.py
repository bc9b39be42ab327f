"""Where the world step's time goes: each stage of ``SimFishEnv.step`` timed alone.

Each stage runs as one jitted, vmapped call on inputs captured from worlds
that have been stepped for a while under random actions (so prey have
spread, some are near the fish, and predators appear). Stages:

- ``reset``: a fresh world (``_reset_state``); the auto-reset computes it
  every step under ``vmap``, where ``lax.cond`` becomes a select;
- ``decisions``: the fish's bout, the prey's gaits/turns/escape times, the
  predator's spawn (``sample_bout``, ``start_bout``, ``plan_prey_step``,
  ``maybe_spawn``);
- ``physics``: the sub-step loop and closed-form coasting (``integrate_step``);
- ``after``: prey population, energy, salt, rewards (``population_step``,
  ``_finish_step``);
- ``vision``: the visual observation;
- ``step``: the whole ``SimFishEnv.step`` (the sum of the above, fused).

Times are the best of ``--repeats`` calls (wall clock, after a warm-up
call), per step of the whole batch and per world; each call also pays one
dispatch (~0.05-0.3 ms), which matters only at small batches::

    python benchmarks/bench_stages.py --preset normal sparse --batch 64 256
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import simfish
from simfish.world import energy as energy_lib
from simfish.world import fish as fish_lib
from simfish.world import predator as predator_lib
from simfish.world import prey as prey_lib
from simfish.world.physics import Bout, integrate_step


def _best(fn, *args, repeats: int) -> float:
    """Best wall time (s) of ``fn(*args)`` after one warm-up call."""
    jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def stage_times(preset: str, batch: int, repeats: int, warm_steps: int = 60) -> dict[str, float]:
    """Seconds per batched call of each stage (see the module docstring)."""
    env = simfish.SimFishEnv(preset, simfish.Actions.default())
    params, static = env.params, env.static
    key = jax.random.PRNGKey(0)
    step = jax.jit(jax.vmap(env.step))
    state, _ = jax.jit(jax.vmap(env.reset))(jax.random.split(key, batch))
    rng = np.random.default_rng(0)
    for i in range(warm_steps):
        actions = jnp.asarray(rng.integers(0, env.num_actions, batch), jnp.int32)
        state, _ = step(state, actions, jax.random.split(jax.random.fold_in(key, i), batch))
    actions = jnp.asarray(rng.integers(0, env.num_actions, batch), jnp.int32)
    keys = jax.random.split(jax.random.fold_in(key, warm_steps), batch)

    def decisions(state, action, key):
        k_bout, k_prey, k_pred = jax.random.split(key, 3)
        distance, angle = fish_lib.sample_bout(k_bout, action, params, static)
        fish = fish_lib.start_bout(state.fish, distance, angle, params)
        bout = Bout(cos=jnp.cos(fish.angle), sin=jnp.sin(fish.angle),
                    capture=params.action_is_capture[action])
        prey, plan = prey_lib.plan_prey_step(k_prey, state.prey, state.arena, params, static)
        predator = predator_lib.maybe_spawn(k_pred, state.predator, fish, state.step, params,
                                            static)
        can_catch = state.step >= params.immunity_steps
        return fish, prey, predator, plan, bout, can_catch, distance, angle

    def physics(fish, prey, predator, plan, bout, can_catch):
        return integrate_step(fish, prey, predator, plan, bout, can_catch, params, static)

    def after(state, fish, prey, predator, contacts, distance, angle, capture, key):
        prey = prey_lib.population_step(key, prey, fish.x, fish.y, state.arena, params, static)
        use = energy_lib.energy_use(distance, angle, capture, params)
        return env._finish_step(state, fish, prey, predator, contacts, use, params)

    decide = jax.jit(jax.vmap(decisions))
    fish, prey, predator, plan, bout, can_catch, distance, angle = decide(state, actions, keys)
    phys = jax.jit(jax.vmap(physics))
    fish2, prey2, predator2, contacts = phys(fish, prey, predator, plan, bout, can_catch)
    aft = jax.jit(jax.vmap(after))
    see = jax.jit(jax.vmap(lambda s, k: env._observe(s, k, params)))
    reset = jax.jit(jax.vmap(lambda k: env._reset_state(k, params)))
    return {
        "reset": _best(reset, keys, repeats=repeats),
        "decisions": _best(decide, state, actions, keys, repeats=repeats),
        "physics": _best(phys, fish, prey, predator, plan, bout, can_catch, repeats=repeats),
        "after": _best(aft, state, fish2, prey2, predator2, contacts, distance, angle,
                       bout.capture, keys, repeats=repeats),
        "vision": _best(see, state, keys, repeats=repeats),
        "step": _best(step, state, actions, keys, repeats=repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", nargs="+", default=["normal", "sparse"])
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    names = ("reset", "decisions", "physics", "after", "vision", "step")
    print(f"{'preset':>8} {'batch':>6} " + " ".join(f"{n:>10}" for n in names)
          + "   (ms per batched call; step = the whole step)")
    for preset in args.preset:
        for batch in args.batch:
            times = stage_times(preset, batch, args.repeats)
            print(f"{preset:>8} {batch:>6} " + " ".join(f"{1e3 * times[n]:>10.2f}" for n in names)
                  + f"   {batch / times['step']:,.0f} world-steps/s")


if __name__ == "__main__":
    main()
