"""Photoreceptor layout of the two retinas (SPEC 5.1), as static numpy arrays.

Everything here depends on ``config.eyes`` only and is computed once, on the
host, when the vision model is built. Angles are radians relative to the
fish's heading (positive = towards the right eye); eye index 0 is the left
eye, 1 the right eye.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

LEFT, RIGHT = 0, 1


def uv_receptor_offsets(
    visual_field: float,
    sz_rf_spacing: float,
    sz_size: float,
    sz_oversampling_factor: float,
    sz_edge_steepness: float,
) -> np.ndarray:
    """Distances p of the UV photoreceptors from the frontal edge of an eye's field.

    Starting at p = 0, each next receptor is s(p) further, with
    s(p) = sz_rf_spacing + sz_rf_spacing * (sz_oversampling_factor - 1) /
    (1 + exp(-sz_edge_steepness * (p - sz_size))), until p would exceed the
    visual field: dense in the strike zone, sparse in the periphery.

    Args:
      visual_field: the eye's visual field F, radians.
      sz_rf_spacing, sz_size, sz_oversampling_factor, sz_edge_steepness: the
        ``eyes`` config values (radians where angles).

    Returns:
      float64 [P] ascending offsets, the first one 0.
    """
    extra = sz_rf_spacing * (sz_oversampling_factor - 1.0)
    offsets = [0.0]
    while True:
        p = offsets[-1]
        step = sz_rf_spacing + extra / (1.0 + math.exp(-sz_edge_steepness * (p - sz_size)))
        if p + step > visual_field:
            break
        offsets.append(p + step)
    return np.asarray(offsets, dtype=np.float64)


def interpolation_matrix(targets: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Matrix W with W @ v == np.interp(targets, sources, v) for every v.

    Linear interpolation, holding the end values outside the source range.

    Args:
      targets: [T] angles to read at.
      sources: [S] ascending angles of the readings.

    Returns:
      float64 [T, S].
    """
    eye = np.eye(sources.shape[0])
    return np.stack([np.interp(targets, sources, eye[j]) for j in range(sources.shape[0])], axis=1)


@dataclasses.dataclass(frozen=True, eq=False)
class EyeLayout:
    """Static photoreceptor geometry of both eyes.

    Attributes:
      uv_angles: [2, P_uv] UV receptor angles, eyes [left, right], ascending.
      red_angles: [2, P_red] red receptor angles, ascending.
      obs_angles: [2, P_obs] angles of the interpolated observation positions.
      uv_interp: [2, P_obs, P_uv] interpolation matrices (UV receptors -> positions).
      red_interp: [2, P_obs, P_red] interpolation matrices (red receptors -> positions).
      eye_side: [2] -1 for the left eye, +1 for the right eye: the eye sits
        ``biasx`` px from the body origin along side * (-sin heading, cos heading).
    """

    uv_angles: np.ndarray
    red_angles: np.ndarray
    obs_angles: np.ndarray
    uv_interp: np.ndarray
    red_interp: np.ndarray
    eye_side: np.ndarray

    @property
    def num_uv(self) -> int:
        """UV photoreceptors per eye."""
        return int(self.uv_angles.shape[1])

    @property
    def num_red(self) -> int:
        """Red photoreceptors per eye (per viewing elevation)."""
        return int(self.red_angles.shape[1])

    @property
    def num_positions(self) -> int:
        """Interpolated observation positions per eye."""
        return int(self.obs_angles.shape[1])


def make_layout(eyes) -> EyeLayout:
    """Builds the receptor layout from the ``eyes`` config section (SPEC 5.1).

    UV angles: left eye (-pi/2 + F/2 + V/2) - p, right eye (pi/2 - F/2 - V/2) + p
    for the offsets p of :func:`uv_receptor_offsets`. Red receptors: as many,
    evenly spaced over [-pi/2 - F/2 + V/2, -pi/2 + F/2 + V/2] (left) and
    [pi/2 - F/2 - V/2, pi/2 + F/2 - V/2] (right).

    Observation positions: as many as the users' tool has (the length of
    ``arange(min, max + step / 2, step)`` with step = sz_rf_spacing / 2 over
    the eye's UV angles), spaced by that step and centred on the eye's UV
    range. The users' tool starts the grid at the eye's smallest angle, which
    makes the right eye's grid a quarter step off the mirror image of the
    left eye's; centring it (1/9 of a step from theirs) makes the two grids
    exact mirror images, so that reflecting the world reflects the
    observation (SPEC 5.5).

    Args:
      eyes: the ``eyes`` config section (angles in degrees where the YAML has them).

    Returns:
      The :class:`EyeLayout`.
    """
    field = math.radians(eyes.visual_field)
    verg = math.radians(eyes.verg_angle)
    offsets = uv_receptor_offsets(
        field,
        eyes.sz_rf_spacing,
        eyes.sz_size,
        eyes.sz_oversampling_factor,
        eyes.sz_edge_steepness,
    )
    left_uv = np.sort((-math.pi / 2 + field / 2 + verg / 2) - offsets)
    right_uv = np.sort((math.pi / 2 - field / 2 - verg / 2) + offsets)
    n = offsets.shape[0]
    left_red = np.linspace(-math.pi / 2 - field / 2 + verg / 2, -math.pi / 2 + field / 2 + verg / 2, n)
    right_red = np.linspace(math.pi / 2 - field / 2 - verg / 2, math.pi / 2 + field / 2 - verg / 2, n)

    step = eyes.sz_rf_spacing / 2
    span = float(left_uv[-1] - left_uv[0])
    num_positions = int(math.ceil((span + step / 2) / step))
    rel = step * (np.arange(num_positions) - (num_positions - 1) / 2)
    left_obs = 0.5 * (left_uv[0] + left_uv[-1]) + rel
    right_obs = 0.5 * (right_uv[0] + right_uv[-1]) + rel

    uv = np.stack([left_uv, right_uv])
    red = np.stack([left_red, right_red])
    obs = np.stack([left_obs, right_obs])
    return EyeLayout(
        uv_angles=uv,
        red_angles=red,
        obs_angles=obs,
        uv_interp=np.stack([interpolation_matrix(obs[e], uv[e]) for e in range(2)]),
        red_interp=np.stack([interpolation_matrix(obs[e], red[e]) for e in range(2)]),
        eye_side=np.array([-1.0, 1.0]),
    )
