"""The full visual observation: both eyes, UV and red channels (SPEC 5).

:func:`make_vision` turns a config into a :class:`Vision`, a frozen object of
static arrays and numbers. Its methods are pure JAX functions of the world
(fish pose, prey, predator, sediment, key), independent of how the world
state is stored, so they can be jitted, vmapped and called from the
environment's step.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from simfish.vision.layout import EyeLayout, make_layout
from simfish.vision.light import LightField, in_light, luminance, make_light_field, ray_integral
from simfish.vision.prey_image import prey_uv, receptor_bins
from simfish.vision.raster import RasterCircle, make_raster_circle, raster_red_signal
from simfish.vision.red import red_signal
from simfish.vision.sediment import Sediment

MAX_PHOTONS = 255.0
#: Dark fraction of the arena in ``test_sensory_system`` mode (as in the users' tool).
SENSORY_TEST_DARK_FRACTION = 0.5


class ReceptorSignals(NamedTuple):
    """Expected photon counts per receptor, before noise and interpolation.

    Attributes:
      uv: [2, P_uv] eyes [left, right] (scatter + prey).
      uv_scatter: [2, P_uv] the scatter part alone.
      red: [2, V, P_red] per viewing elevation.
    """

    uv: jax.Array
    uv_scatter: jax.Array
    red: jax.Array


def ray_pixel_density(angle: jnp.ndarray, step: float = 0.5) -> jnp.ndarray:
    """Distinct pixels per px of ray when a ray is sampled every ``step`` px.

    The users' tool sums the distinct pixels met by points spaced ``step``
    apart along a ray; per unit length that is (1 - (1 - step |cos|)(1 - step
    |sin|)) / step = |cos| + |sin| - step |cos sin| (1 along the axes, 1.16
    on the diagonals). The golden scenes carry this factor (their uniform
    scatter is about 10 photons along the axes and 11 on the diagonals), so
    the scatter integral is weighted by it.
    """
    c, s = jnp.abs(jnp.cos(angle)), jnp.abs(jnp.sin(angle))
    return c + s - step * c * s


@dataclasses.dataclass(frozen=True, eq=False)
class Vision:
    """Static vision model: receptor layout, light field and eye parameters.

    Build it with :func:`make_vision`. All methods are pure and jit/vmap-able.

    Attributes:
      layout: photoreceptor geometry.
      light: luminance field.
      biasx: eye offset from the body axis (px).
      prey_diameter: px.
      predator_radius: px.
      uv_rf_size, red_rf_size: acceptance widths (rad).
      uv_object_intensity, water_uv_scatter: gains.
      red_radii: viewing-circle radius per elevation (px).
      shot_noise: draw Poisson photon counts.
      pixel_density: weight the scatter by :func:`ray_pixel_density`.
      uv_bins_lo, uv_bins_hi: [2, P_uv] receptor bins of the prey projection.
      red_sampling: "circle" (default: the exact viewing circle around the
        eye) or "pixel" (the users' rasterised circles, see
        :mod:`simfish.vision.raster`; not mirror-symmetric).
      raster_circles: one :class:`RasterCircle` per elevation (pixel sampling).
    """

    layout: EyeLayout
    light: LightField
    biasx: float
    prey_diameter: float
    predator_radius: float
    uv_rf_size: float
    red_rf_size: float
    uv_object_intensity: float
    water_uv_scatter: float
    red_radii: tuple[float, ...]
    shot_noise: bool
    pixel_density: bool
    uv_bins_lo: np.ndarray
    uv_bins_hi: np.ndarray
    red_sampling: str = "circle"
    raster_circles: tuple[RasterCircle, ...] = ()

    @property
    def num_positions(self) -> int:
        """Observation positions per eye (139 with the default eyes)."""
        return self.layout.num_positions

    @property
    def num_channels(self) -> int:
        """1 UV channel + one red channel per viewing elevation."""
        return 1 + len(self.red_radii)

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        """(positions, channels, eyes)."""
        return (self.num_positions, self.num_channels, 2)

    def eye_positions(self, fish_xy: jax.Array, fish_angle: jax.Array) -> jax.Array:
        """[2, 2] eye positions (left, right): biasx px to each side of the body origin."""
        normal = jnp.stack([-jnp.sin(fish_angle), jnp.cos(fish_angle)])
        side = jnp.asarray(self.layout.eye_side, dtype=jnp.float32)
        return fish_xy[None, :] + self.biasx * side[:, None] * normal[None, :]

    def luminance(self, xy: jax.Array) -> jax.Array:
        """Luminance at points [..., 2] -> [...] (0 outside the arena)."""
        return luminance(self.light, xy)

    def in_light(self, fish_xy: jax.Array) -> jax.Array:
        """float32 1.0 if the fish (y > dark row) is in the light, else 0.0."""
        return in_light(fish_xy[..., 1], self.light.dark_row)

    def receptors(
        self,
        fish_xy: jax.Array,
        fish_angle: jax.Array,
        prey_xy: jax.Array,
        prey_mask: jax.Array,
        predator_xy: jax.Array,
        predator_present: jax.Array,
        sediment: Sediment,
    ) -> ReceptorSignals:
        """Expected photon counts of every receptor (no noise, no interpolation).

        Args: as :meth:`observe`, without the key.

        Returns:
          :class:`ReceptorSignals`.
        """
        fish_xy = jnp.asarray(fish_xy, dtype=jnp.float32)
        fish_angle = jnp.asarray(fish_angle, dtype=jnp.float32)
        prey_xy = jnp.asarray(prey_xy, dtype=jnp.float32).reshape(-1, 2)
        prey_mask = jnp.asarray(prey_mask, dtype=bool).reshape(-1)
        predator_xy = jnp.asarray(predator_xy, dtype=jnp.float32)
        predator_present = jnp.asarray(predator_present, dtype=bool)
        chex.assert_shape([fish_xy, predator_xy], (2,))
        chex.assert_rank([fish_angle, predator_present], 0)
        chex.assert_equal_shape_prefix([prey_xy, prey_mask], 1)
        eyes = self.eye_positions(fish_xy, fish_angle)

        # UV scatter along each receptor's ray, decay measured from the body origin.
        uv_abs = fish_angle + jnp.asarray(self.layout.uv_angles, dtype=jnp.float32)  # [2, P]
        integral = ray_integral(self.light, eyes[:, None, :], uv_abs)
        # Sums over x and y written out: as jnp.sum over an axis of 2, XLA on CPU
        # makes them a library call several times slower (docs/performance.md).
        offset = eyes - fish_xy  # [2, 2]
        along = jnp.cos(uv_abs) * offset[:, 0:1] + jnp.sin(uv_abs) * offset[:, 1:2]
        scatter = integral * jnp.exp(-self.light.decay * along)
        if self.pixel_density:
            scatter = scatter * ray_pixel_density(uv_abs)
        scatter = self.water_uv_scatter * scatter

        # UV prey images.
        prey = prey_uv(
            self.light, eyes, fish_angle, self.uv_bins_lo, self.uv_bins_hi,
            prey_xy, prey_mask, self.prey_diameter,
        )
        uv = scatter + self.uv_object_intensity * prey

        # Red: lit sediment on the viewing circles, predator shadow.
        red_abs = fish_angle + jnp.asarray(self.layout.red_angles, dtype=jnp.float32)
        red_fn = raster_red_signal if self.red_sampling == "pixel" else red_signal
        red = red_fn(
            self.light, sediment, fish_xy, eyes, red_abs,
            self.raster_circles if self.red_sampling == "pixel" else self.red_radii,
            self.red_rf_size, predator_xy, predator_present, self.predator_radius,
        )
        return ReceptorSignals(uv=uv, uv_scatter=scatter, red=red)

    def observe(
        self,
        fish_xy: jax.Array,
        fish_angle: jax.Array,
        prey_xy: jax.Array,
        prey_mask: jax.Array,
        predator_xy: jax.Array,
        predator_present: jax.Array,
        sediment: Sediment,
        key: jax.Array | None = None,
    ) -> jax.Array:
        """The visual observation of one world (SPEC 5.3).

        Args:
          fish_xy: [2] body origin (px).
          fish_angle: [] heading (rad, counter-clockwise from +x).
          prey_xy: [N, 2] positions of everything seen as prey: live prey and
            stimulus prey concatenated (N static).
          prey_mask: [N] bool, which of them are present.
          predator_xy: [2] predator centre (ignored if absent).
          predator_present: [] bool.
          sediment: the episode's :class:`Sediment`.
          key: PRNG key for the shot noise (required if ``shot_noise``).

        Returns:
          float32 [P_obs, 1 + V, 2]: positions, channels [UV, red per
          elevation], eyes [left, right]; whole photon counts in [0, 255].
        """
        signals = self.receptors(
            fish_xy, fish_angle, prey_xy, prey_mask, predator_xy, predator_present, sediment
        )
        uv, red = signals.uv, signals.red
        if self.shot_noise:
            if key is None:
                raise ValueError("Vision.observe needs a key when shot_noise is on")
            k_uv, k_red = jax.random.split(key)
            uv = poisson(k_uv, uv)
            red = poisson(k_red, red)
        uv_obs = jnp.einsum("eop,ep->oe", jnp.asarray(self.layout.uv_interp, jnp.float32), uv)
        red_obs = jnp.einsum("eop,evp->ove", jnp.asarray(self.layout.red_interp, jnp.float32), red)
        visual = jnp.concatenate([uv_obs[:, None, :], red_obs], axis=1)
        return jnp.clip(jnp.floor(visual), 0.0, MAX_PHOTONS).astype(jnp.float32)


# Shot noise: exact inversion below this mean, normal approximation above.
POISSON_INVERSION_MAX_MEAN = 12.0
POISSON_INVERSION_TERMS = 40


def poisson(key: jax.Array, lam: jax.Array) -> jax.Array:
    """Poisson photon counts with means ``lam`` (float32, same shape).

    ``jax.random.poisson`` draws fresh random bits in a loop until every
    element is accepted, which costs about 60 ns per count on CPU; photon
    counts need one uniform each instead. For means up to 12 the count is
    found by inverting the CDF over its first 40 terms (exact up to a tail
    probability below 1e-9); for larger means, where the Poisson law is close
    to normal, it is round(lam + sqrt(lam) z + (z^2 - 1) / 6) with z the
    normal quantile of the same uniform (Cornish-Fisher: mean lam, variance
    lam + 0.06, skewness 1 / sqrt(lam), as the Poisson law).
    """
    lam = jnp.maximum(lam, 0.0)
    u = jax.random.uniform(key, lam.shape, minval=1e-7, maxval=1.0 - 1e-7)
    small = jnp.minimum(lam, POISSON_INVERSION_MAX_MEAN)
    term = jnp.exp(-small)
    cdf = term
    count = jnp.zeros_like(lam)
    for k in range(1, POISSON_INVERSION_TERMS + 1):
        count = count + (u > cdf)
        term = term * (small * (1.0 / k))  # a product: a division per term is slow on CPU
        cdf = cdf + term
    z = jax.scipy.special.ndtri(u)
    # Cornish-Fisher: the (z^2 - 1) / 6 term gives the Poisson skewness 1 / sqrt(lam).
    normal = jnp.floor(lam + jnp.sqrt(lam) * z + (z * z - 1.0) / 6.0 + 0.5)
    large = lam > POISSON_INVERSION_MAX_MEAN
    return jnp.where(large, jnp.maximum(normal, 0.0), count).astype(jnp.float32)


def make_vision(
    config,
    *,
    shot_noise: bool | None = None,
    pixel_density: bool = True,
    red_sampling: str = "circle",
) -> Vision:
    """Builds the :class:`Vision` of a :class:`~simfish.config.SimFishConfig`.

    Args:
      config: the environment config (sections ``arena``, ``fish``, ``eyes``,
        ``prey``, ``predator``; ``test_sensory_system`` sets a half-dark arena
        as in the users' tool).
      shot_noise: overrides ``config.eyes.shot_noise``.
      pixel_density: weight the UV scatter by the users' ray pixel density
        (see :func:`ray_pixel_density`).
      red_sampling: "circle" (default) or "pixel" (reproduce the users'
        rasterised viewing circles, for comparisons with their data).

    Returns:
      The :class:`Vision`.
    """
    if red_sampling not in ("circle", "pixel"):
        raise ValueError(f"red_sampling must be 'circle' or 'pixel', got {red_sampling!r}")
    eyes = config.eyes
    layout = make_layout(eyes)
    light = make_light_field(config.arena, SENSORY_TEST_DARK_FRACTION if config.test_sensory_system else None)
    lo, hi = receptor_bins(layout.uv_angles, eyes.uv_photoreceptor_rf_size)
    radii = tuple(
        float(config.fish.elevation * math.tan(math.radians(e))) for e in eyes.viewing_elevations
    )
    return Vision(
        layout=layout,
        light=light,
        biasx=float(eyes.biasx),
        prey_diameter=2.0 * float(config.prey.radius),
        predator_radius=float(config.predator.radius),
        uv_rf_size=float(eyes.uv_photoreceptor_rf_size),
        red_rf_size=float(eyes.red_photoreceptor_rf_size),
        uv_object_intensity=float(config.arena.uv_object_intensity),
        water_uv_scatter=float(config.arena.water_uv_scatter),
        red_radii=radii,
        shot_noise=bool(eyes.shot_noise if shot_noise is None else shot_noise),
        pixel_density=pixel_density,
        uv_bins_lo=lo,
        uv_bins_hi=hi,
        red_sampling=red_sampling,
        raster_circles=tuple(
            make_raster_circle(r, float(eyes.red_photoreceptor_rf_size)) for r in radii
        ),
    )
