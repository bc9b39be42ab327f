"""Every bout and capture case measured on the users' tool (golden/dynamics_cases.json)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import GOLDEN_DIR
from simfish.world.state import with_fish, with_prey

CASES = json.loads((GOLDEN_DIR / "dynamics_cases.json").read_text())
START = (1250.0, 1250.0, 0.0)
FAR_PREY = [[100.0, 100.0]]  # keeps the episode alive, far from the fish


@pytest.fixture(scope="module")
def start_state(golden_world):
    state, _ = golden_world.reset(jax.random.PRNGKey(0), golden_world.params)
    return with_fish(state, *START)


@pytest.mark.parametrize("case", CASES["bouts"], ids=lambda c: c["name"])
def test_bout_positions_after_three_steps(golden_world, start_state, case):
    state = with_prey(start_state, FAR_PREY)
    for i, (x, y, angle) in enumerate(case["after_steps"]):
        state, ts = golden_world.step(
            state, case["action_id"], jax.random.PRNGKey(i), golden_world.params
        )
        assert int(ts.step_type) == 1
        np.testing.assert_allclose(float(state.fish.x), x, atol=0.01)
        np.testing.assert_allclose(float(state.fish.y), y, atol=0.01)
        np.testing.assert_allclose(float(state.fish.angle), angle, atol=1e-5)


def _capture_id(case):
    return f"{case['name']}-{case['prey_dist_px']}px-{case['prey_rel_angle']}rad"


@pytest.mark.parametrize("prey_heading", [0.0, 2.1, 4.2])
def test_capture_cases(golden_world, start_state, prey_heading):
    """All 160 cases, for several (irrelevant) prey headings."""
    mismatches = []
    for case in CASES["captures"]:
        r, a = case["prey_dist_px"], case["prey_rel_angle"]
        prey_xy = jnp.array([[START[0] + r * np.cos(a), START[1] + r * np.sin(a)]])
        state = with_prey(start_state, prey_xy, angle=prey_heading)
        state, ts = golden_world.step(
            state, case["action_id"], jax.random.PRNGKey(1), golden_world.params
        )
        captured = int(state.last_events.prey_caught) == 1
        alive = bool(state.prey.alive[0])
        if captured != case["captured"] or alive == captured:
            mismatches.append(_capture_id(case))
        if "reward" in case and abs(float(ts.reward) - case["reward"]) > 1e-5:
            mismatches.append(f"{_capture_id(case)} reward {float(ts.reward)} != {case['reward']}")
    assert not mismatches, mismatches
