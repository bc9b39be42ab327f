"""Tests for simfish_rl.simfish_r2d2_learner: reflection, loss, SGD steps, checkpoints."""

import itertools

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
    SimfishR2D2Learner,
    load_training_state,
    r2d2_loss,
    reflect_actions,
    reflect_observations,
    reflect_samples,
)
from simfish_rl.simfish_r2d2_network import (
    R2D2Networks,
    make_environment_spec,
    make_r2d2_networks,
)
from simfish_rl.types import ReplaySample, SampleInfo, SequenceData

P = 16  # photoreceptor positions in the small test worlds
BATCH, BURN_IN, TRACE = 2, 2, 4
LENGTH = BURN_IN + TRACE + 1


def _tree_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


# -- reflection ---------------------------------------------------------------


def test_reflect_observations_twice_is_identity():
    rng = np.random.default_rng(0)
    visual = rng.random((2, 5, P, 3, 2)).astype(np.float32)
    internal = rng.random((2, 5, 3)).astype(np.float32)
    once = reflect_observations((visual, internal))
    np.testing.assert_array_equal(once[0][..., 3, 1, 0], visual[..., P - 4, 1, 1])
    np.testing.assert_array_equal(once[1], internal)  # internal state unchanged
    twice = reflect_observations(once)
    np.testing.assert_array_equal(twice[0], visual)
    with pytest.raises(ValueError, match="visual"):
        reflect_observations((np.zeros((P, 3, 3)), internal))


def test_reflect_actions_swaps_right_and_left():
    actions = Actions.default()
    names = list(actions.names)
    ids = np.arange(len(names), dtype=np.int32)
    mirrored = np.asarray(reflect_actions(ids, actions.get_opposing_dict()))
    for i, name in enumerate(names):
        if name.endswith("_R"):
            assert names[mirrored[i]] == name[:-2] + "_L"
        elif name.endswith("_L"):
            assert names[mirrored[i]] == name[:-2] + "_R"
        else:
            assert mirrored[i] == i
    np.testing.assert_array_equal(
        reflect_actions(jnp.asarray(mirrored), actions.get_opposing_dict()), ids)
    # A full table (Actions.mirror) works the same.
    np.testing.assert_array_equal(reflect_actions(ids, actions.mirror), mirrored)


ANGLES = -0.4 + 0.12 * np.arange(P)  # left-eye viewing angles (positive = to the left)


def _render(objects):
    """A toy binocular retina: right eye position p sees angle -ANGLES[P - 1 - p]."""
    visual = np.zeros((P, 3, 2), np.float32)
    for angle, channel, brightness in objects:
        visual[:, channel, 0] += brightness * np.exp(-((ANGLES - angle) ** 2) / 0.02)
        visual[:, channel, 1] += brightness * np.exp(-((-ANGLES[::-1] - angle) ** 2) / 0.02)
    return np.floor(visual)


def _world_batch(rng_seed, mirrored, actions):
    """Batch of sequences from a toy world (or its mirror image)."""
    rng = np.random.default_rng(rng_seed)
    turn_ids = [i for i, n in enumerate(actions.names) if n.endswith("_R")]
    sign = -1.0 if mirrored else 1.0
    visual, internal, action, reward = [], [], [], []
    for _ in range(BATCH):
        angles = rng.uniform(-1, 1, 3)
        seq_v, seq_i, seq_a, seq_r = [], [], [], []
        for t in range(LENGTH):
            objects = [(sign * (a + 0.05 * t), c, 100.0 + 50 * c) for c, a in enumerate(angles)]
            seq_v.append(_render(objects))
            seq_i.append([1.0, 0.5 - 0.01 * t, 0.0])
            turn = turn_ids[t % len(turn_ids)]
            seq_a.append(actions.mirror[turn] if mirrored else turn)
            seq_r.append(0.1 * t)
        visual.append(seq_v), internal.append(seq_i), action.append(seq_a), reward.append(seq_r)
    action = np.asarray(action, np.int32)
    reward = np.asarray(reward, np.float32)
    prev_action = np.concatenate([np.full((BATCH, 1), 20, np.int32), action[:, :-1]], 1)
    prev_reward = np.concatenate([np.zeros((BATCH, 1), np.float32), reward[:, :-1]], 1)
    data = SequenceData(
        observation=OAR((np.asarray(visual, np.float32), np.asarray(internal, np.float32)),
                        prev_action, prev_reward),
        action=action, reward=reward, discount=np.ones((BATCH, LENGTH), np.float32),
        start_of_episode=np.zeros((BATCH, LENGTH), bool),
        core_state=hk.LSTMState(np.zeros((BATCH, 64), np.float32),
                                np.zeros((BATCH, 64), np.float32)),
    )
    info = SampleInfo(np.arange(BATCH, dtype=np.int32), np.zeros(BATCH, np.int32),
                      np.full(BATCH, 0.5, np.float32))
    return ReplaySample(info, data)


def test_reflected_batch_of_world_equals_batch_of_mirrored_world():
    actions = Actions.default()
    world = _world_batch(7, mirrored=False, actions=actions)
    mirror_world = _world_batch(7, mirrored=True, actions=actions)
    assert not _tree_equal(world.data.observation, mirror_world.data.observation)
    reflected = reflect_samples(world, actions.get_opposing_dict())
    assert _tree_equal(reflected, mirror_world)
    assert _tree_equal(reflect_samples(reflected, actions.get_opposing_dict()), world)


# -- loss on a hand-made batch ------------------------------------------------


def _lookup_networks(num_actions):
    """A 'network' whose Q-values are the observation's internal vector times a scale."""

    def unroll(params, key, inputs, state, start_of_episode=None):
        return inputs.observation[1] * params["scale"], state

    return R2D2Networks(
        init=lambda key: {"scale": jnp.ones(())},
        apply=None,
        unroll=unroll,
        initial_state=lambda b: hk.LSTMState(jnp.zeros((b, 1)), jnp.zeros((b, 1))),
        num_actions=num_actions,
        environment_spec=None,
    )


def _hand_batch(probabilities):
    q = np.array([[1, 2], [3, 1], [0.5, 4], [2, 2], [1, 5]], np.float32)  # q_t, t = 0..4
    batch = len(probabilities)
    tile = lambda x: np.repeat(np.asarray(x)[None], batch, axis=0)  # noqa: E731
    data = SequenceData(
        observation=OAR((np.zeros((batch, 5, 1, 1, 2), np.float32), tile(q)),
                        np.zeros((batch, 5), np.int32), np.zeros((batch, 5), np.float32)),
        action=tile(np.array([1, 0, 1, 0, 1], np.int32)),
        reward=tile(np.array([1, 2, 0, 3, 0], np.float32)),
        # Step 2 is an episode's last observation (time limit: discount into it is 1,
        # its own reward and discount are 0); step 3 starts the next episode.
        discount=tile(np.array([1, 1, 0, 1, 1], np.float32)),
        start_of_episode=tile(np.array([0, 0, 0, 1, 0], bool)),
        core_state=hk.LSTMState(np.zeros((batch, 1), np.float32), np.zeros((batch, 1), np.float32)),
    )
    info = SampleInfo(np.arange(batch, dtype=np.int32), np.zeros(batch, np.int32),
                      np.asarray(probabilities, np.float32))
    return ReplaySample(info, data)


def _config(tx_pair, beta=0.5):
    return LossConfig(burn_in_length=0, discount=0.5, importance_sampling_exponent=beta,
                      max_priority_weight=0.9, bootstrap_n=2, tx_pair=tx_pair,
                      clip_rewards=False, max_abs_reward=1.0, use_core_state=True)


def test_loss_on_hand_made_batch_identity_pair():
    # Double Q with online == target: v_t = max_a q_{t+1}: v = [3, 4, 2, 5].
    # Effective discounts gamma*d*(same episode): [.5, .5, 0, .5]; lambda (stop at the
    # last observation s_2): [1, 0, 1, 1]. Two-step returns:
    #   G0 = 1 + .5 * (2 + .5 * 4) = 3      G1 = 2 + .5 * 4 = 4   (bootstrap from s_2)
    #   G2: crosses into the next episode -> masked
    #   G3 = 3 + .5 * 5 = 5.5               (end of sequence: bootstrap from v_3)
    # q(s, a): [2, 3, 4, 2] -> TD = [1, 1, masked, 3.5]; loss = .5 * (1 + 1 + 12.25).
    networks = _lookup_networks(2)
    params = networks.init(None)
    loss, (priorities, _) = r2d2_loss(
        networks, _config(rlax.IDENTITY_PAIR), params, params, jax.random.PRNGKey(0),
        _hand_batch([0.25, 0.75]))
    weights = np.array([4.0 ** 0.5, (4.0 / 3.0) ** 0.5]) / 2.0  # (1/p)^beta / max
    np.testing.assert_allclose(loss, 7.125 * weights.mean(), rtol=1e-5)
    # Priority: 0.9 * max|TD| + 0.1 * mean|TD| over the 3 valid transitions.
    np.testing.assert_allclose(priorities, [0.9 * 3.5 + 0.1 * 5.5 / 3] * 2, rtol=1e-5)


def test_loss_on_hand_made_batch_signed_hyperbolic_pair():
    eps = 1e-3
    h = lambda x: np.sign(x) * (np.sqrt(np.abs(x) + 1) - 1) + eps * x  # noqa: E731

    def h_inv(y):  # by bisection, independent of rlax's closed form
        lo, hi = -1e4, 1e4
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if h(mid) < y else (lo, mid)
        return (lo + hi) / 2

    v = [h_inv(3.0), h_inv(4.0), h_inv(2.0), h_inv(5.0)]
    g0 = h(1 + 0.5 * (2 + 0.5 * v[1]))
    g1 = h(2 + 0.5 * v[1])
    g3 = h(3 + 0.5 * v[3])
    td = np.array([g0 - 2, g1 - 3, g3 - 2])
    networks = _lookup_networks(2)
    params = networks.init(None)
    loss, (priorities, _) = r2d2_loss(
        networks, _config(rlax.SIGNED_HYPERBOLIC_PAIR), params, params, jax.random.PRNGKey(0),
        _hand_batch([0.5]))
    np.testing.assert_allclose(loss, 0.5 * np.sum(td ** 2), rtol=1e-4)
    np.testing.assert_allclose(
        priorities, [0.9 * np.abs(td).max() + 0.1 * np.abs(td).mean()], rtol=1e-4)


def test_loss_without_boundaries_matches_rlax_transformed_n_step_q_learning():
    networks = _lookup_networks(2)
    params = networks.init(None)
    batch = _hand_batch([0.5])
    batch = batch._replace(data=batch.data._replace(
        start_of_episode=np.zeros((1, 5), bool), discount=np.ones((1, 5), np.float32)))
    loss, (priorities, _) = r2d2_loss(
        networks, _config(rlax.SIGNED_HYPERBOLIC_PAIR), params, params, jax.random.PRNGKey(0),
        batch)
    q = jnp.asarray(batch.data.observation.observation[1][0])
    td = rlax.transformed_n_step_q_learning(
        q[:-1], jnp.asarray(batch.data.action[0, :-1]), q[1:], jnp.argmax(q[1:], -1),
        jnp.asarray(batch.data.reward[0, :-1]), jnp.full(4, 0.5), n=2,
        tx_pair=rlax.SIGNED_HYPERBOLIC_PAIR)
    np.testing.assert_allclose(loss, 0.5 * jnp.sum(td ** 2), rtol=1e-5)
    np.testing.assert_allclose(
        priorities[0], 0.9 * jnp.max(jnp.abs(td)) + 0.1 * jnp.mean(jnp.abs(td)), rtol=1e-5)


def test_burn_in_equals_starting_from_the_burnt_in_state(small_networks, world_batch):
    # Loss with burn-in == loss on the trace alone, started from the states the online
    # and target networks reach after the burn-in steps.
    nets = small_networks
    params = nets.init(jax.random.PRNGKey(1))
    target_params = nets.init(jax.random.PRNGKey(2))
    batch = jax.tree.map(jnp.asarray, world_batch)
    batch = batch._replace(data=batch.data._replace(
        start_of_episode=batch.data.start_of_episode.at[1, 4].set(True),
        core_state=hk.LSTMState(jnp.full((BATCH, 64), 0.3), jnp.full((BATCH, 64), -0.2))))
    config = _config(rlax.SIGNED_HYPERBOLIC_PAIR)._replace(burn_in_length=BURN_IN)
    loss, (priorities, _) = r2d2_loss(nets, config, params, target_params,
                                      jax.random.PRNGKey(0), batch)

    burn = jax.tree.map(lambda x: jnp.swapaxes(x[:, :BURN_IN], 0, 1), batch.data.observation)
    start = jnp.swapaxes(batch.data.start_of_episode[:, :BURN_IN], 0, 1)
    _, online_state = nets.unroll(params, None, burn, batch.data.core_state, start)
    _, target_state = nets.unroll(target_params, None, burn, batch.data.core_state, start)
    trace = batch._replace(data=jax.tree.map(lambda x: x[:, BURN_IN:],
                                             batch.data._replace(core_state=None)))

    if _tree_equal(online_state, target_state):
        pytest.fail("online and target states should differ in this test")
    # Online and target start from different states: splice them by running the loss
    # with a network that picks the target state when given target parameters.
    spliced = R2D2Networks(
        init=nets.init, apply=nets.apply, initial_state=nets.initial_state,
        num_actions=nets.num_actions, environment_spec=None,
        unroll=lambda p, k, o, s, st=None: nets.unroll(
            p, k, o, target_state if p is target_params else online_state, st),
    )
    expected, (expected_priorities, _) = r2d2_loss(
        spliced, config._replace(burn_in_length=0), params, target_params,
        jax.random.PRNGKey(0), trace._replace(data=trace.data._replace(
            core_state=online_state)))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(priorities, expected_priorities, rtol=1e-5)


# -- the learner ----------------------------------------------------------------


class RecordingReplay:
    def __init__(self):
        self.calls = []

    def update_priorities(self, info, priorities):
        self.calls.append((info, np.asarray(priorities)))


@pytest.fixture(scope="module")
def small_networks():
    return make_r2d2_networks(make_environment_spec(num_positions=P))


@pytest.fixture(scope="module")
def world_batch():
    return _world_batch(3, mirrored=False, actions=Actions.default())


def _learner(networks, batch, seed, replay=None, counter=None):
    return SimfishR2D2Learner(
        networks=networks, batch_size=BATCH, random_key=jax.random.PRNGKey(seed),
        burn_in_length=BURN_IN, discount=0.997, importance_sampling_exponent=0.6,
        max_priority_weight=0.9, target_update_period=3, iterator=itertools.repeat(batch),
        optimizer=optax.adam(1e-3), actions_mirror=Actions.default().get_opposing_dict(),
        bootstrap_n=2, prefetch_size=1, replay_client=replay, counter=counter,
    )


@pytest.fixture(scope="module")
def trained(small_networks, world_batch, tmp_path_factory):
    """A learner after one step, its records, and a checkpoint of it."""
    replay = RecordingReplay()
    learner = _learner(small_networks, world_batch, seed=1, replay=replay)
    initial = learner.save()
    metrics = learner.step()
    path = tmp_path_factory.mktemp("ckpt") / "learner.npz"
    learner.save(path)
    return learner, replay, initial, metrics, path


def test_step_does_regular_and_mirrored_sgd_steps(trained, small_networks, world_batch):
    learner, replay, initial, metrics, _ = trained
    assert learner.steps == 2
    assert metrics["learner_steps"] == 1 and metrics["learner_sgd_steps"] == 2
    assert len(replay.calls) == 2
    for info, priorities in replay.calls:
        np.testing.assert_array_equal(info.index, world_batch.info.index)
        assert priorities.shape == (BATCH,) and np.all(np.isfinite(priorities))
        assert np.all(priorities > 0)
    # The first SGD step ran on the initial parameters: its loss is the loss of the
    # batch (or of its reflection, if the mirrored step came first).
    first_is_mirrored = bool(metrics["mirrored_first"])
    batch = reflect_samples(world_batch, Actions.default().mirror) if first_is_mirrored \
        else world_batch
    config = learner._config
    expected, _ = r2d2_loss(small_networks, config, initial.params, initial.target_params,
                            jax.random.PRNGKey(0), jax.tree.map(jnp.asarray, batch))
    key = "mirrored_loss" if first_is_mirrored else "loss"
    np.testing.assert_allclose(metrics[key], expected, rtol=1e-4)
    assert not _tree_equal(learner.params, initial.params)
    assert _tree_equal(learner.get_variables(["policy"])[0], learner.params)


def test_save_restore_round_trip(trained, small_networks, world_batch):
    learner, _, _, _, path = trained
    other = _learner(small_networks, world_batch, seed=99)
    assert not _tree_equal(other.params, learner.params)
    other.restore(path)
    for field in ("params", "target_params", "opt_state", "steps", "random_key"):
        assert _tree_equal(getattr(other.state, field), getattr(learner.state, field)), field
    # Restoring from an in-memory snapshot works too, and a wrong-shaped file is refused.
    other.restore(learner.save())
    assert _tree_equal(other.state, learner.state)
    bigger = _learner(make_r2d2_networks(make_environment_spec(num_positions=P + 4)),
                      world_batch, seed=0)
    with pytest.raises(ValueError, match="expected"):
        load_training_state(path, bigger.state)


def test_learner_trains_from_sequence_replay(small_networks):
    # The replay buffer is the learner's iterator and replay client.
    from simfish_rl.replay import SequenceReplay, SequenceReplayBuffer, example_step
    from simfish_rl.types import Step

    worlds, chunk = 2, 5
    buffer = SequenceReplayBuffer(num_worlds=worlds, steps_per_world=40, sequence_length=LENGTH,
                                  sequence_period=5, priority_exponent=0.9)
    replay = SequenceReplay(buffer, example_step(num_positions=P), jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    for _ in range(4):
        lead = (chunk, worlds)
        replay.add(Step(
            observation=OAR((np.floor(rng.random(lead + (P, 3, 2)) * 256).astype(np.float32),
                             rng.random(lead + (3,)).astype(np.float32)),
                            rng.integers(0, 21, lead).astype(np.int32),
                            rng.normal(size=lead).astype(np.float32)),
            action=rng.integers(0, 21, lead).astype(np.int32),
            reward=rng.normal(size=lead).astype(np.float32),
            discount=np.ones(lead, np.float32),
            start_of_episode=rng.random(lead) < 0.1,
            core_state=hk.LSTMState(np.zeros(lead + (64,), np.float32),
                                    np.zeros(lead + (64,), np.float32)),
        ))
    assert replay.can_sample()
    learner = SimfishR2D2Learner(
        networks=small_networks, batch_size=BATCH, random_key=jax.random.PRNGKey(5),
        burn_in_length=BURN_IN, discount=0.997, importance_sampling_exponent=0.6,
        max_priority_weight=0.9, target_update_period=3, iterator=replay.iterator(BATCH),
        optimizer=optax.adam(1e-3), actions_mirror=Actions.default().mirror, bootstrap_n=2,
        prefetch_size=0, replay_client=replay,
    )
    before = np.asarray(replay.state.priorities).copy()
    learner.step()
    assert learner.steps == 2
    assert not np.array_equal(np.asarray(replay.state.priorities), before)
