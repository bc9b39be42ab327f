"""Prey: capacity, gaits, escapes, walls, clouds, reproduction and death."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simfish.io.actions import Actions
from simfish.world.state import with_fish, with_prey

ACTIONS = Actions.default()
NULL = ACTIONS.get_action_id("Null")


def test_reset_places_num_prey_inside_the_margin(small_world):
    state, _ = small_world.reset(jax.random.PRNGKey(0), small_world.params)
    alive = np.asarray(state.prey.alive)
    assert alive.sum() == 10 and alive.shape == (small_world.env.static.prey_capacity,)
    x, y = np.asarray(state.prey.x)[alive], np.asarray(state.prey.y)[alive]
    assert np.all((x >= 40) & (x <= 560)) and np.all((y >= 40) & (y <= 460))


def test_gaits_cruise_at_their_speed(small_world):
    """A prey kicked every sub-step cruises at its gait speed (2 px per 0.2 s step when slow)."""
    params = small_world.params.replace(
        p_slow=jnp.float32(1.0),
        p_fast=jnp.float32(0.0),
        p_switch=jnp.float32(1.0),
        max_turning_angle=jnp.float32(0.0),
        p_large_turn=jnp.float32(0.0),
        p_escape_substep=jnp.float32(0.0),
        p_predator=jnp.float32(0.0),
    )
    state, _ = small_world.reset(jax.random.PRNGKey(1), params)
    state = with_fish(state, 300.0, 250.0, 0.0)
    state = with_prey(state, [[100.0, 100.0]], angle=0.0)
    xs = []
    for i in range(30):
        state, _ = small_world.step(state, NULL, jax.random.PRNGKey(i), params)
        xs.append(float(state.prey.x[0]))
    speed = (xs[-1] - xs[-11]) / (10 * 0.2)  # px/s once cruising
    assert speed == pytest.approx(float(params.velocity_slow), rel=1e-3)
    assert float(state.prey.y[0]) == pytest.approx(100.0)


def test_escape_jump_near_the_fish(small_world):
    """With p_escape = 1 a still prey within sensing distance jumps away along its heading."""
    params = small_world.params.replace(
        p_slow=jnp.float32(0.0),
        p_fast=jnp.float32(0.0),
        max_turning_angle=jnp.float32(0.0),
        p_large_turn=jnp.float32(0.0),
        p_escape_substep=jnp.float32(1.0 - (1.0 - 0.999) ** 0.01),
        p_predator=jnp.float32(0.0),
    )
    state, _ = small_world.reset(jax.random.PRNGKey(2), params)
    state = with_fish(state, 300.0, 250.0, 0.0)
    state = with_prey(state, [[350.0, 250.0], [450.0, 400.0]], angle=np.pi / 2)
    state, _ = small_world.step(state, NULL, jax.random.PRNGKey(0), params)
    jump = float(params.velocity_jump) * float(params.dt)  # distance of one kick
    near_moved = float(state.prey.y[0]) - 250.0
    assert near_moved >= 0.9 * jump  # at least one escape kick
    assert float(state.prey.x[0]) == pytest.approx(350.0, abs=1e-3)
    assert float(state.prey.y[1]) == 400.0  # out of sensing range: still


def test_prey_stop_at_walls_and_stay_inside(small_world):
    """Walls are inelastic and frictionless for prey (issue 9 C2): no bounce, only their own turns."""
    params = small_world.params.replace(
        p_slow=jnp.float32(0.0), p_fast=jnp.float32(1.0), p_predator=jnp.float32(0.0)
    )
    state, _ = small_world.reset(jax.random.PRNGKey(3), params)
    state = with_fish(state, 300.0, 250.0, 0.0)
    state = with_prey(state, [[1.5, 100.0], [598.5, 300.0]], angle=jnp.array([np.pi, 0.0]))
    state = state.replace(prey=state.prey.replace(gait=jnp.full_like(state.prey.gait, 2)))
    for i in range(5):
        state, _ = small_world.step(state, NULL, jax.random.PRNGKey(i), params)
        x = np.asarray(state.prey.x[:2])
        r = float(params.prey_radius)
        assert np.all(x >= r) and np.all(x <= 600 - r)
        # On a wall, the prey has no speed into it (it may still slide along it).
        on_wall = (x == r) | (x == 600 - r)
        assert np.all(np.asarray(state.prey.vx[:2])[on_wall] == 0.0)


def test_prey_counts_respect_capacity_with_reproduction(cloud_world):
    static = cloud_world.env.static
    num = int(cloud_world.params.prey_num)
    assert static.reproduction and static.prey_capacity >= num + static.cloud_num
    reset, step = cloud_world.vreset, cloud_world.vstep
    state, _ = reset(jax.random.split(jax.random.PRNGKey(4), 4), cloud_world.params)
    null = jnp.full((4,), NULL)
    counts, births = [], 0
    for i in range(80):
        prev_alive = np.asarray(state.prey.alive)
        state, _ = step(
            state, null, jax.random.split(jax.random.PRNGKey(100 + i), 4), cloud_world.params
        )
        alive = np.asarray(state.prey.alive)
        births += int(np.sum(alive & ~prev_alive))
        counts.append(alive.sum(axis=1))
    counts = np.stack(counts)
    assert counts.max() <= static.prey_capacity
    assert counts.max() <= num + static.cloud_num - 1
    assert births > 0 and counts.min() < num  # deaths and births both happened
    # Newborns appear inside their cloud's square.
    half = float(cloud_world.params.cloud_region_size) / 2
    cloud = np.asarray(state.prey.cloud)
    cx = np.take_along_axis(np.asarray(state.arena.cloud_x), cloud, axis=1)
    cy = np.take_along_axis(np.asarray(state.arena.cloud_y), cloud, axis=1)
    alive = np.asarray(state.prey.alive)
    young = alive & (np.asarray(state.prey.age) == 0)
    assert young.any()
    assert np.all(np.abs(np.asarray(state.prey.x) - cx)[young] <= half + 1e-3)
    assert np.all(np.abs(np.asarray(state.prey.y) - cy)[young] <= half + 1e-3)


def test_prey_stay_in_their_clouds_without_reproduction():
    """`sparse`: 30 prey in 3 clouds, confined to their squares."""
    from conftest import _jitted
    from simfish.config import load_config

    world = _jitted(load_config("sparse", {"max_sim_steps_per_episode": 100}))
    params = world.params.replace(p_fast=jnp.float32(1.0), p_slow=jnp.float32(0.0))
    state, _ = world.reset(jax.random.PRNGKey(5), params)
    assert int(np.sum(np.asarray(state.prey.alive))) == 30
    assert world.env.static.prey_capacity == 30
    half = float(params.cloud_region_size) / 2
    for i in range(40):
        state, _ = world.step(state, NULL, jax.random.PRNGKey(i), params)
        cx = np.asarray(state.arena.cloud_x)[np.asarray(state.prey.cloud)]
        cy = np.asarray(state.arena.cloud_y)[np.asarray(state.prey.cloud)]
        assert np.all(np.abs(np.asarray(state.prey.x) - cx) <= half + 1e-3)
        assert np.all(np.abs(np.asarray(state.prey.y) - cy) <= half + 1e-3)
