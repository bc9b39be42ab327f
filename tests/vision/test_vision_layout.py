"""Photoreceptor layout (SPEC 5.1) against hand-computed values."""

import math

import numpy as np
import pytest

from simfish.config import load_config
from simfish.vision.layout import interpolation_matrix, make_layout, uv_receptor_offsets


@pytest.fixture(scope="module")
def layout():
    return make_layout(load_config("normal").eyes)


def test_counts_with_default_eyes(layout):
    assert layout.uv_angles.shape == (2, 42)
    assert layout.red_angles.shape == (2, 42)
    assert layout.obs_angles.shape == (2, 139)
    assert layout.uv_interp.shape == (2, 139, 42)
    assert layout.red_interp.shape == (2, 139, 42)


def test_first_offsets_by_hand():
    # s(p) = 0.04 + 0.04 * 1.5 / (1 + exp(-5 (p - 1.047)))
    offsets = uv_receptor_offsets(math.radians(163), 0.04, 1.047, 2.5, 5.0)
    s0 = 0.04 + 0.06 / (1 + math.exp(5 * 1.047))
    assert offsets[0] == 0.0
    assert offsets[1] == pytest.approx(s0, abs=1e-12)
    assert offsets[1] == pytest.approx(0.0403179, abs=1e-6)
    # Periphery: spacing tends to 0.04 * 2.5 = 0.1.
    assert offsets[-1] - offsets[-2] == pytest.approx(0.1, abs=1e-3)
    assert offsets[-1] <= math.radians(163)


def test_angle_ranges_by_hand(layout):
    # F = 163 deg, V = 77 deg: UV left max = -90 + 81.5 + 38.5 = 30 deg, right min = -30 deg.
    assert layout.uv_angles[0, -1] == pytest.approx(math.radians(30))
    assert layout.uv_angles[1, 0] == pytest.approx(math.radians(-30))
    # Red: left [-133, 30] deg, right [-30, 133] deg, evenly spaced.
    assert layout.red_angles[0, 0] == pytest.approx(math.radians(-133))
    assert layout.red_angles[0, -1] == pytest.approx(math.radians(30))
    assert layout.red_angles[1, 0] == pytest.approx(math.radians(-30))
    assert layout.red_angles[1, -1] == pytest.approx(math.radians(133))
    np.testing.assert_allclose(np.diff(layout.red_angles[1]), math.radians(163) / 41)
    # Dense strike zone: frontal spacing 0.04, peripheral about 0.1.
    right = layout.uv_angles[1]
    assert right[1] - right[0] == pytest.approx(0.0403, abs=1e-4)
    assert right[-1] - right[-2] == pytest.approx(0.1, abs=1e-3)


def test_positions_step_and_mirror(layout):
    np.testing.assert_allclose(np.diff(layout.obs_angles, axis=1), 0.02, atol=1e-12)
    # The eyes are mirror images: left = -reversed(right), for every array.
    np.testing.assert_allclose(layout.uv_angles[0], -layout.uv_angles[1][::-1], atol=1e-12)
    np.testing.assert_allclose(layout.red_angles[0], -layout.red_angles[1][::-1], atol=1e-12)
    np.testing.assert_allclose(layout.obs_angles[0], -layout.obs_angles[1][::-1], atol=1e-12)
    # Positions are centred on the eye's UV range.
    for e in range(2):
        mid_obs = layout.obs_angles[e].mean()
        mid_uv = 0.5 * (layout.uv_angles[e, 0] + layout.uv_angles[e, -1])
        assert mid_obs == pytest.approx(mid_uv, abs=1e-12)


def test_interpolation_matrix_matches_np_interp():
    rng = np.random.default_rng(0)
    src = np.sort(rng.uniform(-1, 1, 9))
    tgt = np.linspace(-1.2, 1.2, 31)
    w = interpolation_matrix(tgt, src)
    v = rng.normal(size=9)
    np.testing.assert_allclose(w @ v, np.interp(tgt, src, v), atol=1e-12)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-12)
