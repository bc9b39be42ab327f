"""The fish's whole body at the walls (SPEC 4.2, issue 14): mouth handler, head and tail contacts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simfish.io.actions import Actions
from simfish.world import walls
from simfish.world.state import with_fish, with_predator, with_prey

ACTIONS = Actions.default()
NULL = ACTIONS.get_action_id("Null")
BS = ACTIONS.get_action_id("BS")


@pytest.fixture(scope="module")
def start(golden_world):
    """The golden world (deterministic bouts, static prey) with its prey far from the walls."""
    state, _ = golden_world.reset(jax.random.PRNGKey(0), golden_world.params)
    return with_prey(state, [[1200.0, 1200.0]])


def _body_points(state, params):
    """Arena coordinates (x [5], y [5]) of the mouth and head centres and the tail's vertices."""
    fish = state.fish
    ox, oy = walls.body_points(jnp.cos(fish.angle), jnp.sin(fish.angle), params)
    return float(fish.x) + np.array(ox, float), float(fish.y) + np.array(oy, float)


def _play(world, state, action, steps, params):
    touches, penalty = [], []
    for i in range(steps):
        state, _ = world.step(state, action, jax.random.PRNGKey(i), params)
        touches.append(int(state.last_events.wall_touches))
        penalty.append(float(state.last_terms.wall))
    return state, touches, penalty


def test_body_moment_is_the_users_disc_of_the_head(golden_world):
    params = golden_world.params
    expected = 0.5 * walls.FISH_MASS * float(params.head_radius) ** 2  # pymunk.moment_for_circle
    assert float(walls.body_inertia(params)) == pytest.approx(expected)
    assert expected == pytest.approx(156.25)


def test_fish_backing_into_a_wall_is_stopped_by_its_tail_without_penalty(golden_world, start):
    params = golden_world.params
    # Facing east 70 px from the west wall's centre line, drifting backwards (west) fast.
    state = with_fish(start, 70.0, 1500.0, 0.0)
    state = state.replace(fish=state.fish.replace(vx=jnp.float32(-1500.0)))
    state, touches, penalty = _play(golden_world, state, NULL, 3, params)
    tail_tip_x = _body_points(state, params)[0][4]
    face = walls.wall_lines(params)[0][0] + walls.HALF_THICKNESS
    # Without the tail's contact the fish would drift 1500 * 0.2 * 0.97 ~ 290 px, through the wall.
    assert tail_tip_x >= face - 1.5, tail_tip_x
    assert float(state.fish.x) > 40.0
    assert touches == [0, 0, 0] and penalty == [0.0, 0.0, 0.0]  # the mouth never touched
    assert abs(float(state.fish.vx)) < 1.0


def test_fish_swimming_into_a_wall_is_stopped_and_penalised_once_while_in_contact(
    golden_world, start
):
    params = golden_world.params
    width = float(params.width)
    # Facing the east wall (face at width - 10), its mouth 5 px off it; then bouts into it.
    state = with_fish(start, width - 17.0, 1500.0, 0.0)
    state, touches, penalty = _play(golden_world, state, BS, 4, params)
    assert touches[0] == 1 and penalty[0] == float(params.reward_wall_touch)
    assert touches[1:] == [0, 0, 0] and penalty[1:] == [0.0, 0.0, 0.0]  # the contact persists
    assert bool(state.fish.mouth_at_wall)
    face = walls.wall_lines(params)[0][1] - walls.HALF_THICKNESS
    assert float(state.fish.x) <= face - float(params.mouth_radius) + 2.0  # stopped at the wall
    # Backing off and coming again is a new contact: penalised again.
    state = with_fish(state, width - 60.0, 1500.0, 0.0)
    state, touches, _ = _play(golden_world, state, BS, 1, params)
    assert touches == [1]


def test_fish_touching_a_wall_at_an_angle_slides_along_it_and_turns(golden_world, start):
    params = golden_world.params
    # 20 degrees off the north wall (face at y = 10), its tail's tip 1 px off the face,
    # drifting backwards and along the wall: the tail meets the wall at an angle.
    angle = 0.35
    state = with_fish(start, 1200.0, 26.0, angle)
    state = state.replace(fish=state.fish.replace(vx=jnp.float32(300.0), vy=jnp.float32(-150.0)))
    state, touches, penalty = _play(golden_world, state, NULL, 1, params)
    assert touches == [0] and penalty == [0.0]  # only the tail touched
    face = walls.wall_lines(params)[1][0] + walls.HALF_THICKNESS
    ys = _body_points(state, params)[1]
    assert ys.min() >= face - 1.5  # blocked at the wall ...
    # ... sliding along it as far as a free fish drifts (frictionless: 300 px/s damped).
    d, n = float(params.damping), 100
    free_drift = 300.0 * float(params.dt) * (1.0 - d**n) / (1.0 - d)
    assert float(state.fish.x) - 1200.0 == pytest.approx(free_drift, rel=0.02)
    assert float(state.fish.angle) < angle - 0.02  # turned towards the wall's direction


def test_tail_swung_through_a_wall_pins_the_fish_there(golden_world, start):
    """A turn that swings the tail through a wall holds the fish at it, as in the users' tool."""
    params = golden_world.params
    # The mouth 12 px from the west wall's centre line, facing away at 45 degrees: the
    # tail (43.5 px) is centred beyond that line. A bout away from the wall does not free it.
    state = with_fish(start, 12.0, 1500.0, -np.pi / 4.0)
    state, touches, _ = _play(golden_world, state, BS, 2, params)
    assert float(state.fish.x) < 20.0  # held at the wall ...
    assert float(state.fish.y) < 1500.0 - 40.0  # ... sliding along it
    # The same fish 30 px further in swims away from the wall.
    free = with_fish(start, 42.0, 1500.0, -np.pi / 4.0)
    free, _, _ = _play(golden_world, free, BS, 2, params)
    assert float(free.fish.x) > 42.0 + 40.0


def test_bouncing_wall_turns_the_fish_around_without_penalty(golden_world, start):
    params = golden_world.params.replace(wall_bounce=jnp.asarray(True))
    state = with_fish(start, 20.0, 1500.0, np.pi)  # facing the west wall
    state, touches, penalty = _play(golden_world, state, BS, 1, params)
    assert touches == [1] and penalty == [0.0]
    assert float(state.fish.x) >= 40.0
    assert float(state.fish.angle) == pytest.approx(2.0 * np.pi, abs=1e-3)


def test_predator_touching_only_the_tail_catches_the_fish(small_world):
    """The predator's catch test uses the fish's heading (a regression: it once used its own path)."""
    params = small_world.params.replace(p_predator=jnp.float32(0.0))
    state, _ = small_world.reset(jax.random.PRNGKey(0), params)
    state = with_fish(state, 300.0, 250.0, 0.0).replace(step=jnp.int32(30))
    r = float(params.predator_radius)
    tip = 300.0 - float(params.head_radius + params.tail_length)
    # From behind the tail's tip to just past touching it; it never reaches the head.
    state = with_predator(state, tip - r - 3.0, 250.0, tip - r + 6.0, 250.0)
    caught = 0
    for i in range(4):
        state, _ = small_world.step(state, NULL, jax.random.PRNGKey(i), params)
        caught += int(state.last_events.attacks_captured)
    assert caught == 1 and int(state.counts.attacks_avoided) == 0
