"""``computed_once`` returns its arrays unchanged, bit for bit, however it is traced."""

import jax
import jax.numpy as jnp
import numpy as np

from simfish.fusion import computed_once


def _arrays(shape, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=shape).astype(np.float32) * np.float32(1e3)
    b = rng.uniform(-1e-30, 1e-30, size=shape).astype(np.float32)  # tiny values kept exactly
    c = np.zeros(shape, np.float32)
    c.flat[0] = np.float32(3.4e38)  # near the largest float32
    return a, b, c


def test_arrays_come_back_unchanged_to_the_bit():
    a, b, c = _arrays((4, 5, 3))
    out = jax.jit(computed_once)(a, b, c)
    assert len(out) == 3
    for got, want in zip(out, (a, b, c), strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(np.asarray(got), want)
    (single,) = computed_once(jnp.asarray(a))
    np.testing.assert_array_equal(np.asarray(single), a)


def test_unchanged_under_vmap_and_inside_custom_vmap():
    a, b, _ = _arrays((6, 7), seed=1)

    def body(x, y):
        return computed_once(jnp.cos(x), y * 2.0)

    # The world step's pooled phases are custom_vmap functions, which refuse
    # captured array constants when batched through lax.cond.
    f = jax.custom_batching.custom_vmap(body)
    f.def_vmap(lambda size, batched, x, y: (jax.vmap(body)(x, y), (True, True)))
    cond = lambda x, y: jax.lax.cond(x[0] > -10.0, f, body, x, y)  # noqa: E731
    got = jax.jit(jax.vmap(cond))(a, b)
    np.testing.assert_array_equal(np.asarray(got[0]), np.asarray(jax.jit(jnp.cos)(a)))
    np.testing.assert_array_equal(np.asarray(got[1]), b * np.float32(2.0))
