"""SimFishEnv: shapes under jit/vmap, determinism, episodes, capture rules, fish options."""

from __future__ import annotations

import dm_env
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simfish.config import load_config
from simfish.io.actions import Actions
from simfish.world.env import SimFishEnv
from simfish.world.state import with_fish, with_prey
from simfish.world.types import OAR

ACTIONS = Actions.default()
NULL = ACTIONS.get_action_id("Null")
SCS, LCS, BS = (ACTIONS.get_action_id(n) for n in ("SCS", "LCS", "BS"))


def _leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_reset_and_step_shapes_and_dtypes(small_world):
    state, ts = small_world.reset(jax.random.PRNGKey(0), small_world.params)
    assert isinstance(ts, dm_env.TimeStep) and isinstance(ts.observation, OAR)
    assert int(ts.step_type) == int(dm_env.StepType.FIRST)
    (internal,) = ts.observation.observation  # no vision wired in this env
    assert internal.shape == (3,) and internal.dtype == jnp.float32
    assert ts.observation.action.dtype == jnp.int32 and int(ts.observation.action) == NULL
    state, ts = small_world.step(state, 3, jax.random.PRNGKey(1), small_world.params)
    assert int(ts.step_type) == int(dm_env.StepType.MID)
    assert ts.reward.shape == () and ts.reward.dtype == jnp.float32
    assert ts.discount.dtype == jnp.float32 and int(ts.observation.action) == 3
    assert float(ts.observation.reward) == float(ts.reward)
    in_light, energy, salt = np.asarray(ts.observation.observation[0])
    assert in_light in (0.0, 1.0) and energy == float(state.fish.energy)
    assert salt == pytest.approx(float(state.salt_concentration))
    spec = small_world.env.observation_spec()
    assert spec.observation[0].shape == (3,) and spec.action.num_values == 21
    assert small_world.env.action_spec().num_values == small_world.env.num_actions == 21


def test_in_light_is_off_in_the_dark_band(small_world):
    state, _ = small_world.reset(jax.random.PRNGKey(0), small_world.params)
    dark_y = float(small_world.params.dark_y)  # 0.3 * 500
    for y, want in ((dark_y - 20, 0.0), (dark_y + 20, 1.0)):
        s = with_fish(state, 300.0, y, 0.0)
        _, ts = small_world.step(s, NULL, jax.random.PRNGKey(1), small_world.params)
        assert float(ts.observation.observation[0][0]) == want


def test_same_key_gives_bit_identical_trajectories(small_world):
    actions = [i % 21 for i in range(25)]
    s1, t1 = small_world.rollout(jax.random.PRNGKey(42), actions)
    s2, t2 = small_world.rollout(jax.random.PRNGKey(42), actions)
    _leaves_equal((s1, t1), (s2, t2))
    s3, _ = small_world.rollout(jax.random.PRNGKey(43), actions)
    assert float(s3[-1].fish.x) != float(s1[-1].fish.x)


def test_vmap_over_8_worlds_equals_8_single_runs(small_world):
    params = small_world.params
    keys = jax.random.split(jax.random.PRNGKey(9), 8)
    reset, step = small_world.vreset, small_world.vstep
    state, _ = reset(keys, params)
    singles = [small_world.reset(k, params)[0] for k in keys]
    for i in range(12):
        actions = (jnp.arange(8) + i) % 21
        step_keys = jax.random.split(jax.random.fold_in(keys[0], i), 8)
        state, ts = step(state, actions, step_keys, params)
        for w in range(8):
            singles[w], _ = small_world.step(singles[w], actions[w], step_keys[w], params)
    for w in range(8):
        batched_w = jax.tree_util.tree_map(lambda x, w=w: x[w], state)
        flat_b = jax.tree_util.tree_leaves(batched_w)
        flat_s = jax.tree_util.tree_leaves(singles[w])
        for b, s in zip(flat_b, flat_s, strict=True):
            if jnp.issubdtype(b.dtype, jax.dtypes.prng_key):
                b, s = jax.random.key_data(b), jax.random.key_data(s)
            b, s = np.asarray(b), np.asarray(s)
            if np.issubdtype(b.dtype, np.floating):  # fusion may differ by an ulp
                np.testing.assert_allclose(b, s, rtol=1e-6, atol=1e-4)
            else:
                np.testing.assert_array_equal(b, s)


def test_time_limit_ends_with_discount_one_then_restarts(small_world):
    params = small_world.params.replace(max_steps=jnp.int32(5), p_predator=jnp.float32(0.0))
    state, _ = small_world.reset(jax.random.PRNGKey(0), params)
    types = []
    for i in range(7):
        state, ts = small_world.step(state, NULL, jax.random.PRNGKey(i), params)
        types.append((int(ts.step_type), float(ts.discount)))
    assert types[:5] == [(1, 1.0)] * 4 + [(2, 1.0)]
    assert types[5][0] == 0 and int(ts.step_type) == 1  # FIRST, then MID again
    assert int(state.step) == 1 and int(state.counts.wall_touches) >= 0


def test_all_prey_eaten_ends_the_episode(golden_world):
    state, _ = golden_world.reset(jax.random.PRNGKey(0), golden_world.params)
    state = with_prey(with_fish(state, 1250.0, 1250.0, 0.0), [[1258.0, 1250.0]])
    state, ts = golden_world.step(state, SCS, jax.random.PRNGKey(1), golden_world.params)
    assert int(state.last_events.prey_caught) == 1
    assert int(ts.step_type) == 2 and float(ts.discount) == 0.0


def _one_step(world, fish_angle, prey_xy, action, key=1):
    state, _ = world.reset(jax.random.PRNGKey(0), world.params)
    state = with_prey(with_fish(state, 1250.0, 1250.0, fish_angle), prey_xy)
    state, ts = world.step(state, action, jax.random.PRNGKey(key), world.params)
    return state, ts


def test_capture_only_inside_the_window(golden_world):
    """LCS reaches a prey 40 px ahead only after sub-step 51: pushed, not eaten."""
    ahead = lambda r: [[1250.0 + r, 1250.0], [100.0, 100.0]]  # noqa: E731
    state, _ = _one_step(golden_world, 0.0, ahead(40.0), LCS)
    assert int(state.last_events.prey_caught) == 0 and bool(state.prey.alive[0])
    assert float(state.prey.x[0]) > 1290.0  # pushed ahead of the mouth
    state, _ = _one_step(golden_world, 0.0, ahead(25.0), LCS)
    assert int(state.last_events.prey_caught) == 1 and not bool(state.prey.alive[0])
    # Not a capture bout: the same prey is pushed.
    state, _ = _one_step(golden_world, 0.0, ahead(25.0), BS)
    assert int(state.last_events.prey_caught) == 0


def test_capture_only_inside_the_angle_and_eats_exactly_one(golden_world):
    # Two prey in front of the mouth: only one is eaten.
    state, ts = _one_step(golden_world, 0.0, [[1257.0, 1250.0], [1259.0, 1250.0]], LCS)
    assert int(state.last_events.prey_caught) == 1
    assert int(np.sum(np.asarray(state.prey.alive))) == 1
    assert float(state.last_terms.consumption) == 3.0
    # Grazed from the side (angle at contact > permissive angle): not eaten.
    angle = 0.9
    side = [[1250.0 + 8 * np.cos(angle), 1250.0 + 8 * np.sin(angle)], [100.0, 100.0]]
    state, _ = _one_step(golden_world, 0.0, side, SCS)
    assert int(state.last_events.prey_caught) == 0


def test_capture_works_in_any_heading(golden_world):
    for heading in (1.0, -2.5, 3.0):
        prey = [[1250.0 + 10 * np.cos(heading), 1250.0 + 10 * np.sin(heading)], [100.0, 100.0]]
        state, _ = _one_step(golden_world, heading, prey, SCS)
        assert int(state.last_events.prey_caught) == 1


def test_info_reports_positions_and_masks_dead_prey(golden_world):
    state, _ = _one_step(golden_world, 0.0, [[1258.0, 1250.0], [100.0, 100.0]], SCS)
    info = golden_world.info(state)
    assert float(info["fish_x"]) == float(state.fish.x)
    assert np.isnan(float(info["prey_x"][0])) and float(info["prey_x"][1]) == 100.0
    assert np.isnan(float(info["predator_x"]))
    assert int(info["event_consumed_prey"]) == 1
    assert not bool(info["event_survived_predator"])


def test_paralyze_and_init_position(golden_world):
    params = golden_world.params.replace(
        paralyze=jnp.asarray(True),
        init_x=jnp.float32(2000.0),
        init_y=jnp.float32(2400.0),
        init_angle=jnp.float32(1.5707),
    )
    state, _ = golden_world.reset(jax.random.PRNGKey(0), params)
    assert (float(state.fish.x), float(state.fish.y)) == (2000.0, 2400.0)
    assert float(state.fish.angle) == pytest.approx(1.5707)
    state = with_prey(state, [[100.0, 100.0]])
    for a in (BS, ACTIONS.get_action_id("O-bend_R")):
        state, _ = golden_world.step(state, a, jax.random.PRNGKey(a), params)
    assert (float(state.fish.x), float(state.fish.y)) == (2000.0, 2400.0)
    assert float(state.fish.angle) == pytest.approx(1.5707)


def test_tethered_preset_loads_and_stays_put():
    env = SimFishEnv(load_config("tethered", {"max_sim_steps_per_episode": 10}), vision=None)
    state, ts = env.reset(jax.random.PRNGKey(0))
    state, ts = env.step(state, BS, jax.random.PRNGKey(1))
    assert (float(state.fish.x), float(state.fish.y)) == (2500.0, 2500.0)
    assert float(state.fish.energy) == 1.0 and int(ts.step_type) == 1


def test_test_sensory_system_only_rotates():
    cfg = load_config(
        "normal",
        {"test_sensory_system": True, "prey.num": 1, "predator.probability_per_epoch_step": 0.0},
    )
    env = SimFishEnv(cfg, vision=None)
    step = jax.jit(env.step)
    state, _ = env.reset(jax.random.PRNGKey(0))
    x0, y0, a0 = float(state.fish.x), float(state.fish.y), float(state.fish.angle)
    for i, a in enumerate((BS, LCS, ACTIONS.get_action_id("O-bend_L"))):
        state, _ = step(state, a, jax.random.PRNGKey(i))
        assert float(state.fish.angle) == pytest.approx(a0 + 0.1 * (i + 1), abs=1e-5)
        assert (float(state.fish.x), float(state.fish.y)) == (x0, y0)


def test_in_light_matches_the_golden_vision_scenes(small_world):
    """internal[0] of the 34 scenes measured on the users' tool (normal arena, 2500 px)."""
    import json

    from conftest import GOLDEN_DIR
    from simfish.vision.light import in_light

    scenes = json.loads((GOLDEN_DIR / "vision_scenes.json").read_text())["scenes"]
    internal = np.load(GOLDEN_DIR / "vision_scenes.npz")["internal"]
    state, _ = small_world.reset(jax.random.PRNGKey(0), small_world.params)
    for scene, want in zip(scenes, internal[:, 0], strict=True):
        params = small_world.params.replace(
            dark_y=jnp.float32(int(scene["arena_dark_fraction"] * 2500))
        )
        fish = with_fish(state, *scene["fish_xy"], scene["fish_angle"]).fish
        assert float(in_light(fish.y, params.dark_y)) == float(want), scene
