"""The vision function plugged into SimFishEnv: shapes, stimuli, sediment per episode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simfish.config import load_config
from simfish.vision.bind import episode_sediment, make_vision_fn
from simfish.world.env import SimFishEnv

QUIET = {"eyes.shot_noise": False}


def _env(preset, **overrides):
    config = load_config(preset, {**QUIET, **overrides})
    return config, SimFishEnv(config, vision=make_vision_fn(config))


def test_env_observation_shapes_under_jit_and_vmap():
    config, env = _env("normal", **{"eyes.shot_noise": True, "prey.num": 20})
    keys = jax.random.split(jax.random.key(0), 3)
    states, ts = jax.jit(jax.vmap(env.reset))(keys)
    visual, internal = ts.observation.observation
    assert visual.shape == (3, 139, 3, 2) and visual.dtype == jnp.float32
    assert internal.shape == (3, 3)
    visual = np.asarray(visual)
    assert np.all(visual == np.floor(visual)) and visual.min() >= 0 and visual.max() <= 255
    # Each world draws its own sediment: the red channels differ between worlds.
    assert not np.array_equal(visual[0, :, 1], visual[1, :, 1])


def test_sediment_follows_the_episode_key():
    config = load_config("normal")
    a = episode_sediment(jax.random.key(3), config)
    b = episode_sediment(jax.random.key(3), config)
    c = episode_sediment(jax.random.key(4), config)
    np.testing.assert_array_equal(np.asarray(a.phases), np.asarray(b.phases))
    assert not np.array_equal(np.asarray(a.phases), np.asarray(c.phases))
    test_mode = episode_sediment(jax.random.key(3), load_config("normal", {"test_sensory_system": True}))
    assert float(test_mode.sign_mix) == 1.0


@pytest.fixture(scope="module")
def tethered_state():
    """A reset tethered world (the state does not depend on the stimulus files)."""
    _, env = _env("tethered")
    state, _ = jax.jit(env.reset)(jax.random.key(0))
    return env, state


@pytest.fixture(scope="module")
def observe_at(tethered_state):
    """observe_at(preset, step): the visual observation of the tethered world at ``step``."""
    env, state = tethered_state
    cache = {}

    def observe(preset, step):
        if preset not in cache:
            config = load_config(preset, QUIET)
            fn = make_vision_fn(config)
            cache[preset] = jax.jit(lambda s, k: fn(s, env.params, env.static, k))
        moved = state.replace(step=jnp.asarray(step, jnp.int32))
        return np.asarray(cache[preset](moved, jax.random.key(1)))

    return observe


def test_stimulus_prey_is_seen(observe_at):
    # Row 49 of stim_prey.h5: the prey is 40 px straight ahead of the tethered fish.
    with_prey = observe_at("tethered_prey", 50)
    without = observe_at("tethered", 50)
    bump = with_prey[:, 0, :] - without[:, 0, :]
    assert bump[:, 0].max() >= 5 and bump[:, 1].max() >= 5  # both eyes, frontal
    assert np.argmax(bump[:, 0]) > 100 and np.argmax(bump[:, 1]) < 39
    np.testing.assert_array_equal(with_prey[:, 1:], without[:, 1:])  # red untouched
    before = observe_at("tethered_prey", 0)  # reset: no stimulus row yet
    np.testing.assert_array_equal(before[:, 0], observe_at("tethered", 0)[:, 0])


@pytest.mark.parametrize("step,shaded", [(50, False), (501, True)])
def test_stimulus_predator_casts_its_shadow(observe_at, step, shaded):
    # stim_predator.h5 passes 200 px ahead; at row 500 it is straight ahead, its
    # nearest edge 136 px away: within the 75 deg circle (187 px), not the 50 deg one.
    obs = observe_at("tethered_pred", step)
    clear = observe_at("tethered", step)
    np.testing.assert_array_equal(obs[:, :2], clear[:, :2])
    dark = (obs[:, 2] == 0) & (clear[:, 2] > 0)
    assert dark.any() == shaded
    if shaded:
        assert dark[:, 0].any() and dark[:, 1].any()  # ahead: both eyes
