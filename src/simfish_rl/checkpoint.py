"""Run directories and checkpoints: the one place that writes and reads them.

A run directory (``simfish train --run-dir``) holds the resolved configs, the
action set, the seed and the learner checkpoints (see ``simfish_rl.training``
for the layout). Training saves (``RunDir.save_checkpoint``) and restores
(``restore_learner``) the full learner state through here; evaluation loads
only the online network parameters (``load_params`` / ``load_policy``),
without building an optimizer or its state. The ``.npz`` format itself is
the learner's (``save_training_state`` in ``simfish_r2d2_learner``).

A checkpoint is written only when every parameter and optimizer value is
finite, so the last good one is never overwritten by a diverged learner.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from simfish.config import SimFishConfig, load_config
from simfish.errors import SimFishError
from simfish.io.actions import Actions
from simfish.io.atomic import atomic_write_text
from simfish_rl.config import TrainingConfig
from simfish_rl.simfish_r2d2_learner import CHECKPOINT_FORMAT, save_training_state

log = logging.getLogger(__name__)

ENV_CONFIG_FILE = "env_config.yaml"
ACTIONS_FILE = "actions.h5"
TRAINING_CONFIG_FILE = "training_config.json"
META_FILE = "meta.json"
CHECKPOINT_DIR = "checkpoints"
PROGRESS_FILE = "progress.json"
CHECKPOINT_PATTERN = "learner_*.npz"


class RunDirError(SimFishError):
    """A run directory is missing, incomplete or does not match the request."""


class NonFiniteError(SimFishError):
    """The learner produced a non-finite loss or parameter."""


def non_finite_leaves(tree: Any) -> list[str]:
    """Paths (``keystr``) of the floating-point leaves of ``tree`` holding a NaN or inf."""
    bad = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        arr = np.asarray(leaf)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            bad.append(jax.tree_util.keystr(path))
    return bad


@dataclasses.dataclass(frozen=True)
class RunDir:
    """Paths and records of a training run directory."""

    path: Path

    @property
    def checkpoints(self) -> Path:
        """Folder of learner checkpoints."""
        return self.path / CHECKPOINT_DIR

    def exists(self) -> bool:
        """The directory holds a started run (its recorded config)."""
        return (self.path / ENV_CONFIG_FILE).is_file()

    def create(self, env_config: SimFishConfig, actions: Actions, training: TrainingConfig,
               seed: int) -> None:
        """Records the resolved configs, actions, versions and seed."""
        from simfish import __version__

        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path}: exists and is not a directory")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunDirError(f"{self.path}: cannot create run directory ({err.strerror})") from None
        self.checkpoints.mkdir(exist_ok=True)
        atomic_write_text(self.path / ENV_CONFIG_FILE, env_config.to_yaml())
        actions.to_hdf5(self.path / ACTIONS_FILE)
        self.record_training(training)
        meta = {
            "simfish_version": __version__,
            "jax_version": jax.__version__,
            "python_version": platform.python_version(),
            "seed": seed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "env_config_source": env_config.source,
        }
        atomic_write_text(self.path / META_FILE, json.dumps(meta, indent=1))

    def record_training(self, training: TrainingConfig) -> None:
        """(Re)writes the recorded training options (atomic)."""
        atomic_write_text(self.path / TRAINING_CONFIG_FILE, training.to_json())

    def load(self) -> tuple[SimFishConfig, Actions, TrainingConfig, dict]:
        """Reads back what :meth:`create` recorded."""
        if not self.exists():
            raise RunDirError(f"{self.path}: not a SimFish run directory (no {ENV_CONFIG_FILE})")
        env_config = load_config(self.path / ENV_CONFIG_FILE)
        actions = Actions()
        actions.from_hdf5(self.path / ACTIONS_FILE)
        training = TrainingConfig.from_json_file(self.path / TRAINING_CONFIG_FILE)
        meta = json.loads((self.path / META_FILE).read_text())
        return env_config, actions, training, meta

    def progress(self) -> dict | None:
        """The latest checkpoint's progress record, or None without checkpoints."""
        path = self.checkpoints / PROGRESS_FILE
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise RunDirError(f"{path}: unreadable progress record ({err})") from None
        if not (self.checkpoints / record["learner_file"]).is_file():
            raise RunDirError(f"{path}: names {record['learner_file']}, which is missing")
        return record

    def latest_learner_file(self) -> Path:
        """The learner checkpoint named by the progress record."""
        record = self.progress()
        if record is None:
            raise RunDirError(f"{self.path}: no checkpoint in {self.checkpoints}")
        return self.checkpoints / record["learner_file"]

    def save_checkpoint(self, learner: Any, record: dict, keep: int = 2) -> Path:
        """Writes the learner state, then the progress record naming it (both atomic).

        Raises:
          NonFiniteError: a parameter or optimizer value is NaN or inf; nothing
            is written, so the previous checkpoint stays the latest.
        """
        state = learner.save()
        bad = non_finite_leaves(state)
        if bad:
            raise NonFiniteError(
                f"learner step {record.get('learner_steps', '?')}: non-finite values in "
                f"{bad[0]}" + (f" and {len(bad) - 1} more" if len(bad) > 1 else "")
                + "; the last good checkpoint is kept"
            )
        name = f"learner_{int(state.steps):09d}.npz"
        save_training_state(self.checkpoints / name, state)
        record = dict(record, learner_file=name, saved=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        atomic_write_text(self.checkpoints / PROGRESS_FILE, json.dumps(record, indent=1))
        old = sorted(self.checkpoints.glob(CHECKPOINT_PATTERN))[:-keep]
        for path in old:
            if path.name != name:
                path.unlink(missing_ok=True)
        return self.checkpoints / name


def restore_learner(learner: Any, path: str | os.PathLike) -> None:
    """Restores a learner's full state (parameters, target, optimizer, step, key) to resume.

    Raises:
      RunDirError: the file is not a checkpoint of this learner's shapes.
    """
    try:
        learner.restore(path)
    except (OSError, ValueError) as err:
        raise RunDirError(f"{path}: cannot restore the learner ({err})") from None


def load_params(path: str | os.PathLike, like: Any) -> Any:
    """Reads only the online network parameters of a learner checkpoint.

    Args:
      path: a ``learner_<step>.npz`` written by ``SimfishR2D2Learner.save``.
      like: parameters of the same network (e.g. ``networks.init(key)``),
        giving names, shapes and dtypes.

    Returns:
      The parameters (a pytree like ``like`` of jnp arrays).

    Raises:
      RunDirError: the file is not a learner checkpoint or its parameters do
        not match ``like``.
    """
    path = os.fspath(path)
    prefix = (jax.tree_util.GetAttrKey("params"),)
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(like)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise RunDirError(f"{path}: cannot read checkpoint ({err})") from None
    with archive as f:
        if "__format__" not in f.files or str(f["__format__"]) != CHECKPOINT_FORMAT:
            raise RunDirError(f"{path}: not a SimFish R2D2 learner checkpoint ({CHECKPOINT_FORMAT})")
        leaves = []
        for p, ref in leaves_with_path:
            name = jax.tree_util.keystr(prefix + tuple(p))
            if name not in f.files:
                raise RunDirError(f"{path}: missing array {name!r}")
            value = f[name]
            if value.shape != tuple(ref.shape) or value.dtype != np.dtype(ref.dtype):
                raise RunDirError(
                    f"{path}: array {name!r} is {value.dtype}{list(value.shape)}, "
                    f"expected {np.dtype(ref.dtype)}{list(ref.shape)}"
                )
            leaves.append(jnp.asarray(value))
    return jax.tree_util.tree_unflatten(treedef, leaves)


def load_policy(directory: str | os.PathLike, env: Any) -> tuple[Any, Any, dict]:
    """Restores the latest online parameters of the run in ``directory`` for ``env``.

    Args:
      directory: a training run directory (``simfish train --run-dir``).
      env: the environment to evaluate in (``SimFishEnv`` or ``BaseEnvironment``);
        its observation and action specs must match the trained network.

    Returns:
      ``(networks, params, progress)``: the network functions, the online
      parameters and the checkpoint's progress record.

    Raises:
      RunDirError: no run or no checkpoint there, or the specs do not match.
    """
    from simfish_rl.builder import make_env
    from simfish_rl.simfish_r2d2_network import environment_spec_from_env, make_r2d2_networks

    run = RunDir(Path(directory))
    if not run.path.is_dir():
        raise RunDirError(f"{run.path}: no such run directory")
    trained_env_config, trained_actions, _, _ = run.load()
    record = run.progress()
    if record is None:
        raise RunDirError(f"{run.path}: the run has no checkpoint yet (train it first)")
    trained_spec = environment_spec_from_env(make_env(trained_env_config, trained_actions))
    spec = environment_spec_from_env(env)
    for what, mine, theirs in (
        ("visual observation", spec.observations.observation[0].shape,
         trained_spec.observations.observation[0].shape),
        ("internal state", spec.observations.observation[1].shape,
         trained_spec.observations.observation[1].shape),
        ("number of actions", spec.actions.num_values, trained_spec.actions.num_values),
    ):
        if mine != theirs:
            raise RunDirError(
                f"{run.path}: the trained network takes a {what} of {theirs}, but this "
                f"environment gives {mine}; evaluate with a config whose eyes and actions "
                "match the training run"
            )
    networks = make_r2d2_networks(trained_spec)
    like = jax.eval_shape(networks.init, jax.random.PRNGKey(0))
    params = load_params(run.checkpoints / record["learner_file"], like)
    return networks, params, record


__all__ = [
    "NonFiniteError",
    "RunDir",
    "RunDirError",
    "load_params",
    "load_policy",
    "non_finite_leaves",
    "restore_learner",
]
