"""Training configuration: the users' R2D2 defaults in one dataclass."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from simfish.errors import SimFishError


class TrainingConfigError(SimFishError, ValueError):
    """A training option is unknown or has an impossible value."""


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters of R2D2 training (defaults: the users' runs, SPEC 6)."""

    # Sequences.
    burn_in_length: int = 8
    trace_length: int = 75
    sequence_period: int = 20

    # Learner.
    batch_size: int = 32
    learning_rate: float = 1e-4
    adam_eps: float = 1e-3
    target_update_period: int = 1200
    bootstrap_n: int = 5
    discount: float = 0.997
    importance_sampling_exponent: float = 0.6
    max_priority_weight: float = 0.9
    clip_rewards: bool = False
    max_abs_reward: float = 1.0

    # Replay.
    priority_exponent: float = 0.9
    samples_per_insert: float = 1.0
    min_replay_size: int = 256  # sequences before learning starts
    max_replay_size: int = 20_000  # sequences kept

    # Actors.
    num_envs: int = 64
    variable_update_period: int = 100  # batched actor steps between parameter pulls
    epsilon_base: float = 0.4  # Ape-X: eps_i = base ** (1 + alpha * i / (N - 1))
    epsilon_alpha: float = 7.0
    evaluation_epsilon: float = 1e-3

    # Bookkeeping.
    seed: int = 0
    checkpoint_every_minutes: float = 10.0
    log_every_seconds: float = 10.0

    def __post_init__(self):
        for name in (
            "burn_in_length",
            "trace_length",
            "sequence_period",
            "batch_size",
            "target_update_period",
            "bootstrap_n",
            "num_envs",
            "variable_update_period",
            "max_replay_size",
        ):
            value = getattr(self, name)
            if value < (0 if name == "burn_in_length" else 1):
                raise TrainingConfigError(f"training option '{name}' = {value} must be >= 1")
        if self.sequence_period > self.sequence_length:
            raise TrainingConfigError(
                f"training option 'sequence_period' = {self.sequence_period} must be <= "
                f"burn_in_length + trace_length + 1 = {self.sequence_length}"
            )
        if self.bootstrap_n >= self.trace_length:
            raise TrainingConfigError(
                f"training option 'bootstrap_n' = {self.bootstrap_n} must be < "
                f"trace_length = {self.trace_length}"
            )
        for name in ("discount", "importance_sampling_exponent", "max_priority_weight",
                     "priority_exponent", "evaluation_epsilon", "epsilon_base"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise TrainingConfigError(f"training option '{name}' = {value} must be in [0, 1]")
        if self.learning_rate <= 0 or self.samples_per_insert <= 0:
            raise TrainingConfigError(
                "training options 'learning_rate' and 'samples_per_insert' must be > 0"
            )
        if self.min_replay_size < self.batch_size:
            raise TrainingConfigError(
                f"training option 'min_replay_size' = {self.min_replay_size} must be >= "
                f"batch_size = {self.batch_size}"
            )
        if self.min_replay_size > self.max_replay_size:
            raise TrainingConfigError(
                f"training option 'min_replay_size' = {self.min_replay_size} must be <= "
                f"max_replay_size = {self.max_replay_size}"
            )

    @property
    def sequence_length(self) -> int:
        """Steps per replayed sequence: burn-in + trace + 1 (for bootstrapping)."""
        return self.burn_in_length + self.trace_length + 1

    def replace(self, overrides: Mapping[str, Any]) -> TrainingConfig:
        """A copy with some options changed (values checked)."""
        known = {f.name: f for f in dataclasses.fields(self)}
        changes = {}
        for key, value in overrides.items():
            if key not in known:
                raise TrainingConfigError(
                    f"unknown training option '{key}' (options: {', '.join(sorted(known))})"
                )
            default = getattr(self, key)
            if isinstance(default, bool):
                ok = isinstance(value, bool)
            elif isinstance(default, int):
                ok = isinstance(value, int) and not isinstance(value, bool)
            else:
                ok = isinstance(value, int | float) and not isinstance(value, bool)
                value = float(value) if ok else value
            if not ok:
                raise TrainingConfigError(
                    f"training option '{key}': expected {type(default).__name__}, got {value!r}"
                )
            changes[key] = value
        return dataclasses.replace(self, **changes)

    def differences(self, other: TrainingConfig) -> dict[str, tuple[Any, Any]]:
        """``{option: (this value, other value)}`` for every option that differs."""
        return {
            f.name: (getattr(self, f.name), getattr(other, f.name))
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        }

    def to_json(self) -> str:
        """JSON text of all options."""
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> TrainingConfig:
        """Reads a file written from :meth:`to_json`."""
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise TrainingConfigError(f"{path}: cannot read training config ({err})") from None
        try:
            return cls().replace(data)
        except TrainingConfigError as err:
            raise TrainingConfigError(f"{path}: {err}") from None


#: Options a run may change when it resumes: they set when checkpoints and log
#: rows are written, not what is learned. (``--max-minutes``, ``--steps`` and the
#: progress bar are arguments of ``train``, not options.)
NON_LEARNING_OPTIONS: frozenset[str] = frozenset({"checkpoint_every_minutes", "log_every_seconds"})

#: Named sets of training options. ``users``: the users' own settings (the
#: defaults). ``quick``: short sequences, a small replay, a faster learning
#: rate and 8 sampled sequences per inserted one (the users sample 1), for
#: demos, tutorials and smoke tests on small worlds: on ``small`` it learned to
#: hunt in 24,000 env steps (about a minute of 2 CPU cores) with each of the 8
#: seeds tried (docs/training_speed.md).
PROFILES: dict[str, dict[str, Any]] = {
    "users": {},
    "quick": {
        "num_envs": 32,
        "burn_in_length": 4,
        "trace_length": 20,
        "sequence_period": 10,
        "bootstrap_n": 3,
        "batch_size": 32,
        "min_replay_size": 64,
        "max_replay_size": 4000,
        "learning_rate": 5e-4,
        "samples_per_insert": 8.0,
        "target_update_period": 100,
        "variable_update_period": 20,
    },
}


def training_profile(name: str, overrides: Mapping[str, Any] | None = None) -> TrainingConfig:
    """The named training profile (see ``PROFILES``), with option overrides."""
    if name not in PROFILES:
        raise TrainingConfigError(
            f"unknown training profile '{name}' (profiles: {', '.join(PROFILES)})"
        )
    return TrainingConfig().replace({**PROFILES[name], **(overrides or {})})
