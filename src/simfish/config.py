"""Typed, validated environment configuration.

A configuration is a YAML file with the sections of SPEC section 2. Loading it
gives an immutable :class:`SimFishConfig` made of frozen dataclasses, one per
section, whose field names are the users' YAML keys. For old scripts the config
converts to and from the flat ``section_key`` dict (``prey_num``,
``arena_width``, ...).

Every problem with the input is raised as :class:`ConfigError` with a one-line
message naming the file, the dotted key and what is wrong.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from simfish.errors import SimFishError

PRESETS = (
    "normal",
    "stage1",
    "sparse",
    "empty",
    "empty_high_energy",
    "tethered",
    "tethered_prey",
    "tethered_pred",
    "tethered_prey_pred",
    "small",
)


class ConfigError(SimFishError, ValueError):
    """A configuration file, override or flat dict is invalid."""


@dataclasses.dataclass(frozen=True)
class ArenaConfig:
    """The arena: size, light and dark regions, sediment and water optics."""

    width: int
    height: int
    dark_fraction: float
    light_gradient: float
    dark_gain: float
    light_decay_rate: float
    uv_object_intensity: float
    bottom_intensity: float
    sediment_sigma: float
    water_uv_scatter: float
    wall_bounce: bool


@dataclasses.dataclass(frozen=True)
class FishConfig:
    """The fish's body and optional start / energy overrides.

    ``fixed_energy_level`` is written as in the users' files: ``true`` (energy
    never changes and stays at ``init_energy_level``, default 1) or ``false``;
    a number is accepted too, meaning "fixed at this level".
    """

    mouth_radius: float
    head_radius: float
    tail_length: float
    elevation: float
    deterministic_action: bool
    fixed_energy_level: bool | float | None = None
    init_energy_level: float | None = None
    init_x: float | None = None
    init_y: float | None = None
    init_angle: float | None = None
    paralyze: bool = False

    @property
    def energy_is_fixed(self) -> bool:
        """Whether the energy never changes (``fixed_energy_level`` true or a number)."""
        return self.fixed_energy_level is not None and self.fixed_energy_level is not False

    @property
    def start_energy(self) -> float:
        """Energy at the start of an episode (the fixed level when energy is fixed)."""
        level = self.fixed_energy_level
        if level is not None and not isinstance(level, bool):
            return float(level)
        return 1.0 if self.init_energy_level is None else float(self.init_energy_level)


@dataclasses.dataclass(frozen=True)
class EyesConfig:
    """Photoreceptor layout and optics of the two eyes (radians unless noted)."""

    verg_angle: float
    visual_field: float
    biasx: float
    shot_noise: bool
    uv_photoreceptor_rf_size: float
    red_photoreceptor_rf_size: float
    sz_rf_spacing: float
    sz_size: float
    sz_oversampling_factor: float
    sz_edge_steepness: float
    viewing_elevations: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class CaptureSwimConfig:
    """When a capture bout can eat prey, and what it costs."""

    permissive_time_fraction: float
    permissive_angle: float
    energy_cost_scaling: float


@dataclasses.dataclass(frozen=True)
class PreyConfig:
    """Prey (paramecia): body, population, gaits, escapes and reproduction."""

    radius: float
    num: int
    sensing_distance: float
    max_turning_angle: float
    cloud_num: int
    p_slow: float
    p_fast: float
    p_escape: float
    p_switch: float
    p_large_turn: float
    velocity_slow: float
    velocity_fast: float
    velocity_jump: float
    reproduction_mode: bool
    birth_rate: float
    cloud_region_size: float
    safe_duration: int
    p_death: float
    stim_file: str | None = None


@dataclasses.dataclass(frozen=True)
class PredatorConfig:
    """The predator: body, speed and attack epochs."""

    radius: float
    velocity: float
    immunity_steps: int
    distance_from_fish: float
    epoch_num: int
    epoch_duration: int
    probability_per_epoch_step: float
    stim_file: str | None = None


@dataclasses.dataclass(frozen=True)
class SaltConfig:
    """The salt gradient around a random source."""

    enabled: bool
    concentration_decay: float


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """Reward per event or per unit."""

    predator_caught: float
    predator_avoidance: float
    consumption: float
    energy_use_factor: float
    wall_touch: float
    salt_factor: float


@dataclasses.dataclass(frozen=True)
class EnergyConfig:
    """Energy use per bout: distance (mm), angle (rad) and a baseline."""

    distance_factor: float
    angle_factor: float
    baseline: float


SECTIONS: dict[str, type] = {
    "arena": ArenaConfig,
    "fish": FishConfig,
    "eyes": EyesConfig,
    "capture_swim": CaptureSwimConfig,
    "prey": PreyConfig,
    "predator": PredatorConfig,
    "salt": SaltConfig,
    "reward": RewardConfig,
    "energy": EnergyConfig,
}


@dataclasses.dataclass(frozen=True)
class SimFishConfig:
    """A complete, validated environment configuration (immutable, hashable)."""

    test_sensory_system: bool
    max_sim_steps_per_episode: int
    phys_steps_per_sim_step: int
    sim_step_duration_seconds: float
    arena: ArenaConfig
    fish: FishConfig
    eyes: EyesConfig
    capture_swim: CaptureSwimConfig
    prey: PreyConfig
    predator: PredatorConfig
    salt: SaltConfig
    reward: RewardConfig
    energy: EnergyConfig
    source: str = dataclasses.field(default="<dict>", compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (YAML-ready), without the ``source`` bookkeeping."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "source":
                continue
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                value = {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
            out[f.name] = _plain(value)
        return out

    def to_yaml(self) -> str:
        """The configuration as YAML text that :func:`load_config` reads back."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def to_flat_dict(self) -> dict[str, Any]:
        """The users' flat ``section_key`` dict (e.g. ``prey_num``, ``arena_width``)."""
        flat: dict[str, Any] = {}
        for key, value in self.to_dict().items():
            if isinstance(value, dict):
                for sub, sub_value in value.items():
                    flat[f"{key}_{sub}"] = sub_value
            else:
                flat[key] = value
        return flat

    def replace(self, overrides: Mapping[str, Any]) -> SimFishConfig:
        """A new config with dotted-key overrides applied and validated."""
        return load_config(self, overrides)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# Building and type checking.


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Checks ``value`` against the annotation ``tp``; returns the stored value."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if bool in args and len(args) > 1:  # e.g. bool | float: a boolean or a number
            if isinstance(value, bool):
                return value
            try:
                return _coerce(value, args[1], where)
            except ConfigError:
                raise ConfigError(
                    f"{where}: expected true, false or a number, got {value!r}"
                ) from None
        return _coerce(value, args[0], where)
    if origin is tuple:
        if not isinstance(value, list | tuple) or not value:
            raise ConfigError(f"{where}: expected a non-empty list of numbers, got {value!r}")
        return tuple(_coerce(v, float, where) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config annotation {_type_name(tp)}")  # pragma: no cover


def _build(cls: type, raw: Any, source: str, prefix: str) -> Any:
    """Builds the dataclass ``cls`` from a mapping, naming ``source`` in errors."""
    where = prefix.rstrip(".") or "top level"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: {where}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key '{prefix}{unknown[0]}' (known keys in {where}: "
            f"{', '.join(sorted(fields))})"
        )
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        key = f"{prefix}{name}"
        if name not in raw:
            required = (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            )
            if required:
                raise ConfigError(f"{source}: missing required key '{key}'")
            continue
        tp = hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, raw[name], source, f"{key}.")
        else:
            try:
                kwargs[name] = _coerce(raw[name], tp, f"'{key}'")
            except ConfigError as err:
                raise ConfigError(f"{source}: {err}") from None
    return cls(**kwargs)


# ---------------------------------------------------------------------------
# Validation of values and of their consistency.


def _check(ok: bool, source: str, key: str, value: Any, must: str) -> None:
    if not ok:
        raise ConfigError(f"{source}: '{key}' = {value!r} {must}")


#: The largest plausible value of a count or a step number (well inside int32).
MAX_STEPS = 10_000_000
#: Largest arena side (px); 10 px = 1 mm, so 10 m.
MAX_ARENA_PX = 100_000
#: Largest radius (px) of a viewing circle on the sediment, elevation * tan(viewing elevation).
MAX_VIEWING_RADIUS_PX = 50_000

_GT, _GE = ">", ">="

#: Allowed range of every number: dotted key -> (low, lower bound kind, high).
#: Bounds are plausibility limits that keep every accepted config runnable
#: (finite, int32-safe, a step of bounded cost); probabilities are checked apart.
RANGES: dict[str, tuple[float, str, float]] = {
    "max_sim_steps_per_episode": (0, _GT, MAX_STEPS),
    "phys_steps_per_sim_step": (0, _GT, 1000),
    "sim_step_duration_seconds": (0.001, _GE, 10),
    "arena.width": (0, _GT, MAX_ARENA_PX),
    "arena.height": (0, _GT, MAX_ARENA_PX),
    "arena.light_gradient": (0, _GE, MAX_ARENA_PX),
    "arena.dark_gain": (0, _GE, 100),
    "arena.light_decay_rate": (1e-6, _GE, 100),
    "arena.uv_object_intensity": (0, _GE, 1e6),
    "arena.bottom_intensity": (0, _GE, 1e6),
    "arena.sediment_sigma": (0, _GE, MAX_ARENA_PX),
    "arena.water_uv_scatter": (0, _GE, 100),
    "fish.mouth_radius": (0.01, _GE, 1000),
    "fish.head_radius": (0.01, _GE, 1000),
    "fish.tail_length": (0, _GE, 10_000),
    "fish.elevation": (0.01, _GE, 10_000),
    "fish.init_angle": (-1000, _GE, 1000),
    "eyes.verg_angle": (-360, _GE, 360),
    "eyes.visual_field": (1, _GE, 360),
    "eyes.biasx": (0, _GE, 1000),
    "eyes.uv_photoreceptor_rf_size": (1e-4, _GE, 0.5),
    "eyes.red_photoreceptor_rf_size": (1e-4, _GE, 0.5),
    "eyes.sz_rf_spacing": (0.005, _GE, 1),
    "eyes.sz_size": (0, _GE, 2 * math.pi),
    "eyes.sz_oversampling_factor": (0.01, _GE, 100),
    "eyes.sz_edge_steepness": (0, _GE, 1000),
    "capture_swim.permissive_angle": (0, _GE, 2 * math.pi),
    "capture_swim.energy_cost_scaling": (0, _GE, 1e6),
    "prey.radius": (0.01, _GE, 1000),
    "prey.num": (0, _GE, 100_000),
    "prey.sensing_distance": (0, _GE, MAX_ARENA_PX),
    "prey.max_turning_angle": (0, _GE, 2 * math.pi),
    "prey.cloud_num": (0, _GE, 10_000),
    "prey.velocity_slow": (0, _GE, 100_000),
    "prey.velocity_fast": (0, _GE, 100_000),
    "prey.velocity_jump": (0, _GE, 100_000),
    "prey.cloud_region_size": (0, _GE, MAX_ARENA_PX),
    "prey.safe_duration": (0, _GE, MAX_STEPS),
    "predator.radius": (0.01, _GE, MAX_ARENA_PX),
    "predator.velocity": (0, _GE, 100_000),
    "predator.immunity_steps": (0, _GE, MAX_STEPS),
    "predator.distance_from_fish": (0, _GE, MAX_ARENA_PX),
    "predator.epoch_num": (0, _GE, 1000),
    "predator.epoch_duration": (0, _GE, MAX_STEPS),
    "salt.concentration_decay": (0, _GE, 100),
    "reward.predator_caught": (-1e6, _GE, 1e6),
    "reward.predator_avoidance": (-1e6, _GE, 1e6),
    "reward.consumption": (-1e6, _GE, 1e6),
    "reward.energy_use_factor": (-1e6, _GE, 1e6),
    "reward.wall_touch": (-1e6, _GE, 1e6),
    "reward.salt_factor": (-1e6, _GE, 1e6),
    "energy.distance_factor": (0, _GE, 100),
    "energy.angle_factor": (0, _GE, 100),
    "energy.baseline": (0, _GE, 100),
}

#: Keys that are probabilities in [0, 1].
PROBABILITIES = (
    "arena.dark_fraction",
    "capture_swim.permissive_time_fraction",
    "prey.p_slow",
    "prey.p_fast",
    "prey.p_escape",
    "prey.p_switch",
    "prey.p_large_turn",
    "prey.birth_rate",
    "prey.p_death",
    "predator.probability_per_epoch_step",
)


def config_value(cfg: SimFishConfig, dotted: str) -> Any:
    """The value of a dotted key (``prey.num``) of a config."""
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def _range_text(low: float, kind: str, high: float) -> str:
    return f"{'[' if kind == _GE else '('}{low:g}, {high:g}]"


def _validate(cfg: SimFishConfig) -> None:
    """Raises ConfigError for impossible, implausible or inconsistent values."""
    src = cfg.source
    for key, (low, kind, high) in RANGES.items():
        value = config_value(cfg, key)
        if value is None:
            continue
        allowed = f"(allowed range {_range_text(low, kind, high)})"
        if kind == _GT or low > 0:  # a positive quantity: say so first
            _check(value > min(low, 0), src, key, value, f"must be > {min(low, 0):g} {allowed}")
        if kind == _GT:
            _check(value > low, src, key, value, f"must be > {low:g} {allowed}")
        else:
            _check(value >= low, src, key, value, f"must be >= {low:g} {allowed}")
        _check(value <= high, src, key, value, f"must be <= {high:g} {allowed}")
    for key in PROBABILITIES:
        value = config_value(cfg, key)
        _check(0.0 <= value <= 1.0, src, key, value, "must be a probability in [0, 1]")
    p_sum = cfg.prey.p_slow + cfg.prey.p_fast
    _check(
        p_sum <= 1.0 + 1e-9, src, "prey.p_slow + prey.p_fast", round(p_sum, 12), "must be <= 1"
    )
    for key in ("fixed_energy_level", "init_energy_level"):
        value = getattr(cfg.fish, key)
        if value is not None and not isinstance(value, bool):
            _check(0.0 <= value <= 1.0, src, f"fish.{key}", value, "must be in [0, 1]")
    for i, elev in enumerate(cfg.eyes.viewing_elevations):
        radius = cfg.fish.elevation * math.tan(math.radians(elev)) if 0 < elev < 90 else 0.0
        _check(
            radius <= MAX_VIEWING_RADIUS_PX,
            src,
            f"eyes.viewing_elevations[{i}]",
            elev,
            f"with fish.elevation = {cfg.fish.elevation:g} looks at a circle of radius "
            f"{radius:.6g} px; elevation * tan(angle) must be <= {MAX_VIEWING_RADIUS_PX} px",
        )
    margin = 2 * (cfg.fish.head_radius + cfg.fish.mouth_radius)
    for key, value in (("arena.width", cfg.arena.width), ("arena.height", cfg.arena.height)):
        _check(
            value > 2 * 40 + margin,
            src,
            key,
            value,
            f"is too small: the arena must exceed the 40 px start margin on both sides ({80 + margin:g} px)",
        )
    for key, value, size in (
        ("fish.init_x", cfg.fish.init_x, cfg.arena.width),
        ("fish.init_y", cfg.fish.init_y, cfg.arena.height),
    ):
        if value is not None:
            _check(0 <= value <= size, src, key, value, f"must lie inside the arena [0, {size}]")
    for i, elev in enumerate(cfg.eyes.viewing_elevations):
        _check(
            0 < elev < 90, src, f"eyes.viewing_elevations[{i}]", elev, "must be in (0, 90) degrees"
        )
    _check(
        len(cfg.eyes.viewing_elevations) == 2,
        src,
        "eyes.viewing_elevations",
        list(cfg.eyes.viewing_elevations),
        "must hold exactly two elevations (the observation has two red channels)",
    )
    _check(
        cfg.eyes.visual_field < 360,
        src,
        "eyes.visual_field",
        cfg.eyes.visual_field,
        "must be < 360 degrees",
    )
    if cfg.prey.cloud_num > 0:
        for key, size in (("arena.width", cfg.arena.width), ("arena.height", cfg.arena.height)):
            _check(
                cfg.prey.cloud_region_size < size,
                src,
                "prey.cloud_region_size",
                cfg.prey.cloud_region_size,
                f"must be smaller than {key} = {size} when prey.cloud_num > 0",
            )
    for key in ("prey.stim_file", "predator.stim_file"):
        section, name = key.split(".")
        path = getattr(getattr(cfg, section), name)
        if path is not None:
            _check(os.path.isfile(path), src, key, path, "does not name an existing file")


# ---------------------------------------------------------------------------
# Overrides, files and presets.


def parse_override(text: str) -> tuple[str, Any]:
    """Parses a CLI override ``section.key=value`` (value read as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. prey.num=50")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key, value


def _apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any], source: str) -> None:
    """Sets dotted keys (``prey.num``) in the nested raw dict, in place."""
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node: Any = raw
        for depth, part in enumerate(parts[:-1]):
            if part not in SECTIONS or depth > 0 or not isinstance(node.get(part), dict):
                raise ConfigError(f"{source}: override '{dotted}': unknown section '{part}'")
            node = node[part]
        leaf = parts[-1]
        section_cls = SECTIONS.get(parts[0]) if len(parts) == 2 else SimFishConfig
        if len(parts) > 2 or section_cls is None:
            raise ConfigError(f"{source}: override '{dotted}': unknown key")
        known = {f.name for f in dataclasses.fields(section_cls) if f.name != "source"}
        if leaf not in known or (len(parts) == 1 and leaf in SECTIONS):
            raise ConfigError(f"{source}: override '{dotted}': unknown key")
        node[leaf] = value


def _resolve_stim_files(raw: dict[str, Any], folder: Path) -> None:
    for section in ("prey", "predator"):
        sec = raw.get(section)
        if isinstance(sec, dict) and isinstance(sec.get("stim_file"), str):
            path = Path(os.path.expanduser(sec["stim_file"]))
            if not path.is_absolute():
                path = folder / path
            sec["stim_file"] = str(path.resolve())


def preset_path(name: str) -> Path:
    """The path of a preset shipped with the package."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}' (presets: {', '.join(PRESETS)})")
    return Path(str(resources.files("simfish") / "presets" / f"{name}.yaml"))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: unreadable YAML{at}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a YAML mapping of sections, got {type(raw).__name__}")
    return raw


def from_dict(
    raw: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    source: str = "<dict>",
    folder: str | os.PathLike | None = None,
) -> SimFishConfig:
    """Builds and validates a config from a nested dict (as read from YAML)."""
    raw = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in raw.items()}
    if overrides:
        _apply_overrides(raw, overrides, source)
    _resolve_stim_files(raw, Path(folder) if folder is not None else Path.cwd())
    cfg = _build(SimFishConfig, raw, source, "")
    cfg = dataclasses.replace(cfg, source=source)
    _validate(cfg)
    return cfg


def load_config(
    name_or_path: str | os.PathLike | SimFishConfig,
    overrides: Mapping[str, Any] | None = None,
) -> SimFishConfig:
    """Loads a preset name, a YAML file or an existing config, then applies overrides.

    Args:
      name_or_path: a preset name (see ``PRESETS``), a path to a YAML file, or a
        ``SimFishConfig`` to derive from.
      overrides: dotted keys to replace, e.g. ``{"prey.num": 50}``.

    Returns:
      The validated, immutable configuration.

    Raises:
      ConfigError: naming the file, key and problem.
    """
    if isinstance(name_or_path, SimFishConfig):
        return from_dict(name_or_path.to_dict(), overrides, source=name_or_path.source)
    text = os.fspath(name_or_path)
    if text in PRESETS:
        path = preset_path(text)
    else:
        path = Path(os.path.expanduser(text))
        if not path.exists():
            raise ConfigError(
                f"{text}: no such config file, and not a preset name (presets: {', '.join(PRESETS)})"
            )
    return from_dict(_read_yaml(path), overrides, source=str(path), folder=path.parent)


def from_flat_dict(flat: Mapping[str, Any], source: str = "<flat dict>") -> SimFishConfig:
    """Builds a config from the users' flat ``section_key`` dict."""
    raw: dict[str, Any] = {}
    top_keys = {f.name for f in dataclasses.fields(SimFishConfig)} - set(SECTIONS) - {"source"}
    for key, value in flat.items():
        if key in top_keys:
            raw[key] = value
            continue
        for section in sorted(SECTIONS, key=len, reverse=True):
            if key.startswith(section + "_"):
                raw.setdefault(section, {})[key[len(section) + 1 :]] = value
                break
        else:
            raise ConfigError(f"{source}: unknown flat key '{key}'")
    return from_dict(raw, source=source)


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The users' flat ``section_key`` dict for a preset name or YAML file."""
    return load_config(path).to_flat_dict()
