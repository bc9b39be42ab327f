"""The sediment image renderer: the matrix-product drawing equals the pixel-by-pixel one."""

import jax
import numpy as np
import pytest

from simfish.config import load_config
from simfish.vision.bind import episode_sediment
from simfish.vision.sediment import (
    _render_pointwise,
    _render_separable,
    arena_sediment_image,
    checker_sediment,
    render_sediment,
    sediment_value,
    square_stripes_sediment,
)


def _grid(x0, y0, width, height, px=1.0):
    """The pixel centres render_sediment uses: (xs [W], ys [H]) float32."""
    xs = x0 + px * np.arange(width, dtype=np.float32)
    ys = y0 + px * np.arange(height, dtype=np.float32)
    return xs, ys


def _exact(sediment, xs, ys):
    """The texture in float64 on the grid ys x xs (no rounding to speak of): [H, W]."""
    w = np.asarray(sediment.wavevectors, np.float64)
    phases = np.asarray(sediment.phases, np.float64)
    amplitudes = np.asarray(sediment.amplitudes, np.float64)
    x = xs.astype(np.float64)[None, :, None]
    y = ys.astype(np.float64)[:, None, None]
    f = (amplitudes * np.cos(x * w[:, 0] + y * w[:, 1] + phases)).sum(-1)
    value = float(sediment.offset) + float(sediment.gain) * f
    return np.clip(value, float(sediment.low), float(sediment.high))


# (preset, region x0, y0, width, height): whole arenas of 300 and 2500 px, and the far
# corner of a 5000 px arena, where float32 phases are least precise.
CASES = [
    ("small", 0.0, 0.0, 300, 300),
    ("normal", 0.0, 0.0, 2500, 2500),
    ("empty", 0.0, 4600.0, 5000, 400),
]


@pytest.mark.parametrize(("preset", "x0", "y0", "width", "height"), CASES)
def test_matrix_product_renderer_equals_the_pointwise_one(preset, x0, y0, width, height):
    config = load_config(preset)
    for index in (0, 1):
        sediment = episode_sediment(jax.random.PRNGKey(index), config)
        xs, ys = _grid(x0, y0, width, height)
        new = _render_separable(sediment, xs, ys)
        old = _render_pointwise(sediment, xs, ys)
        assert new.dtype == np.float32 and new.shape == (height, width)
        span = float(old.max() - old.min())
        assert span > 10.0  # a real texture, not a constant
        assert np.abs(new - old).max() <= 1e-4 * span
        # The matrix product is the closer of the two to the exact texture.
        rows = slice(0, min(height, 64))
        exact = _exact(sediment, xs, ys[rows])
        assert np.abs(new[rows] - exact).max() <= 2e-5 * span
        assert np.abs(new[rows] - exact).max() <= np.abs(old[rows] - exact).max()


def test_render_sediment_uses_the_grid_of_its_arguments():
    config = load_config("small")
    sediment = episode_sediment(jax.random.PRNGKey(3), config)
    image = render_sediment(sediment, 12.5, 40.0, 37, 23, px=2.0)
    xs, ys = _grid(12.5, 40.0, 37, 23, px=2.0)
    np.testing.assert_allclose(image, _exact(sediment, xs, ys), rtol=0, atol=1e-3)
    points = np.stack(np.meshgrid(xs, ys), axis=-1)
    np.testing.assert_allclose(image, np.asarray(sediment_value(sediment, points)), rtol=0,
                               atol=1e-3)
    whole = arena_sediment_image(sediment, config.arena)
    assert whole.shape == (300, 300)
    np.testing.assert_array_equal(whole, render_sediment(sediment, 0.0, 0.0, 300, 300))


@pytest.mark.parametrize("sediment", [square_stripes_sediment(0.0, 60.0, 20.0),
                                      checker_sediment(30.0, 10.0, 16.0)])
def test_square_waves_are_drawn_pixel_by_pixel(sediment):
    # sign(f) at f = 0 (pixel centres on the edges) must not depend on rounding: these keep
    # the pixels of sediment_value exactly.
    xs, ys = _grid(0.0, 0.0, 64, 48)
    points = np.stack(np.meshgrid(xs, ys), axis=-1)
    np.testing.assert_array_equal(render_sediment(sediment, 0.0, 0.0, 64, 48),
                                  np.asarray(sediment_value(sediment, points)))
