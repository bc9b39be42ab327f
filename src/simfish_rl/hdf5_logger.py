"""HDF5 episode logs: observers that record an episode and a logger that writes it.

The pieces, in the order an evaluation uses them:

- `EnvInfoKeep` observes one episode step by step (the environment's
  `get_info()`, the action, reward, observation and the actor's LSTM hidden
  state) and returns the episode as numpy arrays from `get_metrics()`.
- `SimpleEnvInfoKeep` reports the per-episode reward terms and predator counts
  as scalars (training metrics).
- `HDF5Logger.write(data)` turns one episode (the loop's summary merged with the
  observers' metrics) into one file `<dir>/logs/<label>/logs_<k>.hdf5`.

The file format (dataset names, shapes, dtypes, row alignment) is documented
for users in `docs/logs.md`; `simfish.io.logs` reads it back.

Row alignment of the per-step datasets, for an episode of T environment steps
(`episode_length` = T): `fish_x`, ..., `action`, `reward`, `vis_observation`
and `internal_state` have T + 1 rows; row 0 is the state right after `reset`
and row t >= 1 the state after the t-th step (`action[t]` is the action that
led to it, `reward[t]` the reward it gave). `actor_state` has T rows:
`actor_state[t]` is the LSTM hidden state after the network consumed
`vis_observation[t]`, i.e. the state that chose `action[t + 1]` (the last
observation is never consumed). This is the layout of the users' previous
tool, so their notebooks index the arrays the same way.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import logging
import math
import os
import time
import weakref
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import dm_env
import h5py
import numpy as np

from simfish.io.atomic import create_temp_beside
from simfish.io.logs import (  # one naming for writer and reader
    LOG_FILE_PATTERN,
    LOG_FILE_PREFIX,
    LOG_FILE_SUFFIX,
    episode_file_name,
)
from simfish.wrappers.metrics import REWARD_TERM_NAMES, SIMPLE_METRIC_NAMES, to_host_metric

_LOG = logging.getLogger(__name__)

__all__ = [
    "FORMAT_VERSION",
    "LOG_FILE_PATTERN",
    "LOG_FILE_PREFIX",
    "LOG_FILE_SUFFIX",
    "SEDIMENT_MODES",
    "EnvInfoKeep",
    "EnvLoopObserver",
    "HDF5Logger",
    "LoggedDataset",
    "Logger",
    "SimpleEnvInfoKeep",
    "existing_log_indices",
    "flat_env_variables",
    "nan_pad_rows",
    "sediment_dataset",
]

FORMAT_VERSION = 2
"""Version of the episode file layout, stored as the root attribute `format_version`.

1: `sediment` was a group of texture fields, an absent predator NaN, unset
config values empty attributes. 2: `sediment` is an image dataset (1, height,
width) with the texture fields as attributes, an absent predator is 0 with a
`predator_present` dataset, unset config values are absent, `actor_steps`."""

INFO_KEYS = (
    "fish_x",
    "fish_y",
    "fish_angle",
    "prey_x",
    "prey_y",
    "predator_x",
    "predator_y",
    "event_consumed_prey",
    "event_survived_predator",
    "event_captured_by_predator",
)
"""Keys `BaseEnvironment.get_info()` provides (other keys are logged too)."""

RAGGED_KEYS = ("prey_x", "prey_y")
"""Per-step keys whose rows vary in length; stored NaN-padded to [steps, max prey]."""

FLOAT_INFO_KEYS = ("fish_x", "fish_y", "fish_angle", "predator_x", "predator_y", *RAGGED_KEYS)
"""Per-step keys always stored as float64 (NaN marks 'absent')."""

STEP_KEYS = ("action", "reward", "vis_observation", "internal_state", "actor_state")
"""Per-step keys `EnvInfoKeep` adds itself; `get_info()` must not return them."""

REWARD_TERM_KEYS = REWARD_TERM_NAMES
"""Per-episode reward totals read from the environment by `SimpleEnvInfoKeep`."""

PREDATOR_COUNT_KEYS = tuple(name for name in SIMPLE_METRIC_NAMES if name not in REWARD_TERM_NAMES)
"""Per-episode predator counts read from the environment by `SimpleEnvInfoKeep`."""

ENV_VARIABLES_KEY = "env_variables"
"""Group holding the flat configuration as attributes."""

SEDIMENT_ATTRIBUTE = "sediment_record"
"""Environment attribute (or method) giving what regenerates the episode's sediment."""

SEDIMENT_IMAGE_METHOD = "sediment_image"
"""Environment method (or attribute) giving the episode's sediment as float [height, width]."""

SEDIMENT_MODES = ("image", "record")
"""What the `sediment` dataset holds: the image and its record, or only the record."""

PREDATOR_KEYS = ("predator_x", "predator_y")
"""Predator position keys: 0 where the predator is absent (as in the users' files)."""

PREDATOR_PRESENT_KEY = "predator_present"
"""Boolean per-step dataset: a predator is in the arena."""

_SEDIMENT_CHUNK = 256  # chunk edge (px) of the sediment image

_COMPRESS_MIN_SIZE = 1024  # arrays with fewer elements are stored uncompressed


# --------------------------------------------------------------------------
# Interfaces (acme-compatible shapes, without depending on acme).


class EnvLoopObserver(abc.ABC):
    """Observes an environment loop; the loop merges `get_metrics()` into its summary."""

    @abc.abstractmethod
    def observe_first(self, env: dm_env.Environment, timestep: dm_env.TimeStep) -> None:
        """Observes the initial state, right after `env.reset()`."""

    @abc.abstractmethod
    def observe(
        self,
        env: dm_env.Environment,
        timestep: dm_env.TimeStep,
        action: np.ndarray,
        actor_state: np.ndarray | None = None,
    ) -> None:
        """Records one environment step (`timestep` is the result of `action`)."""

    @abc.abstractmethod
    def get_metrics(self) -> dict[str, Any]:
        """Returns metrics collected for the current episode."""


class Logger(abc.ABC):
    """Writes mappings of named values somewhere (acme's `Logger` interface)."""

    @abc.abstractmethod
    def write(self, data: Mapping[str, Any]) -> None:
        """Writes data to its destination."""

    @abc.abstractmethod
    def close(self) -> None:
        """Closes the logger, not expecting any further write."""


class LoggedDataset(NamedTuple):
    """A value written as one dataset carrying attributes (the `sediment` entry).

    Attributes:
      data: a numeric array, or `h5py.Empty` for a dataset without data.
      attrs: attribute name -> number, numeric array or string.
    """

    data: Any
    attrs: Mapping[str, Any]


# --------------------------------------------------------------------------
# Helpers shared by the observers and the logger.


def nan_pad_rows(rows: Sequence[Any], key: str = "value") -> np.ndarray:
    """Stacks rows of different lengths into a NaN-padded float64 rectangle.

    Args:
      rows: N one-dimensional sequences of numbers (lengths may differ, may be 0).
      key: name used in error messages.

    Returns:
      float64 array [N, max row length]; missing entries are NaN.

    Raises:
      ValueError: a row is not one-dimensional or not numeric.
    """
    arrays = []
    for i, row in enumerate(rows):
        try:
            arr = np.asarray(row, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{key}: row {i} is not a sequence of numbers ({err})") from None
        if arr.ndim != 1:
            raise ValueError(
                f"{key}: row {i} must be one-dimensional (a list of values), got shape {arr.shape}"
            )
        arrays.append(arr)
    width = max((a.shape[0] for a in arrays), default=0)
    out = np.full((len(arrays), width), np.nan, dtype=np.float64)
    for i, arr in enumerate(arrays):
        out[i, : arr.shape[0]] = arr
    return out


def flat_env_variables(env_variables: Any) -> dict[str, Any]:
    """Returns the users' flat `section_key` dict of a config or of a flat mapping.

    Args:
      env_variables: an object with `to_flat_dict()` (`SimFishConfig`, whose
        flattening is the only one), or an already flat mapping of names to values.

    Raises:
      TypeError: anything else, a non-string key, or a nested section.
    """
    if hasattr(env_variables, "to_flat_dict"):
        flat = env_variables.to_flat_dict()
    elif isinstance(env_variables, Mapping):
        flat = env_variables
    else:
        raise TypeError(
            "env_variables must be a config with to_flat_dict() or a mapping, "
            f"got {type(env_variables).__name__}"
        )
    for name, value in flat.items():
        if not isinstance(name, str):
            raise TypeError(f"env_variables: key {name!r} is not a string")
        if isinstance(value, Mapping):
            raise TypeError(
                f"env_variables[{name!r}] is a nested section; pass a SimFishConfig "
                "(its to_flat_dict() names keys section_key) or a flat dict"
            )
    return dict(flat)


def _normalise_dtype(key: str, arr: np.ndarray) -> np.ndarray:
    """Maps bool -> bool, integers -> int64, floats -> float64; rejects the rest."""
    if key in FLOAT_INFO_KEYS:
        return arr.astype(np.float64)
    kind = arr.dtype.kind
    if kind == "b":
        return arr
    if kind in "iu":
        return arr.astype(np.int64)
    if kind == "f":
        return arr.astype(np.float64)
    raise ValueError(f"env.get_info()[{key!r}] has non-numeric values (dtype {arr.dtype})")


def _stack_info_column(key: str, values: list[Any]) -> np.ndarray:
    """Stacks the per-step values of one `get_info()` key into an array [steps, ...]."""
    if key in RAGGED_KEYS:
        return nan_pad_rows(values, key=f"env.get_info()[{key!r}]")
    arrays = []
    for v in values:
        try:
            arrays.append(np.asarray(np.nan if v is None else v))
        except ValueError as err:
            raise ValueError(f"env.get_info()[{key!r}]: cannot convert {v!r} ({err})") from None
    shapes = {a.shape for a in arrays}
    if len(shapes) == 1:
        return _normalise_dtype(key, np.stack(arrays))
    if all(a.ndim == 1 for a in arrays):
        return nan_pad_rows(arrays, key=f"env.get_info()[{key!r}]")
    raise ValueError(
        f"env.get_info()[{key!r}] changes shape between steps ({sorted(shapes)}); "
        "only one-dimensional values may vary in length"
    )


def _split_observation(observation: Any, steps: bool = False
                       ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Returns (visual [139, 3, 2] float32 or None, internal [3] float32 or None).

    Accepts the `OAR` observation (whose `.observation` is `(visual, internal)`),
    a bare `(visual, internal)` tuple, or a single array; leaves are told apart
    by rank (3: visual, 1: internal state). With ``steps`` every leaf has a
    leading [T] axis: (visual [T, 139, 3, 2], internal [T, 3]).
    """
    lead, steps_text = (1, "steps, ") if steps else (0, "")
    inner = getattr(observation, "observation", observation)
    leaves = inner if isinstance(inner, (tuple, list)) else (inner,)
    visual = internal = None
    for leaf in leaves:
        arr = np.array(leaf, dtype=np.float32)  # copies: the env may reuse its buffers
        if arr.ndim == 3 + lead and visual is None:
            visual = arr
        elif arr.ndim == 1 + lead and internal is None:
            internal = arr
        else:
            raise ValueError(
                f"timestep.observation: expected a visual array [{steps_text}positions, "
                f"channels, eyes] and an internal state [{steps_text}3], got a leaf of shape "
                f"{arr.shape}"
            )
    return visual, internal


def _read_env_attribute(env: Any, name: str) -> Any:
    """Reads `env.<name>`, calling it when it is a method; None when absent."""
    value = getattr(env, name, None)
    if callable(value):
        value = value()
    return value


def _host_array(value: Any) -> np.ndarray:
    """Copies a value to numpy; a typed JAX PRNG key becomes its uint32 key data."""
    dtype = getattr(value, "dtype", None)
    if dtype is not None and str(dtype).startswith("key<"):
        import jax  # only for typed keys

        value = jax.random.key_data(value)
    return np.array(value)


def _copy_tree(value: Any, key: str) -> Any:
    """Copies a mapping or NamedTuple (recursively) or an array-like to numpy (sediment record)."""
    if hasattr(value, "_asdict"):  # a NamedTuple such as simfish.vision.sediment.Sediment
        value = value._asdict()
    if isinstance(value, Mapping):
        return {str(k): _copy_tree(v, f"{key}/{k}") for k, v in value.items()}
    arr = _host_array(value)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"env.{key}: expected numbers, got dtype {arr.dtype}")
    return arr


def _flat_record(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Flattens a copied sediment record (nested dicts of arrays) to `a.b` names."""
    if not isinstance(tree, Mapping):
        return {prefix or "value": tree}
    out: dict[str, np.ndarray] = {}
    for name, value in tree.items():
        out.update(_flat_record(value, f"{prefix}.{name}" if prefix else str(name)))
    return out


def sediment_dataset(record: Any = None, image: Any = None) -> LoggedDataset:
    """Builds the `sediment` entry: the image as uint8 [1, height, width] plus its record.

    Args:
      record: what regenerates the texture (a NamedTuple such as
        `simfish.vision.sediment.Sediment`, a mapping of arrays, or None);
        stored as attributes, one per field.
      image: the texture as numbers [height, width] (row = y), or None to store
        the record only (the dataset is then empty, `h5py.Empty`).

    Returns:
      A `LoggedDataset`. The image is mapped linearly onto 0..255: value =
      `pixel_offset + pixel_scale * pixel` (attributes). The attribute
      `stored` is "image" or "record".
    """
    attrs: dict[str, Any] = {}
    if record is not None:
        attrs.update(_flat_record(_copy_tree(record, SEDIMENT_ATTRIBUTE)))
    if image is None:
        attrs["stored"] = "record"
        return LoggedDataset(h5py.Empty("u1"), attrs)
    values = np.asarray(image, dtype=np.float32)
    if values.ndim == 3 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"env.{SEDIMENT_IMAGE_METHOD}: expected an image [height, width], "
                         f"got shape {values.shape}")
    low, high = float(values.min()), float(values.max())  # NaN if any pixel is NaN
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"env.{SEDIMENT_IMAGE_METHOD}: the image has non-finite values")
    scale = (high - low) / 255.0
    if scale == 0:
        pixels = np.zeros(values.shape, np.uint8)
    else:  # rint((values - low) / scale) in float32, in one scratch array
        work = values - low
        work /= scale
        np.rint(work, out=work)
        np.clip(work, 0, 255, out=work)
        pixels = work.astype(np.uint8)
    attrs.update(stored="image", pixel_offset=low, pixel_scale=scale)
    return LoggedDataset(pixels[None], attrs)


# --------------------------------------------------------------------------
# Observers.


class EnvInfoKeep(EnvLoopObserver):
    """An observer that collects an episode step by step, for the HDF5 logs.

    Per timestep (T + 1 rows for T steps, row 0 = after reset): every key of
    `env.get_info()` (each value a one-element list; `prey_x`/`prey_y` hold a
    list or array of prey positions per row, NaN-padded to [T + 1, max length],
    NaN meaning no prey), `action` (int64; row 0 is
    the observation's previous-action field, -1 if it has none), `reward`
    (float64; row 0 is 0), `vis_observation` (float32 [T + 1, 139, 3, 2]) and
    `internal_state` (float32 [T + 1, 3]) when the observation has them. Per
    step (T rows): `actor_state` (float32 [T, 64]), the hidden state handed in
    by the loop. At episode start: `salt_location` (float64 [1, 2], NaN if the
    env has none), `sediment` (whatever `env.sediment_record` gives, read after
    reset, e.g. the episode's `simfish.vision.sediment.Sediment`), with the
    image from `env.sediment_image()` unless `sediment="record"`, as one
    `LoggedDataset` (see `sediment_dataset`; absent if the env has neither)
    and `env_variables` (the flat config dict). `predator_x`/`predator_y` are
    0 where no predator is present, and `predator_present` (bool [T + 1]) says
    where one is (from `get_info()` if it reports it, else where the position
    is not None/NaN).

    Args:
      sediment: "image" (default) or "record" (skip the image: small files).
    """

    def __init__(self, sediment: str = "image") -> None:
        if sediment not in SEDIMENT_MODES:
            raise ValueError(
                f"EnvInfoKeep: sediment must be one of {', '.join(SEDIMENT_MODES)}, got {sediment!r}"
            )
        self._sediment_mode = sediment
        self._columns: dict[str, list[Any]] | None = None
        self._info_keys: tuple[str, ...] | None = None
        self._actor_states: list[np.ndarray] = []
        self._episode_start: dict[str, Any] = {}

    def observe_first(self, env: dm_env.Environment, timestep: dm_env.TimeStep) -> None:
        """Starts a new episode: records the reset state and the episode-start data."""
        self._columns = {}
        self._info_keys = None
        self._actor_states = []
        self._episode_start = self._read_episode_start(env)
        previous_action = getattr(timestep.observation, "action", None)
        action = -1 if previous_action is None else int(np.asarray(previous_action))
        self._record(env, timestep, action)

    def observe(
        self,
        env: dm_env.Environment,
        timestep: dm_env.TimeStep,
        action: np.ndarray,
        actor_state: np.ndarray | None = None,
    ) -> None:
        """Records one step: the env info after it, its action, reward and observation."""
        if self._columns is None:
            raise RuntimeError("EnvInfoKeep.observe() called before observe_first()")
        if actor_state is not None:
            self._actor_states.append(np.array(actor_state, dtype=np.float32))
        elif self._actor_states:
            raise ValueError(
                "EnvInfoKeep: actor_state is None at step "
                f"{len(self._columns['action'])} but was given at earlier steps"
            )
        self._record(env, timestep, int(np.asarray(action)))

    def observe_steps(
        self,
        infos: Mapping[str, np.ndarray],
        timesteps: dm_env.TimeStep,
        actions: np.ndarray,
        actor_states: np.ndarray | None = None,
    ) -> None:
        """Records T steps at once, as T ``observe()`` calls would (same columns).

        Used by batched evaluation, which has every step of an episode as arrays.

        Args:
          infos: ``SimFishEnv.info`` of the world after each step: name ->
            [T, ...] (dead prey and an absent predator NaN, as ``info_lists``
            takes them).
          timesteps: the time steps after each step, leaves [T, ...] (reward
            counts as 0 where the step type is FIRST, as a None reward does).
          actions: int [T], the actions taken.
          actor_states: float32 [T, H], the hidden states that chose them, or None.
        """
        if self._columns is None:
            raise RuntimeError("EnvInfoKeep.observe_steps() called before observe_first()")
        n_rows = len(self._columns["action"])
        if actor_states is None and self._actor_states:
            raise ValueError(
                f"EnvInfoKeep: actor_state is None at step {n_rows} but was given at earlier steps"
            )
        if set(infos) != set(self._info_keys or ()):
            missing = sorted(set(self._info_keys or ()) - set(infos))
            extra = sorted(set(infos) - set(self._info_keys or ()))
            raise ValueError(f"env info keys changed at step {n_rows}: "
                             f"missing {missing}, new {extra}")
        rows: dict[str, list] = {}
        present = np.asarray(infos.get(PREDATOR_PRESENT_KEY, True)).astype(bool)
        for key, value in infos.items():
            # The values info_lists() gives, step by step (Python scalars, prey lists).
            value = np.asarray(value)
            if key in PREDATOR_KEYS:
                value = np.where(present, value, np.zeros_like(value))
            if key in RAGGED_KEYS:
                rows[key] = [r[~np.isnan(r)].astype(float).tolist() for r in value]
            else:
                rows[key] = value.tolist()
        first = np.asarray(timesteps.step_type) == int(dm_env.StepType.FIRST)
        rewards = np.asarray(timesteps.reward)
        rows["action"] = np.asarray(actions).astype(np.int64).tolist()
        rows["reward"] = np.where(first, 0.0, rewards.astype(np.float64)).tolist()
        visual, internal = _split_observation(timesteps.observation, steps=True)
        if visual is not None:
            rows["vis_observation"] = list(visual)
        if internal is not None:
            rows["internal_state"] = list(internal)
        length = len(rows["action"])
        if set(rows) != set(self._columns) or any(len(v) != length for v in rows.values()):
            raise ValueError(f"EnvInfoKeep: the steps from {n_rows} on lack some columns or rows "
                             f"(have {sorted(rows)}, expected {sorted(self._columns)})")
        for key, values in rows.items():
            self._columns[key].extend(values)
        if actor_states is not None:
            self._actor_states.extend(np.array(actor_states, dtype=np.float32))

    def get_metrics(self) -> dict[str, Any]:
        """Returns the episode so far as numpy arrays (see the class docstring)."""
        if self._columns is None:
            raise RuntimeError("EnvInfoKeep.get_metrics() called before observe_first()")
        metrics: dict[str, Any] = {}
        for key, values in self._columns.items():
            if key == "action":
                metrics[key] = np.asarray(values, dtype=np.int64)
            elif key == "reward":
                metrics[key] = np.asarray(values, dtype=np.float64)
            elif key in ("vis_observation", "internal_state"):
                metrics[key] = np.stack(values).astype(np.float32)
            else:
                metrics[key] = _stack_info_column(key, values)
        if self._actor_states:
            shapes = {s.shape for s in self._actor_states}
            if len(shapes) != 1:
                raise ValueError(
                    f"EnvInfoKeep: actor_state changes shape within the episode: {shapes}"
                )
            metrics["actor_state"] = np.stack(self._actor_states)
        _zero_absent_predator(metrics)
        metrics.update(self._episode_start)
        return metrics

    def _record(self, env: dm_env.Environment, timestep: dm_env.TimeStep, action: int) -> None:
        """Appends one row (env info, action, reward, observation) to the columns."""
        assert self._columns is not None
        row: dict[str, Any] = {}
        get_info = getattr(env, "get_info", None)
        if get_info is not None:
            info = get_info()
            if not isinstance(info, Mapping):
                raise TypeError(f"env.get_info() must return a dict, got {type(info).__name__}")
            for key, value in info.items():
                if key in STEP_KEYS:
                    raise ValueError(f"env.get_info() returned the reserved key {key!r}")
                if not isinstance(value, (list, tuple)) or len(value) != 1:
                    raise ValueError(
                        f"env.get_info()[{key!r}] must be a one-element list such as [1203.5], "
                        f"got {value!r}"
                    )
                item = value[0]
                # Snapshot mutable containers: the env may reuse them next step.
                row[key] = item.copy() if isinstance(item, (np.ndarray, list)) else item
        keys = tuple(row)
        if self._info_keys is None:
            self._info_keys = keys
        elif set(keys) != set(self._info_keys):
            missing = sorted(set(self._info_keys) - set(keys))
            extra = sorted(set(keys) - set(self._info_keys))
            raise ValueError(
                f"env.get_info() keys changed at step {len(self._columns.get('action', ()))}: "
                f"missing {missing}, new {extra}"
            )
        row["action"] = action
        row["reward"] = 0.0 if timestep.reward is None else float(np.asarray(timestep.reward))
        visual, internal = _split_observation(timestep.observation)
        if visual is not None:
            row["vis_observation"] = visual
        if internal is not None:
            row["internal_state"] = internal
        n_rows = len(self._columns.get("action", ()))
        for key, value in row.items():
            column = self._columns.setdefault(key, [])
            if len(column) != n_rows:
                raise ValueError(f"EnvInfoKeep: {key!r} is missing at some steps of this episode")
            column.append(value)
        for key, column in self._columns.items():
            if len(column) != n_rows + 1:
                raise ValueError(f"EnvInfoKeep: {key!r} is missing at step {n_rows}")

    def _read_episode_start(self, env: dm_env.Environment) -> dict[str, Any]:
        """Reads the sediment (record and image), salt location and env variables after reset."""
        start: dict[str, Any] = {}
        record = _read_env_attribute(env, SEDIMENT_ATTRIBUTE)
        image = None
        if self._sediment_mode == "image":
            image = _read_env_attribute(env, SEDIMENT_IMAGE_METHOD)
        if record is not None or image is not None:
            start["sediment"] = sediment_dataset(record, image)
        else:
            _LOG.debug("env has no %s; the log will have no sediment entry", SEDIMENT_ATTRIBUTE)
        salt = _read_env_attribute(env, "salt_location")
        if salt is None:
            start["salt_location"] = np.full((1, 2), np.nan)
        else:
            start["salt_location"] = np.array(salt, dtype=np.float64).reshape(1, -1)
        env_variables = getattr(env, "env_variables", None)
        if env_variables is not None:
            start[ENV_VARIABLES_KEY] = dict(flat_env_variables(env_variables))
        return start


def _zero_absent_predator(metrics: dict[str, Any]) -> None:
    """Sets `predator_x`/`predator_y` to 0 where no predator is present; adds `predator_present`."""
    if not all(k in metrics for k in PREDATOR_KEYS):
        return
    xs, ys = (np.asarray(metrics[k], dtype=np.float64) for k in PREDATOR_KEYS)
    if PREDATOR_PRESENT_KEY in metrics:
        present = np.asarray(metrics[PREDATOR_PRESENT_KEY]).astype(bool)
    else:
        present = np.isfinite(xs) & np.isfinite(ys)
    metrics[PREDATOR_PRESENT_KEY] = present
    metrics["predator_x"] = np.where(present, xs, 0.0)
    metrics["predator_y"] = np.where(present, ys, 0.0)


class SimpleEnvInfoKeep(EnvLoopObserver):
    """An observer reporting per-episode reward terms and predator counts as scalars.

    At the last step of an episode (or when `get_metrics()` is called earlier) it
    reads from the environment the totals `energy_associated_reward`,
    `consumption_associated_reward`, `salt_associated_reward`,
    `predator_associated_reward`, `wall_associated_reward` (floats) and
    `total_attacks_avoided`, `total_attacks_captured` (ints).
    """

    def __init__(self) -> None:
        self._env: dm_env.Environment | None = None
        self._metrics: dict[str, float | int] | None = None

    def observe_first(self, env: dm_env.Environment, timestep: dm_env.TimeStep) -> None:
        """Starts a new episode."""
        self._env = env
        self._metrics = None

    def observe(
        self,
        env: dm_env.Environment,
        timestep: dm_env.TimeStep,
        action: np.ndarray,
        actor_state: np.ndarray | None = None,
    ) -> None:
        """Reads the episode totals when the episode ends."""
        self._env = env
        if timestep.last():
            self._metrics = self._read(env)

    def get_metrics(self) -> dict[str, float | int]:
        """Returns the reward terms and predator counts of the current episode."""
        if self._metrics is None:
            if self._env is None:
                raise RuntimeError("SimpleEnvInfoKeep.get_metrics() called before observe_first()")
            return self._read(self._env)
        return dict(self._metrics)

    @staticmethod
    def _read(env: dm_env.Environment) -> dict[str, float | int]:
        """Reads the totals from the environment's attributes."""
        metrics: dict[str, float | int] = {}
        for name in SIMPLE_METRIC_NAMES:
            if not hasattr(env, name):
                raise AttributeError(
                    f"SimpleEnvInfoKeep: {type(env).__name__} has no attribute {name!r} "
                    "(BaseEnvironment provides it)"
                )
            metrics[name] = to_host_metric(name, np.asarray(_read_env_attribute(env, name)))
        return metrics


# --------------------------------------------------------------------------
# Logger.


class _AttributeGroup(dict):
    """A mapping written as the attributes of an HDF5 group (env_variables)."""


def _check_key(key: Any, where: str) -> str:
    """Validates an HDF5 object name."""
    if not isinstance(key, str) or not key or "/" in key or key in (".", ".."):
        raise ValueError(f"{where}: {key!r} is not a valid name (non-empty string without '/')")
    return key


def _to_array(value: Any, where: str) -> np.ndarray | str:
    """Copies a value to a numeric numpy array (or keeps a string), with a clear error."""
    if isinstance(value, str):
        return value
    try:
        arr = _host_array(value)
    except ValueError:
        # Ragged rows (e.g. prey positions as a list of lists): pad them with NaN.
        if isinstance(value, (list, tuple)) and all(
            isinstance(r, (list, tuple, np.ndarray)) for r in value
        ):
            return nan_pad_rows(value, key=where)
        raise ValueError(f"{where}: cannot be stored (irregular nested sequence)") from None
    if arr.dtype.kind == "O" and isinstance(value, (list, tuple)):
        return nan_pad_rows(value, key=where)
    if arr.dtype.kind not in "biufc":
        raise ValueError(
            f"{where}: cannot be stored: expected a number, a numeric array, a string or a "
            f"mapping, got {type(value).__name__} (dtype {arr.dtype})"
        )
    return arr


def _to_attribute(value: Any, where: str) -> Any:
    """Converts a config value to something h5py stores as an attribute (None -> Empty)."""
    if value is None:
        return h5py.Empty("f4")
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=h5py.string_dtype())
    try:
        arr = np.array(value)
    except ValueError:
        raise ValueError(f"{where}: irregular nested sequence {value!r}") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{where}: {value!r} ({type(value).__name__}) cannot be an HDF5 attribute")
    return arr if arr.ndim else arr[()]


def _prepare(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Validates and copies one record: arrays, strings, groups and the env_variables group."""
    if not isinstance(data, Mapping):
        raise TypeError(
            f"{where}: expected a mapping of names to values, got {type(data).__name__}"
        )
    record: dict[str, Any] = {}
    for key, value in data.items():
        name = _check_key(key, where)
        path = f"{where}[{name!r}]"
        if value is None:
            _LOG.debug("%s is None; not written", path)
            continue
        if name == ENV_VARIABLES_KEY and where == "HDF5Logger.write":
            flat = flat_env_variables(value)
            # Unset options (None) are absent, so `"prey_stim_file" in attrs` means "set".
            record[name] = _AttributeGroup(
                {
                    _check_key(k, path): _to_attribute(v, f"{path}[{k!r}]")
                    for k, v in flat.items()
                    if v is not None
                }
            )
        elif isinstance(value, LoggedDataset):
            data = value.data if isinstance(value.data, h5py.Empty) else _to_array(value.data, path)
            record[name] = LoggedDataset(
                data,
                {
                    _check_key(k, path): _to_attribute(v, f"{path}.attrs[{k!r}]")
                    for k, v in value.attrs.items()
                    if v is not None
                },
            )
        elif isinstance(value, Mapping):
            record[name] = _prepare(value, path)
        else:
            record[name] = _to_array(value, path)
    return record


_GZIP_DEFAULT_LEVEL = 4  # h5py's level for compression="gzip" without compression_opts


def _write_gzip_chunks(dataset: h5py.Dataset, data: np.ndarray, level: int | None,
                       pool: ThreadPoolExecutor, shuffle: bool = False) -> None:
    """Fills a chunked gzip dataset from ``data``, compressing its chunks in ``pool``'s threads.

    Each chunk (edge chunks zero-padded to the full chunk shape, as HDF5 pads
    them) goes through the dataset's filters here: with ``shuffle`` (the
    dataset must have HDF5's shuffle filter) its bytes are regrouped by
    position within an element (all first bytes, then all second bytes, ...),
    then it is deflated with ``zlib`` at the dataset's level, and stored as is
    (``write_direct_chunk``). The file is the one ``create_dataset(data=...)``
    writes, while ``zlib`` works outside the GIL on several cores.
    """
    chunk = dataset.chunks
    level = _GZIP_DEFAULT_LEVEL if level is None else level
    itemsize = data.dtype.itemsize
    corners = list(np.ndindex(*(-(-n // c) for n, c in zip(data.shape, chunk, strict=True))))

    def deflate(corner: tuple[int, ...]) -> bytes:
        start = [i * c for i, c in zip(corner, chunk, strict=True)]
        part = data[tuple(slice(a, a + c) for a, c in zip(start, chunk, strict=True))]
        if part.shape != chunk:
            padded = np.zeros(chunk, dtype=data.dtype)
            padded[tuple(slice(0, n) for n in part.shape)] = part
            part = padded
        part = np.ascontiguousarray(part)
        if shuffle and itemsize > 1:  # HDF5's shuffle leaves 1-byte types as they are
            raw = part.reshape(-1).view(np.uint8).reshape(-1, itemsize).T.tobytes()
        else:
            raw = part.tobytes()
        return zlib.compress(raw, level)

    try:
        payloads = list(pool.map(deflate, corners))
    except RuntimeError:  # the pool takes no more work (interpreter exit): deflate here
        payloads = [deflate(corner) for corner in corners]
    for corner, payload in zip(corners, payloads, strict=True):
        dataset.id.write_direct_chunk(
            tuple(i * c for i, c in zip(corner, chunk, strict=True)), payload)


def _write_group(group: h5py.Group, record: Mapping[str, Any], compression: str | None,
                 level: int | None = None, pool: ThreadPoolExecutor | None = None) -> None:
    """Writes a prepared record into an HDF5 group.

    ``level`` is the filter's option (gzip's level); with ``pool`` the gzip
    chunks of the sediment image and of every large numeric array are
    compressed in its threads (`_write_gzip_chunks`).
    """
    for name, value in record.items():
        if isinstance(value, _AttributeGroup):
            sub = group.create_group(name)
            for attr_name, attr_value in value.items():
                sub.attrs[attr_name] = attr_value
        elif isinstance(value, LoggedDataset):
            data = value.data
            if isinstance(data, np.ndarray) and data.ndim == 3 and data.size and compression:
                chunks = (1, min(data.shape[1], _SEDIMENT_CHUNK), min(data.shape[2], _SEDIMENT_CHUNK))
                if compression == "gzip" and pool is not None:
                    dataset = group.create_dataset(name, shape=data.shape, dtype=data.dtype,
                                                   chunks=chunks, compression=compression,
                                                   compression_opts=level)
                    _write_gzip_chunks(dataset, data, level, pool)
                else:
                    dataset = group.create_dataset(name, data=data, chunks=chunks,
                                                   compression=compression, compression_opts=level)
            else:
                dataset = group.create_dataset(name, data=data)
            for attr_name, attr_value in value.attrs.items():
                dataset.attrs[attr_name] = attr_value
        elif isinstance(value, dict):
            _write_group(group.create_group(name), value, compression, level, pool)
        elif isinstance(value, np.ndarray) and value.size >= _COMPRESS_MIN_SIZE and compression:
            if compression == "gzip" and pool is not None and value.dtype.kind in "biuf":
                # h5py's automatic chunk shape (chunks=True), as with data=value.
                dataset = group.create_dataset(name, shape=value.shape, dtype=value.dtype,
                                               chunks=True, compression=compression,
                                               compression_opts=level, shuffle=True)
                _write_gzip_chunks(dataset, value, level, pool, shuffle=True)
            else:
                group.create_dataset(name, data=value, compression=compression,
                                     compression_opts=level, shuffle=True)
        else:
            group.create_dataset(name, data=value)


def _package_version() -> str:
    """Returns the installed simfish version, or 'unknown'."""
    try:
        return metadata.version("simfish")
    except metadata.PackageNotFoundError:
        return "unknown"


def existing_log_indices(directory: str | os.PathLike[str]) -> list[int]:
    """Returns the sorted k of the `logs_<k>.hdf5` files in a folder (empty if none)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for n in names if (m := LOG_FILE_PATTERN.match(n)))


class _EpisodeFileWriter:
    """Writes prepared records as numbered files, atomically; holds the pending records.

    Kept apart from `HDF5Logger` so that a `weakref.finalize` on the logger can
    flush what is pending when the logger is garbage-collected or the
    interpreter exits without `close()`. With ``background`` the files are
    written by one worker thread, in the order the records were handed over
    (`submit`); `wait` collects the finished ones and re-raises a failed
    write's error.
    """

    def __init__(self, directory: Path, compression: str | None,
                 background: bool = False, level: int | None = None) -> None:
        self.directory = directory
        self.compression = compression
        self.level = level
        self.pending: list[dict[str, Any]] = []
        self.written: list[Path] = []
        self._last_index = 0
        self._version = _package_version()
        self._executor = (ThreadPoolExecutor(1, thread_name_prefix="hdf5-logger")
                          if background else None)
        # Threads that deflate the large datasets' chunks (zlib releases the GIL).
        self._deflaters = (ThreadPoolExecutor(min(2, os.cpu_count() or 1),
                                              thread_name_prefix="hdf5-deflate")
                           if compression == "gzip" else None)
        self._jobs: collections.deque[Future] = collections.deque()

    @property
    def num_unwritten(self) -> int:
        """Records not yet on disk: pending ones and background writes not finished."""
        return len(self.pending) + sum(not job.done() for job in self._jobs)

    def flush(self) -> list[Path]:
        """Writes every pending record, oldest first (waiting for background writes); returns the new files."""
        new = self.wait()
        while self.pending:
            path = self._write_one(self.pending[0])
            self.pending.pop(0)
            self.written.append(path)
            new.append(path)
        return new

    def submit(self) -> None:
        """Hands every pending record to the background thread (or writes it now without one)."""
        if self._executor is None:
            self.flush()
            return
        while self.pending:
            self._jobs.append(self._executor.submit(self._write_one, self.pending.pop(0)))

    def wait(self, keep: int = 0) -> list[Path]:
        """Waits until at most ``keep`` background writes are unfinished; returns the new files.

        Raises:
          The error of a background write that failed (its record is lost;
          the writes after it still happen).
        """
        new: list[Path] = []
        while len(self._jobs) > keep or (self._jobs and self._jobs[0].done()):
            path = self._jobs.popleft().result()
            self.written.append(path)
            new.append(path)
        return new

    def close(self) -> list[Path]:
        """Writes everything (see `flush`) and stops the background thread."""
        try:
            return self.flush()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
            if self._deflaters is not None:
                self._deflaters.shutdown(wait=True)
                self._deflaters = None

    def _write_one(self, record: Mapping[str, Any]) -> Path:
        """Writes one record to a hidden temp file, syncs it, then publishes it."""
        # Created with mode 0o666 minus the umask (0644 by default), like every project file.
        tmp_name = str(
            create_temp_beside(self.directory / LOG_FILE_PREFIX, suffix=LOG_FILE_SUFFIX + ".tmp")
        )
        try:
            with h5py.File(tmp_name, "w") as f:
                f.attrs["format_version"] = FORMAT_VERSION
                f.attrs["simfish_version"] = self._version
                _write_group(f, record, self.compression, self.level, self._deflaters)
            with open(tmp_name, "rb") as fh:
                os.fsync(fh.fileno())
            return self._publish(Path(tmp_name))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            raise

    def _publish(self, tmp: Path) -> Path:
        """Gives the complete temp file its final name `logs_<k>.hdf5`, never overwriting.

        A hard link is atomic and fails if the name exists (another writer took
        it), in which case the next number is tried; where hard links are not
        supported, `os.replace` is used after checking that the name is free.
        """
        index = max([self._last_index, *existing_log_indices(self.directory)]) + 1
        while True:
            final = self.directory / episode_file_name(index)
            try:
                os.link(tmp, final)
            except FileExistsError:
                index += 1
                continue
            except OSError:
                if final.exists():
                    index += 1
                    continue
                os.replace(tmp, final)
            else:
                os.unlink(tmp)
            self._last_index = index
            return final


class HDF5Logger(Logger):
    """Writes each episode given to `write()` as one HDF5 file.

    Files go to `<directory>/logs/<label>/logs_<k>.hdf5` (or
    `<directory>/<uid>/logs/<label>/...` with `add_uid`), with k = 1, 2, ...
    continuing after the files already there. Each file is written to a hidden
    temporary file in the same folder, synced, then given its final name in
    one atomic step, so a crash never leaves a truncated `logs_<k>.hdf5` (at
    worst a `.logs_*.hdf5.tmp` file, which readers ignore).

    `wait_min` spaces out disk writes without ever blocking the caller: a
    `write()` less than `wait_min` minutes after the last flush only queues the
    episode in memory; the queue is written (one file per episode, in order)
    by the first `write()` after the interval, when `max_pending` episodes are
    queued, by `flush()`, by `close()`, and when the logger is
    garbage-collected or the interpreter exits. Every episode given to
    `write()` thus becomes a file; only a hard kill can lose queued ones.
    Evaluation uses `wait_min=0`: every episode is on disk when `write()`
    returns.

    Args:
      directory_or_file: base directory (`~` is expanded).
      label: sub-folder of `logs/` ('' puts files directly in `logs/`).
      add_uid: insert a unique id folder (UTC time `YYYYmmdd-HHMMSS`) between
        the directory and `logs/`, as acme does, so separate runs never share
        a folder; evaluation passes False to write into the run directory.
      wait_min: minimum minutes between flushes (0: write through).
      max_pending: most episodes queued before a flush happens regardless of
        `wait_min` (bounds memory; one episode is about 4 MB).
      compression: HDF5 filter for arrays of 1024 elements or more ('gzip',
        readable everywhere) or None.
      compression_level: gzip level 1 (fastest) to 9 (smallest), or None for
        h5py's default (4). Level 1 writes an episode of `normal` about a
        third faster; its file is about 5% larger. Any level reads the same.
      sediment: "image" (default: the `sediment` dataset holds the episode's
        texture as uint8 [1, height, width]) or "record" (drop the image, keep
        only the attributes that regenerate it: files of a few MB less).
      background: write the files in a background thread, so that the caller
        goes on (e.g. plays the next episodes) while an episode is compressed
        and written; files, names and order are the same. `write()` then
        returns once the episode is handed over (blocking only while more
        than `max_pending` are unwritten), `flush()` and `close()` wait for
        every file, and a failed background write raises its error from the
        next `write()`, `flush()` or `close()`. Needs `wait_min=0`.
      clock: monotonic time source in seconds (tests).
    """

    def __init__(
        self,
        directory_or_file: str | os.PathLike[str] | TextIO = "~/acme",
        label: str = "",
        add_uid: bool = True,
        wait_min: float = 10,
        *,
        max_pending: int = 16,
        compression: str | None = "gzip",
        compression_level: int | None = None,
        sediment: str = "image",
        background: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(directory_or_file, (str, os.PathLike)):
            raise TypeError(
                "HDF5Logger writes one file per episode and needs a directory path, "
                f"got {type(directory_or_file).__name__}"
            )
        if not isinstance(wait_min, (int, float)) or not math.isfinite(wait_min) or wait_min < 0:
            raise ValueError(f"HDF5Logger: wait_min must be a finite number >= 0, got {wait_min!r}")
        if not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"HDF5Logger: max_pending must be an int >= 1, got {max_pending!r}")
        if sediment not in SEDIMENT_MODES:
            raise ValueError(
                f"HDF5Logger: sediment must be one of {', '.join(SEDIMENT_MODES)}, got {sediment!r}"
            )
        if compression_level is not None and (
            compression != "gzip" or not isinstance(compression_level, int)
            or isinstance(compression_level, bool) or not 0 <= compression_level <= 9
        ):
            raise ValueError("HDF5Logger: compression_level must be a gzip level 0-9 with "
                             f"compression='gzip', got {compression_level!r} with {compression!r}")
        if background and wait_min != 0:
            raise ValueError(f"HDF5Logger: background writing needs wait_min=0, got {wait_min!r}")
        label = str(label)
        if os.path.isabs(label) or ".." in Path(label).parts:
            raise ValueError(f"HDF5Logger: label {label!r} must be a relative folder name")
        base = Path(os.path.expanduser(os.fspath(directory_or_file)))
        if add_uid:
            base = base / time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        directory = base / "logs" / label if label else base / "logs"
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.label = label
        self.wait_min = float(wait_min)
        self.max_pending = max_pending
        self.sediment = sediment
        self._clock = clock
        self._last_flush: float | None = None
        self._closed = False
        self._background = bool(background)
        self._writer = _EpisodeFileWriter(directory, compression, background=self._background,
                                          level=compression_level)
        self._finalizer = weakref.finalize(self, self._writer.close)

    @property
    def written(self) -> list[Path]:
        """Paths of the files written so far, in order."""
        return list(self._writer.written)

    @property
    def num_pending(self) -> int:
        """Number of episodes queued in memory (or being written in the background), not yet on disk."""
        return self._writer.num_unwritten

    def write(self, data: Mapping[str, Any]) -> None:
        """Queues one episode and writes the queue if `wait_min` has passed (never sleeps).

        Args:
          data: names -> numbers, strings, numeric arrays (jax arrays and lists
            are converted; `prey_x`-style lists of rows of different lengths are
            NaN-padded), or mappings (written as groups; `env_variables` is
            written as a group of attributes). None values are skipped.

        Raises:
          RuntimeError: the logger is closed.
          TypeError, ValueError: `data` holds something HDF5 cannot store; the
            message names the key.
        """
        if self._closed:
            raise RuntimeError(f"HDF5Logger for {self.directory} is closed")
        if self.sediment == "record" and isinstance(data, Mapping):
            entry = data.get("sediment")
            if isinstance(entry, LoggedDataset) and not isinstance(entry.data, h5py.Empty):
                attrs = {k: v for k, v in entry.attrs.items()
                         if k not in ("pixel_offset", "pixel_scale")}
                attrs["stored"] = "record"
                data = {**data, "sediment": LoggedDataset(h5py.Empty("u1"), attrs)}
        self._writer.pending.append(_prepare(data, "HDF5Logger.write"))
        if self._background:
            self._writer.submit()
            self._writer.wait(keep=self.max_pending)
            return
        now = self._clock()
        due = (
            self.wait_min == 0
            or self._last_flush is None
            or now - self._last_flush >= self.wait_min * 60.0
            or len(self._writer.pending) >= self.max_pending
        )
        if due:
            self.flush()

    def flush(self) -> list[Path]:
        """Writes every queued episode now (waits for background writes); returns the new files."""
        new = self._writer.flush()
        self._last_flush = self._clock()
        return new

    def close(self) -> None:
        """Writes the queued episodes and closes the logger."""
        if self._closed:
            return
        self._writer.close()
        self._last_flush = self._clock()
        self._closed = True
        self._finalizer.detach()

    def __enter__(self) -> HDF5Logger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
