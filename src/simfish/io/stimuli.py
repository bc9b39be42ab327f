"""Stimulus files for virtual tethered-fish experiments (SPEC 9).

A stimulus file is HDF5 with ``prey_loc`` (n_stimuli, steps, 2) and/or
``predator_loc`` (1, steps, 2): arena positions per step, (0, 0) meaning
absent at that step. Stimulus prey are seen (UV) but cannot be eaten; a
stimulus predator casts its shadow but does not move or attack.

This module reads and writes such files (atomically), builds trajectories
from simple descriptions (a prey sweeping across in front of the fish, a
predator passing or looming), and turns a file into fixed-shape arrays the
jitted environment indexes by step (:func:`stimulus_tracks`,
:func:`stimulus_at`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import jax.numpy as jnp
import numpy as np

from simfish.errors import SimFishError
from simfish.io.atomic import atomic_path

PREY_KEY = "prey_loc"
PREDATOR_KEY = "predator_loc"

# The tethered presets: fish paralysed at the centre of a 5000 x 5000 arena facing +y
# (init_angle 1.5707); stimuli are laid out on the exact axes, as in the users' files.
TETHERED_FISH_XY = (2500.0, 2500.0)
TETHERED_FISH_ANGLE = math.pi / 2
TETHERED_STEPS = 1000


class StimulusError(SimFishError, ValueError):
    """A stimulus file or description is missing, malformed or inconsistent."""


@dataclasses.dataclass(frozen=True)
class Stimulus:
    """The contents of a stimulus file.

    Attributes:
      prey_loc: float64 [n, steps, 2] or None.
      predator_loc: float64 [1, steps, 2] or None.
    """

    prey_loc: np.ndarray | None = None
    predator_loc: np.ndarray | None = None

    @property
    def num_steps(self) -> int:
        """Steps covered by the file (the longer of the two tracks)."""
        steps = [a.shape[1] for a in (self.prey_loc, self.predator_loc) if a is not None]
        return max(steps, default=0)

    @property
    def num_prey(self) -> int:
        """Number of prey stimuli."""
        return 0 if self.prey_loc is None else int(self.prey_loc.shape[0])


def _check_track(name: str, value: Any, source: str, single: bool = False) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[2] != 2:
        raise StimulusError(f"{source}: {name} must have shape (n, steps, 2), got {arr.shape}")
    if single and arr.shape[0] != 1:
        raise StimulusError(f"{source}: {name} must have shape (1, steps, 2), got {arr.shape}")
    if arr.shape[1] == 0:
        raise StimulusError(f"{source}: {name} has no steps")
    if not np.all(np.isfinite(arr)):
        raise StimulusError(f"{source}: {name} holds NaN or infinite positions (use (0, 0) for absent)")
    return arr


def load_stimulus(path: str | os.PathLike) -> Stimulus:
    """Reads a stimulus file.

    Args:
      path: HDF5 file with ``prey_loc`` and/or ``predator_loc``.

    Returns:
      The :class:`Stimulus`.

    Raises:
      StimulusError: missing or unreadable file, no stimulus dataset, wrong shapes.
    """
    source = os.fspath(path)
    if not Path(source).is_file():
        raise StimulusError(f"{source}: no such stimulus file")
    try:
        with h5py.File(source, "r") as f:
            keys = set(f.keys())
            found = {k: f[k][()] for k in (PREY_KEY, PREDATOR_KEY) if k in keys}
    except OSError as err:
        raise StimulusError(f"{source}: not a readable HDF5 file ({err})") from None
    if not found:
        raise StimulusError(
            f"{source}: has neither '{PREY_KEY}' nor '{PREDATOR_KEY}' (datasets: {sorted(keys)})"
        )
    return Stimulus(
        prey_loc=_check_track(PREY_KEY, found[PREY_KEY], source) if PREY_KEY in found else None,
        predator_loc=(
            _check_track(PREDATOR_KEY, found[PREDATOR_KEY], source, single=True)
            if PREDATOR_KEY in found
            else None
        ),
    )


def write_stimulus(
    path: str | os.PathLike,
    prey_loc: np.ndarray | None = None,
    predator_loc: np.ndarray | None = None,
    description: Mapping[str, Any] | None = None,
) -> Path:
    """Writes a stimulus file atomically (temporary file in the same folder, then rename).

    Args:
      path: destination (.h5).
      prey_loc: [n, steps, 2] prey positions, (0, 0) = absent; or [steps, 2] for one prey.
      predator_loc: [1, steps, 2] or [steps, 2] predator positions.
      description: optional mapping stored as string attributes (how the file was made).

    Returns:
      The path written.

    Raises:
      StimulusError: nothing to write or malformed arrays.
    """
    dest = Path(os.fspath(path))
    if prey_loc is None and predator_loc is None:
        raise StimulusError(f"{dest}: give prey_loc and/or predator_loc")
    tracks = {}
    if prey_loc is not None:
        arr = np.asarray(prey_loc, dtype=np.float64)
        tracks[PREY_KEY] = _check_track(PREY_KEY, arr[None] if arr.ndim == 2 else arr, str(dest))
    if predator_loc is not None:
        arr = np.asarray(predator_loc, dtype=np.float64)
        tracks[PREDATOR_KEY] = _check_track(
            PREDATOR_KEY, arr[None] if arr.ndim == 2 else arr, str(dest), single=True
        )
    with atomic_path(dest) as tmp, h5py.File(tmp, "w") as f:
        for key, arr in tracks.items():
            f.create_dataset(key, data=arr)
        for key, value in (description or {}).items():
            f.attrs[str(key)] = str(value)
    return dest


# ---------------------------------------------------------------------------
# Trajectories from simple descriptions. Positions are [steps, 2]; rows where
# the object is absent are (0, 0). "Lateral" offsets are measured towards the
# fish's right eye (positive) from its body axis; "ahead" along its heading.


def _frame(fish_xy, fish_angle):
    fx, fy = float(fish_xy[0]), float(fish_xy[1])
    ahead = np.array([math.cos(fish_angle), math.sin(fish_angle)])
    right = np.array([-math.sin(fish_angle), math.cos(fish_angle)])
    return np.array([fx, fy]), ahead, right


def _window(num_steps: int, start_step: int, end_step: int | None) -> np.ndarray:
    end = num_steps if end_step is None else end_step
    if not 0 <= start_step < end <= num_steps:
        raise StimulusError(
            f"need 0 <= start_step < end_step <= num_steps, got {start_step}, {end}, {num_steps}"
        )
    steps = np.arange(num_steps)
    return (steps >= start_step) & (steps < end)


def prey_sweep(
    num_steps: int = TETHERED_STEPS,
    fish_xy=TETHERED_FISH_XY,
    fish_angle: float = TETHERED_FISH_ANGLE,
    distance_px: float = 40.0,
    lateral_from_px: float = 50.0,
    lateral_to_px: float = -50.0,
    speed_px_per_step: float = 1.0,
    back_and_forth: bool = True,
    start_step: int = 0,
    end_step: int | None = None,
) -> np.ndarray:
    """A prey moving across in front of the fish, perpendicular to its heading.

    It stays ``distance_px`` ahead of the fish and moves at
    ``speed_px_per_step`` from ``lateral_from_px`` to ``lateral_to_px``
    (positive = the fish's right), then back again if ``back_and_forth``
    (else it stays at the end). The default is a 10 mm sweep 4 mm ahead.

    Returns:
      float64 [num_steps, 2] positions, (0, 0) outside [start_step, end_step).
    """
    origin, ahead, right = _frame(fish_xy, fish_angle)
    present = _window(num_steps, start_step, end_step)
    span = lateral_to_px - lateral_from_px
    travelled = speed_px_per_step * np.maximum(np.arange(num_steps) - start_step, 0)
    length = abs(span)
    if length == 0 or speed_px_per_step <= 0:
        progress = np.zeros(num_steps)
    elif back_and_forth:
        phase = np.mod(travelled, 2 * length)
        progress = np.where(phase <= length, phase, 2 * length - phase) / length
    else:
        progress = np.minimum(travelled / length, 1.0)
    lateral = lateral_from_px + span * progress
    pos = origin + distance_px * ahead + lateral[:, None] * right
    return np.where(present[:, None], pos, 0.0)


def predator_pass(
    num_steps: int = TETHERED_STEPS,
    fish_xy=TETHERED_FISH_XY,
    fish_angle: float = TETHERED_FISH_ANGLE,
    distance_px: float = 200.0,
    lateral_from_px: float = 300.0,
    speed_px_per_step: float = 0.75,
    start_step: int = 100,
    end_step: int | None = 900,
) -> np.ndarray:
    """A predator passing in front of the fish at ``distance_px``, from its right to its left.

    Returns:
      float64 [num_steps, 2], (0, 0) outside [start_step, end_step).
    """
    origin, ahead, right = _frame(fish_xy, fish_angle)
    present = _window(num_steps, start_step, end_step)
    lateral = lateral_from_px - speed_px_per_step * np.maximum(np.arange(num_steps) - start_step, 0)
    pos = origin + distance_px * ahead + lateral[:, None] * right
    return np.where(present[:, None], pos, 0.0)


def predator_loom(
    num_steps: int = TETHERED_STEPS,
    fish_xy=TETHERED_FISH_XY,
    fish_angle: float = TETHERED_FISH_ANGLE,
    bearing: float = 0.0,
    from_distance_px: float = 400.0,
    to_distance_px: float = 70.0,
    speed_px_per_step: float = 2.0,
    start_step: int = 100,
    end_step: int | None = None,
) -> np.ndarray:
    """A predator approaching the fish along ``bearing`` (rad from the heading, positive = right).

    It starts ``from_distance_px`` away (centre to body origin), closes in at
    ``speed_px_per_step`` and stops at ``to_distance_px``.

    Returns:
      float64 [num_steps, 2], (0, 0) outside [start_step, end_step).
    """
    if to_distance_px > from_distance_px:
        raise StimulusError(
            f"a looming predator comes closer: to_distance_px={to_distance_px} > "
            f"from_distance_px={from_distance_px}"
        )
    origin, _, _ = _frame(fish_xy, fish_angle)
    present = _window(num_steps, start_step, end_step)
    direction = np.array([math.cos(fish_angle + bearing), math.sin(fish_angle + bearing)])
    travelled = speed_px_per_step * np.maximum(np.arange(num_steps) - start_step, 0)
    distance = np.maximum(from_distance_px - travelled, to_distance_px)
    pos = origin + distance[:, None] * direction
    return np.where(present[:, None], pos, 0.0)


_BUILDERS = {"sweep": prey_sweep, "pass": predator_pass, "loom": predator_loom}


def stimulus_from_description(description: Mapping[str, Any]) -> Stimulus:
    """Builds a stimulus from a plain description (e.g. parsed YAML or JSON).

    Example::

        {"num_steps": 1000,
         "fish": {"x": 2500, "y": 2500, "angle": 1.5707},
         "prey": [{"kind": "sweep", "distance_px": 40, "lateral_from_px": 50,
                   "lateral_to_px": -50, "speed_px_per_step": 1}],
         "predator": {"kind": "loom", "bearing": 0.5, "start_step": 200}}

    Prey entries use kind ``sweep`` (:func:`prey_sweep`); the predator kind
    ``pass`` (:func:`predator_pass`) or ``loom`` (:func:`predator_loom`); other
    keys are those functions' parameters.

    Raises:
      StimulusError: unknown kind or parameter, or no stimulus.
    """
    desc = dict(description)
    unknown = set(desc) - {"num_steps", "fish", "prey", "predator"}
    if unknown:
        raise StimulusError(f"stimulus description: unknown keys {sorted(unknown)}")
    num_steps = int(desc.get("num_steps", TETHERED_STEPS))
    fish = dict(desc.get("fish") or {})
    common = {
        "num_steps": num_steps,
        "fish_xy": (float(fish.get("x", TETHERED_FISH_XY[0])), float(fish.get("y", TETHERED_FISH_XY[1]))),
        "fish_angle": float(fish.get("angle", TETHERED_FISH_ANGLE)),
    }

    def build(entry: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> np.ndarray:
        params = dict(entry)
        kind = params.pop("kind", None)
        if kind not in allowed:
            raise StimulusError(f"stimulus description: {where} kind must be one of {allowed}, got {kind!r}")
        try:
            return _BUILDERS[kind](**common, **params)
        except TypeError as err:
            raise StimulusError(f"stimulus description: {where} ({kind}): {err}") from None

    prey_entries = desc.get("prey") or []
    if isinstance(prey_entries, Mapping):
        prey_entries = [prey_entries]
    prey = [build(p, ("sweep",), f"prey[{i}]") for i, p in enumerate(prey_entries)]
    predator = desc.get("predator")
    pred = build(predator, ("pass", "loom"), "predator") if predator else None
    if not prey and pred is None:
        raise StimulusError("stimulus description: give at least one prey or a predator")
    return Stimulus(
        prey_loc=np.stack(prey) if prey else None,
        predator_loc=pred[None] if pred is not None else None,
    )


def write_default_stimuli(folder: str | os.PathLike) -> tuple[Path, Path]:
    """Writes the tethered presets' stimulus files into ``folder``.

    ``stim_prey.h5``: one prey 40 px ahead of the tethered fish sweeping 100 px
    (10 mm) across and back at 1 px per step, 1000 steps. ``stim_predator.h5``:
    a predator passing 200 px ahead from the fish's right to its left at 0.75
    px per step during steps 100-899.

    Returns:
      (prey file, predator file).
    """
    folder = Path(os.fspath(folder))
    prey_path = write_stimulus(
        folder / "stim_prey.h5",
        prey_loc=prey_sweep()[None],
        description={"made_by": "simfish.io.stimuli.prey_sweep()"},
    )
    predator_path = write_stimulus(
        folder / "stim_predator.h5",
        predator_loc=predator_pass()[None],
        description={"made_by": "simfish.io.stimuli.predator_pass()"},
    )
    return prey_path, predator_path


# ---------------------------------------------------------------------------
# Fixed-shape arrays for the jitted environment.


class StimulusTracks(NamedTuple):
    """A stimulus as per-step arrays (numpy or jnp leaves).

    Attributes:
      prey_xy: float32 [steps, n, 2].
      prey_present: bool [steps, n].
      predator_xy: float32 [steps, 2].
      predator_present: bool [steps].
    """

    prey_xy: Any
    prey_present: Any
    predator_xy: Any
    predator_present: Any


def stimulus_tracks(stimulus: Stimulus | None, num_prey: int | None = None) -> StimulusTracks:
    """Converts a stimulus (or None) to :class:`StimulusTracks` (numpy arrays).

    Args:
      stimulus: the loaded file, or None for "no stimulus" (one absent step).
      num_prey: pad the prey axis to this many slots (default: the file's count).

    Returns:
      The tracks; a position is present when it is not (0, 0).
    """
    steps = max(stimulus.num_steps if stimulus is not None else 0, 1)
    n = stimulus.num_prey if stimulus is not None else 0
    slots = n if num_prey is None else num_prey
    if slots < n:
        raise StimulusError(f"stimulus has {n} prey, more than the {slots} slots given")
    prey_xy = np.zeros((steps, slots, 2), np.float32)
    if stimulus is not None and stimulus.prey_loc is not None:
        loc = stimulus.prey_loc
        prey_xy[: loc.shape[1], :n] = np.transpose(loc, (1, 0, 2))
    predator_xy = np.zeros((steps, 2), np.float32)
    if stimulus is not None and stimulus.predator_loc is not None:
        loc = stimulus.predator_loc[0]
        predator_xy[: loc.shape[0]] = loc
    return StimulusTracks(
        prey_xy=prey_xy,
        prey_present=np.any(prey_xy != 0.0, axis=-1),
        predator_xy=predator_xy,
        predator_present=np.any(predator_xy != 0.0, axis=-1),
    )


def stimulus_at(tracks: StimulusTracks, step: jnp.ndarray) -> StimulusTracks:
    """The stimulus at ``step`` (jit-able); absent before step 0 and after the file ends.

    The users' tool shows row ``num_steps - 1`` after ``num_steps`` steps
    (row 0 after the first step); pass that index.

    Returns:
      :class:`StimulusTracks` of one step: prey_xy [n, 2], prey_present [n],
      predator_xy [2], predator_present [].
    """
    num = tracks.prey_xy.shape[0]
    valid = (step >= 0) & (step < num)
    i = jnp.clip(step, 0, num - 1)
    return StimulusTracks(
        prey_xy=jnp.asarray(tracks.prey_xy)[i],
        prey_present=jnp.asarray(tracks.prey_present)[i] & valid,
        predator_xy=jnp.asarray(tracks.predator_xy)[i],
        predator_present=jnp.asarray(tracks.predator_present)[i] & valid,
    )
