"""Motion model, bouts and walls (SPEC 4.1, 4.2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simfish.config import load_config
from simfish.io.actions import Actions
from simfish.world import walls
from simfish.world.params import make_params
from simfish.world.physics import bounce, coast
from simfish.world.state import with_fish, with_prey

ACTIONS = Actions.default()
WITHIN_STEP = 1.0 - (0.7**0.1) ** 100  # 0.97175: share of a bout covered within its step


@pytest.fixture(scope="module")
def start(golden_world):
    state, _ = golden_world.reset(jax.random.PRNGKey(0), golden_world.params)
    return with_prey(with_fish(state, 2000.0, 1500.0, 0.4), [[100.0, 100.0]])


def test_within_step_fraction_matches_spec():
    assert WITHIN_STEP == pytest.approx(0.97175, abs=1e-5)


@pytest.mark.parametrize("action", range(ACTIONS.num_actions), ids=ACTIONS.names)
def test_deterministic_bout_turns_exactly_and_moves_0_97175_of_the_mean(
    golden_world, start, action
):
    distance_mm, angle = ACTIONS.means[action]
    state, _ = golden_world.step(start, action, jax.random.PRNGKey(3), golden_world.params)
    assert float(state.fish.angle) == pytest.approx(0.4 + angle, abs=1e-6)
    dx = float(state.fish.x) - 2000.0
    dy = float(state.fish.y) - 1500.0
    moved = np.hypot(dx, dy)
    expected = WITHIN_STEP * distance_mm * 10.0
    assert moved == pytest.approx(expected, rel=0.01, abs=1e-3)
    if expected > 1.0:  # along the new heading
        assert np.arctan2(dy, dx) == pytest.approx(0.4 + angle, abs=1e-4)


def test_bout_covers_the_rest_of_its_distance_afterwards(golden_world, start):
    """After the bout, coasting adds the remaining 2.8 % (L in total)."""
    bs = ACTIONS.get_action_id("BS")
    null = ACTIONS.get_action_id("Null")
    state, _ = golden_world.step(start, bs, jax.random.PRNGKey(0), golden_world.params)
    for i in range(6):
        state, _ = golden_world.step(state, null, jax.random.PRNGKey(i), golden_world.params)
    moved = np.hypot(float(state.fish.x) - 2000.0, float(state.fish.y) - 1500.0)
    assert moved == pytest.approx(ACTIONS.means[bs][0] * 10.0, rel=1e-3)


def test_body_at_rest_stays_at_rest(golden_world, start):
    null = ACTIONS.get_action_id("Null")
    state = with_prey(start, [[1000.0, 1000.0], [1010.0, 1000.0]])
    for i in range(5):
        state, ts = golden_world.step(state, null, jax.random.PRNGKey(i), golden_world.params)
        assert float(state.fish.x) == 2000.0 and float(state.fish.y) == 1500.0
        assert float(state.fish.angle) == pytest.approx(0.4)
        np.testing.assert_array_equal(np.asarray(state.prey.x[:2]), [1000.0, 1010.0])
        np.testing.assert_array_equal(np.asarray(state.prey.y[:2]), [1000.0, 1000.0])


def _substeps(x, v, kick, d, dt, n):
    for _ in range(n):
        v = v + kick
        x = x + v * dt
        v = v * d
    return x, v


def test_coast_equals_the_substep_recurrence():
    d, dt, n = 0.7**0.1, 0.002, 100

    class P:  # the two parameters coast reads
        damping = jnp.float32(d)
        dt = jnp.float32(0.002)

    x0, v0, kick = 100.0, 35.0, 20.0 * (1 - d)
    want_x, want_v = _substeps(x0, v0, kick, d, dt, n)
    x, v, h = coast(jnp.float32(x0), jnp.float32(v0), 1.0, kick, 0.0, 1e6, P, n)
    assert float(x) == pytest.approx(want_x, rel=1e-5)
    assert float(v) == pytest.approx(want_v, rel=1e-4)
    assert float(h) == 1.0


def test_bounce_reflects_position_velocity_and_heading():
    x, v, h = bounce(
        jnp.array([-2.0, 5.0, 13.0]),
        jnp.array([-3.0, 1.0, 4.0]),
        jnp.array([-1.0, 1.0, 1.0]),
        0.0,
        10.0,
    )
    np.testing.assert_allclose(x, [2.0, 5.0, 7.0])
    np.testing.assert_allclose(v, [3.0, 1.0, -4.0])
    np.testing.assert_allclose(h, [1.0, 1.0, -1.0])


@pytest.mark.parametrize("wall_bounce", [False, True])
def test_wall_stops_fish_counts_touch_and_penalises(golden_world, start, wall_bounce):
    params = golden_world.params.replace(wall_bounce=jnp.asarray(wall_bounce))
    bs = ACTIONS.get_action_id("BS")
    state = with_fish(start, 2490.0, 1500.0, 0.0)  # 1 cm from the east wall, facing it
    state, ts = golden_world.step(state, bs, jax.random.PRNGKey(0), params)
    width = float(params.width)
    assert int(state.last_events.wall_touches) == 1
    # A bouncing wall turns the fish around without the wall-touch penalty (issue 14).
    penalty = 0.0 if wall_bounce else float(params.reward_wall_touch)
    assert float(state.last_terms.wall) == penalty
    assert float(state.fish.vx) == 0.0 and float(state.fish.vy) == 0.0
    assert 0.0 <= float(state.fish.x) <= width
    if wall_bounce:
        assert float(state.fish.x) <= width - 40.0  # placed well inside
        assert float(state.fish.angle) == pytest.approx(np.pi)  # turned around
    else:
        # The users' east wall (face 10 px in) stops the mouth on it; the mouth handler
        # only puts back a mouth past size - 7 (issue 14, docs/walls.md).
        face = walls.wall_lines(params)[0][1] - walls.HALF_THICKNESS
        assert face - float(params.mouth_radius) - 0.5 <= float(state.fish.x) <= face
        assert float(state.fish.angle) == 0.0


@pytest.mark.parametrize("wall_bounce", [False, True])
def test_fish_never_leaves_the_arena_under_random_play(small_world, wall_bounce):
    """Property over keys and both wall modes: random bouts, 8 worlds x 120 steps."""
    params = small_world.params.replace(wall_bounce=jnp.asarray(wall_bounce))
    reset, step = small_world.vreset, small_world.vstep
    key = jax.random.PRNGKey(7 + int(wall_bounce))
    state, _ = reset(jax.random.split(key, 8), params)
    touches = 0
    for i in range(120):
        k_a, k_s = jax.random.split(jax.random.fold_in(key, i))
        actions = jax.random.randint(k_a, (8,), 0, ACTIONS.num_actions)
        state, ts = step(state, actions, jax.random.split(k_s, 8), params)
        x, y = np.asarray(state.fish.x), np.asarray(state.fish.y)
        assert np.all((x >= 0) & (x <= float(params.width)))
        assert np.all((y >= 0) & (y <= float(params.height)))
        touches += int(np.sum(np.asarray(state.last_events.wall_touches)))
    assert touches > 0  # the walls were actually tested


PRESETS = ("normal", "stage1", "sparse", "empty", "empty_high_energy", "tethered")


@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**31 - 1),
    preset=st.sampled_from(PRESETS),
    size=st.one_of(st.none(), st.tuples(st.integers(200, 1200), st.integers(200, 1200))),
    wall_bounce=st.booleans(),
)
def test_property_fish_stays_inside_any_arena(small_world, seed, preset, size, wall_bounce):
    """Hypothesis over keys, presets' traced parameters, arena sizes (non-square) and
    wall modes, in the small world's shapes; 8 worlds x 40 steps."""
    params, _ = make_params(load_config(preset), ACTIONS)
    width, height = float(params.width), float(params.height)
    if size is not None:
        width, height = map(float, size)
    params = params.replace(
        width=jnp.float32(width),
        height=jnp.float32(height),
        dark_y=jnp.float32(int(0.3 * height)),
        wall_bounce=jnp.asarray(wall_bounce),
    )
    key = jax.random.PRNGKey(seed)
    state, _ = small_world.vreset(jax.random.split(key, 8), params)
    for i in range(40):
        k_a, k_s = jax.random.split(jax.random.fold_in(key, i))
        actions = jax.random.randint(k_a, (8,), 0, ACTIONS.num_actions)
        state, _ = small_world.vstep(state, actions, jax.random.split(k_s, 8), params)
        x, y = np.asarray(state.fish.x), np.asarray(state.fish.y)
        assert np.all((x >= 0) & (x <= width)) and np.all((y >= 0) & (y <= height))
        alive = np.asarray(state.prey.alive)
        px, py = np.asarray(state.prey.x)[alive], np.asarray(state.prey.y)[alive]
        assert np.all((px >= 0) & (px <= width)) and np.all((py >= 0) & (py <= height))


@pytest.fixture(scope="module")
def near_and_full():
    """The same 1200 x 1000 world with 40 prey, chunked (n_near_prey < 40) and with every prey in the loop."""
    import dataclasses

    from conftest import _jitted

    cfg = load_config(
        "normal",
        {
            "arena.width": 1200,
            "arena.height": 1000,
            "prey.num": 40,
            "predator.probability_per_epoch_step": 0.0,
        },
    )
    near, full = _jitted(cfg), _jitted(cfg)
    assert 8 <= near.env.static.n_near_prey < 40
    full.env.static = dataclasses.replace(full.env.static, n_near_prey=40)
    return near, full


def _compare(near, full, s_near, params, key, steps):
    """Steps both worlds with the same keys and mostly capture swims; asserts equal results."""
    s_full = s_near
    for i in range(steps):
        k = jax.random.fold_in(key, i)
        a = int(jax.random.randint(k, (), 0, 2)) if i % 3 else 2  # mostly capture swims
        s_near, _ = near.step(s_near, a, k, params)
        s_full, _ = full.step(s_full, a, k, params)
        np.testing.assert_array_equal(np.asarray(s_near.prey.alive), np.asarray(s_full.prey.alive))
        assert int(s_near.counts.prey_caught) == int(s_full.counts.prey_caught)
    for name in ("x", "y", "vx", "vy"):
        np.testing.assert_allclose(
            np.asarray(getattr(s_near.prey, name)),
            np.asarray(getattr(s_full.prey, name)),
            atol=1e-2,
        )
        np.testing.assert_allclose(
            float(getattr(s_near.fish, name)), float(getattr(s_full.fish, name)), atol=1e-3
        )
    return s_near


def test_coasting_far_prey_matches_the_full_substep_loop(near_and_full):
    """Detailed loop for the nearest prey only == detailed loop for every prey."""
    near, full = near_and_full
    # Prey sense the fish only close by, so those far away never escape.
    params = near.params.replace(sensing_distance=jnp.float32(30.0))
    key = jax.random.PRNGKey(12)
    s_near, _ = near.reset(key, params)
    _compare(near, full, s_near, params, key, 25)


def test_chunked_loop_matches_the_full_loop_at_default_sensing(near_and_full):
    near, full = near_and_full
    params = near.params
    assert float(params.sensing_distance) == 100.0
    key = jax.random.PRNGKey(5)
    s_near, _ = near.reset(key, params)
    _compare(near, full, s_near, params, key, 25)


def _overflow_scene(state):
    """The fish at (600, 500) facing +x with all 40 prey around it within 93 px, three
    dead ahead in different chunks (5, 18, 31); the one of the latest chunk is touched first."""
    angles = np.linspace(0.0, 2.0 * np.pi, 40, endpoint=False) + 0.05
    radii = 15.0 + 2.0 * np.arange(40)
    xy = np.stack([600.0 + radii * np.cos(angles), 500.0 + radii * np.sin(angles)], axis=1)
    for index, ahead in ((5, 9.0), (18, 7.0), (31, 4.5)):
        xy[index] = (600.0 + ahead, 500.0)
    return with_prey(with_fish(state, 600.0, 500.0, 0.0), xy)


def test_chunked_loop_overflow_matches_the_full_loop(near_and_full):
    """All 40 prey within reach of the fish (several chunks), three in its mouth's path."""
    near, full = near_and_full
    params = near.params
    key = jax.random.PRNGKey(9)
    state = _overflow_scene(near.reset(key, params)[0])
    assert 40 > 2 * near.env.static.n_near_prey  # at least three chunks
    # A deterministic capture swim straight ahead, then random capture swims.
    exact = params.replace(deterministic_action=jnp.asarray(True))
    s_near, _ = near.step(state, 1, key, exact)
    s_full, _ = full.step(state, 1, key, exact)
    alive = np.asarray(s_full.prey.alive)
    assert int(s_full.counts.prey_caught) == 1 and not alive[31] and alive[5] and alive[18]
    np.testing.assert_array_equal(np.asarray(s_near.prey.alive), alive)
    np.testing.assert_allclose(np.asarray(s_near.prey.x), np.asarray(s_full.prey.x), atol=1e-2)
    _compare(near, full, s_near, params, key, 6)


def _select_cond(pred, true_fn, false_fn, *operands):
    """``lax.cond`` as ``vmap`` turns it: both branches computed, one selected."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b),
                                  true_fn(*operands), false_fn(*operands))


def test_one_world_skips_change_nothing(near_and_full, monkeypatch):
    """One world skips the prey loop when no prey interacts and the wall solver when the
    fish is clear of the walls; computing both branches (as vmap does) gives the same
    results (the skipped solver is an exact identity there, see test_walls; the compiled
    programs differ, so an FMA may round differently where the solver does run)."""
    near, _ = near_and_full
    params = near.params.replace(sensing_distance=jnp.float32(30.0))
    step = jax.jit(near.env.step)
    with monkeypatch.context() as patch:
        patch.setattr(jax.lax, "cond", _select_cond)
        step_all = jax.jit(lambda *a: near.env.step(*a)).lower(
            *_example_step_args(near, params)).compile()
    key = jax.random.PRNGKey(21)
    state, _ = near.reset(key, params)
    # Start near a wall (the solver runs), then swim; most steps have no prey within reach.
    state = with_fish(state, 60.0, 500.0, np.pi)
    other = state
    for i in range(20):
        k = jax.random.fold_in(key, i)
        state, ts = step(state, i % 21, k, params)
        other, other_ts = step_all(other, jnp.int32(i % 21), k, params)
        for (path, one), two in zip(jax.tree_util.tree_leaves_with_path((state, ts)),
                                    jax.tree_util.tree_leaves((other, other_ts)), strict=True):
            if jnp.issubdtype(one.dtype, jax.dtypes.prng_key):
                one, two = jax.random.key_data(one), jax.random.key_data(two)
            one, two, where = np.asarray(one), np.asarray(two), f"step {i}, {jax.tree_util.keystr(path)}"
            if np.issubdtype(one.dtype, np.floating):  # the solver's FMAs may differ by an ulp
                np.testing.assert_allclose(one, two, rtol=1e-6, atol=1e-6, err_msg=where)
            else:
                np.testing.assert_array_equal(one, two, err_msg=where)


def _example_step_args(world, params):
    state, _ = world.reset(jax.random.PRNGKey(0), params)
    return state, jnp.int32(0), jax.random.PRNGKey(1), params


@pytest.mark.parametrize("groups", [1, 2])
def test_vmapped_worlds_pool_their_interacting_prey(near_and_full, monkeypatch, groups):
    """Under ``vmap`` the interacting prey of all worlds share one pooled loop
    (``physics._pooled``; with several devices, one pool per device's block of
    worlds); every world ends each step as it does stepped alone, with its own
    parameters: world 0 is the overflow scene (three prey compete for the mouth,
    so two meals are undone), world 1 the same scene with the fish turned away,
    worlds 2 and 3 the two again with prey that sense the fish only 30 px away
    (100 px in the others), so that they escape differently."""
    from simfish.world import physics

    near, _ = near_and_full
    traced = []
    pooled = physics._pooled
    monkeypatch.setattr(physics, "_pooled", lambda *a: traced.append(a[2].x.shape) or pooled(*a))
    monkeypatch.setattr(jax, "local_device_count", lambda: groups)
    exact = near.params.replace(deterministic_action=jnp.asarray(True))
    blind = exact.replace(sensing_distance=jnp.float32(30.0))
    per_world = [exact, exact, blind, blind]
    key = jax.random.PRNGKey(9)
    scene = _overflow_scene(near.reset(key, exact)[0])
    turned = with_fish(scene, 600.0, 500.0, np.pi)
    alone = [scene, turned, scene, turned]
    stack = lambda trees: jax.tree.map(lambda *a: jnp.stack(a), *trees)  # noqa: E731
    together = stack(alone)
    vstep = jax.jit(jax.vmap(near.env.step))
    for i in range(6):
        k = jax.random.split(jax.random.fold_in(key, i), 4)
        actions = np.array([1, 1, 2, 2] if i == 0 else [2, 1, 2, 0], np.int32)
        together, _ = vstep(together, jnp.asarray(actions), k, stack(per_world))
        for w in range(4):
            alone[w], _ = near.step(alone[w], int(actions[w]), k[w], per_world[w])
            one = jax.tree.map(lambda a, w=w: a[w], together)
            where = f"step {i}, world {w}"
            np.testing.assert_array_equal(np.asarray(one.prey.alive),
                                          np.asarray(alone[w].prey.alive), err_msg=where)
            assert int(one.counts.prey_caught) == int(alone[w].counts.prey_caught), where
            for name in ("x", "y", "vx", "vy"):
                np.testing.assert_allclose(np.asarray(getattr(one.prey, name)),
                                           np.asarray(getattr(alone[w].prey, name)),
                                           atol=1e-2, err_msg=where)
        if i == 0:  # the latest chunk's prey, touched first, is the meal
            alive = np.asarray(together.prey.alive[0])
            assert not alive[31] and alive[5] and alive[18]
    # The batching rule ran, on all four worlds: one pool, or one per group of worlds.
    assert traced == [(4 // groups, 40)]


@pytest.fixture(scope="module")
def fish_cases(golden_world):
    """2,048 fish (half within 150 px of a wall), their closed form and their sub-step loop."""
    import dataclasses

    from simfish.world import physics

    env, n = golden_world.env, 2048
    params = env.params
    static = dataclasses.replace(env.static, n_epochs=1)  # the predator in the loop
    assert static.predator_enabled
    rng = np.random.default_rng(3)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    width, height = float(params.width), float(params.height)
    edge = rng.random(n) < 0.5  # half of them near a wall
    x = np.where(edge & (rng.random(n) < 0.5), rng.uniform(0, 150, n), rng.uniform(0, width, n))
    x = np.where(edge & (rng.random(n) < 0.3), width - rng.uniform(0, 150, n), x)
    y = np.where(edge & (rng.random(n) < 0.5), height - rng.uniform(0, 150, n),
                 rng.uniform(0, height, n))
    geo = (1.0 - float(params.damping) ** static.n_substeps) / (1.0 - float(params.damping))
    speed = 60.0 / (float(params.dt) * geo)  # bouts of up to ~60 px
    angle = rng.uniform(-np.pi, np.pi, n)
    state, _ = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(4), n))
    fish = state.fish.replace(
        x=f32(x), y=f32(y), angle=f32(angle),
        vx=f32(rng.normal(0.0, speed, n)), vy=f32(rng.normal(0.0, speed, n)),
        omega=f32(rng.normal(0.0, 1.0 / (float(params.dt) * geo), n)),  # turns of ~1 rad
        mouth_at_wall=jnp.asarray(rng.random(n) < 0.2),
    )
    bout = physics.Bout(cos=f32(np.cos(angle)), sin=f32(np.sin(angle)), capture=jnp.zeros(n, bool))
    line, track = jax.vmap(lambda p: physics.predator_line(p, jnp.ones((), bool)))(state.predator)
    track = track.replace(present=jnp.asarray(rng.random(n) < 0.1))

    looped = jax.jit(jax.vmap(lambda f, t, b, ln: physics.fish_loop(f, t, b, ln, params, static)))(
        fish, track, bout, line)
    coasted = jax.jit(jax.vmap(lambda f, t, b: physics.coast_fish(f, t, b, params, static)))(
        fish, track, bout)
    free = jax.vmap(lambda f, t: physics.fish_is_free(f, t, params, static))(fish, track)
    return np.asarray(free), np.asarray(track.present), looped, coasted


def test_free_fish_coast_in_closed_form_as_in_the_loop(fish_cases):
    """Where ``fish_is_free`` (no predator, no wall within reach all step), the closed form
    gives the sub-step loop's path and outcome to float32 rounding (the loop adds its 100
    sub-steps one by one); elsewhere it does not, so the test decides something."""
    free, present, (out_loop, path_loop), (out_coast, path_coast) = fish_cases
    assert 0.3 < free.mean() < 0.9
    assert not np.any(free & present)
    for name, atol in (("x", 5e-3), ("y", 5e-3), ("vx", 1e-3), ("vy", 1e-3), ("c", 5e-6),
                       ("s", 5e-6)):
        np.testing.assert_allclose(np.asarray(getattr(path_coast, name))[free],
                                   np.asarray(getattr(path_loop, name))[free], rtol=1e-6,
                                   atol=atol, err_msg=f"path.{name}")
    for name, atol in (("x", 5e-3), ("y", 5e-3), ("vx", 1e-4), ("vy", 1e-4), ("angle", 2e-5),
                       ("omega", 2e-5)):
        np.testing.assert_allclose(np.asarray(getattr(out_coast.fish, name))[free],
                                   np.asarray(getattr(out_loop.fish, name))[free], rtol=1e-6,
                                   atol=atol, err_msg=f"fish.{name}")
    for name in ("s", "sv"):
        np.testing.assert_allclose(np.asarray(getattr(out_coast.predator, name))[free],
                                   np.asarray(getattr(out_loop.predator, name))[free],
                                   rtol=1e-6, atol=1e-4, err_msg=f"predator.{name}")
    for flags in (lambda o: o.wall, lambda o: o.caught, lambda o: o.avoided,
                  lambda o: o.fish.mouth_at_wall, lambda o: o.predator.present):
        np.testing.assert_array_equal(np.asarray(flags(out_coast))[free],
                                      np.asarray(flags(out_loop))[free])
    # Among the others, walls stopped or turned many: the closed form would be wrong there.
    moved_apart = np.abs(np.asarray(out_coast.fish.x) - np.asarray(out_loop.fish.x)) > 1.0
    assert np.any(np.asarray(out_loop.wall)[~free]) and np.any(moved_apart[~free])


def test_vmapped_worlds_pool_their_fish_loops(near_and_full, monkeypatch):
    """Under ``vmap`` every fish is coasted and only the worlds whose fish is near a wall
    run the sub-step loop, pooled (``physics._fish_pooled``; here one world per pass, so
    three passes); each world ends each step as it does stepped alone."""
    from simfish.world import physics

    near, _ = near_and_full
    traced = []
    pooled = physics._fish_pooled
    monkeypatch.setattr(physics, "_fish_pooled",
                        lambda *a: traced.append(a[0].x.shape) or pooled(*a))
    monkeypatch.setattr(physics, "CHUNK_LANES", 1)
    monkeypatch.setattr(physics, "FISH_POOL_FRACTION", 0.25)
    params = near.params.replace(deterministic_action=jnp.asarray(True))
    key = jax.random.PRNGKey(17)
    start, _ = near.reset(key, params)
    # One fish in open water, three swimming into a wall or a corner.
    alone = [with_fish(start, 600.0, 500.0, 0.3), with_fish(start, 30.0, 400.0, np.pi),
             with_fish(start, 700.0, 975.0, 0.5 * np.pi), with_fish(start, 1180.0, 20.0, -0.8)]
    stack = lambda trees: jax.tree.map(lambda *a: jnp.stack(a), *trees)  # noqa: E731
    together = stack(alone)
    vstep = jax.jit(jax.vmap(near.env.step, in_axes=(0, 0, 0, None)))
    touches = np.zeros(4, int)
    for i in range(5):
        k = jax.random.split(jax.random.fold_in(key, i), 4)
        actions = np.array([0, 0, 0, 0] if i < 3 else [3, 4, 0, 6], np.int32)
        together, _ = vstep(together, jnp.asarray(actions), k, params)
        for w in range(4):
            alone[w], _ = near.step(alone[w], int(actions[w]), k[w], params)
            one = jax.tree.map(lambda a, w=w: a[w], together)
            where = f"step {i}, world {w}"
            for name in ("x", "y", "vx", "vy", "angle", "omega"):
                np.testing.assert_allclose(float(getattr(one.fish, name)),
                                           float(getattr(alone[w].fish, name)),
                                           rtol=1e-5, atol=1e-3, err_msg=f"{where}, {name}")
            assert int(one.last_events.wall_touches) == int(alone[w].last_events.wall_touches)
            touches[w] += int(alone[w].last_events.wall_touches)
    assert touches[0] == 0 and np.all(touches[1:] > 0)
    assert traced == [(4,)]


@pytest.mark.parametrize("n", [0, 1, 7, 128, 129, 61_440])
def test_running_count_and_selection_order_are_exact(n):
    from simfish.world.physics import _running_count, _selected_in_order

    rng = np.random.default_rng(n)
    pad = 8
    count_fn = jax.jit(_running_count)
    order_fn = jax.jit(lambda s: _selected_in_order(s, pad))
    for p in (0.0, 0.01, 0.5, 1.0):
        selected = rng.random(n) < p
        np.testing.assert_array_equal(np.asarray(count_fn(jnp.asarray(selected))),
                                      np.cumsum(selected))
        order, count = order_fn(jnp.asarray(selected))
        expected = np.flatnonzero(selected)
        assert int(count) == expected.size
        np.testing.assert_array_equal(np.asarray(order)[: expected.size], expected)
        assert not np.asarray(order)[expected.size:].any()
    # Under vmap (the pooled loops run per device group) each row counts on its own.
    rows = rng.random((3, n)) < 0.3
    np.testing.assert_array_equal(np.asarray(jax.vmap(_running_count)(jnp.asarray(rows))),
                                  np.cumsum(rows, axis=1))
