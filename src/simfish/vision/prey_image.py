"""UV images of prey (SPEC 5.2): angular-interval overlap in units of 0.001 rad."""

from __future__ import annotations

import chex
import jax.numpy as jnp
import numpy as np

from simfish.vision.light import LightField, luminance

# Angular resolution of the prey projection (rad per unit of overlap).
ANGULAR_BIN = 0.001


def receptor_bins(angles: np.ndarray, rf_size: float) -> tuple[np.ndarray, np.ndarray]:
    """First and last 0.001-rad bins covered by each receptor's acceptance interval.

    Bins are indexed by round(angle / 0.001) relative to the heading, so the
    binning is symmetric under reflection (angle -> -angle).

    Args:
      angles: [...] receptor angles relative to the heading.
      rf_size: acceptance width (rad).

    Returns:
      (first, last) float32 [...] bin indices (inclusive).
    """
    lo = np.round((angles - rf_size / 2) / ANGULAR_BIN)
    hi = np.round((angles + rf_size / 2) / ANGULAR_BIN)
    return lo.astype(np.float32), hi.astype(np.float32)


def prey_uv(
    light: LightField,
    eye_xy: jnp.ndarray,
    heading: jnp.ndarray,
    bins_lo: np.ndarray,
    bins_hi: np.ndarray,
    prey_xy: jnp.ndarray,
    prey_mask: jnp.ndarray,
    prey_diameter: float,
) -> jnp.ndarray:
    """Summed prey brightness x bin overlap for each receptor of each eye.

    A prey at distance rho from the eye subtends the half-angle
    atan(diameter / (2 rho)) and has brightness L(prey) exp(-decay rho) if
    rho < R (else 0). A receptor gets, for each prey, brightness x the number
    of 0.001-rad bins shared by its acceptance interval and the prey's interval
    (both rounded to bins). Multiply by ``uv_object_intensity`` for photons.

    Args:
      light: the static light field.
      eye_xy: [E, 2] eye positions.
      heading: [] fish heading (rad).
      bins_lo, bins_hi: [E, P] receptor bins (see :func:`receptor_bins`).
      prey_xy: [N, 2] prey positions (live prey and stimulus prey together).
      prey_mask: [N] bool, which entries are present.
      prey_diameter: px.

    Returns:
      float32 [E, P].
    """
    chex.assert_rank([eye_xy, prey_xy], 2)
    chex.assert_rank([heading, prey_mask], [0, 1])
    rel = prey_xy[None, :, :] - eye_xy[:, None, :]  # [E, N, 2]
    # Coordinates in the fish's frame give the angle relative to the heading
    # directly in [-pi, pi] (one arctan2 per prey instead of three trig calls).
    c, s = jnp.cos(heading), jnp.sin(heading)
    ahead = c * rel[..., 0] + s * rel[..., 1]
    side = c * rel[..., 1] - s * rel[..., 0]
    rho = jnp.sqrt(ahead * ahead + side * side)
    rho_safe = jnp.maximum(rho, 1e-6)
    theta = jnp.arctan2(side, ahead)
    half = jnp.arctan(prey_diameter / (2.0 * rho_safe))
    visible = prey_mask[None, :] & (rho < light.max_range)
    brightness = luminance(light, prey_xy)[None, :] * jnp.exp(-light.decay * rho)
    brightness = jnp.where(visible, brightness, 0.0)  # [E, N]
    lo = jnp.round((theta - half) / ANGULAR_BIN)
    hi = jnp.round((theta + half) / ANGULAR_BIN)
    overlap = jnp.minimum(bins_hi[:, :, None], hi[:, None, :]) - jnp.maximum(
        bins_lo[:, :, None], lo[:, None, :]
    )
    count = jnp.maximum(overlap + 1.0, 0.0)  # [E, P, N]
    return jnp.einsum("epn,en->ep", count, brightness)
