"""Figures of a run: trajectories, learning curves, bout usage, the action set, hunting, neurons.

Each ``plot_*`` function draws one matplotlib figure (Agg canvas, no pyplot
state) and saves it as a PNG atomically. matplotlib is the ``[plots]`` extra.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simfish.io.actions import Actions
from simfish.tools.analysis import (
    LARVAL_PURSUIT_RATIO,
    LARVAL_STRIKE_AZIMUTH_DEG,
    HuntingSequence,
    pursuit_ratios,
    strikes,
)
from simfish.tools.episodes import (
    ToolsError,
    arena_geometry,
    event,
    num_steps,
    require,
    salt_source,
)

DPI = 110


def _figure(width: float, height: float):
    """A matplotlib Figure with an Agg canvas (no global pyplot state)."""
    require("matplotlib", "plots")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Saves a figure as PNG through a temporary file renamed into place."""
    from simfish.io.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png", dpi=DPI)
    return path


# ---------------------------------------------------------------------------
# Trajectories.


def plot_trajectories(episodes: Sequence[tuple[Path, dict[str, Any]]], out: str | os.PathLike,
                      title: str = "") -> Path:
    """Every episode's path in the arena (start marked) and the fish's occupancy density."""
    from matplotlib.patches import Rectangle

    geom = arena_geometry(episodes[0][1])
    w, h = geom["width"], geom["height"]
    fig = _figure(12, 5.6)
    ax_path, ax_density = fig.subplots(1, 2)
    cmap = _cmap("tab10")
    for ax in (ax_path, ax_density):
        ax.set_xlim(-0.02 * w, 1.02 * w)
        ax.set_ylim(1.02 * h, -0.02 * h)  # y grows downwards, as in the arena pictures
        ax.set_aspect("equal")
        ax.set_xlabel("x (mm)")
        ax.set_ylabel("y (mm)")
        _mm_ticks(ax, w, h)
        if geom["dark_row"] > 0:
            ax.add_patch(Rectangle((0, 0), w, geom["dark_row"], color="0.2", alpha=0.25, lw=0,
                                   label="dark band", zorder=0))
        ax.add_patch(Rectangle((0, 0), w, h, fill=False, ec="black", lw=1.5, label="arena edge"))
    salts = []
    for i, (path, ep) in enumerate(episodes):
        x = np.asarray(ep["fish_x"], np.float64)
        y = np.asarray(ep["fish_y"], np.float64)
        colour = cmap(i % 10)
        ax_path.plot(x, y, lw=0.9, color=colour, alpha=0.85,
                     label=path.stem if len(episodes) <= 8 else None)
        ax_path.plot(x[0], y[0], "o", ms=7, mfc="white", mec=colour, mew=2, zorder=4)
        ax_path.plot(x[-1], y[-1], "x", ms=6, color=colour, mew=2, zorder=4)
        salt = salt_source(ep)
        if salt is not None:
            salts.append(salt)
    for ax in (ax_path, ax_density):
        for j, salt in enumerate(salts):
            ax.plot(salt[0], salt[1], "*", ms=14, mfc="#1fa2ff", mec="black", zorder=5,
                    label="salt source" if j == 0 else None)
    ax_path.plot([], [], "o", mfc="white", mec="black", label="start")
    ax_path.plot([], [], "x", color="black", label="end")
    ax_path.legend(fontsize=7, loc="upper right", framealpha=0.85)
    ax_path.set_title(f"paths of {len(episodes)} episode(s)")

    xs = np.concatenate([np.asarray(ep["fish_x"], np.float64) for _, ep in episodes])
    ys = np.concatenate([np.asarray(ep["fish_y"], np.float64) for _, ep in episodes])
    bins = (max(10, int(w / 50)), max(10, int(h / 50)))  # 5 mm bins
    counts, xe, ye = np.histogram2d(xs, ys, bins=bins, range=[[0, w], [0, h]])
    frac = counts.T / max(counts.sum(), 1)
    masked = np.ma.masked_where(frac == 0, frac)
    im = ax_density.pcolormesh(xe, ye, masked, cmap="magma_r", shading="flat", zorder=1)
    fig.colorbar(im, ax=ax_density, label="fraction of time points (5 mm bins)", shrink=0.85)
    ax_density.set_title("occupancy")
    if salts:
        ax_density.legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title)
    return save_figure(fig, out)


def _cmap(name: str):
    """A matplotlib colormap by name."""
    import matplotlib

    return matplotlib.colormaps[name]


def _mm_ticks(ax, w: float, h: float) -> None:
    """Labels arena-px axes in millimetres."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _pos: f"{v / 10:g}")
    ax.xaxis.set_major_formatter(fmt)
    ax.yaxis.set_major_formatter(fmt)


# ---------------------------------------------------------------------------
# Learning curves.

_TRAINING_PANELS = (
    ("episode_return", "episode return"),
    ("prey_caught", "prey eaten per episode"),
    ("predator", "predator attacks per episode"),
    ("energy_associated_reward", "energy reward term"),
    ("wall_associated_reward", "wall reward term"),
    ("episode_length", "episode length (steps)"),
)


def read_training_curves(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """Columns of a run's ``episodes.csv`` as float arrays, sorted by env_steps.

    Raises:
      ToolsError: no such directory, no episodes.csv, or no rows in it.
    """
    run = Path(run_dir).expanduser()
    if not run.is_dir():
        raise ToolsError(f"{run}: no such run directory")
    path = run / "episodes.csv"
    if not path.is_file():
        raise ToolsError(f"{run}: no episodes.csv (not a training run directory?)")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "env_steps" not in rows[0]:
        raise ToolsError(f"{path}: no episode rows yet")

    def number(text: str | None) -> float:
        try:
            return float(text) if text not in (None, "") else math.nan
        except ValueError:
            return math.nan

    columns = {k: np.array([number(r.get(k)) for r in rows]) for k in rows[0]}
    order = np.argsort(columns["env_steps"], kind="stable")
    return {k: v[order] for k, v in columns.items()}


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over `window` rows (NaN rows ignored), same length as values."""
    v = np.asarray(values, np.float64)
    ok = np.isfinite(v)
    csum = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
    cnt = np.concatenate([[0], np.cumsum(ok)])
    idx = np.arange(1, v.size + 1)
    lo = np.maximum(idx - window, 0)
    n = cnt[idx] - cnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (csum[idx] - csum[lo]) / np.maximum(n, 1), np.nan)


def plot_training(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike,
                  window: int | None = None) -> Path:
    """Learning curves (smoothed) of one or several runs vs env steps, from episodes.csv."""
    runs = [(Path(r), read_training_curves(r)) for r in run_dirs]
    fig = _figure(12, 6.5)
    axes = fig.subplots(2, 3, sharex=True).ravel()
    cmap = _cmap("tab10")
    for i, (run, cols) in enumerate(runs):
        colour = cmap(i % 10)
        n = cols["env_steps"].size
        win = window or max(1, n // 25)
        label = run.name if len(runs) > 1 else None
        for ax, (key, ylabel) in zip(axes, _TRAINING_PANELS, strict=True):
            x = cols["env_steps"]
            if key == "predator":
                for name, ls, what in (("total_attacks_avoided", "-", "avoided"),
                                       ("total_attacks_captured", "--", "caught")):
                    if name in cols:
                        ax.plot(x, smooth(cols[name], win), ls, color=colour,
                                label=f"{what}" + (f" ({run.name})" if label else ""))
            elif key in cols:
                ax.plot(x, cols[key], ".", ms=2, color=colour, alpha=0.25)
                ax.plot(x, smooth(cols[key], win), color=colour, lw=1.8, label=label)
            ax.set_title(ylabel, fontsize=10)
            ax.grid(alpha=0.3)
    for ax in axes[3:]:
        ax.set_xlabel("environment steps")
    axes[2].legend(fontsize=7)
    if len(runs) > 1:
        axes[0].legend(fontsize=7)
    fig.suptitle("training: " + ", ".join(r.name for r, _ in runs)
                 + "  (lines: moving average; dots: single episodes)", fontsize=10)
    return save_figure(fig, out)


# ---------------------------------------------------------------------------
# Bouts and the action set.


def bout_usage(episodes: Sequence[tuple[Path, dict[str, Any]]], num_actions: int,
               before: int = 5) -> dict[str, np.ndarray]:
    """Bout counts [A]: overall, in the `before` steps up to each capture and each predator escape."""
    out = {k: np.zeros(num_actions, np.int64) for k in ("all", "capture", "escape")}
    events = {"capture": "event_consumed_prey", "escape": "event_survived_predator"}
    for _path, ep in episodes:
        steps = num_steps(ep)
        act = np.asarray(ep["action"]).astype(np.int64).reshape(steps + 1)[1:]  # bouts 1..T
        ok = (act >= 0) & (act < num_actions)
        out["all"] += np.bincount(act[ok], minlength=num_actions)[:num_actions]
        for name, key in events.items():
            hits = np.nonzero(event(ep, key)[1:] > 0)[0]  # index i = bout i + 1
            chosen = np.zeros(steps, bool)
            for i in hits:
                chosen[max(0, i - before + 1):i + 1] = True
            sel = act[chosen & ok]
            out[name] += np.bincount(sel, minlength=num_actions)[:num_actions]
    return out


def plot_bouts(episodes: Sequence[tuple[Path, dict[str, Any]]], actions: Actions,
               out: str | os.PathLike, before: int = 5) -> Path:
    """Bar charts of bout-type usage overall, before captures and before predator escapes."""
    usage = bout_usage(episodes, actions.num_actions, before)
    names = actions.names
    colours = np.clip(actions.colors, 0, 1)
    fig = _figure(12, 7.5)
    axes = fig.subplots(3, 1, sharex=True)
    titles = {"all": "all bouts",
              "capture": f"the {before} bouts up to each capture",
              "escape": f"the {before} bouts up to each predator escape"}
    x = np.arange(len(names))
    for ax, key in zip(axes, ("all", "capture", "escape"), strict=True):
        counts = usage[key]
        total = counts.sum()
        frac = counts / total if total else np.zeros_like(counts, dtype=float)
        ax.bar(x, frac, color=colours, edgecolor="0.3", lw=0.5)
        ax.set_ylabel("fraction")
        ax.set_title(f"{titles[key]} (n = {total})", fontsize=10)
        if total == 0:
            ax.set_ylim(0, 1)
            ax.text(0.5, 0.5, "no such events in these episodes", transform=ax.transAxes,
                    ha="center", va="center", color="0.4")
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xticks(x, names, rotation=45, ha="right")
    return save_figure(fig, out)


def plot_actions(actions: Actions, out: str | os.PathLike, samples: int = 4000,
                 seed: int = 0) -> Path:
    """Each bout type's distance and angle distribution (samples of its Gaussian)."""
    rng = np.random.default_rng(seed)
    means, factors = actions.means, actions.cov_factors
    names, colours = actions.names, np.clip(actions.colors, 0, 1)
    fig = _figure(12, 5.5)
    ax_scatter, ax_dist, ax_angle = fig.subplots(1, 3, width_ratios=(1.4, 1, 1))
    for i, name in enumerate(names):
        z = rng.standard_normal((samples, 2))
        s = means[i] + z @ factors[i].T
        dist, angle = s[:, 0], np.degrees(s[:, 1])
        ax_scatter.scatter(angle[:300], dist[:300], s=3, color=colours[i], alpha=0.35)
        ax_scatter.plot(np.degrees(means[i, 1]), means[i, 0], "o", color=colours[i], mec="black",
                        ms=6, label=name)
        if np.ptp(dist) > 0:
            ax_dist.hist(dist, bins=60, histtype="step", color=colours[i], density=True)
            ax_angle.hist(angle, bins=80, histtype="step", color=colours[i], density=True)
    ax_scatter.set_xlabel("angle (deg)")
    ax_scatter.set_ylabel("distance (mm)")
    ax_scatter.set_title("samples (dots) and means (circles)")
    ax_scatter.legend(fontsize=6.5, ncol=3, loc="upper center", framealpha=0.85)
    ax_dist.set_xlabel("distance (mm)")
    ax_dist.set_title("distance per bout type")
    ax_angle.set_xlabel("angle (deg)")
    ax_angle.set_title("angle per bout type")
    for ax in (ax_scatter, ax_dist, ax_angle):
        ax.grid(alpha=0.3)
    return save_figure(fig, out)


# ---------------------------------------------------------------------------
# Hunting and neurons.


def plot_hunting(sequences: Sequence[HuntingSequence], out: str | os.PathLike) -> Path:
    """Summary of hunting: azimuth before/after pursuit bouts, their ratio, strikes, lengths."""
    fig = _figure(12, 8)
    (ax_ba, ax_ratio), (ax_strike, ax_len) = fig.subplots(2, 2)
    before = np.array([abs(b.azimuth_before) for s in sequences for b in s.bouts
                       if not b.is_strike and math.isfinite(b.azimuth_after)])
    after = np.array([abs(b.azimuth_after) for s in sequences for b in s.bouts
                      if not b.is_strike and math.isfinite(b.azimuth_after)])
    lim = 95
    ax_ba.scatter(before, after, s=8, alpha=0.5, color="#1f77b4", label="agent pursuit bouts")
    ax_ba.plot([0, lim], [0, lim], color="0.5", lw=1, ls=":", label="no change")
    ax_ba.plot([0, lim], [0, lim * LARVAL_PURSUIT_RATIO], color="#d62728", lw=1.5,
               label="larvae: halved (Malik et al. 2025)")
    ax_ba.set_xlim(0, lim)
    ax_ba.set_ylim(0, 180)
    ax_ba.set_xlabel("|prey azimuth| before the bout (deg)")
    ax_ba.set_ylabel("|prey azimuth| after (deg)")
    ax_ba.set_title(f"pursuit bouts (n = {before.size})")
    ax_ba.legend(fontsize=7)

    ratios = pursuit_ratios(sequences)
    if ratios.size:
        bins = np.logspace(-2, 1.5, 36)
        ax_ratio.hist(np.clip(ratios, bins[0], bins[-1]), bins=bins, color="#1f77b4", alpha=0.8)
        ax_ratio.axvline(np.median(ratios), color="#1f77b4", lw=2,
                         label=f"agent median {np.median(ratios):.2f}")
        ax_ratio.set_xscale("log")
    else:
        ax_ratio.text(0.5, 0.5, "no pursuit bouts", transform=ax_ratio.transAxes, ha="center")
    ax_ratio.axvline(LARVAL_PURSUIT_RATIO, color="#d62728", lw=2, ls="--", label="larvae ~0.5")
    ax_ratio.axvline(1.0, color="0.5", lw=1, ls=":")
    ax_ratio.set_xlabel("|azimuth| after / before (log scale)")
    ax_ratio.set_ylabel("pursuit bouts")
    ax_ratio.set_title("azimuth ratio per pursuit bout")
    ax_ratio.legend(fontsize=7)

    az, dist, ok = strikes(sequences)
    ax_strike.axvspan(-LARVAL_STRIKE_AZIMUTH_DEG, LARVAL_STRIKE_AZIMUTH_DEG, color="#d62728",
                      alpha=0.12, label="larvae: successful within +-25 deg")
    ax_strike.scatter(az[ok], dist[ok], s=22, color="#2ca02c", label=f"capture (n={ok.sum()})")
    ax_strike.scatter(az[~ok], dist[~ok], s=22, marker="x", color="0.3",
                      label=f"miss (n={(~ok).sum()})")
    ax_strike.set_xlim(-95, 95)
    ax_strike.set_xlabel("prey azimuth at the strike (deg)")
    ax_strike.set_ylabel("prey distance at the strike (mm)")
    ax_strike.set_title("strikes (capture bouts)")
    ax_strike.legend(fontsize=7)

    outcomes = ("capture", "miss", "abort", "unfinished")
    colours = ("#2ca02c", "0.35", "#ff7f0e", "#9467bd")
    lengths = [[s.length for s in sequences if s.outcome == o] for o in outcomes]
    top = max([max(v) for v in lengths if v] or [1])
    bins = np.arange(0.5, top + 1.5)
    ax_len.hist(lengths, bins=bins, color=colours, label=[f"{o} ({len(v)})"
                for o, v in zip(outcomes, lengths, strict=True)], stacked=True)
    ax_len.set_xlabel("bouts in the sequence")
    ax_len.set_ylabel("sequences")
    ax_len.set_title(f"hunting sequences (n = {len(sequences)})")
    ax_len.legend(fontsize=7)
    for ax in (ax_ba, ax_ratio, ax_strike, ax_len):
        ax.grid(alpha=0.3)
    return save_figure(fig, out)


def plot_neurons(names: Sequence[str], corr: np.ndarray, out: str | os.PathLike) -> Path:
    """Heat map of each LSTM unit's correlation with each behavioural variable."""
    units = corr.shape[0]
    fig = _figure(max(8, 0.36 * len(names) + 2.5), max(5, 0.13 * units + 2.2))
    ax = fig.subplots()
    cmap = _cmap("RdBu_r").with_extremes(bad="0.8")
    im = ax.imshow(np.ma.masked_invalid(corr), cmap=cmap, vmin=-1, vmax=1, aspect="auto",
                   interpolation="nearest")
    ax.set_xticks(np.arange(len(names)), names, rotation=60, ha="right", fontsize=8)
    step = 1 if units <= 32 else 4
    ax.set_yticks(np.arange(0, units, step))
    ax.tick_params(axis="y", labelsize=7)
    ax.set_ylabel("LSTM unit")
    ax.set_title("correlation of each LSTM unit with behaviour (grey: undefined)")
    fig.colorbar(im, ax=ax, label="Pearson r", shrink=0.8)
    return save_figure(fig, out)
