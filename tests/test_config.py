"""Configuration loading, round trips and every class of bad input."""

import dataclasses

import pytest
import yaml

from simfish import config as cfgmod
from simfish.config import ConfigError, load_config


@pytest.fixture(scope="module")
def normal():
    return load_config("normal")


def _write(tmp_path, raw, name="mine.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize("name", cfgmod.PRESETS)
def test_every_preset_loads_and_round_trips_through_yaml(name, tmp_path):
    cfg = load_config(name)
    assert isinstance(cfg, cfgmod.SimFishConfig)
    path = tmp_path / "copy.yaml"
    path.write_text(cfg.to_yaml())
    assert load_config(path) == cfg
    assert cfgmod.from_flat_dict(cfg.to_flat_dict()) == cfg
    hash(cfg)  # usable as a static jit argument


def test_normal_preset_has_the_users_values(normal):
    assert (normal.arena.width, normal.arena.height) == (2500, 2500)
    assert normal.arena.dark_fraction == 0.3
    assert normal.prey.num == 120 and normal.prey.cloud_num == 0
    assert normal.prey.reproduction_mode is True
    assert normal.predator.probability_per_epoch_step == 0.07
    assert normal.salt.enabled is True
    assert normal.eyes.viewing_elevations == (50.0, 75.0)
    assert normal.max_sim_steps_per_episode == 1000
    assert normal.phys_steps_per_sim_step == 100
    assert normal.energy.baseline == 0.00002


def test_presets_differ_from_normal_as_documented(normal):
    stage1 = load_config("stage1")
    assert stage1.reward.consumption == 12 and stage1.reward.wall_touch == -10
    assert dataclasses.replace(stage1, reward=normal.reward) == normal
    sparse = load_config("sparse")
    assert (sparse.prey.num, sparse.prey.cloud_num, sparse.prey.cloud_region_size) == (30, 3, 200)
    assert sparse.prey.reproduction_mode is False
    empty = load_config("empty")
    assert (empty.arena.width, empty.prey.num, empty.salt.enabled) == (5000, 0, False)
    assert empty.arena.dark_fraction == 0 and empty.predator.probability_per_epoch_step == 0
    assert load_config("empty_high_energy").fish.fixed_energy_level == 1.0
    tethered = load_config("tethered")
    assert tethered.fish.paralyze and tethered.fish.fixed_energy_level == 1.0
    assert (tethered.fish.init_x, tethered.fish.init_y, tethered.fish.init_angle) == (
        2500.0,
        2500.0,
        1.5707,
    )
    both = load_config("tethered_prey_pred")
    assert both.prey.stim_file.endswith("stim_prey.h5")
    assert both.predator.stim_file.endswith("stim_predator.h5")
    assert load_config("tethered_prey").predator.stim_file is None
    assert load_config("tethered_pred").prey.stim_file is None


def test_flat_dict_uses_section_prefixes(normal):
    flat = normal.to_flat_dict()
    assert flat["prey_num"] == 120
    assert flat["arena_width"] == 2500
    assert flat["capture_swim_permissive_angle"] == 0.785
    assert flat["max_sim_steps_per_episode"] == 1000
    assert cfgmod.read_config_file("normal") == flat


def test_overrides_use_dotted_keys(normal):
    cfg = load_config("normal", {"prey.num": 50, "max_sim_steps_per_episode": 20})
    assert cfg.prey.num == 50 and cfg.max_sim_steps_per_episode == 20
    assert normal.replace({"salt.enabled": False}).salt.enabled is False
    assert cfgmod.parse_override("prey.num=50") == ("prey.num", 50)
    assert cfgmod.parse_override("salt.enabled=false") == ("salt.enabled", False)
    assert cfgmod.parse_override("eyes.viewing_elevations=[40, 70]") == (
        "eyes.viewing_elevations",
        [40, 70],
    )


def test_relative_stim_file_resolves_against_the_config_folder(tmp_path):
    raw = load_config("tethered").to_dict()
    (tmp_path / "stims").mkdir()
    (tmp_path / "stims" / "p.h5").write_bytes(b"")
    raw["prey"]["stim_file"] = "stims/p.h5"
    cfg = load_config(_write(tmp_path, raw))
    assert cfg.prey.stim_file == str((tmp_path / "stims" / "p.h5").resolve())


def _raw(normal):
    return normal.to_dict()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r["prey"].update(colour=3), "unknown key 'prey.colour'"),
        (lambda r: r.update(bogus=1), "unknown key 'bogus'"),
        (lambda r: r["prey"].pop("num"), "missing required key 'prey.num'"),
        (lambda r: r.pop("arena"), "missing required key 'arena'"),
        (lambda r: r["prey"].update(num=1.5), "'prey.num': expected an integer, got 1.5"),
        (lambda r: r["prey"].update(num="many"), "'prey.num': expected an integer"),
        (lambda r: r["salt"].update(enabled="yes"), "'salt.enabled': expected true or false"),
        (lambda r: r["prey"].update(radius=-1), "'prey.radius' = -1.0 must be > 0"),
        (lambda r: r["prey"].update(p_escape=1.5), "'prey.p_escape' = 1.5 must be a probability"),
        (
            lambda r: r["prey"].update(p_slow=0.9, p_fast=0.3),
            "'prey.p_slow + prey.p_fast' = 1.2 must be <= 1",
        ),
        (lambda r: r["arena"].update(width=50), "'arena.width' = 50 is too small"),
        (lambda r: r["fish"].update(init_x=9000.0), "'fish.init_x' = 9000.0 must lie inside"),
        (lambda r: r["eyes"].update(viewing_elevations=[50]), "must hold exactly two"),
        (lambda r: r["prey"].update(stim_file="nope.h5"), "does not name an existing file"),
        (lambda r: r.update(arena=[1, 2]), "arena: expected a mapping"),
    ],
)
def test_bad_values_name_the_file_and_key(normal, tmp_path, mutate, message):
    raw = _raw(normal)
    mutate(raw)
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert message in text
    assert str(path) in text
    assert "\n" not in text


def test_unknown_override_key_is_an_error():
    with pytest.raises(ConfigError, match="override 'prey.colour': unknown key"):
        load_config("normal", {"prey.colour": 1})
    with pytest.raises(ConfigError, match="unknown section 'fins'"):
        load_config("normal", {"fins.count": 1})
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        cfgmod.parse_override("prey.num")


def test_override_values_are_validated():
    with pytest.raises(ConfigError, match="'prey.num' = -3 must be >= 0"):
        load_config("normal", {"prey.num": -3})


def test_missing_file_unknown_preset_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such config file, and not a preset name"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        cfgmod.preset_path("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("arena: {width: 3\nprey: [")
    with pytest.raises(ConfigError, match=r"bad.yaml: unreadable YAML at line \d+"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="expected a YAML mapping"):
        load_config(scalar)


def test_unknown_flat_key_is_an_error(normal):
    flat = normal.to_flat_dict()
    flat["prey_colour"] = 3
    with pytest.raises(ConfigError, match="unknown key 'prey.colour'"):
        cfgmod.from_flat_dict(flat)
    flat.pop("prey_colour")
    flat["gills"] = 2
    with pytest.raises(ConfigError, match="unknown flat key 'gills'"):
        cfgmod.from_flat_dict(flat)


def test_config_is_immutable(normal):
    with pytest.raises(dataclasses.FrozenInstanceError):
        normal.prey.num = 3  # type: ignore[misc]
