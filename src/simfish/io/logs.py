"""Read SimFish episode logs (`logs_<k>.hdf5`) into plain numpy arrays and dicts.

Episode files are written by `simfish_rl.hdf5_logger.HDF5Logger`, one per
episode, under `<run>/logs/<label>/`. The format is described in `docs/logs.md`.

Example:
    >>> from simfish.io.logs import list_episodes, load_episode
    >>> paths = list_episodes("runs/my_run", label="eval_model")
    >>> ep = load_episode(paths[0])
    >>> ep["fish_x"].shape, ep["episode_return"], ep["env_variables"]["prey_num"]
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

__all__ = [
    "LOG_FILE_PATTERN",
    "LOG_FILE_PREFIX",
    "LOG_FILE_SUFFIX",
    "EpisodeLogError",
    "episode_file_name",
    "episode_index",
    "list_episodes",
    "list_labels",
    "load_episode",
    "sediment_from_episode",
    "sediment_image",
]

LOG_FILE_PREFIX = "logs_"
LOG_FILE_SUFFIX = ".hdf5"
LOG_FILE_PATTERN = re.compile(rf"^{re.escape(LOG_FILE_PREFIX)}(\d+){re.escape(LOG_FILE_SUFFIX)}$")
"""Final names of episode files, shared by the writer (`simfish_rl.hdf5_logger`)
and this reader; temporary files start with a dot and never match."""
#: `load_episode` key holding the attributes of the `sediment` dataset (format 2).
SEDIMENT_RECORD_KEY = "sediment_record"
# A file is taken for an episode log when it holds at least one of these.
_MARKER_KEYS = ("episode_length", "fish_x", "action")


class EpisodeLogError(ValueError):
    """An episode file exists but is not a readable SimFish episode log."""


def episode_file_name(index: int) -> str:
    """Returns the file name `logs_<index>.hdf5` of episode ``index`` (>= 1)."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 1:
        raise ValueError(f"episode index must be an int >= 1, got {index!r}")
    return f"{LOG_FILE_PREFIX}{index}{LOG_FILE_SUFFIX}"


def episode_index(path: str | os.PathLike[str]) -> int:
    """Returns k of a `logs_<k>.hdf5` path.

    Raises:
      ValueError: the file name is not of that form.
    """
    match = LOG_FILE_PATTERN.match(Path(path).name)
    if match is None:
        raise ValueError(f"{path}: not an episode file name (expected logs_<k>.hdf5)")
    return int(match.group(1))


def _episode_files(folder: Path) -> list[Path]:
    """Returns the `logs_<k>.hdf5` files of a folder, sorted by k (temp files excluded)."""
    files = [p for p in folder.iterdir() if p.is_file() and LOG_FILE_PATTERN.match(p.name)]
    return sorted(files, key=episode_index)


def _logs_root(run_dir_or_logs_dir: Path) -> Path:
    """Returns the `logs/` folder for a run directory, or the folder itself."""
    candidate = run_dir_or_logs_dir / "logs"
    return candidate if candidate.is_dir() else run_dir_or_logs_dir


def list_labels(run_dir_or_logs_dir: str | os.PathLike[str]) -> list[str]:
    """Returns the labels (sub-folders of `logs/`) that hold episode files, sorted.

    Args:
      run_dir_or_logs_dir: a run directory (containing `logs/`) or its `logs/` folder.

    Raises:
      FileNotFoundError: the directory does not exist.
    """
    base = Path(run_dir_or_logs_dir).expanduser()
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: no such directory")
    root = _logs_root(base)
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _episode_files(p))


def list_episodes(
    run_dir_or_logs_dir: str | os.PathLike[str], label: str | None = None
) -> list[Path]:
    """Lists the episode files of a run, sorted by episode number k.

    Args:
      run_dir_or_logs_dir: a run directory (containing `logs/<label>/`), its
        `logs/` folder, or a label folder holding `logs_<k>.hdf5` files.
      label: the evaluation label (sub-folder of `logs/`). When None: the
        folder's own episode files if it has any, else those of the only label
        under `logs/`.

    Returns:
      Paths of `logs_<k>.hdf5`, by increasing k (empty if the folder has none).

    Raises:
      FileNotFoundError: the directory, or the label, does not exist.
      ValueError: label is None and several labels hold episodes.
    """
    base = Path(run_dir_or_logs_dir).expanduser()
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: no such directory")
    if label is not None:
        for folder in (base / "logs" / label, base / label):
            if folder.is_dir():
                return _episode_files(folder)
        available = list_labels(base)
        raise FileNotFoundError(
            f"{base}: no logs for label {label!r} (labels with episodes: {available or 'none'})"
        )
    own = _episode_files(base)
    if own:
        return own
    root = _logs_root(base)
    if root != base and _episode_files(root):
        return _episode_files(root)
    labels = list_labels(base)
    if len(labels) > 1:
        raise ValueError(f"{base}: several labels hold episodes ({', '.join(labels)}); pass label=")
    if labels:
        return _episode_files(root / labels[0])
    return []


def _attribute_value(value: Any) -> Any:
    """Converts an HDF5 attribute to plain Python (Empty -> None, arrays -> lists)."""
    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return (
            [_attribute_value(v) for v in value.tolist()]
            if value.dtype.kind in "OS"
            else value.tolist()
        )
    if isinstance(value, np.generic):
        return value.item()
    return value


def _dataset_value(dataset: h5py.Dataset) -> Any:
    """Reads a dataset: arrays as numpy arrays, scalars as Python numbers or str."""
    if dataset.shape is None:  # empty (null dataspace) dataset
        return None
    if dataset.shape == ():
        if h5py.check_string_dtype(dataset.dtype) is not None:
            return dataset.asstr()[()]
        return dataset[()].item()
    if h5py.check_string_dtype(dataset.dtype) is not None:
        return np.asarray(dataset.asstr()[()])
    return dataset[()]


def _record_value(value: Any) -> Any:
    """Converts a sediment-record attribute: arrays stay numpy arrays, scalars become Python."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.dtype.kind not in "OS":
        return value
    return _attribute_value(value)


def _read_group(group: h5py.Group, keys: set[str] | None) -> dict[str, Any]:
    """Reads a group into a dict: datasets, sub-groups and attributes."""
    out: dict[str, Any] = {}
    for name, item in group.items():
        if keys is not None and name not in keys:
            continue
        if isinstance(item, h5py.Group):
            sub = {k: _attribute_value(v) for k, v in item.attrs.items()}
            sub.update(_read_group(item, None))
            out[name] = sub
        else:
            out[name] = _dataset_value(item)
            if name == "sediment" and item.attrs:
                out[SEDIMENT_RECORD_KEY] = {k: _record_value(v) for k, v in item.attrs.items()}
    return out


def load_episode(path: str | os.PathLike[str], keys: Iterable[str] | None = None) -> dict[str, Any]:
    """Loads one episode file into plain Python / numpy.

    Args:
      path: a `logs_<k>.hdf5` file.
      keys: names to load (e.g. `["fish_x", "fish_y"]` to skip the large
        `vis_observation`); all when None.

    Returns:
      A dict: per-step datasets as numpy arrays (`fish_x` [T+1], `prey_x`
      [T+1, max prey] NaN-padded, `vis_observation` [T+1, 139, 3, 2],
      `actor_state` [T, 64], ...), summary scalars as Python numbers
      (`episode_length`, `episode_return`, ...), `env_variables` as a flat dict
      (lists for sequences; unset options are absent in format-2 files and None
      in format-1 files), `sediment` as the uint8 image [1, height, width]
      (None when only the record was stored; a dict of texture fields in
      format-1 files) and `sediment_record` (the `sediment` dataset's
      attributes: texture fields, `stored`, `pixel_offset`, `pixel_scale`).

    Raises:
      FileNotFoundError: the file does not exist.
      EpisodeLogError: the file is not HDF5, is unreadable, is not an episode
        log, or lacks a requested key.
    """
    file_path = Path(path).expanduser()
    if not file_path.is_file():
        raise FileNotFoundError(f"{file_path}: no such episode file")
    try:
        handle = h5py.File(file_path, "r")
    except OSError as err:
        raise EpisodeLogError(f"{file_path}: not a readable HDF5 file ({err})") from None
    with handle as f:
        if not any(k in f for k in _MARKER_KEYS):
            raise EpisodeLogError(
                f"{file_path}: not a SimFish episode log (none of {', '.join(_MARKER_KEYS)} found)"
            )
        wanted = None if keys is None else set(keys)
        if wanted is not None and SEDIMENT_RECORD_KEY in wanted:
            wanted.discard(SEDIMENT_RECORD_KEY)
            wanted.add("sediment")
        if wanted is not None:
            missing = sorted(k for k in wanted if k not in f)
            if missing:
                raise EpisodeLogError(
                    f"{file_path}: no {', '.join(missing)} in this episode log "
                    f"(it has: {', '.join(sorted(f.keys()))})"
                )
        try:
            return _read_group(f, wanted)
        except OSError as err:
            raise EpisodeLogError(f"{file_path}: unreadable ({err})") from None


def sediment_from_episode(episode: dict[str, Any] | str | os.PathLike[str]) -> Any:
    """Rebuilds the episode's sediment texture from its log.

    Args:
      episode: a dict from `load_episode` or the path of an episode file.

    Returns:
      A `simfish.vision.sediment.Sediment`; draw it with
      `simfish.vision.sediment.render_sediment(sediment, x0, y0, width, height)`.

    Raises:
      EpisodeLogError: the log has no texture record: neither the attributes
        of a `sediment` dataset (format 2) nor a `sediment` group (format 1)
        hold the texture's fields (files from the users' previous tool store
        only the image: use `sediment_image`).
    """
    from simfish.vision.sediment import Sediment  # imports JAX; only when asked

    if not isinstance(episode, dict):
        episode = load_episode(episode, keys=["sediment"])
    record = episode.get(SEDIMENT_RECORD_KEY, episode.get("sediment"))
    if isinstance(record, dict):
        record = {k: v for k, v in record.items() if k in Sediment._fields}
    if not isinstance(record, dict) or set(record) != set(Sediment._fields):
        found = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise EpisodeLogError(
            f"the episode's sediment entry is not a texture record "
            f"(expected fields {', '.join(Sediment._fields)}; found {found})"
        )
    import jax.numpy as jnp

    return Sediment(
        **{name: jnp.asarray(record[name], dtype=jnp.float32) for name in Sediment._fields}
    )


def _keys_of(path: str | os.PathLike[str]) -> set[str]:
    """The top-level names of an HDF5 file."""
    with h5py.File(Path(path).expanduser(), "r") as f:
        return set(f.keys())


def sediment_image(episode: dict[str, Any] | str | os.PathLike[str]) -> np.ndarray:
    """The episode's sediment texture as float32 [height, width] (row = y), in texture units.

    Format-2 files: the stored uint8 image decoded with its `pixel_offset` and
    `pixel_scale` attributes (within half a grey level of the texture), or,
    when only the record was stored, the texture redrawn from it over the
    arena (`env_variables` `arena_width` x `arena_height`). Format-1 files:
    redrawn from the `sediment` group. The users' previous tool's files: their
    stored image as it is.

    Raises:
      EpisodeLogError: the log holds no sediment image and no texture record.
    """
    path = None
    if not isinstance(episode, dict):
        path, episode = episode, load_episode(episode, keys=["sediment"])
    image = episode.get("sediment")
    record = episode.get(SEDIMENT_RECORD_KEY) or {}
    if isinstance(image, np.ndarray):
        pixels = image[0] if image.ndim == 3 else image
        if "pixel_scale" in record:
            scale = float(record["pixel_scale"])
            return (float(record["pixel_offset"]) + scale * pixels.astype(np.float32)).astype(
                np.float32
            )
        return pixels.astype(np.float32)
    from simfish.vision.sediment import render_sediment  # imports JAX; only when asked

    if path is not None and "env_variables" in _keys_of(path):
        episode = {**episode, **load_episode(path, keys=["env_variables"])}
    env = episode.get("env_variables") or {}
    if "arena_width" not in env or "arena_height" not in env:
        raise EpisodeLogError("the episode log has no arena_width/arena_height in env_variables "
                              "to redraw the sediment over")
    texture = sediment_from_episode(episode)
    return render_sediment(texture, 0.0, 0.0, int(env["arena_width"]), int(env["arena_height"]))
