"""Tests for simfish_rl.replay: sequence cutting, periods, priorities, boundaries."""

import collections

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simfish.world.types import OAR
from simfish_rl.replay import SequenceReplay, SequenceReplayBuffer, example_step
from simfish_rl.types import Step

WORLDS, CAPACITY, LENGTH, PERIOD, CHUNK = 3, 40, 12, 5, 7


@pytest.fixture(scope="module")
def buffer():
    return SequenceReplayBuffer(
        num_worlds=WORLDS, steps_per_world=CAPACITY, sequence_length=LENGTH,
        sequence_period=PERIOD, priority_exponent=0.5,
    )


@pytest.fixture(scope="module")
def fns(buffer):
    return {
        "add": jax.jit(buffer.add),
        "sample": jax.jit(buffer.sample, static_argnums=(2,)),
        "set": jax.jit(buffer.set_priorities),
    }


def _example():
    return example_step(num_positions=7, core_size=4)


def chunk(t0, num=CHUNK, worlds=WORLDS):
    """Steps t0..t0+num-1 of every world; every field encodes (t, world)."""
    t = np.arange(t0, t0 + num)[:, None] + np.zeros((1, worlds), int)
    w = np.zeros((num, 1), int) + np.arange(worlds)[None]
    code = (t * 10 + w).astype(np.float32)
    visual = np.broadcast_to(((t + w) % 256 + 0.7)[..., None, None, None], (num, worlds, 7, 3, 2))
    observation = OAR((visual.astype(np.float32), np.stack([code] * 3, -1)),
                      (t - 1).astype(np.int32), code)
    return Step(
        observation=observation,
        action=t.astype(np.int32),
        reward=code,
        discount=np.where(t % 17 == 16, 0.0, 1.0).astype(np.float32),
        start_of_episode=(t % 17 == 0),
        core_state=hk.LSTMState(np.stack([code] * 4, -1), -np.stack([code] * 4, -1)),
    )


def filled(buffer, fns, num_chunks):
    state = buffer.init(_example())
    for i in range(num_chunks):
        state = fns["add"](state, chunk(i * CHUNK))
    return state


def test_storage_is_uint8_and_capacity(buffer):
    state = buffer.init(_example())
    assert state.steps.observation.observation[0].dtype == jnp.uint8
    assert state.steps.observation.observation[0].shape == (WORLDS, CAPACITY, 7, 3, 2)
    assert buffer.max_sequences == WORLDS * CAPACITY // PERIOD
    assert not bool(buffer.can_sample(state))


def test_valid_sequences_follow_length_and_period(buffer, fns):
    state = filled(buffer, fns, 5)  # 35 steps per world
    starts = sorted(int(s) for s, v in zip(state.sequence_start, state.valid[0], strict=True) if v)
    # Complete sequences start at multiples of PERIOD and end by step 34.
    assert starts == [s for s in range(0, 35, PERIOD) if s + LENGTH <= 35]
    state = filled(buffer, fns, 9)  # 63 steps: ring of 40 dropped the oldest
    starts = sorted(int(s) for s, v in zip(state.sequence_start, state.valid[0], strict=True) if v)
    assert starts == [s for s in range(0, 63, PERIOD) if s + LENGTH <= 63 and s >= 63 - CAPACITY]


def test_sampled_sequences_are_contiguous_windows(buffer, fns):
    state = filled(buffer, fns, 9)
    sample = fns["sample"](state, jax.random.PRNGKey(0), 64)
    data = sample.data
    assert data.action.shape == (64, LENGTH)
    assert data.observation.observation[0].dtype == jnp.float32
    world = np.asarray(sample.info.index) // buffer.slots_per_world
    start = np.asarray(sample.info.start)
    assert np.all(start % PERIOD == 0)
    expected_t = start[:, None] + np.arange(LENGTH)
    np.testing.assert_array_equal(data.action, expected_t)
    np.testing.assert_array_equal(data.reward, expected_t * 10 + world[:, None])
    # Visual stored as uint8 after flooring, returned as float32.
    np.testing.assert_array_equal(data.observation.observation[0][:, :, 0, 0, 0],
                                  (expected_t + world[:, None]) % 256)
    # Episode boundaries stay visible.
    np.testing.assert_array_equal(data.start_of_episode, expected_t % 17 == 0)
    np.testing.assert_array_equal(data.discount, np.where(expected_t % 17 == 16, 0.0, 1.0))
    # The stored core state is the one before the sequence's first step.
    np.testing.assert_array_equal(data.core_state.hidden[:, 0], start * 10 + world)


def test_priorities_drive_sampling(buffer, fns):
    state = filled(buffer, fns, 9)
    first = fns["sample"](state, jax.random.PRNGKey(1), 16)
    # New sequences start with the max priority (1): uniform over valid slots.
    n_valid = int(buffer.size(state))
    np.testing.assert_allclose(first.info.probability, 1.0 / n_valid, rtol=1e-5)
    # Give one sequence priority 100 and the others 1: p ~ priority ** 0.5.
    info = jax.tree.map(lambda x: x[:1], first.info)
    state = fns["set"](state, info, jnp.array([100.0]))
    assert float(state.max_priority) == 100.0
    sample = fns["sample"](state, jax.random.PRNGKey(2), 4000)
    expected = 10.0 / (10.0 + (n_valid - 1))
    hit = np.mean(np.asarray(sample.info.index) == int(info.index[0]))
    assert abs(hit - expected) < 0.03
    np.testing.assert_allclose(
        sample.info.probability[np.asarray(sample.info.index) == int(info.index[0])], expected,
        rtol=1e-5)


def test_priority_update_ignores_overwritten_sequences(buffer, fns):
    state = filled(buffer, fns, 9)
    sample = fns["sample"](state, jax.random.PRNGKey(3), 1)
    for i in range(9, 20):  # overwrite the whole ring
        state = fns["add"](state, chunk(i * CHUNK))
    before = np.asarray(state.priorities)
    state = fns["set"](state, sample.info, jnp.array([50.0]))
    np.testing.assert_array_equal(state.priorities, before)
    assert float(state.max_priority) == 1.0


def test_invalid_configurations():
    with pytest.raises(ValueError, match="multiple"):
        SequenceReplayBuffer(num_worlds=1, steps_per_world=41, sequence_length=12,
                             sequence_period=5)
    with pytest.raises(ValueError, match="at least"):
        SequenceReplayBuffer(num_worlds=1, steps_per_world=15, sequence_length=12,
                             sequence_period=5)
    small = SequenceReplayBuffer(num_worlds=WORLDS, steps_per_world=20, sequence_length=12,
                                 sequence_period=5)
    with pytest.raises(ValueError, match="exceed"):
        small.add(small.init(_example()), chunk(0, num=10))


def test_replay_client_roundtrip(buffer):
    replay = SequenceReplay(buffer, _example(), jax.random.PRNGKey(4))
    assert not replay.can_sample()
    with pytest.raises(RuntimeError, match="needs"):
        replay.sample(2)
    for i in range(4):
        replay.add(chunk(i * CHUNK))
    assert replay.size() == WORLDS * len([s for s in range(0, 28, PERIOD) if s + LENGTH <= 28])
    batch = next(replay.iterator(2))
    assert batch.data.action.shape == (2, LENGTH)
    replay.update_priorities(batch.info, jnp.array([3.0, 3.0]))
    assert float(replay.state.max_priority) == 3.0


def test_add_accepts_step_like_objects(buffer, fns):
    # An actor may use its own NamedTuple with the same fields and a list observation.
    ActorStep = collections.namedtuple("ActorStep", Step._fields)  # noqa: PYI024
    state = buffer.init(_example())
    step = chunk(0)
    other = ActorStep(*step)._replace(observation=OAR(list(step.observation.observation),
                                                      step.observation.action,
                                                      step.observation.reward))
    a = buffer.add(state, other)
    b = fns["add"](buffer.init(_example()), step)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b),
                                                     strict=True))
