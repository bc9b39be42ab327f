"""Hunting analysis on a hand-built episode: fish and prey placed so the answer is known."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from simfish.io.actions import Actions
from simfish.tools.analysis import (
    find_hunting_sequences,
    hunting_rows,
    hunting_summary,
    hunting_table,
    neuron_correlations,
    pursuit_ratios,
    write_csv,
)
from simfish.tools.episodes import nearest_prey, predator_present

ACTIONS = Actions.default()
ID = {name: ACTIONS.get_action_id(name) for name in ("SCS", "J-turn_R", "Slow1", "Slow2",
                                                        "O-bend_L", "O-bend_R")}
FISH = (500.0, 500.0)
# Prey A, B, C: world direction from the fish (deg) and distance (px); they never move,
# except B, which darts away after the missed strike at step 6.
PREY = {"A": (40.0, 50.0), "B": (-100.0, 60.0), "C": (150.0, 80.0)}
# Heading of the fish (deg) at time points 0..10 and the bout that led to each point.
HEADINGS = [0, 20, 30, 30, -70, -85, -85, 110, 90, 30, 30]
BOUTS = [-1, "J-turn_R", "Slow1", "SCS", "O-bend_L", "Slow1", "SCS", "O-bend_R", "Slow1",
         "Slow2", "Slow1"]


def _prey_xy(name: str, row: int) -> tuple[float, float]:
    direction, distance = PREY[name]
    if name == "B" and row >= 6:
        direction, distance = -100.0, 200.0  # escaped out of range
    a = math.radians(direction)
    return FISH[0] + distance * math.cos(a), FISH[1] + distance * math.sin(a)


def hand_built_episode() -> dict:
    """Ten steps: a capture (3 bouts), a miss (2 bouts), an abort (2 bouts)."""
    rows = len(HEADINGS)
    prey_x = np.full((rows, 3), np.nan)
    prey_y = np.full((rows, 3), np.nan)
    for r in range(rows):
        alive = ["B", "C"] if r >= 3 else ["A", "B", "C"]  # A is eaten at step 3
        for col, name in enumerate(alive):  # live prey only: columns shift after a capture
            prey_x[r, col], prey_y[r, col] = _prey_xy(name, r)
    consumed = np.zeros(rows, bool)
    consumed[3] = True
    action = np.array([-1 if b == -1 else ID[b] for b in BOUTS], np.int64)
    return {
        "fish_x": np.full(rows, FISH[0]),
        "fish_y": np.full(rows, FISH[1]),
        "fish_angle": np.radians(np.array(HEADINGS, np.float64)),
        "prey_x": prey_x,
        "prey_y": prey_y,
        "predator_x": np.full(rows, np.nan),
        "predator_y": np.full(rows, np.nan),
        "event_consumed_prey": consumed,
        "action": action,
        "episode_length": rows - 1,
    }


def test_hand_built_sequences_outcomes_and_ratios():
    sequences = find_hunting_sequences(hand_built_episode(), ACTIONS, name="hand")
    assert [(s.start_step, s.outcome, s.length) for s in sequences] == [
        (1, "capture", 3), (5, "miss", 2), (8, "abort", 2)]
    capture, miss, abort = sequences
    assert [b.action_name for b in capture.bouts] == ["J-turn_R", "Slow1", "SCS"]
    np.testing.assert_allclose([b.azimuth_before for b in capture.bouts], [40, 20, 10], atol=1e-9)
    np.testing.assert_allclose([b.azimuth_ratio for b in capture.bouts[:2]], [0.5, 0.5])
    assert capture.strike.distance_before == pytest.approx(5.0)
    assert math.isnan(capture.strike.azimuth_after)  # eaten: no prey after the strike
    np.testing.assert_allclose([b.azimuth_before for b in miss.bouts], [-30, -15], atol=1e-9)
    assert miss.strike.distance_before == pytest.approx(6.0)
    np.testing.assert_allclose([b.azimuth_ratio for b in abort.bouts], [1.5, 2.0])
    assert abort.strike is None
    np.testing.assert_allclose(np.sort(pursuit_ratios(sequences)), [0.5, 0.5, 0.5, 1.5, 2.0])


def test_hunting_summary_against_larval_numbers():
    summary = hunting_summary(find_hunting_sequences(hand_built_episode(), ACTIONS))
    assert (summary["capture"], summary["miss"], summary["abort"]) == (1, 1, 1)
    assert summary["median_pursuit_ratio"] == pytest.approx(0.5)
    assert summary["matches_pursuit"] is True
    assert summary["strikes"] == 2 and summary["strike_success_rate"] == pytest.approx(0.5)
    assert summary["successful_strikes_within_25deg"] == pytest.approx(1.0)
    assert summary["matches_strike"] is True
    table = hunting_table(summary)
    assert "Malik et al. 2025" in table and "Lagogiannis et al. 2020" in table
    assert table.count("matches") == 2 and "does not match" not in table


def test_cone_and_min_bouts_options_change_the_answer():
    episode = hand_built_episode()
    narrow = find_hunting_sequences(episode, ACTIONS, max_azimuth_deg=25.0)
    # A enters the cone only at 20 deg (step 2), B at -15 deg (step 6), C never.
    assert [(s.start_step, s.outcome, s.length) for s in narrow] == [(2, "capture", 2),
                                                                     (6, "miss", 1)]
    assert len(find_hunting_sequences(episode, ACTIONS, min_bouts=3)) == 2  # the abort is dropped
    assert find_hunting_sequences(episode, ACTIONS, max_distance_mm=4.0) == []


def test_hunting_csv_has_one_row_per_bout(tmp_path):
    sequences = find_hunting_sequences(hand_built_episode(), ACTIONS, name="logs_1.hdf5")
    path = write_csv(tmp_path / "h.csv", hunting_rows(sequences),
                     list(hunting_rows(sequences)[0]))
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 7
    assert [r["outcome"] for r in rows] == ["capture"] * 3 + ["miss"] * 2 + ["abort"] * 2
    assert rows[0]["azimuth_ratio"] == "0.5" and rows[0]["episode"] == "logs_1.hdf5"


def test_nearest_prey_and_predator_presence_in_both_layouts():
    episode = hand_built_episode()
    azimuth, distance = nearest_prey(episode)
    assert np.degrees(azimuth[0]) == pytest.approx(40.0) and distance[0] == pytest.approx(50.0)
    assert not predator_present(episode).any()  # NaN = absent (format 1)
    rows = len(HEADINGS)
    zero = {**episode, "predator_x": np.zeros(rows), "predator_y": np.zeros(rows)}
    zero["predator_x"][4:] = 300.0
    assert predator_present(zero).tolist() == [False] * 4 + [True] * (rows - 4)
    flagged = {**zero, "predator_present": np.arange(rows) == 2}  # the flag wins
    assert predator_present(flagged).tolist() == [r == 2 for r in range(rows)]


def test_neuron_correlations_find_a_unit_that_codes_energy():
    rng = np.random.default_rng(0)
    episode = hand_built_episode()
    steps = episode["episode_length"]
    energy = np.linspace(1.0, 0.2, steps + 1)
    state = rng.normal(size=(steps, 8))
    state[:, 3] = 2.0 * energy[:steps] + 1.0  # unit 3 reads out energy exactly
    episode.update(internal_state=np.stack([np.ones(steps + 1), energy, np.zeros(steps + 1)], 1),
                   actor_state=state)
    names, corr = neuron_correlations([("e", episode)], ACTIONS)
    assert corr.shape == (8, len(names))
    assert corr[3, names.index("energy")] == pytest.approx(1.0)
    assert np.isnan(corr[:, names.index("in_light")]).all()  # constant: undefined, not 0
    assert np.nanmax(np.abs(corr[[0, 1, 2], names.index("energy")])) < 0.99
