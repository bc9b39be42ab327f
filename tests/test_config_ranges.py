"""Every number of a config has a plausible range; every accepted config runs.

The property test varies only traced settings (those that neither change
array shapes nor the vision built from the config), so one jitted world with
vision serves every example.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simfish.config import MAX_STEPS, RANGES, ConfigError, config_value, load_config
from simfish.io.actions import Actions
from simfish.world.env import SimFishEnv
from simfish.world.params import make_params


def _write(tmp_path, raw) -> str:
    path = tmp_path / "user.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


def _set(raw: dict, dotted: str, value) -> None:
    node = raw
    *sections, leaf = dotted.split(".")
    for part in sections:
        node = node[part]
    node[leaf] = value


def _outside(base_value, bound: float, above: bool):
    """A value just outside ``bound``, of the key's type (int or float)."""
    if isinstance(base_value, int) and not isinstance(base_value, bool):
        return int(math.floor(bound)) + 1 if above else int(math.ceil(bound)) - 1
    return bound * 2 + 1 if above else bound - abs(bound) - 1


@pytest.mark.parametrize("key", sorted(RANGES))
def test_every_number_out_of_range_is_a_named_one_line_error(key, tmp_path):
    normal = load_config("normal")
    low, kind, high = RANGES[key]
    base_value = config_value(normal, key)
    for above in (True, False):
        bad = _outside(base_value if base_value is not None else 0.0, high if above else low, above)
        if kind == ">" and not above:
            bad = low  # the open lower bound itself is refused
        raw = normal.to_dict()
        _set(raw, key, bad)
        path = _write(tmp_path, raw)
        with pytest.raises(ConfigError) as err:
            load_config(path)
        text = str(err.value)
        assert path in text and f"'{key}' = {bad!r}" in text, text
        assert "allowed range" in text and "\n" not in text


def test_issue_examples_are_refused_by_name(tmp_path):
    normal = load_config("normal")
    with pytest.raises(ConfigError, match=r"'fish.elevation' = 1e\+30 must be <= 10000 "):
        load_config(normal, {"fish.elevation": 1e30})
    with pytest.raises(ConfigError, match=r"'predator.immunity_steps' = 10+ must be <= 1e\+07"):
        load_config(normal, {"predator.immunity_steps": 10**30})
    with pytest.raises(ConfigError, match=r"'arena.width' = 200000 must be <= 100000"):
        load_config(normal, {"arena.width": 200_000, "arena.height": 200_000})
    # A viewing circle of 10000 * tan(89) px would take the vision builder forever.
    with pytest.raises(ConfigError, match=r"eyes.viewing_elevations\[1\]' = 89.0 with fish.elevation"):
        load_config(normal, {"fish.elevation": 10_000, "eyes.viewing_elevations": [50, 89]})


def test_largest_accepted_elevation_builds_its_vision():
    from simfish.vision.observe import make_vision

    config = load_config("normal", {"fish.elevation": 10_000})
    vision = make_vision(config)
    assert vision is not None


# ---------------------------------------------------------------------------
# Property test: random traced values inside the accepted ranges run.

BASE_OVERRIDES = {
    "arena.width": 400,
    "arena.height": 300,
    "prey.num": 6,
    "max_sim_steps_per_episode": 40,
    "predator.immunity_steps": 0,
    "predator.epoch_num": 1,
    "predator.epoch_duration": 5,
    "predator.probability_per_epoch_step": 1.0,
    "predator.distance_from_fish": 120,
}


@pytest.fixture(scope="module")
def vision_world():
    """One jitted world with vision; params are passed in, so examples do not recompile."""
    config = load_config("normal", BASE_OVERRIDES)
    env = SimFishEnv(config, Actions.default(), vision=True)
    reset = jax.jit(env.reset)
    step = jax.jit(env.step)
    return config, env, reset, step


def _in_range(key: str, upper: float | None = None):
    low, kind, high = RANGES[key]
    high = high if upper is None else min(high, upper)
    return st.floats(low, high, exclude_min=kind == ">", allow_nan=False)


def _probability():
    return st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def traced_overrides(draw):
    """Dotted overrides of traced settings, each inside its accepted range."""
    out = {
        "sim_step_duration_seconds": draw(_in_range("sim_step_duration_seconds")),
        # The 400 x 300 arena must exceed 80 px + 2 (head + mouth).
        "fish.mouth_radius": draw(_in_range("fish.mouth_radius", 50.0)),
        "fish.head_radius": draw(_in_range("fish.head_radius", 50.0)),
        "fish.tail_length": draw(_in_range("fish.tail_length")),
        "fish.init_x": draw(st.floats(0.0, 400.0)),
        "fish.init_y": draw(st.floats(0.0, 300.0)),
        "fish.init_angle": draw(_in_range("fish.init_angle")),
        "fish.fixed_energy_level": draw(st.one_of(st.none(), st.booleans(), _probability())),
        "fish.init_energy_level": draw(_probability()),
        "fish.paralyze": draw(st.booleans()),
        "capture_swim.permissive_time_fraction": draw(_probability()),
        "capture_swim.permissive_angle": draw(_in_range("capture_swim.permissive_angle")),
        "capture_swim.energy_cost_scaling": draw(_in_range("capture_swim.energy_cost_scaling")),
        "prey.sensing_distance": draw(_in_range("prey.sensing_distance")),
        "prey.max_turning_angle": draw(_in_range("prey.max_turning_angle")),
        "prey.p_escape": draw(_probability()),
        "prey.p_switch": draw(_probability()),
        "prey.p_large_turn": draw(_probability()),
        "prey.velocity_slow": draw(_in_range("prey.velocity_slow")),
        "prey.velocity_fast": draw(_in_range("prey.velocity_fast")),
        "prey.velocity_jump": draw(_in_range("prey.velocity_jump")),
        "prey.safe_duration": draw(st.integers(0, MAX_STEPS)),
        "prey.p_death": draw(_probability()),
        "predator.velocity": draw(_in_range("predator.velocity")),
        "predator.distance_from_fish": draw(_in_range("predator.distance_from_fish")),
    }
    p_slow = draw(_probability())
    out["prey.p_slow"] = p_slow
    out["prey.p_fast"] = draw(st.floats(0.0, 1.0 - p_slow))
    # Epochs keep room in the episode, so the world keeps its predator (same structure).
    immunity = draw(st.integers(0, MAX_STEPS - 2))
    duration = draw(st.integers(1, MAX_STEPS - 1 - immunity))
    out["predator.immunity_steps"] = immunity
    out["predator.epoch_duration"] = duration
    out["max_sim_steps_per_episode"] = draw(st.integers(immunity + duration + 1, MAX_STEPS))
    out["predator.probability_per_epoch_step"] = draw(st.floats(1e-6, 1.0))
    for key in ("reward.predator_caught", "reward.predator_avoidance", "reward.consumption",
                "reward.energy_use_factor", "reward.wall_touch", "reward.salt_factor",
                "energy.distance_factor", "energy.angle_factor", "energy.baseline",
                "salt.concentration_decay"):  # fmt: skip
        out[key] = draw(_in_range(key))
    return out


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(overrides=traced_overrides(), seed=st.integers(0, 2**31 - 1), action=st.integers(0, 20))
def test_random_accepted_values_run_a_step_with_finite_observations(
    vision_world, overrides, seed, action
):
    base, env, reset, step = vision_world
    config = load_config(base, overrides)  # accepted: no ConfigError
    params, static = make_params(config, env.actions)
    assert static == env.static  # traced settings only: the same compiled world
    key = jax.random.PRNGKey(seed)
    state, ts = reset(key, params)
    for i in range(2):
        state, ts = step(state, np.int32(action), jax.random.fold_in(key, i), params)
        visual, internal = (np.asarray(x) for x in ts.observation.observation)
        assert np.isfinite(visual).all() and np.isfinite(internal).all(), overrides
        assert np.isfinite(np.asarray(ts.reward)), overrides
        assert np.isfinite(np.asarray([state.fish.x, state.fish.y])).all(), overrides
