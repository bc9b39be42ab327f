"""Vision: two 1-D retinas with UV and red photoreceptors (SPEC 5).

Entry point: :func:`make_vision` builds a :class:`Vision` from a config; its
``observe`` method is a pure JAX function of the world (fish pose, prey,
predator, sediment, key) returning the visual observation
[positions, channels, eyes].
"""

from simfish.vision.bind import episode_sediment, make_vision_fn
from simfish.vision.layout import EyeLayout, make_layout, uv_receptor_offsets
from simfish.vision.light import LightField, make_light_field
from simfish.vision.observe import ReceptorSignals, Vision, make_vision, ray_pixel_density
from simfish.vision.sediment import (
    SEDIMENT_FEATURES,
    Sediment,
    arena_sediment_image,
    checker_sediment,
    constant_sediment,
    make_sediment,
    render_sediment,
    sediment_from_description,
    sediment_value,
    square_stripes_sediment,
    stripes_sediment,
)

__all__ = [
    "SEDIMENT_FEATURES",
    "EyeLayout",
    "LightField",
    "ReceptorSignals",
    "Sediment",
    "Vision",
    "checker_sediment",
    "constant_sediment",
    "episode_sediment",
    "make_layout",
    "make_light_field",
    "make_sediment",
    "make_vision_fn",
    "make_vision",
    "ray_pixel_density",
    "arena_sediment_image",
    "render_sediment",
    "sediment_from_description",
    "sediment_value",
    "square_stripes_sediment",
    "stripes_sediment",
    "uv_receptor_offsets",
]
