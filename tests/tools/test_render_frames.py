"""Video frames drawn from hand-built logs in both layouts (no simulator needed)."""

from __future__ import annotations

import numpy as np
import pytest

from simfish.tools.episodes import ToolsError
from simfish.tools.render import FRAME_HEIGHT, FRAME_WIDTH, EpisodeRenderer, parse_steps

pytest.importorskip("matplotlib")

RED = np.array([230, 40, 40])


def _episode(rows: int = 8, new_layout: bool = False) -> dict:
    """A fish swimming right across a 600 x 400 arena; a predator from time point 4 on."""
    x = np.linspace(200.0, 300.0, rows)
    present = np.arange(rows) >= 4
    episode = {
        "fish_x": x, "fish_y": np.full(rows, 250.0), "fish_angle": np.zeros(rows),
        "prey_x": np.full((rows, 1), 320.0), "prey_y": np.full((rows, 1), 250.0),
        "action": np.array([-1] + [2] * (rows - 1)),
        "event_consumed_prey": np.zeros(rows, bool),
        "internal_state": np.stack([np.ones(rows), np.linspace(1, 0.5, rows),
                                    np.zeros(rows)], 1).astype(np.float32),
        "vis_observation": np.random.default_rng(0).uniform(0, 50, (rows, 139, 3, 2)),
        "env_variables": {"arena_width": 600, "arena_height": 400, "arena_dark_fraction": 0.25,
                          "arena_dark_gain": 0.3, "predator_radius": 64.0},
        "episode_length": rows - 1,
    }
    if new_layout:  # issue 9: absent predator = 0 plus a flag; sediment stored as an image
        episode["predator_x"] = np.where(present, 150.0, 0.0)
        episode["predator_y"] = np.where(present, 250.0, 0.0)
        episode["predator_present"] = present
        episode["sediment"] = np.random.default_rng(1).uniform(0, 1, (1, 400, 600))
    else:
        episode["predator_x"] = np.where(present, 150.0, np.nan)
        episode["predator_y"] = np.where(present, 250.0, np.nan)
    return episode


@pytest.mark.parametrize("new_layout", [False, True])
def test_predator_is_drawn_only_while_present(new_layout):
    renderer = EpisodeRenderer(_episode(new_layout=new_layout), crop_px=600)
    r0, r1, c0, c1 = renderer.layout.arena

    def red_pixels(t):
        view = renderer.frame(t)[r0:r1, c0:c1].astype(int)
        return int((np.abs(view - RED).sum(-1) < 40).sum())

    before, after = red_pixels(2), red_pixels(5)
    assert before == 0 and after > 100
    frame = renderer.frame(0)
    assert frame.shape == (FRAME_HEIGHT, FRAME_WIDTH, 3) and frame.dtype == np.uint8


def test_stored_sediment_image_is_shown():
    flat_renderer = EpisodeRenderer(_episode(), crop_px=300)
    flat = flat_renderer.frame(3).mean(-1)
    textured = EpisodeRenderer(_episode(new_layout=True), crop_px=300).frame(3).mean(-1)
    r0, r1, c0, c1 = flat_renderer.layout.arena
    lit = np.s_[r1 - 60:r1 - 10, c0 + 10:c0 + 60]  # floor below the fish, in the light
    assert flat[lit].std() < 1.0 and textured[lit].std() > 10.0


def test_parse_steps():
    assert parse_steps(None, 10) == range(0, 11)
    assert parse_steps("2:5", 10) == range(2, 5)
    assert parse_steps(":3", 10) == range(0, 3) and parse_steps("8:", 10) == range(8, 11)
    with pytest.raises(ToolsError, match="no time points"):
        parse_steps("20:30", 10)
    with pytest.raises(ToolsError, match="A:B"):
        parse_steps("5", 10)
