"""Optional pixel-exact red channel, reproducing the users' rasterised viewing circles.

The default red channel (:mod:`simfish.vision.red`) samples the texture on
the exact viewing circle around the eye. The users' tool instead walks a
Bresenham circle of integer radius round(elevation * tan(e)) whose centre is
the rounded fish position plus the eye offset truncated to whole pixels, and
averages the pixels between the circle points closest to the ends of each
receptor's arc. Sharp-edged textures then depend on that rasterisation (see
docs/vision.md, scene ``checker_angle_1.10``). This module reproduces it
inside JAX, for comparisons with data from the users' tool; it is not
mirror-symmetric, and it moves in whole-pixel jumps as the fish moves.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from simfish.vision.light import LightField, luminance
from simfish.vision.sediment import Sediment, sediment_value


@dataclasses.dataclass(frozen=True, eq=False)
class RasterCircle:
    """Pixel offsets of a Bresenham circle, sorted by angle.

    Attributes:
      radius: integer radius (px).
      offsets: float32 [K, 2] (dx, dy) offsets from the centre pixel.
      angles: float32 [K] atan2(dy, dx), ascending (duplicate points kept).
      max_points: the most circle points one receptor arc can span (static).
    """

    radius: int
    offsets: np.ndarray
    angles: np.ndarray
    max_points: int


def make_raster_circle(radius: float, rf_size: float) -> RasterCircle:
    """The midpoint-style circle (decision 3 - 2r) of the users' tool, radius rounded."""
    r = int(round(radius))
    points = []
    x, y, d = 0, r, 3 - 2 * r

    def octants(a, b):
        return [(b, a), (b, -a), (-b, a), (-b, -a), (a, b), (a, -b), (-a, b), (-a, -b)]

    points += octants(x, y)
    while y >= x:
        x += 1
        if d > 0:
            y -= 1
            d += 4 * (x - y) + 10
        else:
            d += 4 * x + 6
        points += octants(x, y)
    pts = np.asarray(points, dtype=np.float64)  # (dx, dy)
    ang = np.arctan2(pts[:, 1], pts[:, 0])
    order = np.argsort(ang, kind="stable")
    per_radian = pts.shape[0] / (2 * math.pi)
    return RasterCircle(
        radius=r,
        offsets=pts[order].astype(np.float32),
        angles=ang[order].astype(np.float32),
        max_points=int(math.ceil(rf_size * per_radian * 1.5)) + 3,
    )


def _closest(angles: np.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """Index of the entry of sorted ``angles`` closest to each x (first one on ties)."""
    table = jnp.asarray(angles)
    k = table.shape[0]
    hi = jnp.clip(jnp.searchsorted(table, x, side="left"), 0, k - 1)
    lo = jnp.clip(hi - 1, 0, k - 1)
    pick_lo = jnp.abs(table[lo] - x) <= jnp.abs(table[hi] - x)
    # Among repeated angles, the first one (as a first-minimum scan would find).
    lo_first = jnp.searchsorted(table, table[lo], side="left")
    return jnp.where(pick_lo, lo_first, hi)


def raster_red_signal(
    light: LightField,
    sediment: Sediment,
    fish_xy: jnp.ndarray,
    eye_xy: jnp.ndarray,
    angles: jnp.ndarray,
    circles: tuple[RasterCircle, ...],
    rf_size: float,
    predator_xy: jnp.ndarray,
    predator_present: jnp.ndarray,
    predator_radius: float,
) -> jnp.ndarray:
    """Red readings on rasterised viewing circles (same arguments as ``red_signal``).

    Returns:
      float32 [E, len(circles), P].
    """
    fish_pixel = jnp.round(fish_xy)
    centres = fish_pixel + jnp.floor(eye_xy - fish_xy)  # [E, 2]
    wrapped = jnp.arctan2(jnp.sin(angles), jnp.cos(angles))  # [E, P]
    rel = predator_xy - fish_xy
    dist = jnp.sqrt(jnp.sum(rel * rel))
    centre_angle = jnp.arctan2(rel[1], rel[0])
    half = jnp.arctan2(predator_radius, dist)
    left = jnp.arctan2(jnp.sin(centre_angle + half), jnp.cos(centre_angle + half))
    right = jnp.arctan2(jnp.sin(centre_angle - half), jnp.cos(centre_angle - half))
    out = []
    for circle in circles:
        k = circle.angles.shape[0]
        first = _closest(circle.angles, wrapped - rf_size / 2)  # [E, P]
        last = _closest(circle.angles, wrapped + rf_size / 2) + 1
        last = jnp.maximum(first + 1, jnp.minimum(last, k))
        idx = first[..., None] + jnp.arange(circle.max_points)  # [E, P, M]
        valid = idx < last[..., None]
        idx = jnp.minimum(idx, k - 1)
        offs = jnp.asarray(circle.offsets)[idx]  # [E, P, M, 2]
        pixels = centres[:, None, None, :] + offs
        d = jnp.sqrt(jnp.sum((pixels - fish_pixel) ** 2, axis=-1))
        value = sediment_value(sediment, pixels) * luminance(light, pixels) * jnp.exp(-light.decay * d)
        ang = jnp.asarray(circle.angles)[idx]
        inside = jnp.where(left > right, (ang < left) & (ang > right), (ang < left) | (ang > right))
        shaded = predator_present & (dist - predator_radius < circle.radius) & inside
        value = jnp.where(shaded | ~valid, 0.0, value)
        count = jnp.sum(valid, axis=-1).astype(jnp.float32)
        out.append(jnp.einsum("epm,m->ep", value, jnp.ones(circle.max_points)) / count)
    return jnp.stack(out, axis=1)
