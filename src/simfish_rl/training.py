"""Single-machine R2D2 training: vectorised actors, sequence replay, mirrored learner.

The loop overlaps acting and learning on two threads (or, with
``overlap=False``, alternates them, which makes a run reproducible from its seed):

1. the batched actor steps ``num_envs`` worlds for ``sequence_period`` steps
   with the current actor parameters and writes the steps to replay;
2. the learner does as many steps as keep ``samples_per_insert`` (sequences
   sampled per sequence inserted) once replay holds ``min_replay_size``
   sequences;
3. every ``variable_update_period`` batched actor steps the actor pulls the
   learner's parameters.

A run directory records everything needed to reproduce and resume the run::

    run_dir/
      env_config.yaml        resolved environment configuration
      actions.h5             the action set (the users' HDF5 format)
      training_config.json   TrainingConfig
      meta.json              package and JAX versions, seed, start time
      checkpoints/           learner_<step>.npz + progress.json (atomic)
      metrics.csv            throughput and losses every log_every_seconds
      episodes.csv           one row per finished episode (reward terms, counts)
      tensorboard/           event files, when tensorboardX is installed
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import platform
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from simfish.config import SimFishConfig, load_config
from simfish.errors import SimFishError
from simfish.io.actions import Actions
from simfish.io.atomic import atomic_write_text
from simfish.wrappers.vector_env import episode_stats
from simfish_rl.actor import BatchedActor, apex_epsilons
from simfish_rl.config import TrainingConfig
from simfish_rl.replay import SequenceReplay, SequenceReplayBuffer
from simfish_rl.simfish_r2d2_learner import SimfishR2D2Learner
from simfish_rl.simfish_r2d2_network import environment_spec_from_env, make_r2d2_networks

log = logging.getLogger(__name__)

ENV_CONFIG_FILE = "env_config.yaml"
ACTIONS_FILE = "actions.h5"
TRAINING_CONFIG_FILE = "training_config.json"
META_FILE = "meta.json"
CHECKPOINT_DIR = "checkpoints"
PROGRESS_FILE = "progress.json"
EPISODE_FIELDS = (
    "env_steps",
    "world",
    "epsilon",
    "episode_length",
    "episode_return",
    "prey_caught",
    "energy_associated_reward",
    "consumption_associated_reward",
    "salt_associated_reward",
    "predator_associated_reward",
    "wall_associated_reward",
    "total_attacks_avoided",
    "total_attacks_captured",
    "wall_touches",
)

#: Columns of metrics.csv (the distributed trainer appends its own after these).
METRICS_FIELDS = (
    "time", "env_steps", "learner_steps", "episodes", "env_steps_per_second",
    "learner_steps_per_second", "replay_size", "recent_return", "recent_prey_caught",
    "loss", "mirrored_loss",
)


#: With ``overlap``, how many learner steps acting may run ahead of learning.
MAX_LEARNER_LAG = 2


class RunDirError(SimFishError):
    """A run directory is missing, incomplete or does not match the request."""


def make_env(config: SimFishConfig, actions: Actions):
    """The SimFish environment with vision, as the agent sees it."""
    from simfish.world.env import SimFishEnv

    return SimFishEnv(config, actions, vision=True)


# ---------------------------------------------------------------------------
# Run directory.


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
        atomic_write_text(self.path / TRAINING_CONFIG_FILE, training.to_json())
        meta = {
            "simfish_version": __version__,
            "jax_version": jax.__version__,
            "python_version": platform.python_version(),
            "seed": seed,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "env_config_source": env_config.source,
        }
        atomic_write_text(self.path / META_FILE, json.dumps(meta, indent=1))

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

    def save_checkpoint(self, learner: SimfishR2D2Learner, record: dict, keep: int = 2) -> Path:
        """Writes the learner state, then the progress record naming it (both atomic)."""
        name = f"learner_{learner.steps:09d}.npz"
        learner.save(self.checkpoints / name)
        record = dict(record, learner_file=name, saved=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        atomic_write_text(self.checkpoints / PROGRESS_FILE, json.dumps(record, indent=1))
        old = sorted(self.checkpoints.glob("learner_*.npz"))[:-keep]
        for path in old:
            if path.name != name:
                path.unlink(missing_ok=True)
        return self.checkpoints / name


class _CsvLog:
    """Appends dict rows to a CSV file (header written once)."""

    def __init__(self, path: Path, fields: tuple[str, ...]):
        self._fields = fields
        new = not path.exists() or path.stat().st_size == 0
        self._file = open(path, "a", newline="")  # noqa: SIM115 (closed in close())
        self._writer = csv.DictWriter(self._file, fieldnames=fields, extrasaction="ignore")
        if new:
            self._writer.writeheader()

    def write(self, row: dict) -> None:
        self._writer.writerow({k: row.get(k, "") for k in self._fields})
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _tensorboard(path: Path):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(path))


# ---------------------------------------------------------------------------
# The agent's pieces.


@dataclasses.dataclass
class Agent:
    """Networks, replay, learner and actor wired together for one run."""

    env: Any
    networks: Any
    replay: SequenceReplay
    learner: SimfishR2D2Learner
    actor: BatchedActor
    training: TrainingConfig


def make_agent(env_config: SimFishConfig, actions: Actions, training: TrainingConfig,
               seed: int) -> Agent:
    """Builds every piece of the agent for ``env_config`` (nothing trained yet)."""
    from simfish_rl.replay import example_step

    env = make_env(env_config, actions)
    networks = make_r2d2_networks(environment_spec_from_env(env))
    key = jax.random.PRNGKey(seed)
    k_replay, k_learner = jax.random.split(key)
    period = training.sequence_period
    per_world = max(training.max_replay_size // training.num_envs, 1)
    steps_per_world = max(per_world * period, training.sequence_length + period)
    steps_per_world = -(-steps_per_world // period) * period
    buffer = SequenceReplayBuffer(
        num_worlds=training.num_envs,
        steps_per_world=steps_per_world,
        sequence_length=training.sequence_length,
        sequence_period=period,
        priority_exponent=training.priority_exponent,
        min_size=training.min_replay_size,
    )
    visual_spec, internal_spec = env.observation_spec().observation
    replay = SequenceReplay(
        buffer,
        example_step(visual_spec.shape[0], visual_spec.shape[1], internal_spec.shape[0]),
        k_replay,
    )
    learner = SimfishR2D2Learner(
        networks=networks,
        batch_size=training.batch_size,
        random_key=k_learner,
        burn_in_length=training.burn_in_length,
        discount=training.discount,
        importance_sampling_exponent=training.importance_sampling_exponent,
        max_priority_weight=training.max_priority_weight,
        target_update_period=training.target_update_period,
        iterator=replay.iterator(training.batch_size),
        optimizer=optax.adam(training.learning_rate, eps=training.adam_eps),
        actions_mirror=actions.get_opposing_dict(),
        bootstrap_n=training.bootstrap_n,
        clip_rewards=training.clip_rewards,
        max_abs_reward=training.max_abs_reward,
        prefetch_size=0,
        replay_client=replay,
    )
    actor = BatchedActor(
        env,
        apply_fn=networks.apply,
        initial_state_fn=networks.initial_state,
        epsilons=apex_epsilons(training.num_envs, training.epsilon_base, training.epsilon_alpha),
        episode_stats_fn=episode_stats,
    )
    return Agent(env, networks, replay, learner, actor, training)


# ---------------------------------------------------------------------------
# Training.


def train(
    run_dir: str | os.PathLike,
    env_config: SimFishConfig | None = None,
    training: TrainingConfig | None = None,
    num_steps: int = 100_000,
    seed: int = 0,
    actions: Actions | None = None,
    progress: bool = True,
    overlap: bool = True,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Trains (or resumes) an R2D2 agent until ``num_steps`` env steps in total.

    Args:
      run_dir: the run directory; if it holds a started run, training resumes
        from its latest checkpoint with its recorded configuration.
      env_config: environment configuration for a new run (must equal the
        recorded one when resuming, if given).
      training: training options for a new run (defaults: the users').
      num_steps: total environment steps (summed over worlds) to reach.
      seed: seed of a new run (resumed runs keep theirs, shifted by the step).
      actions: the action set of a new run (default set if None).
      progress: show a progress bar.
      overlap: run the learner on its own thread, overlapping acting (13% faster
        end to end on 2 CPU cores: 2,823 vs 2,494 env steps/s on ``normal``).
        Thread timing then decides when actors pull parameters, so runs are
        not bit-reproducible; ``overlap=False`` alternates acting and learning
        and makes a run a pure function of its seed.
      max_seconds: stop (and checkpoint) after this much wall time.

    Returns:
      A summary: env and learner steps, rates, episodes, recent returns, and
      whether the run was resumed or interrupted.
    """
    run = RunDir(Path(run_dir))
    resumed_from = None
    if run.exists():
        rec_env, rec_actions, rec_training, meta = run.load()
        if env_config is not None and env_config.to_dict() != rec_env.to_dict():
            raise RunDirError(
                f"{run.path}: holds a run with a different environment config; "
                "use a new --run-dir or omit --config to resume"
            )
        if training is not None and training != rec_training:
            raise RunDirError(
                f"{run.path}: holds a run with different training options "
                f"(recorded in {TRAINING_CONFIG_FILE}); use a new --run-dir"
            )
        env_config, actions, training, seed = rec_env, rec_actions, rec_training, meta["seed"]
        record = run.progress()
        if record is not None:
            resumed_from = record
    else:
        if env_config is None:
            raise RunDirError(f"{run.path}: no run to resume, and no environment config given")
        training = training or TrainingConfig()
        actions = actions or Actions.default()
        run.create(env_config, actions, training, seed)

    agent = make_agent(env_config, actions, training, seed)
    counts = {"env_steps": 0, "learner_steps": 0, "episodes": 0, "actor_steps": 0}
    if resumed_from is not None:
        agent.learner.restore(run.checkpoints / resumed_from["learner_file"])
        counts.update({k: int(resumed_from[k]) for k in counts})
        log.info(
            "resuming %s from its checkpoint at %d env steps (%d learner steps)",
            run.path, counts["env_steps"], counts["learner_steps"],
        )
    loop = _TrainingLoop(agent, run, counts, seed, progress=progress, overlap=overlap)
    return loop.run(num_steps, max_seconds=max_seconds, resumed=resumed_from is not None)


class _TrainingLoop:
    """The acting / learning loop with its bookkeeping (one per ``train`` call)."""

    def __init__(self, agent: Agent, run: RunDir, counts: dict, seed: int, progress: bool,
                 overlap: bool):
        self.agent = agent
        self.run_dir = run
        self.counts = counts
        self.progress = progress
        self.overlap = overlap
        self.cfg = agent.training
        # A resumed run continues its random stream from where it stopped.
        self.key = jax.random.fold_in(jax.random.PRNGKey(seed), counts["env_steps"])
        self.recent = deque(maxlen=100)
        self.recent_prey = deque(maxlen=100)
        self.metrics: dict[str, float] = {}
        self.inserted = 0  # sequences inserted in this call
        self.learned_at_start = counts["learner_steps"]
        self._stop = threading.Event()
        # The learner donates its state to each SGD step: copies of its parameters
        # and checkpoints are taken under this lock, between steps.
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self.episodes_csv = _CsvLog(run.path / "episodes.csv", EPISODE_FIELDS)
        self.metrics_csv = _CsvLog(run.path / "metrics.csv", METRICS_FIELDS)
        self.tb = _tensorboard(run.path / "tensorboard")

    # -- pieces ---------------------------------------------------------------

    def _learner_steps_due(self) -> int:
        """Learner steps owed to keep ``samples_per_insert``."""
        if not self.agent.replay.can_sample():
            return 0
        wanted = int(self.inserted * self.cfg.samples_per_insert / self.cfg.batch_size)
        return max(0, wanted - (self.counts["learner_steps"] - self.learned_at_start))

    def _learn(self, n: int) -> None:
        for _ in range(n):
            with self._lock:
                self.metrics = self.agent.learner.step()
                self.counts["learner_steps"] += 1

    def _actor_params(self):
        with self._lock:
            return jax.tree.map(jnp.copy, self.agent.learner.params)

    def _learner_thread(self) -> None:
        try:
            while not self._stop.is_set():
                due = self._learner_steps_due()
                if due == 0:
                    time.sleep(0.005)
                    continue
                self._learn(1)
        except BaseException as err:  # surfaced on the main thread
            self._error = err
            self._stop.set()

    def _record_episodes(self, ended: np.ndarray, stats: dict, env_steps_before: int,
                         epsilons: np.ndarray) -> None:
        t_idx, w_idx = np.nonzero(ended)
        num_worlds = ended.shape[1]
        for t, w in zip(t_idx, w_idx, strict=True):
            row = {name: float(v[t, w]) for name, v in stats.items()}
            row.update(
                env_steps=env_steps_before + (t + 1) * num_worlds,
                world=int(w),
                epsilon=float(epsilons[w]),
            )
            self.episodes_csv.write(row)
            self.recent.append(row["episode_return"])
            self.recent_prey.append(row["prey_caught"])
            self.counts["episodes"] += 1
            if self.tb is not None:
                for name in EPISODE_FIELDS[3:]:
                    self.tb.add_scalar(f"episode/{name}", row[name], row["env_steps"])

    def _record(self) -> dict:
        return dict(self.counts)

    def _checkpoint(self) -> None:
        with self._lock:
            path = self.run_dir.save_checkpoint(self.agent.learner, self._record())
        log.info("checkpoint %s at %d env steps", path.name, self.counts["env_steps"])

    # -- the loop ---------------------------------------------------------------

    def run(self, num_steps: int, max_seconds: float | None, resumed: bool) -> dict[str, Any]:
        agent, cfg = self.agent, self.cfg
        actor = agent.actor
        self.key, k_init = jax.random.split(self.key)
        actor_state = actor.init(k_init)
        params = self._actor_params()
        epsilons = np.asarray(actor_state.epsilons)
        steps_per_chunk = cfg.sequence_period * cfg.num_envs
        start = time.time()
        last_ckpt = last_log = start
        env_at_log, learn_at_log = self.counts["env_steps"], self.counts["learner_steps"]
        interrupted = False
        learner = None
        if self.overlap:
            learner = threading.Thread(target=self._learner_thread, name="learner", daemon=True)
            learner.start()
        bar = tqdm(
            total=num_steps, initial=min(self.counts["env_steps"], num_steps), unit="step",
            disable=not self.progress, desc="train", dynamic_ncols=True,
        )
        try:
            while self.counts["env_steps"] < num_steps:
                if self._error is not None:
                    raise self._error
                if max_seconds is not None and time.time() - start > max_seconds:
                    log.info("stopping after max_seconds=%s", max_seconds)
                    break
                self.key, k = jax.random.split(self.key)
                actor_state, (steps, ended, stats) = actor.collect(
                    params, actor_state, k, cfg.sequence_period
                )
                agent.replay.add(steps)
                env_before = self.counts["env_steps"]
                self.counts["env_steps"] += steps_per_chunk
                self.counts["actor_steps"] += cfg.sequence_period
                self.inserted += cfg.num_envs
                ended = np.asarray(ended)
                if ended.any():
                    self._record_episodes(ended, jax.device_get(stats), env_before, epsilons)
                if not self.overlap:
                    self._learn(self._learner_steps_due())
                else:
                    # Rate limiter: acting may run ahead of learning by at most
                    # MAX_LEARNER_LAG learner steps, so samples_per_insert holds.
                    while self._learner_steps_due() > MAX_LEARNER_LAG and self._error is None:
                        time.sleep(0.002)
                if self.counts["actor_steps"] % cfg.variable_update_period < cfg.sequence_period:
                    params = self._actor_params()
                bar.update(steps_per_chunk)
                now = time.time()
                if now - last_log >= cfg.log_every_seconds:
                    row = self._log_row(now, last_log, env_at_log, learn_at_log)
                    bar.set_postfix(
                        env_sps=f"{row['env_steps_per_second']:.0f}",
                        learn_sps=f"{row['learner_steps_per_second']:.2f}",
                        ret=f"{row['recent_return']:.2f}",
                        prey=f"{row['recent_prey_caught']:.2f}",
                    )
                    last_log, env_at_log, learn_at_log = (
                        now, self.counts["env_steps"], self.counts["learner_steps"])
                if now - last_ckpt >= cfg.checkpoint_every_minutes * 60:
                    self._checkpoint()
                    last_ckpt = now
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted: saving a checkpoint before exiting")
        finally:
            self._stop.set()
            if learner is not None:
                learner.join()
            bar.close()
        self._checkpoint()
        elapsed = time.time() - start
        self.episodes_csv.close()
        self.metrics_csv.close()
        if self.tb is not None:
            self.tb.close()
        if self._error is not None:
            raise self._error
        return {
            **self.counts,
            "seconds": elapsed,
            "resumed": resumed,
            "interrupted": interrupted,
            "recent_return": float(np.mean(self.recent)) if self.recent else float("nan"),
            "recent_prey_caught": (
                float(np.mean(self.recent_prey)) if self.recent_prey else float("nan")),
            "run_dir": str(self.run_dir.path),
        }

    def _log_row(self, now, last_log, env_at_log, learn_at_log) -> dict:
        dt = max(now - last_log, 1e-9)
        row = {
            "time": now,
            **self.counts,
            "env_steps_per_second": (self.counts["env_steps"] - env_at_log) / dt,
            "learner_steps_per_second": (self.counts["learner_steps"] - learn_at_log) / dt,
            "replay_size": self.agent.replay.size(),
            "recent_return": float(np.mean(self.recent)) if self.recent else float("nan"),
            "recent_prey_caught": (
                float(np.mean(self.recent_prey)) if self.recent_prey else float("nan")),
            "loss": self.metrics.get("loss", float("nan")),
            "mirrored_loss": self.metrics.get("mirrored_loss", float("nan")),
        }
        self.metrics_csv.write(row)
        if self.tb is not None:
            for name, value in row.items():
                if name != "time":
                    self.tb.add_scalar(f"train/{name}", value, self.counts["env_steps"])
        return row
