"""BaseEnvironment: dm_env semantics and the users' extra API."""

from __future__ import annotations

import dm_env
import jax
import numpy as np
import pytest

from simfish.io.actions import Actions
from simfish.wrappers.base_environment import BaseEnvironment, info_lists

ACTIONS = Actions.default()
NULL = ACTIONS.get_action_id("Null")


@pytest.fixture(scope="module")
def base_env(small_config):
    """Built from the users' flat dict and list of action dicts."""
    return BaseEnvironment(
        small_config.to_flat_dict(), ACTIONS.get_all_actions(), seed=3, vision=None
    )


def test_dm_env_episode_semantics(base_env):
    ts = base_env.reset()
    assert ts.step_type == dm_env.StepType.FIRST and ts.reward is None and ts.discount is None
    rewards = []
    n = 0
    while True:
        ts = base_env.step(NULL)
        n += 1
        if ts.last():
            break
        assert ts.step_type == dm_env.StepType.MID
        rewards.append(float(ts.reward))
    rewards.append(float(ts.reward))
    assert n == 60  # max_sim_steps_per_episode of the small world (Null never starves)
    assert float(ts.discount) == 1.0  # time limit: bootstrap
    total = (
        base_env.energy_associated_reward
        + base_env.consumption_associated_reward
        + base_env.salt_associated_reward
        + base_env.predator_associated_reward
        + base_env.wall_associated_reward
    )
    assert total == pytest.approx(sum(rewards), rel=1e-4, abs=1e-4)
    assert base_env.total_attacks_avoided >= 0 and base_env.total_attacks_captured >= 0
    # After LAST, step() starts a new episode.
    ts = base_env.step(NULL)
    assert ts.first()
    assert base_env.step(NULL).mid()


def test_starvation_is_last_with_discount_zero(small_config):
    cfg = small_config.replace({"fish.init_energy_level": 0.0005})
    env = BaseEnvironment(cfg, seed=0, vision=False)
    env.reset()
    ts = env.step(ACTIONS.get_action_id("BS"))
    assert ts.last() and float(ts.discount) == 0.0


def test_observation_and_specs(base_env):
    ts = base_env.reset()
    (internal,) = ts.observation.observation
    assert isinstance(internal, np.ndarray) and internal.shape == (3,)
    assert internal.dtype == np.float32
    spec = base_env.observation_spec()
    spec.observation[0].validate(internal)
    assert base_env.action_spec().num_values == 21
    ts = base_env.step(2)
    assert isinstance(ts.reward, np.ndarray) and ts.reward.dtype == np.float32
    assert int(ts.observation.action) == 2


def test_get_info_values_are_one_element_lists(base_env):
    base_env.reset()
    base_env.step(2)
    info = base_env.get_info()
    for key in (
        "fish_x",
        "fish_y",
        "fish_angle",
        "prey_x",
        "prey_y",
        "predator_x",
        "predator_y",
        "event_consumed_prey",
        "event_survived_predator",
        "event_captured_by_predator",
    ):
        assert isinstance(info[key], list) and len(info[key]) == 1, key
    assert isinstance(info["fish_x"][0], float)
    assert len(info["prey_x"][0]) == 10 and all(isinstance(v, float) for v in info["prey_x"][0])
    assert float(base_env.state.fish.x) == info["fish_x"][0]


def test_users_attributes(base_env, small_config):
    base_env.reset()
    assert base_env.env_variables == small_config.to_flat_dict()
    assert base_env.env_variables["prey_num"] == 10
    salt = base_env.salt_location
    assert salt.shape == (2,) and 0 <= salt[0] <= 600 and 0 <= salt[1] <= 500


def test_same_seed_same_episode(base_env):
    runs = []
    for _ in range(2):
        base_env.seed(11)
        base_env.reset()
        runs.append([float(base_env.step(a % 21).reward) for a in range(10)])
        runs[-1].append(base_env.get_info())
    assert repr(runs[0]) == repr(runs[1])  # repr: NaN predator positions compare equal


def test_default_world_has_vision():
    env = BaseEnvironment("normal", seed=0)
    ts = env.reset()
    visual, internal = ts.observation.observation
    assert visual.shape == (139, 3, 2) and visual.dtype == np.float32
    assert internal.shape == (3,) and visual.max() > 0
    spec = env.observation_spec()
    assert spec.observation[0].shape == (139, 3, 2) and spec.observation[1].shape == (3,)
    ts = env.step(2)
    assert ts.mid() and ts.observation.observation[0].shape == (139, 3, 2)


def test_sediment_record_regenerates_the_episode_texture():
    from simfish import BaseEnvironment
    from simfish.vision import render_sediment

    env = BaseEnvironment("small", seed=4)
    env.reset()
    record = env.sediment_record
    image = env.render_sediment(100, 120, 16, 8, lit=False)
    assert image.shape == (8, 16) and image.dtype == np.float32
    np.testing.assert_array_equal(image, render_sediment(record, 100, 120, 16, 8))
    assert 0 <= image.min() and image.max() <= env.config.arena.bottom_intensity
    env.reset()  # a new episode has a new texture
    assert not np.array_equal(env.render_sediment(100, 120, 16, 8, lit=False), image)
    outside = env.render_sediment(-50, -50, 4, 4)  # lit: nothing outside the arena
    assert np.all(outside == 0)


def _assert_round_trips(tree, words):
    """``FlatPack`` packs ``tree`` into ``words`` uint32 words and back, bit for bit."""
    from simfish.wrappers.base_environment import FlatPack

    packer = FlatPack(jax.eval_shape(lambda: tree))
    packed = jax.jit(packer.pack)(tree)
    assert packed.dtype == np.uint32 and packed.shape == (words,) == (packer.num_words,)
    for unpacked in (jax.jit(packer.unpack)(packed),
                     packer.unpack(jax.device_get(packed), xp=np)):
        for got, want in zip(jax.tree.leaves(unpacked), jax.tree.leaves(tree), strict=True):
            assert got.dtype == want.dtype and got.shape == want.shape
            assert np.asarray(got).tobytes() == np.asarray(want).tobytes()


def test_flat_pack_round_trips_every_dtype_and_shape():
    import jax.numpy as jnp

    from simfish.wrappers.base_environment import FlatPack

    tree = {"a": jnp.arange(6, dtype=jnp.float32).reshape(2, 3), "b": jnp.int32(-7),
            "c": (jnp.array([True, False]), jnp.zeros((0,), jnp.float32)),
            "d": jnp.array([3, 2**32 - 1], jnp.uint32),
            "e": jnp.array([-0.0, np.nan, np.inf], jnp.float32),  # the bits, not the values
            "f": jnp.array([-3, 200], jnp.int16), "g": jnp.array([255, 1], jnp.uint8),
            "h": jnp.array([0.5, -2.0], jnp.float16)}
    _assert_round_trips(tree, 6 + 1 + 2 + 0 + 2 + 3 + 2 + 2 + 2)
    with jax.enable_x64(True):  # 64-bit leaves take two words each
        _assert_round_trips({"x": jnp.array([1e300, -0.0], jnp.float64),
                             "y": jnp.int64(-2**40), "z": jnp.float32(1.5)}, 4 + 2 + 1)
    with pytest.raises(TypeError):  # typed PRNG keys are not packed
        FlatPack({"k": jax.random.key(0)})


def test_state_round_trips_through_set_state():
    env = BaseEnvironment("small", seed=4, vision=None)
    env.reset()
    for a in range(5):
        env.step(a)
    state = env.state
    info = env.get_info()
    # The packed info (one array of words, unpacked on the host) is the plain one.
    assert info == info_lists(jax.device_get(jax.jit(env.env.info)(state)))
    other = BaseEnvironment("small", seed=9, vision=None)
    other.reset()
    other.set_state(state)
    assert other.get_info() == info
    for got, want in zip(jax.tree.leaves(other.state), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    # Both step on from the same state alike (same seed for the next key).
    again = BaseEnvironment("small", seed=4, vision=None)
    again.reset()
    for a in range(5):
        again.step(a)
    np.testing.assert_array_equal(env.step(3).observation[0], again.step(3).observation[0])
