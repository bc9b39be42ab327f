"""A picture of what the fish sees: the arena around it with the receptor rays,
and the two retinas' signals below (for ``simfish show-eyes``).

Pure numpy drawing plus a small PNG writer (zlib), so no plotting library is
needed.
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct
import zlib
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from simfish.io.atomic import atomic_write_bytes
from simfish.vision.observe import Vision
from simfish.vision.sediment import Sediment, render_sediment

# Colours (RGB, 0-255).
LEFT_EYE = np.array([80, 160, 255], np.uint8)
RIGHT_EYE = np.array([255, 170, 60], np.uint8)
PREY = np.array([230, 60, 255], np.uint8)
PREDATOR = np.array([20, 20, 20], np.uint8)
FISH = np.array([255, 255, 120], np.uint8)
CIRCLE = np.array([200, 60, 60], np.uint8)


def _plot_points(img: np.ndarray, rows: np.ndarray, cols: np.ndarray, colour, alpha=1.0) -> None:
    h, w = img.shape[:2]
    r, c = np.round(rows).astype(int), np.round(cols).astype(int)
    ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    r, c = r[ok], c[ok]
    img[r, c] = (alpha * np.asarray(colour, float) + (1 - alpha) * img[r, c]).astype(np.uint8)


def _line(img, p0, p1, colour, alpha=1.0) -> None:
    n = int(max(abs(p1[0] - p0[0]), abs(p1[1] - p0[1]))) + 2
    t = np.linspace(0.0, 1.0, n)
    _plot_points(img, p0[1] + t * (p1[1] - p0[1]), p0[0] + t * (p1[0] - p0[0]), colour, alpha)


def _disc(img, centre, radius, colour) -> None:
    h, w = img.shape[:2]
    rr, cc = np.mgrid[0:h, 0:w]
    img[(cc - centre[0]) ** 2 + (rr - centre[1]) ** 2 <= radius**2] = colour


def _strip(values: np.ndarray, height: int, scale: int, tint) -> np.ndarray:
    """[P] photon counts -> [height, P * scale, 3] image strip, brightness = count / max."""
    top = max(float(values.max()), 1.0)
    level = np.repeat(np.clip(values / top, 0, 1), scale)
    rgb = (level[None, :, None] * np.asarray(tint, float)[None, None, :]).astype(np.uint8)
    return np.repeat(rgb, height, axis=0)


def eyes_picture(
    vision: Vision,
    fish_xy,
    fish_angle: float,
    prey_xy,
    prey_mask,
    predator_xy,
    predator_present: bool,
    sediment: Sediment,
    visual: np.ndarray | None = None,
    half_width: int = 200,
    ray_length: float = 150.0,
    strip_height: int = 14,
    strip_scale: int = 3,
) -> np.ndarray:
    """Draws the arena around the fish and the retinas' signals.

    Top: a (2 half_width + 1)^2 px window of the lit sediment centred on the
    fish, prey (magenta), the predator (black disc), the fish (yellow), every
    UV receptor's ray (blue: left eye, orange: right eye; ``ray_length`` px)
    and the two viewing circles (red). Bottom: for each eye (left, then
    right) three strips, UV / red 50° / red 75°, one column per observation
    position (scaled by ``strip_scale``), brightness = photons / strip max.

    Args:
      vision: the vision model.
      fish_xy, fish_angle, prey_xy [N, 2], prey_mask [N], predator_xy [2],
        predator_present, sediment: the scene (as for :meth:`Vision.observe`).
      visual: [P, 3, 2] observation to show (default: computed without noise).

    Returns:
      uint8 [H, W, 3] RGB image.
    """
    fish = np.asarray(fish_xy, float)
    if visual is None:
        quiet = dataclasses.replace(vision, shot_noise=False)
        visual = np.asarray(
            quiet.observe(fish, fish_angle, prey_xy, prey_mask, predator_xy, predator_present, sediment)
        )
    size = 2 * half_width + 1
    x0, y0 = fish[0] - half_width, fish[1] - half_width
    ground = render_sediment(sediment, x0, y0, size, size, light=vision.light)
    grey = np.clip(ground / max(float(ground.max()), 1.0) * 200.0, 0, 255)
    img = np.stack([grey, grey * 0.8, grey * 0.7], axis=-1).astype(np.uint8)

    def to_img(p):
        return (float(p[0]) - x0, float(p[1]) - y0)

    eyes = np.asarray(vision.eye_positions(jnp.asarray(fish, jnp.float32), jnp.float32(fish_angle)))
    for e, colour in ((0, LEFT_EYE), (1, RIGHT_EYE)):
        start = to_img(eyes[e])
        for a in vision.layout.uv_angles[e]:
            end = (start[0] + ray_length * math.cos(fish_angle + a),
                   start[1] + ray_length * math.sin(fish_angle + a))
            _line(img, start, end, colour, alpha=0.6)
        for radius in vision.red_radii:
            t = np.linspace(0, 2 * math.pi, int(8 * radius))
            _plot_points(img, start[1] + radius * np.sin(t), start[0] + radius * np.cos(t), CIRCLE, 0.5)
    if bool(predator_present):
        _disc(img, to_img(np.asarray(predator_xy, float)), vision.predator_radius, PREDATOR)
    for p, alive in zip(np.asarray(prey_xy, float), np.asarray(prey_mask, bool), strict=True):
        if alive:
            _disc(img, to_img(p), max(2.0, vision.prey_diameter), PREY)
    _disc(img, to_img(fish), 3.0, FISH)
    nose = (fish[0] + 8 * math.cos(fish_angle), fish[1] + 8 * math.sin(fish_angle))
    _line(img, to_img(fish), to_img(nose), FISH)

    tints = (np.array([210, 90, 255]), np.array([255, 80, 60]), np.array([255, 140, 110]))
    rows = []
    for e in range(2):
        for c in range(visual.shape[1]):
            rows.append(_strip(visual[:, c, e], strip_height, strip_scale, tints[c % 3]))
            rows.append(np.zeros((2, visual.shape[0] * strip_scale, 3), np.uint8))
        rows.append(np.zeros((6, visual.shape[0] * strip_scale, 3), np.uint8))
    retina = np.concatenate(rows, axis=0)
    width = max(img.shape[1], retina.shape[1])

    def pad(a):
        out = np.zeros((a.shape[0], width, 3), np.uint8)
        out[:, : a.shape[1]] = a
        return out

    return np.concatenate([pad(img), np.zeros((8, width, 3), np.uint8), pad(retina)], axis=0)


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> Path:
    """Writes a uint8 [H, W, 3] image as a PNG file (atomically).

    Returns:
      The path written.
    """
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"write_png needs an [H, W, 3] image, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    raw = b"".join(b"\x00" + rgb[r].tobytes() for r in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
    return atomic_write_bytes(os.fspath(path), png)
