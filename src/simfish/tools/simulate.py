"""Run many worlds with a fixed policy and summarise what happened.

This is the simulator's own main job (``simfish simulate``): it needs no agent,
so it is the quickest way to see the world dynamics at work and to check a
configuration.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import dm_env
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from simfish.config import SimFishConfig
from simfish.io.actions import Actions
from simfish.wrappers.vector_env import VectorEnv, episode_stats

log = logging.getLogger(__name__)

POLICIES = ("random", "capture")


def make_rollout(env: Any, num_worlds: int, policy: str, chunk: int):
    """A jitted ``(state, timestep, key) -> (state, timestep, (rewards, ended, stats))``.

    It runs ``chunk`` steps of ``num_worlds`` worlds with ``policy``.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r} (policies: {', '.join(POLICIES)})")
    worlds = VectorEnv(env, num_worlds)
    capture_id = int(np.flatnonzero(env.actions.is_capture)[0]) if policy == "capture" else 0
    stats_fn = jax.vmap(episode_stats)

    def body(carry, key):
        state, ts = carry
        k_act, k_env = jax.random.split(key)
        if policy == "random":
            action = jax.random.randint(k_act, (num_worlds,), 0, env.num_actions, jnp.int32)
        else:
            action = jnp.full((num_worlds,), capture_id, jnp.int32)
        state, ts = worlds.step(state, action, k_env)
        ended = ts.step_type == dm_env.StepType.LAST
        return (state, ts), (ts.reward, ended, stats_fn(state))

    @jax.jit
    def rollout(state, ts, key):
        (state, ts), out = jax.lax.scan(body, (state, ts), jax.random.split(key, chunk))
        return state, ts, out

    return worlds, rollout


def simulate(
    config: SimFishConfig,
    num_worlds: int = 16,
    num_steps: int = 200,
    seed: int = 0,
    policy: str = "random",
    actions: Actions | None = None,
    progress: bool = True,
    chunk: int = 50,
) -> dict[str, float | int]:
    """Runs ``num_worlds`` worlds for ``num_steps`` steps each and summarises them.

    Returns:
      A dict: steps/s (excluding compilation), episodes finished, mean return and
      prey caught per finished episode, and totals of events over all worlds.
    """
    from simfish.world.env import SimFishEnv

    # A fixed policy does not look: the worlds run without vision.
    env = SimFishEnv(config, actions or Actions.default(), vision=None)
    chunk = max(1, min(chunk, num_steps))
    worlds, rollout = make_rollout(env, num_worlds, policy, chunk)
    key = jax.random.PRNGKey(seed)
    key, k_reset = jax.random.split(key)
    state, ts = jax.jit(worlds.reset)(k_reset)

    t_compile = time.perf_counter()
    compiled = rollout.lower(state, ts, key).compile()
    compile_s = time.perf_counter() - t_compile

    n_chunks = -(-num_steps // chunk)
    rewards, finished = [], []
    t0 = time.perf_counter()
    with tqdm(total=n_chunks * chunk, unit="step", disable=not progress, desc="simulate") as bar:
        for _ in range(n_chunks):
            key, k = jax.random.split(key)
            state, ts, (reward, ended, stats) = compiled(state, ts, k)
            ended = np.asarray(ended)
            rewards.append(np.asarray(reward).sum())
            if ended.any():
                finished.append({name: np.asarray(v)[ended] for name, v in stats.items()})
            bar.update(chunk)
    elapsed = time.perf_counter() - t0
    final = jax.device_get(jax.vmap(episode_stats)(state))
    done = {name: np.concatenate([f[name] for f in finished]) for name in final} if finished else {}
    n_done = int(len(done.get("episode_length", [])))
    steps = n_chunks * chunk * num_worlds
    summary: dict[str, float | int] = {
        "world_steps": steps,
        "world_steps_per_second": steps / elapsed,
        "compile_seconds": compile_s,
        "episodes_finished": n_done,
        "total_reward": float(np.sum(rewards)),
        "prey_caught_in_running_episodes": int(final["prey_caught"].sum()),
    }
    if n_done:
        summary["mean_finished_episode_return"] = float(done["episode_return"].mean())
        summary["mean_finished_episode_length"] = float(done["episode_length"].mean())
        summary["mean_finished_episode_prey_caught"] = float(done["prey_caught"].mean())
    log.debug("simulate summary: %s", summary)
    return summary
