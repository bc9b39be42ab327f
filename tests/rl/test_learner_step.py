"""The fused learner step equals two separate SGD steps; unroll_pair equals two unrolls."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import rlax

from simfish.io.actions import Actions
from simfish.world.types import OAR
from simfish_rl.simfish_r2d2_learner import (
    LossConfig,
    TrainingState,
    make_learner_step,
    make_sgd_step,
    mirror_table,
    reflect_samples,
)
from simfish_rl.simfish_r2d2_network import make_environment_spec, make_r2d2_networks
from simfish_rl.types import ReplaySample, SampleInfo, SequenceData

P, BATCH, BURN_IN, TRACE = 16, 3, 2, 5
LENGTH = BURN_IN + TRACE + 1
MIRROR = mirror_table(Actions.default().get_opposing_dict())
MIRROR = np.concatenate([MIRROR, np.arange(len(MIRROR), 21, dtype=np.int32)])


@pytest.fixture(scope="module")
def networks():
    return make_r2d2_networks(make_environment_spec(num_positions=P))


def _batch(seed):
    rng = np.random.default_rng(seed)
    lead = (BATCH, LENGTH)
    start = rng.random(lead) < 0.15
    data = SequenceData(
        observation=OAR((np.floor(rng.random(lead + (P, 3, 2)) * 256).astype(np.float32),
                         rng.random(lead + (3,)).astype(np.float32)),
                        rng.integers(0, 21, lead).astype(np.int32),
                        rng.normal(size=lead).astype(np.float32)),
        action=rng.integers(0, 21, lead).astype(np.int32),
        reward=rng.normal(size=lead).astype(np.float32),
        discount=(rng.random(lead) > 0.1).astype(np.float32),
        start_of_episode=start,
        core_state=hk.LSTMState(rng.normal(size=(BATCH, 64)).astype(np.float32) * 0.3,
                                rng.normal(size=(BATCH, 64)).astype(np.float32) * 0.3),
    )
    info = SampleInfo(np.arange(BATCH, dtype=np.int32), np.zeros(BATCH, np.int32),
                      rng.uniform(0.1, 0.5, BATCH).astype(np.float32))
    return jax.tree.map(jnp.asarray, ReplaySample(info, data))


def _config():
    return LossConfig(burn_in_length=BURN_IN, discount=0.99, importance_sampling_exponent=0.6,
                      max_priority_weight=0.9, bootstrap_n=2,
                      tx_pair=rlax.SIGNED_HYPERBOLIC_PAIR, clip_rewards=False,
                      max_abs_reward=1.0, use_core_state=True)


def test_unroll_pair_equals_two_unrolls(networks):
    batch = _batch(0)
    params = networks.init(jax.random.PRNGKey(3))
    mirrored = reflect_samples(batch, MIRROR)
    tm = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731
    obs, mobs = (jax.tree.map(tm, b.data.observation) for b in (batch, mirrored))
    start = tm(batch.data.start_of_episode)
    q, q_m = jax.jit(networks.unroll_pair)(params, None, obs, mobs.action,
                                           batch.data.core_state, start)
    expected, _ = networks.unroll(params, None, obs, batch.data.core_state, start)
    expected_m, _ = networks.unroll(params, None, mobs, batch.data.core_state, start)
    np.testing.assert_allclose(q, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(q_m, expected_m, rtol=1e-5, atol=1e-5)
    assert not np.allclose(q, q_m)  # the reflection is a different input


def test_learner_step_equals_two_sgd_steps(networks):
    # Period 3 over 8 SGD steps: the target network is updated between the two SGD
    # steps of learner step 2 (SGD step 3; the second must then use the new target
    # parameters) and after learner step 3 (SGD step 6). Plain SGD, so parameters
    # differ by as little as the gradients (Adam would magnify rounding in
    # near-zero gradients).
    target_update_period = 3
    optimizer = optax.sgd(1e-2)
    params = networks.init(jax.random.PRNGKey(1))
    state = TrainingState(params, networks.init(jax.random.PRNGKey(2)), optimizer.init(params),
                          jnp.zeros((), jnp.int32), jax.random.PRNGKey(7))
    fused = jax.jit(make_learner_step(networks, optimizer, _config(), target_update_period,
                                      MIRROR))
    sgd = jax.jit(make_sgd_step(networks, optimizer, _config(), target_update_period))
    reference = state
    seen_orders = set()
    for i in range(4):
        batch = _batch(10 + i)
        state, out = fused(state, batch)
        mirrored_first = bool(out.mirrored_first)
        seen_orders.add(mirrored_first)
        mirrored = reflect_samples(batch, MIRROR)
        order = (mirrored, batch) if mirrored_first else (batch, mirrored)
        for j, sample in enumerate(order):
            reference, priorities, metrics = sgd(reference, sample)
            np.testing.assert_allclose(out.priorities[j], priorities, rtol=2e-4, atol=1e-6)
            np.testing.assert_allclose(out.metrics["loss"][j], metrics["loss"], rtol=2e-4)
        for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(reference), strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
    assert int(state.steps) == 8
    assert seen_orders == {True, False}  # both orders exercised (seed chosen for it)
