"""Energy, salt and every reward term (SPEC 4.5)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from simfish.world.params import EnvParams, StaticParams
from simfish.world.state import RewardTerms


def reset_salt(key, params: EnvParams):
    """Salt source position (x, y), uniform in the arena."""
    kx, ky = jax.random.split(key)
    return (
        jax.random.uniform(kx, (), jnp.float32, 0.0, params.width),
        jax.random.uniform(ky, (), jnp.float32, 0.0, params.height),
    )


def salt_concentration(x, y, salt_x, salt_y, params: EnvParams, static: StaticParams):
    """exp(-concentration_decay * distance to the source); 0 without salt."""
    if not static.salt_enabled:
        return jnp.zeros((), jnp.float32)
    dist = jnp.sqrt((x - salt_x) ** 2 + (y - salt_y) ** 2)
    return jnp.exp(-params.salt_decay * dist)


def energy_use(distance_mm, angle, capture_bout, params: EnvParams):
    """Energy used by a bout: (distance_factor |d| + angle_factor |a| + baseline), x scaling for captures."""
    use = (
        params.energy_distance_factor * jnp.abs(distance_mm)
        + params.energy_angle_factor * jnp.abs(angle)
        + params.energy_baseline
    )
    return jnp.where(capture_bout, use * params.capture_cost_scaling, use)


def update_energy(energy, use, ate, params: EnvParams):
    """New energy: refilled by a meal, minus the use, capped at 1 (or held fixed).

    Returns (energy, starved) where starved means it dropped below 0.
    """
    new = jnp.minimum(energy + jnp.where(ate, 1.0, 0.0) - use, 1.0)
    new = jnp.where(params.fixed_energy, params.fixed_energy_level, new)
    return new, new < 0.0


def reward_terms(
    use, n_eaten, caught, avoided, wall_touched, salt, params: EnvParams
) -> RewardTerms:
    """The step's reward, term by term (their sum is the reward)."""
    f32 = jnp.float32
    return RewardTerms(
        energy=(-use * params.energy_use_factor).astype(f32),
        consumption=(params.reward_consumption * n_eaten.astype(f32)).astype(f32),
        salt=(params.salt_factor * salt).astype(f32),
        predator=(
            jnp.where(caught, params.reward_predator_caught, 0.0)
            + jnp.where(avoided, params.reward_predator_avoidance, 0.0)
        ).astype(f32),
        wall=jnp.where(wall_touched, params.reward_wall_touch, 0.0).astype(f32),
    )
