"""The pieces of ``sediment_value`` written for XLA on CPU compute what they replace."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simfish.config import load_config
from simfish.vision.bind import episode_sediment
from simfish.vision.sediment import (
    _feature_turns,
    _pairwise_sum,
    checker_sediment,
    sediment_value,
)


@pytest.mark.parametrize("which", ["random", "checker"])
def test_feature_turns_are_the_plain_products_to_the_bit(which):
    if which == "random":
        sediment = episode_sediment(jax.random.PRNGKey(7), load_config("small"))
    else:
        sediment = checker_sediment(30.0, 10.0, 16.0)
    wx, wy, phase = jax.jit(_feature_turns)(sediment)
    turns_per_rad = np.float32(1.0 / (2.0 * math.pi))
    w = np.asarray(sediment.wavevectors)
    np.testing.assert_array_equal(np.asarray(wx), w[:, 0] * turns_per_rad)
    np.testing.assert_array_equal(np.asarray(wy), w[:, 1] * turns_per_rad)
    np.testing.assert_array_equal(np.asarray(phase), np.asarray(sediment.phases) * turns_per_rad)


@pytest.mark.parametrize("size", [1, 2, 3, 64, 65])
def test_pairwise_sum_is_the_sum_over_the_last_axis(size):
    x = np.random.default_rng(size).normal(size=(3, 5, size)).astype(np.float32)
    got = np.asarray(_pairwise_sum(jnp.asarray(x)))
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got, x.astype(np.float64).sum(-1), rtol=0, atol=1e-5)


def test_sediment_value_matches_the_float64_texture_under_vmap():
    # The world step evaluates the texture for many worlds at once, drawing each
    # world's texture inside the same compiled program.
    config = load_config("small")
    keys = jax.random.split(jax.random.PRNGKey(11), 4)
    points = np.random.default_rng(0).uniform(0.0, 300.0, size=(4, 2, 2, 42, 2))
    points = points.astype(np.float32)

    @jax.jit
    @jax.vmap
    def values(key, xy):
        return sediment_value(episode_sediment(key, config), xy)

    got = np.asarray(values(keys, points))
    for i, key in enumerate(keys):
        sediment = episode_sediment(key, config)
        w = np.asarray(sediment.wavevectors, np.float64)
        xy = points[i].astype(np.float64)
        f = (np.asarray(sediment.amplitudes, np.float64)
             * np.cos(xy[..., 0:1] * w[:, 0] + xy[..., 1:2] * w[:, 1]
                      + np.asarray(sediment.phases, np.float64))).sum(-1)
        exact = np.clip(float(sediment.offset) + float(sediment.gain) * f,
                        float(sediment.low), float(sediment.high))
        np.testing.assert_allclose(got[i], exact, rtol=0, atol=2e-4)
