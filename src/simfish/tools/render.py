"""Episode videos: the arena around the fish beside its retinas, internal state and LSTM state.

The static parts of a frame (axes, labels, the bout-colour legend, the whole
episode's energy/salt and LSTM traces) are drawn once with matplotlib; every
frame then copies that picture and draws the changing parts with numpy array
operations: the arena crop (cut from a pre-rendered picture of the whole
arena), prey, predator, fish, the trail of recent bouts, event rings, the
retinas' recent history and a cursor on the traces. Frames are encoded with
imageio + imageio-ffmpeg (the ``[video]`` extra, which brings its own ffmpeg).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from simfish.io.actions import Actions
from simfish.tools.episodes import (
    ToolsError,
    arena_geometry,
    event,
    internal,
    num_steps,
    predator_present,
    prey_xy,
    read_episode,
    require,
    salt_source,
)

log = logging.getLogger(__name__)

FRAME_WIDTH = 1184  # multiples of 16: what H.264 encoders want
FRAME_HEIGHT = 592
ARENA_BOX = 544  # side of the arena view, output pixels
TRAIL_STEPS = 25  # bouts shown in the trail
RETINA_WINDOW = 60  # time points shown in the retina panels
EVENT_FRAMES = 6  # frames an event ring stays visible

_OUTSIDE = np.array([28, 30, 38], np.uint8)
_EDGE = np.array([235, 235, 235], np.uint8)
_PREY = np.array([60, 255, 90], np.uint8)
_PREDATOR = np.array([230, 40, 40], np.uint8)
_FISH = np.array([255, 236, 120], np.uint8)
_SALT = np.array([80, 200, 255], np.uint8)
_EVENT_COLOURS = {
    "event_consumed_prey": (np.array([60, 255, 90], np.uint8), "prey eaten"),
    "event_survived_predator": (np.array([90, 200, 255], np.uint8), "escaped predator"),
    "event_captured_by_predator": (np.array([255, 60, 60], np.uint8), "caught by predator"),
}


@dataclasses.dataclass(frozen=True)
class RenderResult:
    """What ``render_episode`` wrote."""

    path: Path
    frames: int
    pngs: tuple[Path, ...]
    seconds: float
    size: tuple[int, int]  # (width, height)


# ---------------------------------------------------------------------------
# Array drawing.


def _disc(img: np.ndarray, x: float, y: float, r: float, colour: np.ndarray,
          alpha: float = 1.0) -> None:
    """Fills a disc of radius r (pixels) centred on (x, y) = (column, row), alpha-blended."""
    h, w = img.shape[:2]
    r = max(r, 0.5)
    x0, x1 = max(int(math.floor(x - r)), 0), min(int(math.ceil(x + r)) + 1, w)
    y0, y1 = max(int(math.floor(y - r)), 0), min(int(math.ceil(y + r)) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    mask = (xx - x) ** 2 + (yy - y) ** 2 <= r * r
    patch = img[y0:y1, x0:x1]
    if alpha >= 1.0:
        patch[mask] = colour
    else:
        patch[mask] = (patch[mask] * (1 - alpha) + colour * alpha).astype(np.uint8)


def _ring(img: np.ndarray, x: float, y: float, r: float, width: float,
          colour: np.ndarray) -> None:
    """Draws a circle outline of radius r and line width `width` (pixels)."""
    h, w = img.shape[:2]
    outer = r + width / 2
    x0, x1 = max(int(x - outer) - 1, 0), min(int(x + outer) + 2, w)
    y0, y1 = max(int(y - outer) - 1, 0), min(int(y + outer) + 2, h)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    d = np.sqrt((xx - x) ** 2 + (yy - y) ** 2)
    img[y0:y1, x0:x1][np.abs(d - r) <= width / 2] = colour


def _line(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour: np.ndarray,
          width: float = 1.0) -> None:
    """Draws a line segment of the given width (pixels) by stamping a small disc along it."""
    h, w = img.shape[:2]
    n = int(max(abs(x1 - x0), abs(y1 - y0)) * 1.2) + 2
    t = np.linspace(0.0, 1.0, n)
    half = max(width / 2, 0.5)
    dx, dy = _stamp(half)
    cols = np.rint(x0 + (x1 - x0) * t[:, None] + dx).astype(np.int64).ravel()
    rows = np.rint(y0 + (y1 - y0) * t[:, None] + dy).astype(np.int64).ravel()
    ok = (cols >= 0) & (cols < w) & (rows >= 0) & (rows < h)
    img[rows[ok], cols[ok]] = colour


@functools.lru_cache(maxsize=8)
def _stamp(half: float) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets (dx [K], dy [K]) of a disc of radius `half`."""
    k = int(math.ceil(half))
    pairs = [(dx, dy) for dx in range(-k, k + 1) for dy in range(-k, k + 1)
             if dx * dx + dy * dy <= half * half + 0.25]
    return (np.array([p[0] for p in pairs], np.float64),
            np.array([p[1] for p in pairs], np.float64))


def _resize_nearest(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of [h, w, ...] to [height, width, ...]."""
    rows = (np.arange(height) * img.shape[0] / height).astype(np.int64)
    cols = (np.arange(width) * img.shape[1] / width).astype(np.int64)
    return img[rows][:, cols]


# ---------------------------------------------------------------------------
# The arena picture.


def _sediment_image(episode: dict[str, Any], path: Path, width: int, height: int,
                    px: float, region: tuple[int, int, int, int] | None = None) -> np.ndarray | None:
    """The episode's sediment at `px` arena px per pixel ([height, width] in 0..1), or None.

    With `region` = (row0, row1, col0, col1), a texture is computed only there
    (the rest is left at mid grey): the part of the arena a video can show.
    """
    from simfish.io.logs import EpisodeLogError, sediment_from_episode

    record = episode.get("sediment")
    if isinstance(record, np.ndarray):  # an image stored in the log ([H, W] or [1, H, W])
        image = np.asarray(record, np.float64).reshape(record.shape[-2:])
    else:
        try:
            sediment = sediment_from_episode(episode)
        except (EpisodeLogError, KeyError, TypeError, ValueError) as err:
            log.info("%s: no sediment drawn (%s)", path, err)
            return None
        if isinstance(sediment, np.ndarray):
            image = np.asarray(sediment, np.float64).reshape(sediment.shape[-2:])
        else:
            from simfish.vision.sediment import render_sediment

            r0, r1, c0, c1 = region or (0, height, 0, width)
            part = np.asarray(render_sediment(sediment, (c0 + 0.5) * px, (r0 + 0.5) * px,
                                              c1 - c0, r1 - r0, px), np.float64)
            lo, hi = np.percentile(part, [1, 99])
            image = np.full((height, width), 0.5)
            image[r0:r1, c0:c1] = np.clip((part - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
            return image
    if image.shape != (height, width):
        image = _resize_nearest(image, height, width)
    lo, hi = np.percentile(image, [1, 99])
    return np.clip((image - lo) / max(hi - lo, 1e-9), 0.0, 1.0)


def arena_picture(episode: dict[str, Any], scale: float, margin: int,
                  path: Path = Path("episode"), view_px: float | None = None) -> np.ndarray:
    """The whole arena at `scale` output px per arena px, with a `margin` of outside around it.

    Draws the sediment (or a flat floor), the dark band, the arena edge and the
    salt source; with `view_px` (the width of a view centred on the fish, arena
    px) the texture is computed only where such a view can reach. Returns uint8
    [H * scale + 2 margin, W * scale + 2 margin, 3].
    """
    geom = arena_geometry(episode)
    w = int(math.ceil(geom["width"] * scale))
    h = int(math.ceil(geom["height"] * scale))
    region = None
    if view_px is not None:
        fx = np.asarray(episode["fish_x"], np.float64)
        fy = np.asarray(episode["fish_y"], np.float64)
        reach = view_px * 0.75
        region = (max(int((np.nanmin(fy) - reach) * scale), 0),
                  min(int((np.nanmax(fy) + reach) * scale) + 1, h),
                  max(int((np.nanmin(fx) - reach) * scale), 0),
                  min(int((np.nanmax(fx) + reach) * scale) + 1, w))
        if region[0] >= region[1] or region[2] >= region[3]:
            region = None
    sediment = _sediment_image(episode, path, w, h, 1.0 / scale, region)
    floor = np.full((h, w), 0.5) if sediment is None else sediment
    # Sand colour, brighter where the texture is bright.
    base = np.array([150.0, 130.0, 95.0])
    rgb = (base * (0.55 + 0.6 * floor[..., None])).clip(0, 255)
    dark_rows = int(round(geom["dark_row"] * scale))
    if dark_rows > 0:
        rgb[:dark_rows] *= max(geom["dark_gain"], 0.25)
    picture = np.empty((h + 2 * margin, w + 2 * margin, 3), np.uint8)
    picture[:] = _OUTSIDE
    picture[margin:margin + h, margin:margin + w] = rgb.astype(np.uint8)
    edge = max(2, int(round(2 * scale)))
    for sl in (np.s_[margin - edge:margin, margin - edge:margin + w + edge],
               np.s_[margin + h:margin + h + edge, margin - edge:margin + w + edge],
               np.s_[margin - edge:margin + h + edge, margin - edge:margin],
               np.s_[margin - edge:margin + h + edge, margin + w:margin + w + edge]):
        picture[sl] = _EDGE
    salt = salt_source(episode)
    if salt is not None:
        sx, sy = margin + salt[0] * scale, margin + salt[1] * scale
        for r in (6, 12, 18):
            _ring(picture, sx, sy, r, 1.5, _SALT)
        _disc(picture, sx, sy, 3, _SALT)
    return picture


# ---------------------------------------------------------------------------
# The static part of a frame (one matplotlib figure per video).


def _retina_colours(vis: np.ndarray) -> np.ndarray:
    """[T+1, 139, 3 channels, 2 eyes] photon counts -> uint8 RGB [T+1, 139, 3 ch, 2 eyes, 3]."""
    tints = np.array([[0.72, 0.45, 1.0], [1.0, 0.35, 0.25], [1.0, 0.6, 0.25]])
    out = np.empty((*vis.shape, 3), np.uint8)
    for c in range(vis.shape[2]):
        values = vis[:, :, c, :]
        top = np.percentile(values, 99.5) if values.size else 1.0
        norm = np.clip(values / max(top, 1e-6), 0.0, 1.0) ** 0.6
        out[:, :, c, :, :] = (norm[..., None] * tints[c] * 255).astype(np.uint8)
    return out


def _pca(states: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """First k principal components of [N, U] states: (scores [N, k], explained fraction [k])."""
    centred = states - states.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(k, vt.shape[0])
    var = s**2
    return centred @ vt[:k].T, var[:k] / max(var.sum(), 1e-12)


@dataclasses.dataclass
class _Layout:
    """The static frame and where the changing parts go (pixel boxes: row0, row1, col0, col1)."""

    frame: np.ndarray
    arena: tuple[int, int, int, int]
    retinas: dict[tuple[int, int], tuple[int, int, int, int]]
    traces: list[tuple[tuple[int, int, int, int], np.ndarray]]  # box, x pixel of each step
    sprites: dict[str, np.ndarray]


def _box(ax, height: int) -> tuple[int, int, int, int]:
    """Pixel box (row0, row1, col0, col1) of a matplotlib axes in a canvas of `height` rows."""
    bb = ax.get_window_extent()
    return (int(round(height - bb.y1)), int(round(height - bb.y0)),
            int(round(bb.x0)), int(round(bb.x1)))


def _text_sprite(text: str, colour: tuple[float, float, float], size: float = 11) -> np.ndarray:
    """Renders one string to an RGBA uint8 array (white-on-transparent style) with matplotlib."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 0.4), dpi=100)
    canvas = FigureCanvasAgg(fig)
    fig.patch.set_alpha(0.0)
    fig.text(0.01, 0.5, text, color=colour, fontsize=size, va="center", weight="bold")
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba()).copy()
    cols = np.nonzero(rgba[..., 3].max(0) > 0)[0]
    rows = np.nonzero(rgba[..., 3].max(1) > 0)[0]
    if cols.size == 0:
        return rgba[:1, :1]
    return rgba[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _blit(frame: np.ndarray, sprite: np.ndarray, row: int, col: int) -> None:
    """Alpha-composites an RGBA sprite onto the frame at (row, col) (clipped)."""
    h, w = sprite.shape[:2]
    r1, c1 = min(row + h, frame.shape[0]), min(col + w, frame.shape[1])
    if r1 <= row or c1 <= col:
        return
    s = sprite[: r1 - row, : c1 - col]
    a = s[..., 3:4].astype(np.float32) / 255.0
    region = frame[row:r1, col:c1]
    region[:] = (region * (1 - a) + s[..., :3] * a).astype(np.uint8)


def _static_layout(episode: dict[str, Any], actions: Actions, crop_mm: float,
                   title: str) -> _Layout:
    """Draws the frame's static parts once and measures where the changing parts go."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    steps = num_steps(episode)
    dpi = 100
    fig = Figure(figsize=(FRAME_WIDTH / dpi, FRAME_HEIGHT / dpi), dpi=dpi, facecolor="#15171d")
    canvas = FigureCanvasAgg(fig)
    fg = "#e6e6e6"
    style = {"color": fg, "fontsize": 8}

    left = 24 / FRAME_WIDTH
    bottom = (FRAME_HEIGHT - ARENA_BOX - 24) / FRAME_HEIGHT
    ax_arena = fig.add_axes((left, bottom, ARENA_BOX / FRAME_WIDTH, ARENA_BOX / FRAME_HEIGHT))
    ax_arena.set_xticks([])
    ax_arena.set_yticks([])
    ax_arena.set_title(f"{title}   (view {crop_mm:.0f} mm wide)", color=fg, fontsize=9)

    x0 = (ARENA_BOX + 90) / FRAME_WIDTH
    panel_w = 1 - x0 - 0.02
    retina = {}
    names = ("UV", "red 1", "red 2")
    eye_w = panel_w / 2 - 0.02
    for eye, eye_name in enumerate(("left eye", "right eye")):
        for c in range(3):
            ax = fig.add_axes((x0 + eye * (eye_w + 0.04), 0.80 - c * 0.095, eye_w, 0.075))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_facecolor("black")
            ax.set_ylabel(names[c], rotation=0, ha="right", va="center", **style) if eye == 0 else None
            if c == 0:
                ax.set_title(f"{eye_name}: last {RETINA_WINDOW} steps (newest at bottom)",
                             **style)
            retina[(c, eye)] = ax

    ax_legend = fig.add_axes((x0, 0.47, panel_w, 0.08))
    ax_legend.axis("off")
    colours = actions.colors
    handles = [Patch(facecolor=colours[i], edgecolor="none", label=n)
               for i, n in enumerate(actions.names)]
    ax_legend.legend(handles=handles, ncol=7, fontsize=6.5, frameon=False, loc="center",
                     labelcolor=fg, handlelength=1.0, columnspacing=0.8, handletextpad=0.4,
                     title="trail: bout type", title_fontsize=7)
    ax_legend.get_legend().get_title().set_color(fg)

    def trace_axes(rect):
        ax = fig.add_axes(rect)
        ax.set_facecolor("#20232b")
        ax.tick_params(colors=fg, labelsize=7)
        for spine in ax.spines.values():
            spine.set_color("#777777")
        ax.set_xlim(0, max(steps, 1))
        return ax

    t = np.arange(steps + 1)
    state = internal(episode)
    ax_int = trace_axes((x0, 0.27, panel_w, 0.15))
    ax_int.plot(t, state["energy"], color="#ffd54a", lw=1.2, label="energy")
    ax_int.plot(t, state["salt"], color="#5ac8ff", lw=1.2, label="salt")
    ax_int.plot(t, state["in_light"], color="#aaaaaa", lw=0.8, ls=":", label="in light")
    ax_int.set_ylim(-0.05, 1.05)
    ax_int.set_xticklabels([])
    ax_int.legend(fontsize=6.5, loc="upper right", ncol=3, frameon=False, labelcolor=fg)
    ax_int.set_ylabel("internal", **style)

    ax_pca = trace_axes((x0, 0.07, panel_w, 0.17))
    actor = episode.get("actor_state")
    if actor is not None and np.asarray(actor).shape[0] >= 2:
        scores, explained = _pca(np.asarray(actor, np.float64))
        for i in range(scores.shape[1]):
            ax_pca.plot(np.arange(scores.shape[0]), scores[:, i], lw=1.0,
                        color=("#ff7f50", "#7fdbff", "#b4f06e")[i],
                        label=f"PC{i + 1} ({explained[i]:.0%})")
        ax_pca.legend(fontsize=6.5, loc="upper right", ncol=3, frameon=False, labelcolor=fg)
    else:
        ax_pca.text(0.5, 0.5, "no LSTM state in this log", transform=ax_pca.transAxes,
                    ha="center", va="center", **style)
    ax_pca.set_ylabel("LSTM PCs", **style)
    ax_pca.set_xlabel("step", **style)

    canvas.draw()
    frame = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    height = frame.shape[0]
    traces = []
    for ax in (ax_int, ax_pca):
        xs = ax.transData.transform(np.stack([t, np.zeros_like(t)], 1).astype(float))[:, 0]
        traces.append((_box(ax, height), np.rint(xs).astype(np.int64)))
    sprites = {"step": _text_sprite("step", (0.95, 0.95, 0.95), 10)}
    for d in "0123456789":
        sprites[d] = _text_sprite(d, (0.95, 0.95, 0.95), 10)
    for key, (colour, text) in _EVENT_COLOURS.items():
        sprites[key] = _text_sprite(text, tuple(colour / 255.0), 12)
    return _Layout(frame, _box(ax_arena, height),
                   {k: _box(ax, height) for k, ax in retina.items()}, traces, sprites)


# ---------------------------------------------------------------------------
# Frames.


class EpisodeRenderer:
    """Draws the frames of one episode (row t of the log -> frame t) as uint8 [H, W, 3] arrays."""

    def __init__(self, episode: dict[str, Any], actions: Actions | None = None,
                 crop_px: float = 600.0, title: str = "", path: Path = Path("episode")):
        """Prepares the static frame, the arena picture and the per-step colours."""
        if crop_px <= 0 or not math.isfinite(crop_px):
            raise ToolsError(f"--crop-px must be a positive number of arena px, got {crop_px}")
        self.episode = episode
        self.actions = Actions.default() if actions is None else actions
        self.steps = num_steps(episode)
        self.layout = _static_layout(episode, self.actions, crop_px / 10.0, title or path.name)
        r0, r1, c0, c1 = self.layout.arena
        self.view = (r1 - r0, c1 - c0)
        self.scale = self.view[1] / float(crop_px)  # output px per arena px
        self.margin = int(max(self.view) // 2 + 4)
        self.picture = arena_picture(episode, self.scale, self.margin, path, view_px=crop_px)
        env = episode.get("env_variables") or {}
        self.tail_px = float(env.get("fish_tail_length") or 41.0) * self.scale
        self.predator_px = float(env.get("predator_radius") or 64.0) * self.scale
        self.prey_px = max(2.0, float(env.get("prey_radius") or 1.0) * self.scale * 1.5)
        self.fx = np.asarray(episode["fish_x"], np.float64)
        self.fy = np.asarray(episode["fish_y"], np.float64)
        self.angle = np.asarray(episode["fish_angle"], np.float64)
        self.px, self.py = prey_xy(episode)
        self.pred = predator_present(episode)
        self.pred_x = np.asarray(episode.get("predator_x", np.zeros(self.steps + 1)), np.float64)
        self.pred_y = np.asarray(episode.get("predator_y", np.zeros(self.steps + 1)), np.float64)
        action = np.asarray(episode.get("action", np.full(self.steps + 1, -1))).astype(np.int64)
        colours = (np.clip(self.actions.colors, 0, 1) * 255).astype(np.uint8)
        known = (action >= 0) & (action < len(colours))
        self.trail_colour = np.where(known[:, None], colours[np.clip(action, 0, len(colours) - 1)],
                                     np.uint8(200))
        self.events = {k: event(episode, k) > 0 for k in _EVENT_COLOURS}
        vis = episode.get("vis_observation")
        self.retina = None if vis is None else _retina_colours(np.asarray(vis, np.float32))

    def frame(self, t: int) -> np.ndarray:
        """The frame of time point t (0 <= t <= T) as uint8 [FRAME_HEIGHT, FRAME_WIDTH, 3]."""
        out = self.layout.frame.copy()
        self._draw_arena(out, t)
        self._draw_retinas(out, t)
        for (r0, r1, _c0, _c1), xs in self.layout.traces:
            x = xs[min(t, len(xs) - 1)]
            out[r0:r1, max(x - 1, 0):x + 1] = (255, 255, 255)
        self._draw_step(out, t)
        return out

    def _to_view(self, x: np.ndarray, y: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Arena coordinates -> (column, row) in the arena view centred on the fish at t."""
        h, w = self.view
        return ((np.asarray(x) - self.fx[t]) * self.scale + w / 2,
                (np.asarray(y) - self.fy[t]) * self.scale + h / 2)

    def _draw_arena(self, out: np.ndarray, t: int) -> None:
        """The crop around the fish with prey, predator, trail, fish and event rings."""
        h, w = self.view
        r0, _r1, c0, _c1 = self.layout.arena
        cy = int(round(self.fy[t] * self.scale)) + self.margin - h // 2
        cx = int(round(self.fx[t] * self.scale)) + self.margin - w // 2
        cy = min(max(cy, 0), self.picture.shape[0] - h)
        cx = min(max(cx, 0), self.picture.shape[1] - w)
        view = self.picture[cy:cy + h, cx:cx + w].copy()
        # Offsets from the exact centring (the crop is cut on whole pixels).
        shift_x = (self.fx[t] * self.scale + self.margin - w / 2) - cx
        shift_y = (self.fy[t] * self.scale + self.margin - h / 2) - cy

        def at(x, y):
            vx, vy = self._to_view(x, y, t)
            return vx + shift_x, vy + shift_y

        # Trail of recent bouts, coloured by the bout that made each segment.
        start = max(1, t - TRAIL_STEPS + 1)
        tx, ty = at(self.fx[start - 1:t + 1], self.fy[start - 1:t + 1])
        for i in range(len(tx) - 1):
            _line(view, tx[i], ty[i], tx[i + 1], ty[i + 1], self.trail_colour[start + i], 3.0)
        # Prey.
        live = np.isfinite(self.px[t]) & np.isfinite(self.py[t])
        qx, qy = at(self.px[t][live], self.py[t][live])
        inside = (qx > -5) & (qx < w + 5) & (qy > -5) & (qy < h + 5)
        for x, y in zip(qx[inside], qy[inside], strict=True):
            _disc(view, x, y, self.prey_px, _PREY)
        # Predator.
        if self.pred[t]:
            x, y = at(self.pred_x[t], self.pred_y[t])
            _disc(view, float(x), float(y), self.predator_px, _PREDATOR, alpha=0.35)
            _ring(view, float(x), float(y), self.predator_px, 2.0, _PREDATOR)
        # Fish: body from the head backwards along the heading, head disc, eyes-forward tick.
        hx, hy = at(self.fx[t], self.fy[t])
        hx, hy = float(hx), float(hy)
        dx, dy = math.cos(self.angle[t]), math.sin(self.angle[t])
        _line(view, hx, hy, hx - dx * self.tail_px, hy - dy * self.tail_px, _FISH, 3.0)
        _line(view, hx, hy, hx + dx * 14, hy + dy * 14, np.array([255, 255, 255], np.uint8), 1.5)
        _disc(view, hx, hy, max(3.0, 2.5 * self.scale * 1.5), _FISH)
        # Events of the last few steps.
        for k, (colour, _text) in _EVENT_COLOURS.items():
            recent = self.events[k][max(0, t - EVENT_FRAMES + 1):t + 1]
            if recent.any():
                age = EVENT_FRAMES - 1 - int(np.nonzero(recent)[0][-1])
                _ring(view, hx, hy, 14 + 5 * (EVENT_FRAMES - 1 - age), 3.0, colour)
        out[r0:r0 + h, c0:c0 + w] = view
        row = r0 + 8
        for k in _EVENT_COLOURS:
            if self.events[k][max(0, t - 3 * EVENT_FRAMES + 1):t + 1].any():
                _blit(out, self.layout.sprites[k], row, c0 + 8)
                row += self.layout.sprites[k].shape[0] + 4

    def _draw_retinas(self, out: np.ndarray, t: int) -> None:
        """The last RETINA_WINDOW observations of each channel and eye (time downwards)."""
        if self.retina is None:
            return
        lo = t - RETINA_WINDOW + 1
        window = self.retina[max(lo, 0):t + 1]
        if lo < 0:
            pad = np.zeros((-lo, *window.shape[1:]), np.uint8)
            window = np.concatenate([pad, window])
        for (c, eye), (r0, r1, c0, c1) in self.layout.retinas.items():
            out[r0:r1, c0:c1] = _resize_nearest(window[:, :, c, eye], r1 - r0, c1 - c0)

    def _draw_step(self, out: np.ndarray, t: int) -> None:
        """The step counter under the arena view."""
        r0, r1, c0, _c1 = self.layout.arena
        row = r1 + 4
        col = c0
        for key in ("step", *str(t)):
            sprite = self.layout.sprites[key]
            _blit(out, sprite, row, col)
            col += sprite.shape[1] + (6 if key == "step" else 1)


def parse_steps(text: str | None, steps: int) -> range:
    """Parses ``A:B`` (Python slice of time points 0..T; either side may be empty) into a range.

    Raises:
      ToolsError: malformed, or an empty range.
    """
    if text is None:
        return range(0, steps + 1)
    parts = text.split(":")
    if len(parts) != 2:
        raise ToolsError(f"--steps must be A:B (time points of the episode, 0..{steps}), got {text!r}")
    try:
        a = int(parts[0]) if parts[0].strip() else None
        b = int(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise ToolsError(f"--steps must be A:B with integers, got {text!r}") from None
    chosen = range(steps + 1)[slice(a, b)]
    if len(chosen) == 0:
        raise ToolsError(f"--steps {text}: no time points in range (the episode has 0..{steps})")
    return chosen


def render_episode(
    episode_path: str | os.PathLike,
    out: str | os.PathLike,
    crop_px: float = 600.0,
    fps: int = 15,
    steps: str | None = None,
    png_every: int | None = None,
    actions: Actions | None = None,
    progress: bool = True,
) -> RenderResult:
    """Renders an episode log to an MP4 video (one frame per time point of `steps`).

    Args:
      episode_path: a ``logs_<k>.hdf5`` file.
      out: the video file to write (``.mp4``); written to a temporary file and renamed.
      crop_px: width of the arena view around the fish, arena px (10 px = 1 mm).
      fps: frames per second.
      steps: ``A:B`` time points to render (default: all, 0..T).
      png_every: also save every K-th frame as ``<out stem>_<t>.png`` beside the video.
      actions: the action set (bout colours and names); default set when None.
      progress: show a progress bar.

    Raises:
      ToolsError: bad options, a missing ``[video]`` extra, or a file that is not an episode log.
    """
    iio = require("imageio.v2", "video")
    require("imageio_ffmpeg", "video")
    require("matplotlib", "video")

    if fps <= 0:
        raise ToolsError(f"--fps must be positive, got {fps}")
    if png_every is not None and png_every <= 0:
        raise ToolsError(f"--png-every must be positive, got {png_every}")
    out = Path(out)
    if out.suffix.lower() not in (".mp4", ".m4v", ".mov", ".mkv"):
        raise ToolsError(f"{out}: the video must be an .mp4 (or .mov/.mkv) file")
    begin = time.perf_counter()
    path = Path(episode_path)
    episode = read_episode(path)
    if "fish_x" not in episode:
        raise ToolsError(f"{path}: this episode log has no fish_x (no world positions logged)")
    chosen = parse_steps(steps, num_steps(episode))
    renderer = EpisodeRenderer(episode, actions, crop_px, path=path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp{out.suffix}")  # ffmpeg reads the suffix
    # JAX warns about any fork; the encoder is a plain ffmpeg subprocess, started lazily.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
        frames, pngs = _encode(iio, renderer, chosen, out, tmp, fps, png_every, progress, path)
    seconds = time.perf_counter() - begin
    log.info("rendered %d frames in %.1f s", frames, seconds)
    return RenderResult(out, frames, tuple(pngs), seconds, (FRAME_WIDTH, FRAME_HEIGHT))


def _encode(iio, renderer: EpisodeRenderer, chosen: range, out: Path, tmp: Path, fps: int,
            png_every: int | None, progress: bool, path: Path) -> tuple[int, list[Path]]:
    """Draws and encodes the frames of `chosen` into `tmp`, renamed to `out` when complete."""
    from simfish.tools.eyes_picture import write_png

    pngs: list[Path] = []
    frames = 0
    try:
        writer = iio.get_writer(
            tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=None,
            macro_block_size=16, ffmpeg_log_level="error",
            output_params=["-preset", "veryfast", "-crf", "23"],
        )
        try:
            for t in tqdm(chosen, desc=f"render {path.name}", unit="frame", disable=not progress):
                image = renderer.frame(t)
                writer.append_data(image)
                frames += 1
                if png_every is not None and (t - chosen.start) % png_every == 0:
                    pngs.append(write_png(out.with_name(f"{out.stem}_{t:05d}.png"), image))
        finally:
            writer.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return frames, pngs
