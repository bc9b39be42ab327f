"""Red photoreceptors: the lit sediment on viewing circles, and the predator's shadow."""

from __future__ import annotations

import chex
import jax.numpy as jnp

from simfish.vision.light import LightField, luminance
from simfish.vision.sediment import Sediment, sediment_value


def shadow_fraction(
    angles: jnp.ndarray,
    rf_size: float,
    fish_xy: jnp.ndarray,
    predator_xy: jnp.ndarray,
    predator_radius: float,
) -> jnp.ndarray:
    """Fraction of each receptor's arc inside the predator's angular extent.

    The extent is centre angle +- atan2(radius, distance), seen from the fish's
    body origin; a receptor's arc is its absolute angle +- rf_size / 2.

    Args:
      angles: [...] absolute receptor angles.
      rf_size: acceptance width.
      fish_xy: [2]; predator_xy: [2].
      predator_radius: px.

    Returns:
      float32 [...] in [0, 1].
    """
    rel = predator_xy - fish_xy
    dist = jnp.sqrt(rel[0] * rel[0] + rel[1] * rel[1])
    centre = jnp.arctan2(rel[1], rel[0])
    half = jnp.arctan2(predator_radius, dist)
    delta = angles - centre
    delta = jnp.arctan2(jnp.sin(delta), jnp.cos(delta))
    covered = jnp.minimum(delta + rf_size / 2, half) - jnp.maximum(delta - rf_size / 2, -half)
    frac = jnp.clip(covered / rf_size, 0.0, 1.0)
    # Snap float32 rounding (angles ~ pi carry ~1e-7 rad of error) to a full shadow.
    return jnp.where(frac > 1.0 - 1e-4, 1.0, frac)


def red_signal(
    light: LightField,
    sediment: Sediment,
    fish_xy: jnp.ndarray,
    eye_xy: jnp.ndarray,
    angles: jnp.ndarray,
    radii: tuple[float, ...],
    rf_size: float,
    predator_xy: jnp.ndarray,
    predator_present: jnp.ndarray,
    predator_radius: float,
) -> jnp.ndarray:
    """Mean lit sediment over each red receptor's arc, with the predator's shadow.

    For viewing elevation i the eye looks at the circle of radius radii[i]
    around it; a receptor at absolute angle b reads sediment * L * exp(-decay
    * d) at eye + radii[i] (cos b, sin b), d being the distance from the
    fish's body origin (as in the users' tool). The arc a receptor accepts is
    radii[i] * rf_size px long, well below the texture's smoothing scale, so
    its centre value stands for its mean. When the predator's nearest edge is
    closer to the fish than radii[i], the part of the arc inside the
    predator's angular extent reads 0.

    Args:
      light: static light field.
      sediment: the texture.
      fish_xy: [2] body origin.
      eye_xy: [E, 2] eye positions.
      angles: [E, P] absolute receptor angles.
      radii: static viewing-circle radii (px), one per elevation.
      rf_size: acceptance width (rad).
      predator_xy: [2]; predator_present: [] bool.
      predator_radius: px.

    Returns:
      float32 [E, len(radii), P].
    """
    chex.assert_shape([fish_xy, predator_xy], (2,))
    chex.assert_rank(eye_xy, 2)
    radius = jnp.asarray(radii, dtype=jnp.float32)[None, :, None]  # [1, V, 1]
    direction = jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)[:, None]  # [E, 1, P, 2]
    points = eye_xy[:, None, None, :] + radius[..., None] * direction  # [E, V, P, 2]
    # x and y summed as written, not jnp.sum over an axis of 2, which XLA on CPU
    # makes a much slower library call (docs/performance.md).
    dx, dy = points[..., 0] - fish_xy[0], points[..., 1] - fish_xy[1]
    d = jnp.sqrt(dx * dx + dy * dy)
    lit = sediment_value(sediment, points) * luminance(light, points) * jnp.exp(-light.decay * d)
    rel = predator_xy - fish_xy
    edge_dist = jnp.sqrt(rel[0] * rel[0] + rel[1] * rel[1]) - predator_radius
    shaded = predator_present & (edge_dist < radius)  # [1, V, 1]
    frac = shadow_fraction(angles, rf_size, fish_xy, predator_xy, predator_radius)[:, None, :]
    return lit * (1.0 - jnp.where(shaded, frac, 0.0))
