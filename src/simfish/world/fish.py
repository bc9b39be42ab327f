"""The fish: reset placement, bouts (turn + impulse) and end-of-step clamping."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from simfish.world.params import START_MARGIN, EnvParams, StaticParams
from simfish.world.physics import impulse_speed
from simfish.world.state import FishState

#: Rotation per step (rad) when ``test_sensory_system`` is set.
SENSORY_TEST_ROTATION = 0.1


def reset_fish(key, params: EnvParams, static: StaticParams) -> FishState:
    """A fish at rest: ``init_*`` where given, else uniform (40 px margin) and any heading.

    With ``test_sensory_system``: at the arena centre, heading 0.
    """
    kx, ky, ka = jax.random.split(key, 3)
    f32 = jnp.float32
    rx = jax.random.uniform(kx, (), f32, START_MARGIN, params.width - START_MARGIN)
    ry = jax.random.uniform(ky, (), f32, START_MARGIN, params.height - START_MARGIN)
    ra = jax.random.uniform(ka, (), f32, 0.0, 2.0 * jnp.pi)
    zero = jnp.zeros((), f32)
    if static.test_sensory_system:
        rx, ry, ra = 0.5 * params.width, 0.5 * params.height, zero
        params = params.replace(init_x=rx, init_y=ry, init_angle=ra)
    return FishState(
        x=jnp.where(jnp.isnan(params.init_x), rx, params.init_x),
        y=jnp.where(jnp.isnan(params.init_y), ry, params.init_y),
        angle=jnp.where(jnp.isnan(params.init_angle), ra, params.init_angle),
        vx=zero,
        vy=zero,
        energy=params.init_energy,
        omega=zero,
        mouth_at_wall=jnp.zeros((), bool),
    )


def sample_bout(key, action, params: EnvParams, static: StaticParams):
    """The bout actually performed: (distance_mm, angle_rad), each [].

    Drawn from the action's bivariate normal (its mean when
    ``deterministic_action``); zero when ``paralyze``; a fixed 0.1 rad turn
    without movement when ``test_sensory_system``.
    """
    mean = params.action_means[action]
    factor = params.action_factors[action]
    z = jax.random.normal(key, (2,), jnp.float32)
    drawn = mean + factor @ z
    bout = jnp.where(params.deterministic_action, mean, drawn)
    distance, angle = bout[0], bout[1]
    if static.test_sensory_system:
        distance = jnp.zeros_like(distance)
        angle = jnp.full_like(angle, SENSORY_TEST_ROTATION)
    distance = jnp.where(params.paralyze, 0.0, distance)
    angle = jnp.where(params.paralyze, 0.0, angle)
    return distance, angle


def start_bout(fish: FishState, distance_mm, angle, params: EnvParams) -> FishState:
    """Turns the fish by ``angle`` then adds an impulse worth ``distance_mm`` along the heading."""
    heading = fish.angle + angle
    speed = impulse_speed(distance_mm * 10.0, params)
    return fish.replace(
        angle=heading,
        vx=fish.vx + speed * jnp.cos(heading),
        vy=fish.vy + speed * jnp.sin(heading),
    )
