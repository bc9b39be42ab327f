"""The fish's action set: swim bouts with a mean and covariance of (distance, angle).

Each action is a dict with ``name``, ``mean`` = [distance_mm, angle_rad],
``cov`` (2x2), ``is_turn``, ``is_capture`` and ``color`` (RGB in 0..1), indexed
by its id. Turn bouts come in pairs ``NAME_R`` (positive angle) and ``NAME_L``.

The users' scripts use the object in place::

    actions = Actions()
    actions.from_hdf5("actions_all_bouts_with_null.h5")
    actions.get_all_actions()      # list of action dicts, ordered by id
    actions.get_opposing_dict()    # {id of NAME_R: id of NAME_L, and back}

The array properties (``means``, ``cov_factors``, ``mirror``, ...) are the view
the jitted simulator and the learner use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

import h5py
import numpy as np

from simfish.errors import SimFishError
from simfish.io.atomic import atomic_path, atomic_write_text

NULL_ACTION_NAME = "Null"
_FIELDS = ("name", "mean", "cov", "is_turn", "is_capture", "color")


class ActionsError(SimFishError, ValueError):
    """An actions file or action list is invalid."""


def _normalise(action: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Checks one action dict and returns it with numpy values."""
    missing = [k for k in _FIELDS if k not in action]
    if missing:
        raise ActionsError(f"{where}: missing field '{missing[0]}'")
    mean = np.asarray(action["mean"], dtype=np.float64)
    cov = np.asarray(action["cov"], dtype=np.float64)
    color = np.asarray(action["color"], dtype=np.float64)
    if mean.shape != (2,):
        raise ActionsError(f"{where}: 'mean' must have shape (2,), got {mean.shape}")
    if cov.shape != (2, 2):
        raise ActionsError(f"{where}: 'cov' must have shape (2, 2), got {cov.shape}")
    if not np.allclose(cov, cov.T):
        raise ActionsError(f"{where}: 'cov' must be symmetric, got {cov.tolist()}")
    if np.linalg.eigvalsh(cov).min() < -1e-12:
        raise ActionsError(f"{where}: 'cov' must be positive semi-definite, got {cov.tolist()}")
    if color.shape != (3,):
        raise ActionsError(f"{where}: 'color' must be 3 values (RGB), got {color.tolist()}")
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
        raise ActionsError(f"{where}: 'mean' and 'cov' must be finite")
    return {
        "name": str(action["name"]),
        "mean": mean,
        "cov": cov,
        "is_turn": bool(action["is_turn"]),
        "is_capture": bool(action["is_capture"]),
        "color": color,
    }


class Actions:
    """An ordered set of swim-bout actions (ids 0..n-1)."""

    def __init__(self, actions: Iterable[Mapping[str, Any]] | None = None):
        self._actions: list[dict[str, Any]] = []
        if actions is not None:
            self.from_list(actions)

    # -- construction -------------------------------------------------------

    @classmethod
    def default(cls) -> Actions:
        """The users' default set of 21 actions (13 bout types, turns split, plus Null).

        Read from the users' own HDF5 file shipped with the package; the JSON copy
        beside it holds the same means and covariances (colours rounded to 4 decimals).
        """
        out = cls()
        out.from_hdf5(str(resources.files("simfish") / "data" / "actions_all_bouts_with_null.h5"))
        return out

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Actions:
        """Reads the JSON form: ``{"actions": [{"id": ..., "name": ..., ...}, ...]}``."""
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, json.JSONDecodeError) as err:
            raise ActionsError(f"{path}: cannot read actions JSON ({err})") from None
        items = data.get("actions") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise ActionsError(f"{path}: expected a list under 'actions'")
        ordered = sorted(items, key=lambda a: a.get("id", 0))
        ids = [a.get("id", i) for i, a in enumerate(ordered)]
        if ids != list(range(len(ordered))):
            raise ActionsError(f"{path}: action ids must be 0..{len(ordered) - 1}, got {ids}")
        out = cls()
        out.from_list(ordered, source=str(path))
        return out

    def from_list(self, actions: Iterable[Mapping[str, Any]], source: str = "actions") -> None:
        """Replaces the set, in place, with a list of action dicts ordered by id."""
        new = [_normalise(a, f"{source}[{i}]") for i, a in enumerate(actions)]
        names = [a["name"] for a in new]
        duplicated = {n for n in names if names.count(n) > 1}
        if duplicated:
            raise ActionsError(f"{source}: duplicated action name '{sorted(duplicated)[0]}'")
        self._actions = new

    def from_hdf5(self, path: str | os.PathLike) -> None:
        """Fills this object, in place, from the users' HDF5 actions file."""
        loaded = []
        try:
            with h5py.File(path, "r") as f:
                for name, group in f.items():
                    where = f"{path}: group '{name}'"
                    if not isinstance(group, h5py.Group):
                        raise ActionsError(f"{where}: expected a group per action")
                    for key in ("mean", "cov"):
                        if key not in group:
                            raise ActionsError(f"{where}: missing dataset '{key}'")
                    for key in ("is_turn", "is_capture", "id", "color"):
                        if key not in group.attrs:
                            raise ActionsError(f"{where}: missing attribute '{key}'")
                    loaded.append(
                        (
                            int(group.attrs["id"]),
                            {
                                "name": name,
                                "mean": group["mean"][()],
                                "cov": group["cov"][()],
                                "is_turn": bool(group.attrs["is_turn"]),
                                "is_capture": bool(group.attrs["is_capture"]),
                                "color": group.attrs["color"],
                            },
                        )
                    )
        except OSError as err:
            raise ActionsError(f"{path}: cannot read actions HDF5 file ({err})") from None
        loaded.sort(key=lambda item: item[0])
        ids = [i for i, _ in loaded]
        if ids != list(range(len(loaded))):
            raise ActionsError(f"{path}: action ids must be 0..{len(loaded) - 1}, got {ids}")
        self.from_list([a for _, a in loaded], source=str(path))

    def to_hdf5(self, path: str | os.PathLike) -> None:
        """Writes the users' HDF5 format atomically (temporary file, then rename)."""
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            for i, action in enumerate(self._actions):
                group = f.create_group(action["name"])
                group.create_dataset("mean", data=action["mean"])
                group.create_dataset("cov", data=action["cov"])
                group.attrs["is_turn"] = np.bool_(action["is_turn"])
                group.attrs["is_capture"] = np.bool_(action["is_capture"])
                group.attrs["id"] = np.int64(i)
                group.attrs["color"] = action["color"]

    def to_json(self, path: str | os.PathLike) -> None:
        """Writes the JSON form read by :meth:`from_json` (atomically)."""
        data = {"actions": [{"id": i, **_jsonable(a)} for i, a in enumerate(self._actions)]}
        atomic_write_text(path, json.dumps(data, indent=1))

    def add_null_action(self) -> None:
        """Appends a ``Null`` action (zero mean and covariance) unless one exists."""
        if any(a["name"] == NULL_ACTION_NAME for a in self._actions):
            return
        self._actions.append(
            {
                "name": NULL_ACTION_NAME,
                "mean": np.zeros(2),
                "cov": np.zeros((2, 2)),
                "is_turn": False,
                "is_capture": False,
                "color": np.zeros(3),
            }
        )

    # -- the users' accessors ------------------------------------------------

    def get_all_actions(self) -> list[dict[str, Any]]:
        """All action dicts, ordered by id (copies)."""
        return [{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in a.items()}
                for a in self._actions]

    def get_action(self, name: str) -> dict[str, Any]:
        """The action dict called ``name``."""
        for action in self.get_all_actions():
            if action["name"] == name:
                return action
        raise KeyError(f"no action named {name!r} (actions: {', '.join(self.names)})")

    def get_action_id(self, name: str) -> int:
        """The id of the action called ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no action named {name!r} (actions: {', '.join(self.names)})") from None

    def get_opposing_dict(self) -> dict[int, int]:
        """Maps each turn action's id to its mirror partner's id (``_R`` <-> ``_L``)."""
        names = self.names
        out: dict[int, int] = {}
        for i, action in enumerate(self._actions):
            if not action["is_turn"]:
                continue
            stem, _, side = action["name"].rpartition("_")
            partner = {"R": "L", "L": "R"}.get(side)
            if partner is None or f"{stem}_{partner}" not in names:
                raise ActionsError(
                    f"turn action '{action['name']}' has no mirror partner "
                    f"(expected '{stem}_R' and '{stem}_L')"
                )
            out[i] = names.index(f"{stem}_{partner}")
        return out

    # -- array views ----------------------------------------------------------

    @property
    def num_actions(self) -> int:
        """How many actions there are."""
        return len(self._actions)

    def __len__(self) -> int:
        return len(self._actions)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Actions) or len(other) != len(self):
            return False
        for a, b in zip(self._actions, other._actions, strict=True):
            for key in _FIELDS:
                if not np.array_equal(np.asarray(a[key]), np.asarray(b[key])):
                    return False
        return True

    __hash__ = None  # mutable (filled in place), so not hashable

    @property
    def names(self) -> list[str]:
        """Action names, by id."""
        return [a["name"] for a in self._actions]

    @property
    def means(self) -> np.ndarray:
        """[A, 2] float64: mean (distance_mm, angle_rad) per action."""
        return np.stack([a["mean"] for a in self._actions]) if self._actions else np.zeros((0, 2))

    @property
    def cov(self) -> np.ndarray:
        """[A, 2, 2] float64 covariances."""
        return np.stack([a["cov"] for a in self._actions]) if self._actions else np.zeros((0, 2, 2))

    @property
    def cov_factors(self) -> np.ndarray:
        """[A, 2, 2] float64 factors F with F @ F.T == cov (zero for the Null action).

        A sample is ``mean + F @ z`` with z standard normal.
        """
        w, v = np.linalg.eigh(self.cov)
        return v * np.sqrt(np.clip(w, 0.0, None))[:, None, :]

    @property
    def is_turn(self) -> np.ndarray:
        """[A] bool."""
        return np.array([a["is_turn"] for a in self._actions], dtype=bool)

    @property
    def is_capture(self) -> np.ndarray:
        """[A] bool."""
        return np.array([a["is_capture"] for a in self._actions], dtype=bool)

    @property
    def colors(self) -> np.ndarray:
        """[A, 3] float64 RGB colours in 0..1."""
        return np.stack([a["color"] for a in self._actions]) if self._actions else np.zeros((0, 3))

    @property
    def mirror(self) -> np.ndarray:
        """[A] int32: the mirror id of each action (itself for non-turns)."""
        out = np.arange(self.num_actions, dtype=np.int32)
        for i, j in self.get_opposing_dict().items():
            out[i] = j
        return out

    def __repr__(self) -> str:
        return f"Actions({self.num_actions} actions: {', '.join(self.names)})"


def _jsonable(action: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in action.items()}


def as_actions(actions: Actions | Iterable[Mapping[str, Any]] | None) -> Actions:
    """Accepts an Actions, the users' list of action dicts, or None (the default set)."""
    if actions is None:
        return Actions.default()
    if isinstance(actions, Actions):
        return actions
    return Actions(actions)
