"""The luminance field of the arena and the UV scatter along receptor rays (SPEC 5.2).

Luminance depends on the row (y) only and is piecewise linear: ``dark_gain``
in the dark band (the top ``dark_fraction`` of the rows), a linear ramp of
``light_gradient`` px, 1 in the light, and 0 outside the arena. Because of
that, the scatter a receptor collects along its ray, the integral of
L(x, y) * exp(-decay * r), has a closed form on each linear piece; we
evaluate it exactly instead of marching pixels.
"""

from __future__ import annotations

import dataclasses
import math

import chex
import jax.numpy as jnp

# Relative light level at which the visible range ends (SPEC 5.2: R = |ln 0.001| / decay).
VISIBLE_RANGE_LIGHT_FRACTION = 0.001
# Arena pixel i covers [i - 0.5, i + 0.5): the lit area starts half a pixel before 0.
PIXEL_EDGE = -0.5


@dataclasses.dataclass(frozen=True)
class LightField:
    """Static description of the arena's luminance.

    Attributes:
      width, height: arena size in px.
      edge: where the lit area starts: luminance is 0 outside [edge, width + edge] x
        [edge, height + edge]. Arena images have their pixel centres at integer
        coordinates (pixel i covers [i - 0.5, i + 0.5)), so edge = -0.5.
      dark_gain: luminance in the dark band (1 where there is no dark band).
      ramp_start: y where the ramp leaves ``dark_gain`` (centre of the last dark row).
      ramp_end: y where the ramp reaches 1 (centre of the first fully lit row).
      dark_row: ``int(height * dark_fraction)``; the fish is in the light when its y > dark_row.
      decay: ``light_decay_rate`` per px.
      max_range: visible range R = |ln 0.001| / decay in px.
    """

    width: float
    height: float
    edge: float
    dark_gain: float
    ramp_start: float
    ramp_end: float
    dark_row: int
    decay: float
    max_range: float


def make_light_field(arena, dark_fraction: float | None = None) -> LightField:
    """Builds the :class:`LightField` of the ``arena`` config section.

    The users' tool fills rows [0, D) with ``dark_gain``, D = int(height *
    dark_fraction), then overwrites the ``light_gradient`` rows from
    int(D - gradient / 2) with a linear ramp from ``dark_gain`` to 1. We
    interpolate linearly between those row centres.

    Args:
      arena: the ``arena`` config section.
      dark_fraction: overrides ``arena.dark_fraction`` (the sensory-test mode uses 0.5).

    Returns:
      The :class:`LightField`.
    """
    fraction = arena.dark_fraction if dark_fraction is None else dark_fraction
    dark_row = int(arena.height * fraction)
    gradient = float(arena.light_gradient)
    if dark_row <= 0:
        dark_gain, ramp_start, ramp_end = 1.0, -2.0, -1.0
    elif gradient >= 2:
        ramp_start = float(math.floor(dark_row - gradient / 2))
        ramp_end = ramp_start + gradient - 1
        dark_gain = float(arena.dark_gain)
    else:
        dark_gain, ramp_start, ramp_end = float(arena.dark_gain), dark_row - 1.0, float(dark_row)
    decay = float(arena.light_decay_rate)
    return LightField(
        width=float(arena.width),
        height=float(arena.height),
        edge=PIXEL_EDGE,
        dark_gain=dark_gain,
        ramp_start=ramp_start,
        ramp_end=ramp_end,
        dark_row=dark_row,
        decay=decay,
        max_range=abs(math.log(VISIBLE_RANGE_LIGHT_FRACTION)) / decay,
    )


def luminance(light: LightField, xy: jnp.ndarray) -> jnp.ndarray:
    """Luminance at arena points.

    Args:
      light: the static light field.
      xy: [..., 2] points (x, y) in px.

    Returns:
      float32 [...] luminance, 0 outside the arena.
    """
    x, y = xy[..., 0], xy[..., 1]
    ramp = jnp.clip((y - light.ramp_start) / (light.ramp_end - light.ramp_start), 0.0, 1.0)
    value = light.dark_gain + (1.0 - light.dark_gain) * ramp
    e = light.edge
    inside = (x >= e) & (x < light.width + e) & (y >= e) & (y < light.height + e)
    return jnp.where(inside, value, 0.0)


def in_light(fish_y, dark_row) -> jnp.ndarray:
    """1.0 where the fish is below the dark band (y > dark_row, or no band: dark_row <= 0), else 0.0.

    The one definition, used by the eyes and by the internal state.

    Args:
      fish_y: [...] fish y positions (px).
      dark_row: the last dark row (``LightField.dark_row`` / ``EnvParams.dark_y``).

    Returns:
      float32 [...].
    """
    return ((fish_y > dark_row) | (dark_row <= 0)).astype(jnp.float32)


def _exp_moments(k: float, a: jnp.ndarray, b: jnp.ndarray):
    """Integrals over [a, b] (a <= b) of exp(-k r) and of (r - a) exp(-k r)."""
    length = b - a
    ea = jnp.exp(-k * a)
    el = jnp.exp(-k * length)
    m0 = ea * (1.0 - el) / k
    # (1 - (1 + x) e^-x) / k^2, written to stay accurate for small x = k * length.
    x = k * length
    small = x < 1e-3
    m1_small = length * length * (0.5 - x / 3.0)
    m1 = jnp.where(small, m1_small, (1.0 - (1.0 + x) * el) / (k * k))
    return m0, ea * m1


def ray_integral(light: LightField, origin: jnp.ndarray, angle: jnp.ndarray) -> jnp.ndarray:
    """Exact integral of L(origin + r u) * exp(-decay * r) over r in [0, R].

    u = (cos angle, sin angle); L is 0 outside the arena, so the integration
    range is the part of [0, R] inside the arena rectangle (a ray starting
    outside the arena still sees it). On that range L is piecewise linear in
    r with at most three pieces (dark, ramp, light), each integrated in
    closed form.

    Args:
      light: the static light field.
      origin: [..., 2] ray origins.
      angle: [...] absolute ray angles (radians, counter-clockwise from +x).

    Returns:
      float32 [...] integrals (units: luminance x px).
    """
    chex.assert_axis_dimension(origin, -1, 2)
    k = light.decay
    c, s = jnp.cos(angle), jnp.sin(angle)
    ox, oy = origin[..., 0], origin[..., 1]

    def slab(o, d, size):
        # Entry / exit distances of the ray through 0 <= o + r d <= size.
        safe = jnp.where(jnp.abs(d) < 1e-9, 1e-9, d)
        t1, t2 = (0.0 - o) / safe, (size - o) / safe
        lo, hi = jnp.minimum(t1, t2), jnp.maximum(t1, t2)
        parallel = jnp.abs(d) < 1e-9
        inside = (o >= 0) & (o <= size)
        lo = jnp.where(parallel, jnp.where(inside, -jnp.inf, jnp.inf), lo)
        hi = jnp.where(parallel, jnp.where(inside, jnp.inf, -jnp.inf), hi)
        return lo, hi

    xlo, xhi = slab(ox - light.edge, c, light.width)
    ylo, yhi = slab(oy - light.edge, s, light.height)
    a = jnp.clip(jnp.maximum(xlo, ylo), 0.0, light.max_range)
    b = jnp.clip(jnp.minimum(xhi, yhi), 0.0, light.max_range)
    b = jnp.maximum(a, b)

    # Ramp coordinate q(r) = q0 + q1 r; L = g + (1 - g) * clip(q, 0, 1).
    span = light.ramp_end - light.ramp_start
    q0 = (oy - light.ramp_start) / span
    q1 = s / span
    q1_safe = jnp.where(jnp.abs(q1) < 1e-9, 1e-9, q1)
    r_zero, r_one = -q0 / q1_safe, (1.0 - q0) / q1_safe
    p1 = jnp.clip(jnp.minimum(r_zero, r_one), a, b)
    p2 = jnp.clip(jnp.maximum(r_zero, r_one), a, b)

    m0_a, _ = _exp_moments(k, a, p1)
    m0_b, m1_b = _exp_moments(k, p1, p2)
    m0_c, _ = _exp_moments(k, p2, b)
    before = jnp.clip(q0 + q1 * 0.5 * (a + p1), 0.0, 1.0)
    after = jnp.clip(q0 + q1 * 0.5 * (p2 + b), 0.0, 1.0)
    q_at_p1 = jnp.clip(q0 + q1 * p1, 0.0, 1.0)
    ramp_part = before * m0_a + (q_at_p1 * m0_b + q1 * m1_b) + after * m0_c
    total = m0_a + m0_b + m0_c
    g = light.dark_gain
    return g * total + (1.0 - g) * ramp_part
