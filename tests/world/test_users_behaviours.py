"""Behaviours of the users' tool (issue 9 C1-C3, C5): whole-body catch, sliding prey,
elastic prey contacts with one jump per contact, and the sensory test mode."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simfish.config import load_config
from simfish.io.actions import Actions
from simfish.world.contacts import predator_touches_fish
from simfish.world.env import SimFishEnv
from simfish.world.physics import coast, slide
from simfish.world.state import with_fish, with_predator, with_prey

ACTIONS = Actions.default()
NULL = ACTIONS.get_action_id("Null")
BS = ACTIONS.get_action_id("BS")


# ------------------------------------------------------------------ C1: predator catch


def _touch(gu, gw, params):
    """predator_touches_fish for a predator at (gu, gw) in the frame of a fish heading 0."""
    return bool(predator_touches_fish(jnp.float32(gu), jnp.float32(gw), 1.0, 0.0, params))


def test_predator_touch_geometry_mouth_head_tail(small_world):
    p = small_world.params  # mouth 2, head 2.5, tail 41, predator 64
    r = float(p.predator_radius)
    tip = float(p.head_radius + p.tail_length)  # 43.5 px behind the mouth centre
    # Mouth: straight ahead, just inside / outside R + mouth_radius.
    assert _touch(r + 2.0 - 0.1, 0.0, p) and not _touch(r + 2.0 + 0.1, 0.0, p)
    # Tail tip: straight behind, just inside / outside tip + R (107.5 px).
    assert _touch(-(tip + r - 0.1), 0.0, p) and not _touch(-(tip + r + 0.1), 0.0, p)
    # Tail side: perpendicular to the slanted edge at its middle.
    hr, tail = float(p.head_radius), float(p.tail_length)
    edge = math.hypot(tail, hr)
    nu, nw = -hr / edge, tail / edge  # outward normal of the upper edge
    mu, mw = -(hr + tail / 2), hr / 2
    for sign in (1.0, -1.0):
        assert _touch(mu + (r - 0.1) * nu, sign * (mw + (r - 0.1) * nw), p)
        assert not _touch(mu + (r + 0.1) * nu, sign * (mw + (r + 0.1) * nw), p)
    # Head: a small predator beside the front of the head circle, out of the mouth's reach.
    small = p.replace(predator_radius=jnp.float32(5.0))
    theta = math.radians(75.0)
    inside = (-2.5 + 7.4 * math.cos(theta), 7.4 * math.sin(theta))
    outside = (-2.5 + 7.6 * math.cos(theta), 7.6 * math.sin(theta))
    assert math.hypot(*inside) > 7.0  # not a mouth contact
    assert _touch(*inside, small) and not _touch(*outside, small)


@pytest.mark.parametrize("behind,caught", [(100.0, True), (110.0, False)])
def test_fish_fleeing_tail_first_is_caught_by_the_tail(small_world, behind, caught):
    """A predator 100 px behind the mouth touches the tail (tip at 43.5 px): a catch."""
    params = small_world.params.replace(p_predator=jnp.float32(0.0), paralyze=jnp.asarray(True))
    state, _ = small_world.reset(jax.random.PRNGKey(0), params)
    state = with_prey(with_fish(state, 300.0, 250.0, 0.0), [[50.0, 50.0]])
    state = state.replace(step=jnp.int32(30))  # past the immunity period
    # At rest, aimed away from the fish: it drifts < 1 px in a step.
    state = with_predator(state, 300.0 - behind, 250.0, 300.0 - behind - 400.0, 250.0)
    state, _ = small_world.step(state, NULL, jax.random.PRNGKey(1), params)
    assert int(state.last_events.attacks_captured) == int(caught)
    assert bool(state.predator.present) == (not caught)


# ------------------------------------------------------------------ C2: prey at walls


def test_slide_clamps_and_stops_only_the_normal_speed():
    x, v = slide(jnp.array([-2.0, 5.0, 13.0]), jnp.array([-3.0, 1.0, 4.0]), 0.0, 10.0)
    np.testing.assert_allclose(x, [0.0, 5.0, 10.0])
    np.testing.assert_allclose(v, [0.0, 1.0, 0.0])


def test_coast_into_a_wall_ends_on_it_at_rest_with_its_heading():
    class P:
        damping = jnp.float32(0.7**0.1)
        dt = jnp.float32(0.001)

    x, v, h = coast(jnp.float32(95.0), jnp.float32(50.0), 1.0, 10.0, 0.0, 100.0, P, 100)
    assert (float(x), float(v), float(h)) == (100.0, 0.0, 1.0)


def test_prey_driven_into_a_wall_slides_along_it_with_unchanged_heading(small_world):
    params = small_world.params.replace(
        p_predator=jnp.float32(0.0),
        p_switch=jnp.float32(0.0),
        max_turning_angle=jnp.float32(0.0),
        p_large_turn=jnp.float32(0.0),
        p_escape_substep=jnp.float32(0.0),
        paralyze=jnp.asarray(True),
    )
    state, _ = small_world.reset(jax.random.PRNGKey(0), params)
    state = with_fish(state, 100.0, 100.0, 0.0)
    angle = math.pi / 4  # towards the east wall and down
    state = with_prey(state, [[590.0, 200.0], [300.0, 400.0]], angle=angle)
    fast = jnp.zeros_like(state.prey.gait).at[0].set(2)
    state = state.replace(prey=state.prey.replace(gait=fast))
    hi = float(params.width - params.prey_radius)
    ys = []
    for i in range(12):
        state, _ = small_world.step(state, NULL, jax.random.PRNGKey(i), params)
        ys.append(float(state.prey.y[0]))
    assert float(state.prey.x[0]) == pytest.approx(hi)  # on the wall
    assert float(state.prey.vx[0]) == 0.0 and float(state.prey.vy[0]) > 0.0  # sliding
    assert np.all(np.diff(ys) > 0.0)
    assert float(state.prey.angle[0]) == pytest.approx(angle, abs=1e-6)  # unchanged heading


# ------------------------------------------------------------------ C3: elastic contact


def _head_on(golden_world, jump):
    params = golden_world.params.replace(velocity_jump=jnp.float32(jump))
    state, _ = golden_world.reset(jax.random.PRNGKey(0), params)
    state = with_prey(with_fish(state, 1000.0, 1000.0, 0.0), [[1012.0, 1000.0], [100.0, 100.0]])
    state, _ = golden_world.step(state, BS, jax.random.PRNGKey(1), params)
    return state, params


def test_prey_hit_outside_a_capture_leaves_at_twice_the_fish_speed(golden_world):
    state, _ = _head_on(golden_world, 0.0)
    assert bool(state.prey.alive[0])
    ratio = float(state.prey.vx[0]) / float(state.fish.vx)
    assert ratio == pytest.approx(2.0, rel=0.03)
    assert float(state.prey.x[0]) > float(state.fish.x)  # ahead of the mouth


def test_one_escape_jump_per_new_contact(golden_world):
    still, params = _head_on(golden_world, 0.0)
    jumped, _ = _head_on(golden_world, 30.0)
    d = float(params.damping)
    kick = 30.0 * (1.0 - d)
    dv = np.array([float(jumped.prey.vx[0] - still.prey.vx[0]),
                   float(jumped.prey.vy[0] - still.prey.vy[0])])
    # One kick along the prey's heading (0), damped for m whole sub-steps: d^m kick.
    assert abs(dv[1]) < 1e-3 * kick
    m = math.log(dv[0] / kick) / math.log(d)
    assert 0.0 <= m <= 100.0 and m == pytest.approx(round(m), abs=0.05)


# ------------------------------------------------------------------ C5: sensory test mode


@pytest.fixture(scope="module")
def sensory():
    cfg = load_config("normal", {"test_sensory_system": True, "prey.num": 1})
    env = SimFishEnv(cfg, vision=None)
    return env, jax.jit(env.step), env.reset(jax.random.PRNGKey(0))[0]


def test_sensory_test_fish_at_centre_heading_zero(sensory):
    env, _, state = sensory
    w, h = float(env.params.width), float(env.params.height)
    assert (float(state.fish.x), float(state.fish.y), float(state.fish.angle)) == (w / 2, h / 2, 0.0)


def test_sensory_test_five_fixed_prey(sensory):
    env, step, state = sensory
    w, h = float(env.params.width) / 2, float(env.params.height) / 2
    want = [(w + 30, h + 30), (w, h - 40), (w, h + 40), (w + 30, h - 30), (w + 5, h + 50)]
    for i in range(20):
        state, _ = step(state, BS, jax.random.PRNGKey(i))
        alive = np.asarray(state.prey.alive)
        got = np.stack([np.asarray(state.prey.x)[alive], np.asarray(state.prey.y)[alive]], 1)
        np.testing.assert_array_equal(got, np.asarray(want, np.float32))


def test_sensory_test_predator_once_after_step_10_at_300_degrees(sensory):
    env, step, state = sensory
    fx, fy = float(state.fish.x), float(state.fish.y)
    dist = float(env.params.distance_from_fish)
    seen, gone = None, None
    for i in range(200):
        before = bool(state.predator.present)
        state, _ = step(state, NULL, jax.random.PRNGKey(i))
        if bool(state.predator.present) and not before:
            assert seen is None  # appears once
            seen = int(state.step)
            start = (float(state.predator.x), float(state.predator.y))
        if seen is not None and not bool(state.predator.present) and gone is None:
            gone = int(state.step)
            assert int(state.last_events.attacks_captured) == 1  # removed on touching the fish
    assert seen == 11  # it appears in the step after step 10
    a = math.radians(300.0)
    # Where it appeared, moved in its first step towards the fish (at most v x step time).
    most = float(env.params.predator_velocity * env.params.dt) * env.static.n_substeps
    appear = np.array([fx + dist * math.cos(a), fy + dist * math.sin(a)])
    off = np.asarray(start) - appear
    toward = -np.array([math.cos(a), math.sin(a)])
    assert np.linalg.norm(off - off.dot(toward) * toward) < 1e-2 and 0 <= off.dot(toward) < most
    assert gone is not None


def test_sensory_test_rotation_costs_no_energy(sensory):
    env, step, state = sensory
    p = env.params
    e0 = float(state.fish.energy)
    state, _ = step(state, BS, jax.random.PRNGKey(0))
    assert e0 - float(state.fish.energy) == pytest.approx(float(p.energy_baseline), abs=1e-6)
    assert float(state.fish.angle) == pytest.approx(0.1)
