"""A picture of what the fish sees, from a world of any configuration."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from simfish.config import SimFishConfig
from simfish.io.actions import Actions


def save_eyes_picture(
    config: SimFishConfig, path: str | os.PathLike, seed: int = 0, steps: int = 0
) -> Path:
    """Saves a PNG of the arena around the fish, its receptor rays and both retinas.

    The world is reset with ``seed`` and advanced ``steps`` random steps; the
    picture shows its last observation (with noise, as the agent saw it).
    """
    from simfish.tools.eyes_picture import eyes_picture, write_png
    from simfish.vision import make_vision
    from simfish.vision.bind import episode_sediment, make_vision_fn
    from simfish.world.env import SimFishEnv

    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    vision = make_vision(config)
    env = SimFishEnv(config, Actions.default(), vision=make_vision_fn(config, vision))
    key = jax.random.PRNGKey(seed)
    state, ts = jax.jit(env.reset)(key)
    step = jax.jit(env.step)
    for i in range(steps):
        k_act, k_env = jax.random.split(jax.random.fold_in(key, i + 1))
        action = jax.random.randint(k_act, (), 0, env.num_actions)
        state, ts = step(state, action, k_env)
    visual = np.asarray(ts.observation.observation[0])
    image = eyes_picture(
        vision,
        np.array([float(state.fish.x), float(state.fish.y)]),
        float(state.fish.angle),
        jnp.stack([state.prey.x, state.prey.y], -1),
        state.prey.alive,
        jnp.stack([state.predator.x, state.predator.y]),
        bool(state.predator.present),
        episode_sediment(state.episode_key, config),
        visual=visual,
    )
    return write_png(path, image)
