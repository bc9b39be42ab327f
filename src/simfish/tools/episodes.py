"""Shared helpers of the analysis tools: find and load episodes, derive per-step quantities.

Every tool reads episode logs through :mod:`simfish.io.logs` and turns its
errors into one-line :class:`ToolsError` messages. The helpers here accept
both log layouts: the absent predator as NaN (format 1) or as 0 with a
boolean ``predator_present`` dataset (issue 9), and the sediment as a texture
record or as an image.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from simfish.errors import SimFishError
from simfish.io.actions import Actions, ActionsError
from simfish.io.logs import EpisodeLogError, list_episodes, load_episode

#: Arena pixels per millimetre (docs/logs.md: 10 px = 1 mm).
PX_PER_MM = 10.0

#: Datasets the analyses need that are small (everything but the retinas).
LIGHT_KEYS = (
    "fish_x", "fish_y", "fish_angle", "prey_x", "prey_y", "predator_x", "predator_y",
    "event_consumed_prey", "event_survived_predator", "event_captured_by_predator",
    "action", "reward", "internal_state", "actor_state", "salt_location", "episode_length",
    "episode_return", "predator_present", "env_variables",
)  # fmt: skip


class ToolsError(SimFishError):
    """A problem with the input of an analysis tool (path, file, option)."""


def require(module: str, extra: str) -> Any:
    """Imports an optional dependency, or raises a one-line ToolsError naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ToolsError(
            f"this command needs the optional package '{module.split('.')[0]}': "
            f"pip install 'simfish[{extra}]'"
        ) from None


def episode_paths(path: str | os.PathLike, label: str | None = None) -> list[Path]:
    """The episode files named by ``path``: one ``logs_<k>.hdf5`` file or a folder of them.

    Args:
      path: an episode file, a label folder, a run's ``logs/`` folder or a run directory.
      label: the label under ``logs/`` when ``path`` is a run directory with several.

    Raises:
      ToolsError: the path does not exist, or holds no episode file.
    """
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    if not p.exists():
        raise ToolsError(f"{p}: no such file or directory")
    try:
        paths = list_episodes(p, label=label)
    except (FileNotFoundError, ValueError) as err:
        raise ToolsError(str(err)) from None
    if not paths:
        raise ToolsError(f"{p}: no episode files (logs_<k>.hdf5) here")
    return paths


def read_episode(path: str | os.PathLike, keys: Iterable[str] | None = None) -> dict[str, Any]:
    """Loads one episode (only the ``keys`` it has, when given); errors become ToolsError."""
    try:
        if keys is None:
            return load_episode(path)
        import h5py

        with h5py.File(path, "r") as f:
            present = [k for k in keys if k in f]
        return load_episode(path, keys=present)
    except (FileNotFoundError, EpisodeLogError) as err:
        raise ToolsError(str(err)) from None
    except OSError as err:  # h5py could not open the file to list its keys
        raise ToolsError(f"{path}: not a readable HDF5 file ({err})") from None


def read_episodes(
    path: str | os.PathLike, label: str | None = None, keys: Iterable[str] | None = LIGHT_KEYS
) -> list[tuple[Path, dict[str, Any]]]:
    """Loads every episode named by ``path`` (see :func:`episode_paths`) as (path, dict) pairs."""
    wanted = None if keys is None else tuple(keys)
    out = []
    for p in episode_paths(path, label):
        episode = read_episode(p, wanted)
        if "fish_x" not in episode:
            raise ToolsError(f"{p}: this episode log has no fish_x (no world positions logged)")
        out.append((p, episode))
    return out


def run_dir_of(path: str | os.PathLike) -> Path | None:
    """The run directory above a label folder or episode file (the one with ``logs/``), if any."""
    p = Path(path).expanduser().resolve()
    for candidate in (p, *p.parents):
        if candidate.name == "logs":
            return candidate.parent
        if (candidate / "logs").is_dir() and (candidate / "env_config.yaml").is_file():
            return candidate
    return None


def actions_for(path: str | os.PathLike | None, actions_file: str | None = None) -> Actions:
    """The action set of a run: ``actions_file``, else the run's ``actions.h5``, else the default."""
    try:
        if actions_file is not None:
            actions = Actions()
            if str(actions_file).endswith(".json"):
                return Actions.from_json(actions_file)
            actions.from_hdf5(actions_file)
            return actions
        run = None if path is None else run_dir_of(path)
        if run is not None and (run / "actions.h5").is_file():
            actions = Actions()
            actions.from_hdf5(run / "actions.h5")
            return actions
    except (OSError, ActionsError) as err:
        raise ToolsError(f"actions: {err}") from None
    return Actions.default()


def num_steps(episode: dict[str, Any]) -> int:
    """T: the number of steps of an episode (its time points are 0..T)."""
    return int(np.asarray(episode["fish_x"]).shape[0]) - 1


def predator_present(episode: dict[str, Any]) -> np.ndarray:
    """[T+1] bool: whether a predator is in the arena at each time point.

    Uses ``predator_present`` when the log has it; otherwise a predator is
    absent where its position is NaN, or exactly (0, 0).
    """
    rows = num_steps(episode) + 1
    if "predator_present" in episode and episode["predator_present"] is not None:
        return np.asarray(episode["predator_present"]).astype(bool).reshape(rows)
    if "predator_x" not in episode:
        return np.zeros(rows, bool)
    x = np.asarray(episode["predator_x"], np.float64).reshape(rows)
    y = np.asarray(episode["predator_y"], np.float64).reshape(rows)
    return np.isfinite(x) & np.isfinite(y) & ~((x == 0) & (y == 0))


def event(episode: dict[str, Any], name: str) -> np.ndarray:
    """[T+1] int: an event column (flag or count) as counts; zeros if the log lacks it."""
    rows = num_steps(episode) + 1
    if name not in episode:
        return np.zeros(rows, np.int64)
    return np.asarray(episode[name]).astype(np.int64).reshape(rows)


def prey_xy(episode: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Prey positions ([T+1, P] x, [T+1, P] y, NaN where there is no prey)."""
    rows = num_steps(episode) + 1
    if "prey_x" not in episode:
        return np.zeros((rows, 0)), np.zeros((rows, 0))
    x = np.asarray(episode["prey_x"], np.float64).reshape(rows, -1)
    y = np.asarray(episode["prey_y"], np.float64).reshape(rows, -1)
    return x, y


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Wraps angles (rad) to [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def prey_egocentric(episode: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Prey azimuth (rad, [T+1, P], 0 = straight ahead, positive counter-clockwise) and distance (px)."""
    px, py = prey_xy(episode)
    fx = np.asarray(episode["fish_x"], np.float64)[:, None]
    fy = np.asarray(episode["fish_y"], np.float64)[:, None]
    heading = np.asarray(episode["fish_angle"], np.float64)[:, None]
    dx, dy = px - fx, py - fy
    with np.errstate(invalid="ignore"):
        azimuth = wrap_angle(np.arctan2(dy, dx) - heading)
    return azimuth, np.hypot(dx, dy)


def nearest_prey(episode: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth (rad) and distance (px) of the nearest prey at each time point ([T+1], NaN if none)."""
    azimuth, distance = prey_egocentric(episode)
    rows = azimuth.shape[0]
    if distance.shape[1] == 0:
        return np.full(rows, np.nan), np.full(rows, np.nan)
    filled = np.where(np.isfinite(distance), distance, np.inf)
    idx = np.argmin(filled, axis=1)
    r = np.arange(rows)
    none = ~np.isfinite(filled[r, idx])
    return np.where(none, np.nan, azimuth[r, idx]), np.where(none, np.nan, distance[r, idx])


def internal(episode: dict[str, Any]) -> dict[str, np.ndarray]:
    """The internal state columns ([T+1] each: in_light, energy, salt); NaN when not logged."""
    rows = num_steps(episode) + 1
    state = episode.get("internal_state")
    if state is None:
        nan = np.full(rows, np.nan)
        return {"in_light": nan, "energy": nan, "salt": nan}
    state = np.asarray(state, np.float64).reshape(rows, -1)
    names = ("in_light", "energy", "salt")
    return {n: (state[:, i] if i < state.shape[1] else np.full(rows, np.nan))
            for i, n in enumerate(names)}


def arena_geometry(episode: dict[str, Any]) -> dict[str, float]:
    """Arena width, height (px) and the dark band's lower edge (px, rows y < dark_row are dark).

    Read from the logged configuration; falls back to the extent of the fish's path.
    """
    env = episode.get("env_variables") or {}
    width = env.get("arena_width")
    height = env.get("arena_height")
    if width is None or height is None:
        width = float(np.nanmax(episode["fish_x"])) + 1.0
        height = float(np.nanmax(episode["fish_y"])) + 1.0
    fraction = env.get("arena_dark_fraction") or 0.0
    return {
        "width": float(width),
        "height": float(height),
        "dark_row": float(int(float(height) * float(fraction))),
        "dark_gain": float(env.get("arena_dark_gain") or 1.0),
    }


def salt_source(episode: dict[str, Any]) -> np.ndarray | None:
    """The salt source (x, y) of the episode, or None when there is none."""
    salt = episode.get("salt_location")
    if salt is None:
        return None
    salt = np.asarray(salt, np.float64).reshape(-1)
    if salt.size < 2 or not np.all(np.isfinite(salt[:2])):
        return None
    return salt[:2]
