"""The sediment texture seen by the red photoreceptors (SPEC 5.2).

The users' tool draws white noise over the whole arena, smooths it with a
Gaussian of ``sediment_sigma`` px and rescales it to [0, bottom_intensity]:
hundreds of MB per world for a large arena. We draw the same kind of field
procedurally instead: a stationary Gaussian random field with the same
(Gaussian) autocorrelation, written as a sum of random Fourier features,

    f(x) = sum_m a_m cos(w_m . x + phi_m),  w_m ~ N(0, I / (2 sigma^2)),
    phi_m ~ U(0, 2 pi), a_m = sqrt(2 / M),

which is approximately standard normal at every point and whose covariance
is exp(-|d|^2 / (4 sigma^2)), that of smoothed white noise. The texture of an
episode is this small pytree (about 1 KB whatever the arena size), drawn
from the episode key, so a log can store it (or the key) and regenerate the
texture exactly; :func:`render_sediment` draws any region of it.

The same structure also represents the analytic sediments of the golden
scenes (constant, stripes, checker) so that one compiled observation
function serves both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from simfish.errors import SimFishError
from simfish.fusion import computed_once
from simfish.vision.light import luminance

# Number of Fourier features of a sediment texture (a static shape).
SEDIMENT_FEATURES = 64


class Sediment(NamedTuple):
    """A sediment texture: value(p) = clip(offset + gain * g(f(p)), low, high).

    f(p) = sum_m amplitudes[m] * cos(wavevectors[m] . p + phases[m]) and
    g(f) = (1 - sign_mix) * f + sign_mix * sign(f) (sign_mix 1 gives the
    square waves of a checkerboard).

    Attributes:
      wavevectors: float32 [M, 2] (rad / px).
      phases: float32 [M].
      amplitudes: float32 [M].
      offset, gain, sign_mix, low, high: float32 [] scalars.
    """

    wavevectors: jax.Array
    phases: jax.Array
    amplitudes: jax.Array
    offset: jax.Array
    gain: jax.Array
    sign_mix: jax.Array
    low: jax.Array
    high: jax.Array


def _pack(
    wavevectors, phases, amplitudes, offset, gain, sign_mix=0.0, low=-np.inf, high=np.inf,
    num_features: int = SEDIMENT_FEATURES,
) -> Sediment:
    """Pads the features to ``num_features`` and converts everything to float32 jnp arrays."""
    wavevectors = np.asarray(wavevectors, dtype=np.float32).reshape(-1, 2)
    phases = np.asarray(phases, dtype=np.float32).reshape(-1)
    amplitudes = np.asarray(amplitudes, dtype=np.float32).reshape(-1)
    n = wavevectors.shape[0]
    if n > num_features:
        raise ValueError(f"a sediment has at most {num_features} features, got {n}")
    pad = num_features - n
    f32 = lambda v: jnp.asarray(v, dtype=jnp.float32)  # noqa: E731
    return Sediment(
        wavevectors=f32(np.concatenate([wavevectors, np.zeros((pad, 2), np.float32)])),
        phases=f32(np.concatenate([phases, np.zeros(pad, np.float32)])),
        amplitudes=f32(np.concatenate([amplitudes, np.zeros(pad, np.float32)])),
        offset=f32(offset),
        gain=f32(gain),
        sign_mix=f32(sign_mix),
        low=f32(low),
        high=f32(high),
    )


def expected_extreme(width: float, height: float, sigma: float) -> float:
    """Typical max |f| of the unit-variance field over a width x height arena.

    The users' tool rescales its smoothed noise by the arena's own min and
    max; we use the expected extreme of a smooth Gaussian field instead,
    sqrt(2 ln N) for N ~ area / (4 pi sigma^2) roughly independent patches,
    so the texture is fixed by the key alone (values beyond it are clipped).
    """
    patches = max(width * height / (4.0 * math.pi * max(sigma, 1e-3) ** 2), 2.0)
    return math.sqrt(2.0 * math.log(patches))


def make_sediment(key: jax.Array, arena, num_features: int = SEDIMENT_FEATURES) -> Sediment:
    """Draws an episode's random sediment texture from ``key`` (jit/vmap-able).

    Args:
      key: a JAX PRNG key.
      arena: the ``arena`` config section (``sediment_sigma``,
        ``bottom_intensity``, ``width``, ``height`` are used, as static floats).
      num_features: number of Fourier features (static).

    Returns:
      The :class:`Sediment`, values in [0, bottom_intensity].
    """
    sigma = float(arena.sediment_sigma)
    top = float(arena.bottom_intensity)
    k_w, k_p = jax.random.split(key)
    wavevectors = jax.random.normal(k_w, (num_features, 2)) / (math.sqrt(2.0) * max(sigma, 1e-3))
    phases = jax.random.uniform(k_p, (num_features,), maxval=2.0 * math.pi)
    amplitudes = jnp.full((num_features,), math.sqrt(2.0 / num_features))
    z = expected_extreme(float(arena.width), float(arena.height), sigma)
    f32 = lambda v: jnp.asarray(v, dtype=jnp.float32)  # noqa: E731
    return Sediment(
        wavevectors=f32(wavevectors),
        phases=f32(phases),
        amplitudes=f32(amplitudes),
        offset=f32(top / 2),
        gain=f32(top / (2 * z)),
        sign_mix=f32(0.0),
        low=f32(0.0),
        high=f32(top),
    )


def constant_sediment(value: float, num_features: int = SEDIMENT_FEATURES) -> Sediment:
    """A uniform sediment of brightness ``value``."""
    return _pack(np.zeros((0, 2)), [], [], value, 0.0, num_features=num_features)


def stripes_sediment(
    axis: str, mean: float, amp: float, period_px: float, num_features: int = SEDIMENT_FEATURES
) -> Sediment:
    """mean + amp * sin(2 pi c / period_px), c = x (``axis='x'``) or y (``axis='y'``)."""
    if axis not in ("x", "y"):
        raise ValueError(f"stripes axis must be 'x' or 'y', got {axis!r}")
    w = 2 * math.pi / period_px
    vec = [w, 0.0] if axis == "x" else [0.0, w]
    # sin(t) = cos(t - pi / 2)
    return _pack([vec], [-math.pi / 2], [1.0], mean, amp, num_features=num_features)


def checker_sediment(
    mean: float, amp: float, period_px: float, num_features: int = SEDIMENT_FEATURES
) -> Sediment:
    """mean + amp * sign(sin(2 pi x / period_px) * sin(2 pi y / period_px))."""
    w = 2 * math.pi / period_px
    # sin(a) sin(b) = (cos(a - b) - cos(a + b)) / 2
    return _pack(
        [[w, -w], [w, w]], [0.0, 0.0], [0.5, -0.5], mean, amp, sign_mix=1.0,
        num_features=num_features,
    )


def square_stripes_sediment(
    low: float, high: float, period_px: float, num_features: int = SEDIMENT_FEATURES
) -> Sediment:
    """Vertical square-wave stripes alternating ``high`` and ``low`` every period_px / 2 px."""
    w = 2 * math.pi / period_px
    mean, amp = 0.5 * (low + high), 0.5 * (high - low)
    return _pack([[w, 0.0]], [-math.pi / 2], [1.0], mean, amp, sign_mix=1.0,
                 num_features=num_features)


def sediment_from_description(desc: Mapping[str, Any]) -> Sediment:
    """Builds a sediment from a description like the golden scenes' ``sediment`` entries.

    Kinds: ``{"kind": "constant", "value": v}``, ``{"kind": "stripes_x" |
    "stripes_y", "mean", "amp", "period_px"}``, ``{"kind": "checker", "mean",
    "amp", "period_px"}``.

    Raises:
      SimFishError: unknown kind or missing key.
    """
    kind = desc.get("kind")
    try:
        if kind == "constant":
            return constant_sediment(float(desc["value"]))
        if kind in ("stripes_x", "stripes_y"):
            return stripes_sediment(
                kind[-1], float(desc["mean"]), float(desc["amp"]), float(desc["period_px"])
            )
        if kind == "checker":
            return checker_sediment(float(desc["mean"]), float(desc["amp"]), float(desc["period_px"]))
    except KeyError as err:
        raise SimFishError(f"sediment description {dict(desc)!r} lacks key {err}") from None
    raise SimFishError(
        f"sediment kind {kind!r} is not one of constant, stripes_x, stripes_y, checker"
    )


def cos_turns(t: jnp.ndarray) -> jnp.ndarray:
    """cos(2 pi t), accurate to 2e-7, several times faster than ``jnp.cos`` on CPU.

    Reduces t to u = |t - nearest integer| in [0, 1/2], then cos(2 pi u) =
    -sin(2 pi (u - 1/4)) with a degree-11 Taylor polynomial on [-pi/2, pi/2].
    """
    u = jnp.abs(t - jnp.floor(t + 0.5))
    z = (2.0 * math.pi) * (u - 0.25)
    z2 = z * z
    poly = 1.0 + z2 * (-1 / 6 + z2 * (1 / 120 + z2 * (-1 / 5040 + z2 * (1 / 362880 - z2 / 39916800))))
    return -z * poly


def _feature_turns(sediment: Sediment) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The features' wavevectors and phases in turns: (wx, wy, phase), each [M].

    :func:`~simfish.fusion.computed_once`: inside the world step they
    come from the episode key's random draws, which XLA would otherwise redo
    for each of the 168 x 64 (point, feature) pairs of a world's eyes.
    """
    turns_per_rad = 1.0 / (2.0 * math.pi)
    wx, wy = sediment.wavevectors[:, 0], sediment.wavevectors[:, 1]
    return computed_once(wx * turns_per_rad, wy * turns_per_rad, sediment.phases * turns_per_rad)


def _pairwise_sum(x: jnp.ndarray) -> jnp.ndarray:
    """Sum over the last axis as a tree of pairwise additions: [..., M] -> [...].

    Keeps the sum inside XLA's element-wise loop on CPU, where ``jnp.sum`` over
    the features becomes a separate, much slower library call (8x on the
    sediment alone). Zero-pads M to a power of two.
    """
    size = x.shape[-1]
    width = 1 << max(size - 1, 0).bit_length()
    if width != size:
        x = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, width - size)])
    while x.shape[-1] > 1:
        half = x.shape[-1] // 2
        x = x[..., :half] + x[..., half:]
    return x[..., 0]


def sediment_value(sediment: Sediment, xy: jnp.ndarray) -> jnp.ndarray:
    """Sediment brightness (before lighting) at arena points.

    Args:
      sediment: the texture.
      xy: [..., 2] points in px.

    Returns:
      float32 [...].
    """
    # Phases in turns (cycles), written as explicit products: a contraction over
    # a dimension of 2 and jnp.cos are both slow on CPU.
    wx, wy, phase = _feature_turns(sediment)
    turns = xy[..., 0:1] * wx + xy[..., 1:2] * wy + phase
    f = _pairwise_sum(cos_turns(turns) * sediment.amplitudes)
    g = (1.0 - sediment.sign_mix) * f + sediment.sign_mix * jnp.sign(f)
    return jnp.clip(sediment.offset + sediment.gain * g, sediment.low, sediment.high)


_render_jit = jax.jit(sediment_value)


def _render_pointwise(sediment: Sediment, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """``sediment_value`` at every pixel of the grid ys x xs, in row chunks: float32 [H, W]."""
    out = np.empty((ys.shape[0], xs.shape[0]), dtype=np.float32)
    rows_per_chunk = max(1, 65536 // max(xs.shape[0], 1))
    for r0 in range(0, ys.shape[0], rows_per_chunk):
        grid = np.stack(np.meshgrid(xs, ys[r0 : r0 + rows_per_chunk]), axis=-1)
        out[r0 : r0 + grid.shape[0]] = np.asarray(_render_jit(sediment, jnp.asarray(grid)))
    return out


def _render_separable(sediment: Sediment, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The texture on the grid ys x xs as one matrix product: float32 [H, W].

    f(x, y) = sum_m a_m cos(A_m(x) + B_m(y)) with A_m = wx_m x and B_m = wy_m y
    + phi_m, and cos(A + B) = cos A cos B - sin A sin B, so f is the product
    of per-row factors [H, 2M] (a cos B, -a sin B) and per-column factors
    [2M, W] (cos A, sin A). The factors are computed in float64, the product
    in float32; features with amplitude 0 (the padding) are dropped. Only for
    sign_mix 0: a sign would turn the rounding at f = 0 into a full step.
    """
    w = np.asarray(sediment.wavevectors, dtype=np.float64)
    phases = np.asarray(sediment.phases, dtype=np.float64)
    amplitudes = np.asarray(sediment.amplitudes, dtype=np.float64)
    used = amplitudes != 0.0
    w, phases, amplitudes = w[used], phases[used], amplitudes[used]
    a = np.outer(xs.astype(np.float64), w[:, 0])  # [W, M]
    b = np.outer(ys.astype(np.float64), w[:, 1]) + phases  # [H, M]
    rows = np.concatenate([amplitudes * np.cos(b), -amplitudes * np.sin(b)], axis=1)
    columns = np.concatenate([np.cos(a), np.sin(a)], axis=1).T
    out = np.empty((ys.shape[0], xs.shape[0]), dtype=np.float32)
    np.matmul(rows.astype(np.float32), np.ascontiguousarray(columns, dtype=np.float32), out=out)
    # value = clip(offset + gain * f, low, high), in float32 as sediment_value does it.
    out *= np.float32(sediment.gain)
    out += np.float32(sediment.offset)
    np.clip(out, np.float32(sediment.low), np.float32(sediment.high), out=out)
    return out


def render_sediment(
    sediment: Sediment,
    x0: float,
    y0: float,
    width: int,
    height: int,
    px: float = 1.0,
    light=None,
) -> np.ndarray:
    """Renders a region of the texture as a numpy image (for logs and video).

    A smooth texture (``sign_mix`` 0, every random sediment) is drawn as one
    matrix product (``_render_separable``), within 1e-5 of the exact value,
    closer than the float32 ``sediment_value``; a texture with square waves
    (``sign_mix`` != 0) pixel by pixel with ``sediment_value``.

    Args:
      sediment: one (unbatched) texture.
      x0, y0: arena coordinates of the top-left pixel centre.
      width, height: image size in pixels.
      px: arena px per image pixel.
      light: optional :class:`~simfish.vision.light.LightField`; if given, the
        texture is multiplied by the luminance (dark band, 0 outside the arena).

    Returns:
      float32 [height, width], row = y, column = x.
    """
    xs = x0 + px * np.arange(width, dtype=np.float32)
    ys = y0 + px * np.arange(height, dtype=np.float32)
    if float(np.asarray(sediment.sign_mix)) == 0.0:
        out = _render_separable(sediment, xs, ys)
    else:
        out = _render_pointwise(sediment, xs, ys)
    if light is not None:
        xs_grid, ys_grid = np.meshgrid(xs, ys)
        out *= np.asarray(luminance(light, jnp.stack([xs_grid, ys_grid], axis=-1)))
    return out


def arena_sediment_image(sediment: Sediment, arena) -> np.ndarray:
    """An episode's whole texture, unlit: float32 [height, width], one pixel per arena px.

    Pixel centres at integer coordinates; this is the ``sediment`` image of
    the episode logs. ``arena`` is the config's arena section.
    """
    return render_sediment(sediment, 0.0, 0.0, int(arena.width), int(arena.height))
