"""Behaviour analyses: hunting sequences against larval data, and what the LSTM units encode.

Hunting sequences
-----------------
A bout at step t (``action[t]``, taken from time point t - 1 to t) is *aimed
at* a prey when that prey is the nearest one at t - 1 inside the hunting cone
(distance <= ``max_distance_mm``, |azimuth| <= ``max_azimuth_deg``). A hunting
sequence is a run of consecutive bouts aimed at the same prey (followed from
one time point to the next by its nearest position). It ends

- with a **strike** (a capture bout, ``is_capture`` in the action set): outcome
  ``capture`` when a prey is eaten at that step, else ``miss``;
- with a **capture** by another bout (a prey eaten during a pursuit bout);
- with an **abort**: the next bout is aimed at another prey, at none, or is the
  Null action; or ``unfinished`` when the episode ends first.

Aborted and unfinished runs shorter than ``min_bouts`` are dropped (a single
bout that happened to have a prey ahead is not a hunt). Every non-strike bout
of a sequence is a *pursuit bout*; its azimuth ratio is |azimuth after| /
|azimuth before|, compared with the larval value of about 0.5 (pursuit bouts
roughly halve prey azimuth, Malik et al. 2025). Strikes are compared with
larval strikes, successful within about +-25 degrees (Lagogiannis et al. 2020).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simfish.io.actions import Actions
from simfish.io.atomic import atomic_write_text
from simfish.tools.episodes import (
    PX_PER_MM,
    ToolsError,
    event,
    internal,
    nearest_prey,
    num_steps,
    predator_present,
    prey_egocentric,
    prey_xy,
)

#: Published larval reference values used by the hunting summary.
LARVAL_PURSUIT_RATIO = 0.5  # Malik et al. 2025: pursuit bouts roughly halve prey azimuth
LARVAL_STRIKE_AZIMUTH_DEG = 25.0  # Lagogiannis et al. 2020: successful strikes within +-25 deg

#: How far apart a prey's positions on consecutive time points may be and still be one prey (px).
TRACK_RADIUS_PX = 30.0


@dataclasses.dataclass(frozen=True)
class HuntingBout:
    """One bout of a hunting sequence (angles in degrees, distances in mm)."""

    step: int
    action: int
    action_name: str
    is_strike: bool
    azimuth_before: float
    distance_before: float
    azimuth_after: float  # NaN when the prey is gone after the bout (eaten, or left the log)
    distance_after: float

    @property
    def azimuth_ratio(self) -> float:
        """|azimuth after| / |azimuth before| (NaN when either is undefined or before is 0)."""
        before, after = abs(self.azimuth_before), abs(self.azimuth_after)
        if not (math.isfinite(before) and math.isfinite(after)) or before == 0:
            return math.nan
        return after / before


@dataclasses.dataclass(frozen=True)
class HuntingSequence:
    """A run of bouts aimed at one prey and how it ended."""

    episode: str
    start_step: int
    outcome: str  # capture, miss, abort or unfinished
    bouts: tuple[HuntingBout, ...]

    @property
    def length(self) -> int:
        """Number of bouts in the sequence (the strike included)."""
        return len(self.bouts)

    @property
    def strike(self) -> HuntingBout | None:
        """The final capture bout, if the sequence ended with one."""
        return self.bouts[-1] if self.bouts and self.bouts[-1].is_strike else None


def _aim(azimuth: np.ndarray, distance: np.ndarray, max_distance: float,
         max_azimuth: float) -> int | None:
    """Index of the nearest prey inside the hunting cone ([P] arrays at one time point), or None."""
    ok = np.isfinite(distance) & (distance <= max_distance) & (np.abs(azimuth) <= max_azimuth)
    if not ok.any():
        return None
    return int(np.argmin(np.where(ok, distance, np.inf)))


def _follow(px: np.ndarray, py: np.ndarray, x: float, y: float) -> int | None:
    """Column of the prey ([P] positions at the next time point) nearest (x, y), within TRACK_RADIUS_PX."""
    d = np.hypot(px - x, py - y)
    d = np.where(np.isfinite(d), d, np.inf)
    if d.size == 0 or d.min() > TRACK_RADIUS_PX:
        return None
    return int(np.argmin(d))


def find_hunting_sequences(
    episode: dict[str, Any],
    actions: Actions | None = None,
    name: str = "",
    max_distance_mm: float = 10.0,
    max_azimuth_deg: float = 90.0,
    min_bouts: int = 2,
) -> list[HuntingSequence]:
    """Finds the hunting sequences of one episode (see the module docstring).

    Args:
      episode: a dict from ``load_episode`` (needs fish_x/y/angle, prey_x/y, action,
        event_consumed_prey).
      actions: the action set (which bouts are captures, names); default set when None.
      name: the episode's name, copied into each sequence.
      max_distance_mm, max_azimuth_deg: the hunting cone.
      min_bouts: shortest aborted / unfinished sequence kept.

    Returns:
      The sequences in time order.
    """
    actions = Actions.default() if actions is None else actions
    is_capture = actions.is_capture
    names = actions.names
    null_ids = {i for i, n in enumerate(names) if n == "Null"}
    steps = num_steps(episode)
    act = np.asarray(episode["action"]).astype(np.int64).reshape(steps + 1)
    eaten = event(episode, "event_consumed_prey") > 0
    azimuth, distance = prey_egocentric(episode)
    px, py = prey_xy(episode)
    max_distance = max_distance_mm * PX_PER_MM
    max_azimuth = math.radians(max_azimuth_deg)

    sequences: list[HuntingSequence] = []
    bouts: list[HuntingBout] = []
    tracked: int | None = None  # the target's column at the current time point

    def close(outcome: str) -> None:
        nonlocal bouts, tracked
        if bouts and (outcome in ("capture", "miss") or len(bouts) >= min_bouts):
            sequences.append(HuntingSequence(name, bouts[0].step, outcome, tuple(bouts)))
        bouts, tracked = [], None

    for t in range(1, steps + 1):
        a = int(act[t])
        valid = 0 <= a < len(names) and a not in null_ids
        target = _aim(azimuth[t - 1], distance[t - 1], max_distance, max_azimuth) if valid else None
        if bouts and target != tracked:
            close("abort")
        if target is None:
            continue
        after = _follow(px[t], py[t], px[t - 1, target], py[t - 1, target])
        strike = bool(is_capture[a])
        bouts.append(HuntingBout(
            step=t,
            action=a,
            action_name=names[a],
            is_strike=strike,
            azimuth_before=math.degrees(azimuth[t - 1, target]),
            distance_before=float(distance[t - 1, target]) / PX_PER_MM,
            azimuth_after=math.nan if after is None else math.degrees(azimuth[t, after]),
            distance_after=math.nan if after is None else float(distance[t, after]) / PX_PER_MM,
        ))
        if strike:
            close("capture" if eaten[t] else "miss")
        elif eaten[t] and after is None:
            close("capture")
        else:
            tracked = after
            if tracked is None:  # the prey left the log without being eaten
                close("abort")
    close("unfinished")
    return sequences


HUNTING_FIELDS = (
    "episode", "sequence", "outcome", "sequence_length", "bout", "step", "action",
    "is_strike", "azimuth_before_deg", "distance_before_mm", "azimuth_after_deg",
    "distance_after_mm", "azimuth_ratio",
)  # fmt: skip


def hunting_rows(sequences: Sequence[HuntingSequence]) -> list[dict[str, Any]]:
    """One row per bout of every sequence (the CSV of ``simfish analyse hunting``)."""
    rows = []
    for s_idx, seq in enumerate(sequences):
        for b_idx, bout in enumerate(seq.bouts):
            rows.append({
                "episode": seq.episode,
                "sequence": s_idx,
                "outcome": seq.outcome,
                "sequence_length": seq.length,
                "bout": b_idx,
                "step": bout.step,
                "action": bout.action_name,
                "is_strike": int(bout.is_strike),
                "azimuth_before_deg": round(bout.azimuth_before, 3),
                "distance_before_mm": round(bout.distance_before, 4),
                "azimuth_after_deg": round(bout.azimuth_after, 3),
                "distance_after_mm": round(bout.distance_after, 4),
                "azimuth_ratio": round(bout.azimuth_ratio, 4),
            })
    return rows


def pursuit_ratios(sequences: Sequence[HuntingSequence]) -> np.ndarray:
    """[N] azimuth ratios (after / before) of all pursuit (non-strike) bouts with both defined."""
    ratios = [b.azimuth_ratio for s in sequences for b in s.bouts if not b.is_strike]
    ratios = np.asarray(ratios, np.float64)
    return ratios[np.isfinite(ratios)]


def strikes(sequences: Sequence[HuntingSequence]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Azimuth (deg), distance (mm) at the strike and success (bool), one entry per strike."""
    found = [(s.strike, s.outcome == "capture") for s in sequences if s.strike is not None]
    az = np.asarray([b.azimuth_before for b, _ in found], np.float64)
    dist = np.asarray([b.distance_before for b, _ in found], np.float64)
    ok = np.asarray([hit for _, hit in found], bool)
    return az, dist, ok


def hunting_summary(sequences: Sequence[HuntingSequence]) -> dict[str, Any]:
    """Counts and the two comparisons with larval data (None where there is nothing to compare)."""
    outcomes = {k: sum(s.outcome == k for s in sequences)
                for k in ("capture", "miss", "abort", "unfinished")}
    ratios = pursuit_ratios(sequences)
    az, dist, ok = strikes(sequences)
    median_ratio = float(np.median(ratios)) if ratios.size else None
    within = np.abs(az) <= LARVAL_STRIKE_AZIMUTH_DEG
    frac_within = float(within[ok].mean()) if ok.any() else None
    return {
        "sequences": len(sequences),
        **outcomes,
        "mean_length": float(np.mean([s.length for s in sequences])) if sequences else None,
        "pursuit_bouts": int(ratios.size),
        "median_pursuit_ratio": median_ratio,
        # "roughly halve": a median ratio between 0.3 and 0.7.
        "matches_pursuit": None if median_ratio is None else 0.3 <= median_ratio <= 0.7,
        "strikes": int(az.size),
        "strike_success_rate": float(ok.mean()) if az.size else None,
        "success_within_25deg": float(ok[within].mean()) if within.any() else None,
        "success_outside_25deg": float(ok[~within].mean()) if (~within).any() else None,
        "successful_strikes_within_25deg": frac_within,
        "median_abs_azimuth_successful": float(np.median(np.abs(az[ok]))) if ok.any() else None,
        "median_distance_successful_mm": float(np.median(dist[ok])) if ok.any() else None,
        # "within about +-25 degrees": at least 80 % of the successful strikes inside +-25 deg.
        "matches_strike": None if frac_within is None else frac_within >= 0.8,
    }


def _fmt(value: Any, spec: str = ".2f") -> str:
    """Formats a number, or 'n/a' for None."""
    return "n/a" if value is None else format(value, spec)


def _verdict(flag: bool | None) -> str:
    """'matches', 'does not match' or 'no data'."""
    return "no data" if flag is None else ("matches" if flag else "does not match")


def hunting_table(summary: dict[str, Any]) -> str:
    """A plain-text table of the summary beside the larval numbers."""
    s = summary
    lines = [
        f"hunting sequences: {s['sequences']} (capture {s['capture']}, miss {s['miss']}, "
        f"abort {s['abort']}, unfinished {s['unfinished']}); mean length "
        f"{_fmt(s['mean_length'], '.1f')} bouts",
        "",
        f"{'measure':<44} {'agent':>10} {'larvae':>10}  verdict",
        f"{'median |az| after / before, pursuit bouts':<44} "
        f"{_fmt(s['median_pursuit_ratio']):>10} {'~0.5':>10}  {_verdict(s['matches_pursuit'])}"
        f"  (n={s['pursuit_bouts']}; Malik et al. 2025)",
        f"{'successful strikes within +-25 deg':<44} "
        f"{_fmt(s['successful_strikes_within_25deg'], '.0%'):>10} {'most':>10}  "
        f"{_verdict(s['matches_strike'])}  (n={s['strikes']} strikes; Lagogiannis et al. 2020)",
        f"{'strike success rate':<44} {_fmt(s['strike_success_rate'], '.0%'):>10}",
        f"{'  success within / outside +-25 deg':<44} "
        f"{_fmt(s['success_within_25deg'], '.0%'):>10} / {_fmt(s['success_outside_25deg'], '.0%')}",
        f"{'median |az| of successful strikes (deg)':<44} "
        f"{_fmt(s['median_abs_azimuth_successful'], '.1f'):>10}",
        f"{'median distance of successful strikes (mm)':<44} "
        f"{_fmt(s['median_distance_successful_mm'], '.2f'):>10}",
    ]
    return "\n".join(lines)


def write_csv(path: str | os.PathLike, rows: Sequence[dict[str, Any]],
              fields: Sequence[str]) -> Path:
    """Writes rows as a CSV file (atomically)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(fields), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(path, buffer.getvalue())


def analyse_hunting(
    episodes: Sequence[tuple[Path, dict[str, Any]]], actions: Actions | None = None, **cone: Any
) -> list[HuntingSequence]:
    """Hunting sequences of several (path, episode) pairs, in order."""
    out: list[HuntingSequence] = []
    for path, episode in episodes:
        if "action" not in episode:
            raise ToolsError(f"{path}: this episode log has no action dataset")
        out.extend(find_hunting_sequences(episode, actions, name=Path(path).name, **cone))
    return out


# ---------------------------------------------------------------------------
# Neurons.


def neuron_variables(episode: dict[str, Any], actions: Actions) -> dict[str, np.ndarray]:
    """Per-step variables aligned with ``actor_state`` ([T] each, row t = time point t).

    ``actor_state[t]`` is the LSTM state after observation t, the one that chose
    ``action[t + 1]``; the bout columns are 1 where that bout was chosen.
    """
    steps = num_steps(episode)
    azimuth, distance = nearest_prey(episode)
    state = internal(episode)
    out = {
        "prey_azimuth_deg": np.degrees(azimuth[:steps]),
        "prey_abs_azimuth_deg": np.abs(np.degrees(azimuth[:steps])),
        "prey_distance_mm": distance[:steps] / PX_PER_MM,
        "predator_present": predator_present(episode)[:steps].astype(np.float64),
        "energy": state["energy"][:steps],
        "in_light": state["in_light"][:steps],
    }
    chosen = np.asarray(episode["action"]).astype(np.int64).reshape(steps + 1)[1:]
    for i, action_name in enumerate(actions.names):
        out[f"bout_{action_name}"] = (chosen == i).astype(np.float64)
    return out


def _correlate(states: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Pearson correlation of each column of states [N, U] with values [N] (finite rows; NaN if flat)."""
    keep = np.isfinite(values)
    if keep.sum() < 3:
        return np.full(states.shape[1], np.nan)
    s, v = states[keep], values[keep]
    s = s - s.mean(0)
    v = v - v.mean()
    denom = np.sqrt((s**2).sum(0) * (v**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 1e-12, (s * v[:, None]).sum(0) / np.maximum(denom, 1e-300), np.nan)


def neuron_correlations(
    episodes: Sequence[tuple[Path, dict[str, Any]]], actions: Actions | None = None
) -> tuple[list[str], np.ndarray]:
    """Correlation of every LSTM unit with each behavioural variable, pooled over episodes.

    Returns:
      (variable names [V], correlations [U, V]; NaN where a variable is constant or undefined).

    Raises:
      ToolsError: an episode has no ``actor_state``.
    """
    actions = Actions.default() if actions is None else actions
    states, columns = [], {}
    for path, episode in episodes:
        if episode.get("actor_state") is None:
            raise ToolsError(f"{path}: this episode log has no actor_state (not an agent's episode)")
        state = np.asarray(episode["actor_state"], np.float64)
        variables = neuron_variables(episode, actions)
        rows = min(state.shape[0], len(next(iter(variables.values()))))
        states.append(state[:rows])
        for k, v in variables.items():
            columns.setdefault(k, []).append(v[:rows])
    stacked = np.concatenate(states)
    names = list(columns)
    corr = np.stack([_correlate(stacked, np.concatenate(columns[k])) for k in names], axis=1)
    return names, corr


def neuron_rows(names: Sequence[str], corr: np.ndarray) -> list[dict[str, Any]]:
    """CSV rows: one per unit, one column per variable."""
    return [{"unit": u, **{n: round(float(c), 5) for n, c in zip(names, corr[u], strict=True)}}
            for u in range(corr.shape[0])]
