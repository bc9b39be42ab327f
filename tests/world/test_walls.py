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


def test_solver_leaves_a_fish_clear_of_the_walls_exactly_as_it_is(golden_world):
    """The one-world skip of the contact solver changes no bit: clear of the walls, the
    solver itself returns its input and a zero turn (random poses, speeds and spins)."""
    params = golden_world.params
    rng = np.random.default_rng(3)
    reach = (float(params.mouth_radius) + 2 * float(params.head_radius)
             + float(params.tail_length) + 1.0 + walls.HALF_THICKNESS)
    (lo_x, hi_x), (lo_y, hi_y) = walls.wall_lines(params)
    n = 256
    # Poses from just clear of a wall (within 3 px of the bound) to the middle.
    x = np.concatenate([rng.uniform(lo_x + reach, lo_x + reach + 3.0, n // 2),
                        rng.uniform(lo_x + reach, float(hi_x) - reach, n // 2)]).astype(np.float32)
    y = rng.uniform(lo_y + reach, float(hi_y) - reach, n).astype(np.float32)
    vx, vy = rng.normal(0, 500, (2, n)).astype(np.float32)
    omega = rng.normal(0, 5, n).astype(np.float32)
    angle = rng.uniform(-np.pi, np.pi, n).astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    clear = np.asarray(jax.vmap(walls.clear_of_walls, (0, 0, None))(x, y, params))
    assert clear[n // 2:].all() and clear.mean() > 0.9  # float32 rounding at the bound
    solved = jax.jit(jax.vmap(walls.solve_contacts, (0,) * 7 + (None,)))(
        x, y, vx, vy, omega, c, s, params)
    for got, want in zip(solved[:5], (x, y, vx, vy, omega), strict=True):
        np.testing.assert_array_equal(np.asarray(got)[clear], want[clear])
    assert not np.asarray(solved[5])[clear].any()
    # One world through the branch (a real skip) equals the vmapped select (the solver).
    one = jax.jit(walls.solve_contacts_if_near, static_argnums=())
    for i in np.flatnonzero(clear)[:8]:
        got = one(x[i], y[i], vx[i], vy[i], omega[i], c[i], s[i], params)
        for g, w in zip(got, solved, strict=True):
            assert np.asarray(g) == np.asarray(w)[i]


def test_clear_of_walls_is_false_for_every_pose_with_a_contact(golden_world):
    """Conservative: wherever the solver finds a contact, the skip's test says 'near'."""
    params = golden_world.params
    rng = np.random.default_rng(4)
    n = 2048
    w, h = float(params.width), float(params.height)
    x = rng.uniform(-10.0, 120.0, n).astype(np.float32)  # near the west wall
    y = rng.uniform(0.0, h, n).astype(np.float32)
    flip = rng.random(n) < 0.5  # or near the east wall
    x = np.where(flip, w - x, x).astype(np.float32)
    x, y = np.where(rng.random(n) < 0.5, (x, y), (y * w / h, x * h / w)).astype(np.float32)
    angle = rng.uniform(-np.pi, np.pi, n).astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    zero = np.zeros(n, np.float32)
    toward = np.full(n, -300.0, np.float32)  # pressing on the nearer wall
    out = jax.vmap(walls.solve_contacts, (0,) * 7 + (None,))(x, y, toward, toward, zero, c, s,
                                                             params)
    moved = ((np.asarray(out[0]) != x) | (np.asarray(out[1]) != y)
             | (np.asarray(out[2]) != toward) | (np.asarray(out[3]) != toward))
    clear = np.asarray(jax.vmap(walls.clear_of_walls, (0, 0, None))(x, y, params))
    assert moved.sum() > 100  # the sample has many contacts
    assert not (moved & clear).any()
