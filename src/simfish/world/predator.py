"""The predator: attack epochs, spawning away from walls, and its reset state.

Its motion (steering to the target, catching, leaving) runs inside the
physics sub-step loop (``simfish.world.physics.integrate_step``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from simfish.world.params import PREDATOR_SPAWN_TRIES, EnvParams, StaticParams
from simfish.world.state import FishState, PredatorState


def reset_predator(key, params: EnvParams, static: StaticParams) -> PredatorState:
    """No predator; ``n_epochs`` epoch starts uniform in [immunity, max_steps - duration)."""
    starts = jax.random.randint(
        key,
        (static.n_epochs,),
        params.immunity_steps,
        jnp.maximum(params.max_steps - params.epoch_duration, params.immunity_steps + 1),
    )
    zero = jnp.zeros((), jnp.float32)
    return PredatorState(
        x=zero,
        y=zero,
        vx=zero,
        vy=zero,
        target_x=zero,
        target_y=zero,
        present=jnp.zeros((), bool),
        epoch_starts=starts.astype(jnp.int32),
    )


def in_epoch(predator: PredatorState, step, params: EnvParams):
    """Whether ``step`` lies in an attack epoch (bool [])."""
    s = predator.epoch_starts
    return jnp.any((step >= s) & (step < s + params.epoch_duration))


def fish_near_wall(fish: FishState, params: EnvParams):
    """Whether the fish is within 1.5 predator radii of a wall (bool [])."""
    m = 1.5 * params.predator_radius
    return (fish.x < m) | (fish.x > params.width - m) | (fish.y < m) | (fish.y > params.height - m)


#: ``test_sensory_system``: the scripted predator appears at the start of this step ...
SENSORY_TEST_PREDATOR_STEP = 10
#: ... at this angle (rad) from the fish (300 degrees).
SENSORY_TEST_PREDATOR_ANGLE = 300.0 * math.pi / 180.0


def scripted_spawn(predator: PredatorState, fish: FishState, step, params) -> PredatorState:
    """``test_sensory_system``: the one predator, after step 10, at 300 degrees from the fish.

    It appears ``distance_from_fish`` px away, at rest, aimed at the fish,
    and moves and catches as usual (a touch removes it).
    """
    spawn = step == SENSORY_TEST_PREDATOR_STEP
    a = SENSORY_TEST_PREDATOR_ANGLE
    zero = jnp.zeros((), jnp.float32)
    return predator.replace(
        x=jnp.where(spawn, fish.x + params.distance_from_fish * math.cos(a), predator.x),
        y=jnp.where(spawn, fish.y + params.distance_from_fish * math.sin(a), predator.y),
        vx=jnp.where(spawn, zero, predator.vx),
        vy=jnp.where(spawn, zero, predator.vy),
        target_x=jnp.where(spawn, fish.x, predator.target_x),
        target_y=jnp.where(spawn, fish.y, predator.target_y),
        present=predator.present | spawn,
    )


def maybe_spawn(
    key, predator: PredatorState, fish: FishState, step, params: EnvParams, static: StaticParams
) -> PredatorState:
    """Spawns a predator with probability ``p_predator`` during an epoch.

    Only if none is present and the fish is away from the walls. It appears
    ``distance_from_fish`` px from the fish, at the first of several random
    angles whose position keeps the whole predator inside the arena, at rest,
    aimed at the fish's current position.
    """
    if static.test_sensory_system:
        return scripted_spawn(predator, fish, step, params)
    if not static.predator_enabled:
        return predator
    k_p, k_ang = jax.random.split(key)
    angles = jax.random.uniform(k_ang, (PREDATOR_SPAWN_TRIES,), jnp.float32, 0.0, 2.0 * jnp.pi)
    px = fish.x + params.distance_from_fish * jnp.cos(angles)
    py = fish.y + params.distance_from_fish * jnp.sin(angles)
    r = params.predator_radius
    ok = (px >= r) & (px <= params.width - r) & (py >= r) & (py <= params.height - r)
    first = jnp.argmax(ok)
    spawn = (
        in_epoch(predator, step, params)
        & ~predator.present
        & ~fish_near_wall(fish, params)
        & jnp.any(ok)
        & (jax.random.uniform(k_p, ()) < params.p_predator)
    )
    zero = jnp.zeros((), jnp.float32)
    return predator.replace(
        x=jnp.where(spawn, px[first], predator.x),
        y=jnp.where(spawn, py[first], predator.y),
        vx=jnp.where(spawn, zero, predator.vx),
        vy=jnp.where(spawn, zero, predator.vy),
        target_x=jnp.where(spawn, fish.x, predator.target_x),
        target_y=jnp.where(spawn, fish.y, predator.target_y),
        present=predator.present | spawn,
    )
