"""The users' own config files load unmodified and run.

Each of the users' nine environment files is written here as they write it:
every section, the values of the shipped preset, unset options left out,
``fixed_energy_level: true`` with ``init_energy_level: 1.0`` and
``paralyze: true`` for the tethered and high-energy files, stimulus files
named relative to the config.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from simfish.config import ConfigError, load_config, preset_path
from simfish.wrappers.base_environment import BaseEnvironment

USER_FILES = (
    "normal",
    "stage1",
    "sparse",
    "empty",
    "empty_high_energy",
    "tethered",
    "tethered_prey",
    "tethered_pred",
    "tethered_prey_pred",
)
FIXED_ENERGY = {"empty_high_energy", "tethered", "tethered_prey", "tethered_pred",
                "tethered_prey_pred"}  # fmt: skip
TETHERED = {"tethered", "tethered_prey", "tethered_pred", "tethered_prey_pred"}


def _scalar(value) -> str:
    """One value in the users' YAML style (true/false, plain numbers, [a, b] lists)."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def user_yaml(name: str) -> str:
    """The users' file for environment ``name``: all sections, their spelling of options."""
    preset = load_config(name).to_dict()
    lines = [f"# {name}.yaml, as the users keep it"]
    for key, value in preset.items():
        if not isinstance(value, dict):
            lines.append(f"{key}: {_scalar(value)}")
            continue
        lines.append(f"{key}:")
        for sub, sub_value in value.items():
            if sub == "fixed_energy_level" and sub_value is not None:
                sub_value = True  # the users write a boolean; the level is init_energy_level
            if sub == "stim_file" and sub_value is not None:
                sub_value = sub_value.rsplit("/", 1)[-1]  # beside the config file
            if sub_value is None:
                continue  # unset options are simply not written
            lines.append(f"  {sub}: {_scalar(sub_value)}")
    if name in FIXED_ENERGY:
        idx = lines.index("  fixed_energy_level: true")
        if "  init_energy_level: 1.0" not in lines:
            lines.insert(idx + 1, "  init_energy_level: 1.0")
    return "\n".join(lines) + "\n"


def write_user_file(name: str, folder) -> str:
    """Writes the users' file (and the stimulus files it names) into ``folder``."""
    for stim in ("stim_prey.h5", "stim_predator.h5"):
        shutil.copy(preset_path("normal").parent / stim, folder / stim)
    path = folder / f"{name}.yaml"
    path.write_text(user_yaml(name))
    return str(path)


@pytest.mark.parametrize("name", USER_FILES)
def test_users_file_loads_unmodified_and_matches_the_preset(name, tmp_path):
    path = write_user_file(name, tmp_path)
    text = Path(path).read_text()
    assert set(yaml.safe_load(text)) >= {"arena", "fish", "eyes", "capture_swim", "prey",
                                         "predator", "salt", "reward", "energy"}  # fmt: skip
    config = load_config(path)
    preset = load_config(name)
    fish = config.fish
    if name in FIXED_ENERGY:
        assert "fixed_energy_level: true" in text and "init_energy_level: 1.0" in text
        assert fish.fixed_energy_level is True and fish.init_energy_level == 1.0
        assert fish.energy_is_fixed and fish.start_energy == 1.0
    else:
        assert not fish.energy_is_fixed and fish.start_energy == 1.0
    if name in TETHERED:
        assert "paralyze: true" in text and fish.paralyze
    # Same world as the shipped preset (stimulus paths resolve to the copies here).
    mine, theirs = config.to_dict(), preset.to_dict()
    for section in ("prey", "predator"):
        for d in (mine, theirs):
            if d[section]["stim_file"] is not None:
                d[section]["stim_file"] = d[section]["stim_file"].rsplit("/", 1)[-1]
    assert mine == theirs


def test_fixed_energy_level_forms(tmp_path):
    base = load_config("empty")
    fixed = load_config(base, {"fish.fixed_energy_level": True, "fish.init_energy_level": 0.4})
    assert fixed.fish.energy_is_fixed and fixed.fish.start_energy == 0.4
    default_level = load_config(base, {"fish.fixed_energy_level": True})
    assert default_level.fish.start_energy == 1.0  # init_energy_level defaults to 1
    off = load_config(base, {"fish.fixed_energy_level": False, "fish.init_energy_level": 0.3})
    assert not off.fish.energy_is_fixed and off.fish.start_energy == 0.3
    number = load_config(base, {"fish.fixed_energy_level": 0.7})  # fixed at that level
    assert number.fish.energy_is_fixed and number.fish.start_energy == 0.7
    assert "fixed_energy_level: true" in fixed.to_yaml()
    assert load_config(fixed) == fixed  # round trip
    with pytest.raises(ConfigError, match="'fish.fixed_energy_level': expected true, false or a n"):
        load_config(base, {"fish.fixed_energy_level": "yes"})
    with pytest.raises(ConfigError, match="'fish.fixed_energy_level' = 1.5 must be in"):
        load_config(base, {"fish.fixed_energy_level": 1.5})


def test_fixed_energy_boolean_reaches_the_world_parameters():
    from simfish.io.actions import Actions
    from simfish.world.params import make_params

    config = load_config("empty", {"fish.fixed_energy_level": True, "fish.init_energy_level": 0.4})
    params, _ = make_params(config, Actions.default())
    assert bool(params.fixed_energy)
    assert float(params.fixed_energy_level) == pytest.approx(0.4)
    assert float(params.init_energy) == pytest.approx(0.4)
    free, _ = make_params(load_config("empty"), Actions.default())
    assert not bool(free.fixed_energy) and float(free.init_energy) == 1.0


def run_user_file(path: str, name: str, steps: int = 3) -> None:
    """Runs a few steps with vision; checks finite observations and the file's energy / tether."""
    env = BaseEnvironment(path, seed=0, vision=True)
    ts = env.reset()
    x0, y0 = env.get_info()["fish_x"][0], env.get_info()["fish_y"][0]
    for i in range(steps):
        ts = env.step(i % env.env.num_actions)
        visual, internal = ts.observation.observation
        assert visual.shape[0] > 0 and np.isfinite(visual).all(), name
        assert np.isfinite(internal).all() and np.isfinite(ts.reward), name
        if name in FIXED_ENERGY:
            assert internal[1] == pytest.approx(1.0), name  # energy never changes
    if name in TETHERED:
        info = env.get_info()
        assert (info["fish_x"][0], info["fish_y"][0]) == (x0, y0)  # paralysed


def test_a_tethered_users_file_runs_with_vision(tmp_path):
    """The file with every user spelling (fixed energy, paralyze, both stimuli) runs."""
    run_user_file(write_user_file("tethered_prey_pred", tmp_path), "tethered_prey_pred")


@pytest.mark.slow
@pytest.mark.parametrize("name", USER_FILES)
def test_every_users_file_runs_with_vision(name, tmp_path):
    """Each of the nine files runs a few steps with vision (one compile each: slow)."""
    run_user_file(write_user_file(name, tmp_path), name)
