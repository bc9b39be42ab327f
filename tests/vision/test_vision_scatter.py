"""Luminance field and the exact UV scatter integral (SPEC 5.2)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simfish.config import load_config
from simfish.vision.light import (
    LightField,
    in_light,
    luminance,
    make_light_field,
    ray_integral,
)


def ray_integral_numeric(
    light: LightField, origin: np.ndarray, angle: float, step: float = 0.01
) -> float:
    """Midpoint-rule reference for :func:`ray_integral` (numpy)."""
    r = np.arange(0.0, light.max_range, step) + step / 2
    pts = np.asarray(origin, dtype=np.float64)[None, :] + r[:, None] * np.array(
        [math.cos(angle), math.sin(angle)]
    )
    x, y = pts[:, 0], pts[:, 1]
    ramp = np.clip((y - light.ramp_start) / (light.ramp_end - light.ramp_start), 0.0, 1.0)
    lum = light.dark_gain + (1.0 - light.dark_gain) * ramp
    e = light.edge
    inside = (x >= e) & (x < light.width + e) & (y >= e) & (y < light.height + e)
    return float(np.sum(np.where(inside, lum, 0.0) * np.exp(-light.decay * r)) * step)


def _light(width=2500, height=2500, dark_fraction=0.3):
    arena = load_config(
        "normal",
        {"arena.width": width, "arena.height": height, "arena.dark_fraction": dark_fraction},
    ).arena
    return make_light_field(arena)


def test_luminance_profile_by_hand():
    light = _light()  # dark rows [0, 750), ramp of 20 rows from row 740 to row 759
    pts = jnp.array([[100.0, 10.0], [100.0, 740.0], [100.0, 749.5], [100.0, 759.0], [100.0, 2000.0],
                     [-1.0, 2000.0], [100.0, 2600.0]])
    lum = np.asarray(luminance(light, pts))
    np.testing.assert_allclose(lum, [0.1, 0.1, 0.1 + 0.9 * 9.5 / 19, 1.0, 1.0, 0.0, 0.0], atol=1e-6)


def test_in_light_threshold():
    light = _light()
    got = np.asarray(in_light(jnp.array([749.0, 750.0, 750.5, 2400.0]), light.dark_row))
    np.testing.assert_array_equal(got, [0.0, 0.0, 1.0, 1.0])
    no_band = _light(dark_fraction=0.0)
    assert float(in_light(jnp.float32(0.5), no_band.dark_row)) == 1.0
    assert float(luminance(no_band, jnp.array([5.0, 0.5]))) == 1.0


RAYS = [
    # (width, height, dark_fraction, origin, angle)
    (2500, 2500, 0.3, (1250.0, 1250.0), 0.3),  # open water
    (2500, 2500, 0.3, (1250.0, 1000.0), -1.4),  # looking up into the ramp and dark band
    (2500, 2500, 0.3, (1250.0, 745.0), 2.0),  # starting inside the ramp
    (2500, 2500, 0.3, (600.0, 300.0), 1.5707963),  # from the dark into the light
    (2500, 2500, 0.3, (40.0, 1250.0), math.pi - 0.2),  # wall close ahead
    (2500, 2500, 0.3, (1250.0, 1250.0), 0.0),  # exactly horizontal
    (3000, 1200, 0.5, (2900.0, 1000.0), -2.6),  # non-square arena, corner region
    (3000, 1200, 0.5, (400.0, 700.0), -0.9),  # non-square, crossing the band
    (2500, 2500, 0.3, (-30.0, 1250.0), 0.1),  # origin outside the arena, looking in
    (2500, 2500, 0.3, (-30.0, 1250.0), math.pi),  # outside, looking away: nothing
]


@pytest.mark.parametrize("width,height,dark,origin,angle", RAYS)
def test_exact_integral_matches_fine_numerical_sum(width, height, dark, origin, angle):
    light = _light(width, height, dark)
    exact = float(ray_integral(light, jnp.asarray(origin), jnp.asarray(angle)))
    numeric = ray_integral_numeric(light, np.asarray(origin), angle, step=0.01)
    assert exact == pytest.approx(numeric, rel=1e-4, abs=1e-3)


def test_integral_values_by_hand():
    light = _light(dark_fraction=0.0)
    # Open water: (1 - 0.001) / decay = 99.9 px.
    assert float(ray_integral(light, jnp.array([1250.0, 1250.0]), jnp.array(0.7))) == pytest.approx(
        99.9, rel=1e-5
    )
    # Wall 39.5 px ahead (lit area ends at x = -0.5): (1 - exp(-0.395)) / 0.01.
    got = float(ray_integral(light, jnp.array([39.0, 1250.0]), jnp.array(math.pi)))
    assert got == pytest.approx((1 - math.exp(-0.395)) / 0.01, rel=1e-5)


def test_vmap_over_rays():
    light = _light()
    angles = jnp.linspace(-math.pi, math.pi, 17)
    origins = jnp.tile(jnp.array([[1250.0, 800.0]]), (17, 1))
    batched = jax.jit(jax.vmap(lambda o, a: ray_integral(light, o, a)))(origins, angles)
    single = [float(ray_integral(light, origins[i], angles[i])) for i in range(17)]
    np.testing.assert_allclose(np.asarray(batched), single, rtol=1e-6)
