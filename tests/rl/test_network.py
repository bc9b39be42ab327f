"""Tests for simfish_rl.simfish_r2d2_network: shapes, parameter count, math."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simfish.world.types import OAR
from simfish_rl.simfish_r2d2_network import (
    RETINA_CHUNK_SIZE,
    DeepSimfishTorso,
    R2D2SimfishNetwork,
    _Conv1D,
    count_parameters,
    default_retina_chunk,
    environment_spec_from_env,
    make_environment_spec,
    make_r2d2_networks,
    retina,
)

NUM_ACTIONS = 21


@pytest.fixture(scope="module")
def networks():
    return make_r2d2_networks(make_environment_spec())


@pytest.fixture(scope="module")
def params(networks):
    return networks.init(jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def apply_fn(networks):
    return jax.jit(networks.apply)


@pytest.fixture(scope="module")
def unroll_fn(networks):
    return jax.jit(networks.unroll)


def _inputs(rng, lead):
    visual = np.floor(rng.random(lead + (139, 3, 2)) * 256).astype(np.float32)
    internal = rng.random(lead + (3,)).astype(np.float32)
    action = rng.integers(0, NUM_ACTIONS, lead).astype(np.int32)
    reward = rng.normal(size=lead).astype(np.float32)
    return OAR((visual, internal), action, reward)


def test_parameter_count(params):
    # Hand count. Retina: conv k3 3->8: 3*3*8+8 = 80; two conv k5 8->8: 5*8*8+8 = 328 each.
    retina_params = 80 + 2 * 328
    # Retina output per eye: 139 -> 139 -> 70 -> 35 positions x 8 = 280; two eyes 560.
    torso_mlp = 560 * 32 + 32
    # Embedding: 32 torso + 3 internal + 21 one-hot + 1 reward = 57; LSTM(64): (57+64)*256+256.
    lstm = (57 + 64) * 4 * 64 + 4 * 64
    # Duelling: value MLP 64->64->1, advantage MLP 64->64->21.
    duelling = (64 * 64 + 64) + (64 + 1) + (64 * 64 + 64) + (64 * 21 + 21)
    expected = retina_params + torso_mlp + lstm + duelling
    assert expected == 59670
    assert count_parameters(params) == expected


def test_single_step_batched_and_unbatched(networks, params, apply_fn):
    rng = np.random.default_rng(1)
    q, state = apply_fn(params, None, _inputs(rng, (3,)), networks.initial_state(3))
    assert q.shape == (3, NUM_ACTIONS) and q.dtype == jnp.float32
    assert state.hidden.shape == (3, 64) and state.cell.shape == (3, 64)
    q1, state1 = networks.apply(params, None, _inputs(rng, ()), networks.initial_state(None))
    assert q1.shape == (NUM_ACTIONS,) and state1.hidden.shape == (64,)


def test_unroll_matches_step_by_step_with_resets(networks, params, apply_fn, unroll_fn):
    rng = np.random.default_rng(2)
    steps, batch = 5, 2
    inputs = _inputs(rng, (steps, batch))
    start = np.zeros((steps, batch), bool)
    start[3, 0] = True  # world 0 starts a new episode at step 3
    state0 = jax.tree.map(
        lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), networks.initial_state(batch)
    )
    q_unroll, final = unroll_fn(params, None, inputs, state0, start)
    assert q_unroll.shape == (steps, batch, NUM_ACTIONS)
    state = state0
    for t in range(steps):
        keep = 1.0 - start[t].astype(np.float32)[:, None]
        state = jax.tree.map(lambda x, k=keep: x * k, state)
        q_t, state = apply_fn(params, None, jax.tree.map(lambda x, t=t: x[t], inputs), state)
        np.testing.assert_allclose(q_unroll[t], q_t, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(final.hidden, state.hidden, rtol=1e-4, atol=1e-5)


def test_retina_rank_errors_and_shapes():
    fn = hk.without_apply_rng(hk.transform(lambda x: retina()(x)))
    p = fn.init(jax.random.PRNGKey(0), jnp.zeros((139, 3)))
    assert fn.apply(p, jnp.zeros((139, 3))).shape == (280,)
    assert fn.apply(p, jnp.zeros((4, 139, 3))).shape == (4, 280)
    for shape in [(139,), (2, 4, 139, 3)]:
        with pytest.raises(ValueError, match="rank"):
            fn.apply(p, jnp.zeros(shape))


@pytest.mark.parametrize("length,kernel,stride", [(139, 5, 2), (70, 5, 2), (13, 3, 2), (11, 4, 3)])
def test_fast_conv_equals_haiku_conv1d(length, kernel, stride):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, length, 3)), jnp.float32)
    ref = hk.without_apply_rng(hk.transform(lambda x: hk.Conv1D(4, kernel, stride)(x)))
    mine = hk.without_apply_rng(hk.transform(lambda x: _Conv1D(4, kernel, stride, "c")(x)))
    p_ref = ref.init(jax.random.PRNGKey(1), x)
    p_mine = mine.init(jax.random.PRNGKey(1), x)
    assert jax.tree.map(jnp.shape, jax.tree.leaves(p_ref)) == jax.tree.map(
        jnp.shape, jax.tree.leaves(p_mine))
    p_mine = jax.tree.unflatten(jax.tree.structure(p_mine), jax.tree.leaves(p_ref))
    np.testing.assert_allclose(mine.apply(p_mine, x), ref.apply(p_ref, x), rtol=1e-5, atol=1e-5)


def test_lstm_step_equals_haiku_lstm(networks, params):
    # The network's LSTM core has hk.LSTM's parameters and math.
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(2, 57)), jnp.float32)
    state = hk.LSTMState(*(jnp.asarray(rng.normal(size=(2, 64)), jnp.float32) for _ in range(2)))
    lstm_params = params["r2d2_simfish_network/~/lstm/~/linear"]
    ref = hk.without_apply_rng(hk.transform(lambda x, s: hk.LSTM(64)(x, s)))
    out_ref, _ = ref.apply({"lstm/linear": lstm_params}, x, state)
    mine = hk.without_apply_rng(hk.transform(
        lambda x, s: R2D2SimfishNetwork(NUM_ACTIONS)._core(x, s)))
    out, _ = mine.apply({"r2d2_simfish_network/~/lstm/~/linear": lstm_params}, x, state)
    np.testing.assert_allclose(out, out_ref, rtol=1e-5, atol=1e-6)


def test_torso_uses_shared_retina_with_reversed_right_eye():
    # Torso = MLP(relu([retina(left), retina(right reversed)])) with one retina.
    fn = hk.without_apply_rng(hk.transform(
        lambda v: DeepSimfishTorso(hidden_sizes=[8]).retina(v)))
    torso = hk.without_apply_rng(hk.transform(lambda v: DeepSimfishTorso(hidden_sizes=[8])((v,))))
    rng = np.random.default_rng(5)
    visual = jnp.asarray(rng.random((2, 139, 3, 2)), jnp.float32)
    p = torso.init(jax.random.PRNGKey(0), visual)
    assert count_parameters(p) == 80 + 2 * 328 + 560 * 8 + 8
    retina_p = {k: v for k, v in p.items() if "retina" in k}
    left = fn.apply(retina_p, visual[..., 0])
    right = fn.apply(retina_p, visual[:, ::-1, :, 1])
    w = p["deep_simfish_torso/~/mlp/~/linear_0"]["w"]
    b = p["deep_simfish_torso/~/mlp/~/linear_0"]["b"]
    expected = jax.nn.relu(jnp.concatenate([left, right], -1) @ w + b)
    np.testing.assert_allclose(torso.apply(p, visual), expected, rtol=1e-5, atol=1e-5)


def test_environment_spec_from_env():
    class FakeEnv:
        def observation_spec(self):
            return make_environment_spec(num_positions=20).observations.observation

        def action_spec(self):
            return make_environment_spec(num_actions=5).actions

    spec = environment_spec_from_env(FakeEnv())
    assert spec.observations.observation[0].shape == (20, 3, 2)
    assert spec.actions.num_values == 5


def test_retina_chunks_only_on_cpu_and_change_nothing():
    # A CPU runs big batches in chunks (smaller working set); other backends in one.
    assert default_retina_chunk("cpu") == RETINA_CHUNK_SIZE > 0
    assert default_retina_chunk("gpu") == default_retina_chunk("tpu") == 0
    x = jnp.asarray(np.floor(np.random.default_rng(3).random((7, 139, 3)) * 256), jnp.float32)
    whole = hk.without_apply_rng(hk.transform(lambda x: retina(chunk_size=0)(x)))
    chunked = hk.without_apply_rng(hk.transform(lambda x: retina(chunk_size=3)(x)))
    params = whole.init(jax.random.PRNGKey(0), x)
    out = whole.apply(params, x)
    # Float32 rounding of a differently blocked convolution only (features reach ~100).
    np.testing.assert_allclose(chunked.apply(params, x), out, rtol=1e-5, atol=1e-5)
    assert float(jnp.max(out)) > 1.0


@pytest.mark.parametrize("positions", [139, 16, 13])
def test_retina_equals_haiku_conv1d_stack(positions):
    def reference(x):
        net = hk.Sequential([hk.Conv1D(8, 3, 1), jax.nn.relu, hk.Conv1D(8, 5, 2), jax.nn.relu,
                             hk.Conv1D(8, 5, 2), jax.nn.relu])
        return net(x).reshape(x.shape[0], -1)

    rng = np.random.default_rng(6)
    x = jnp.asarray(np.floor(rng.random((3, positions, 3)) * 256), jnp.float32)
    ref = hk.without_apply_rng(hk.transform(reference))
    # chunk_size=2 also exercises the chunked path (3 images -> chunks of 2 and 1).
    mine = hk.without_apply_rng(hk.transform(lambda x: retina(chunk_size=2)(x)))
    p_ref = ref.init(jax.random.PRNGKey(1), x)
    p_mine = mine.init(jax.random.PRNGKey(2), x)
    p_mine = jax.tree.unflatten(jax.tree.structure(p_mine), jax.tree.leaves(p_ref))
    out, expected = mine.apply(p_mine, x), ref.apply(p_ref, x)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-3)
    # Same gradients with respect to the parameters.
    g_mine = jax.grad(lambda p: jnp.sum(jnp.sin(mine.apply(p, x) * 0.01)))(p_mine)
    g_ref = jax.grad(lambda p: jnp.sum(jnp.sin(ref.apply(p, x) * 0.01)))(p_ref)
    for a, b in zip(jax.tree.leaves(g_mine), jax.tree.leaves(g_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b))))
