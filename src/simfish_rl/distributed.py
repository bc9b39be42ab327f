"""R2D2 training and evaluation spread over processes and machines with Ray.

The single-machine trainer (``simfish_rl.training``) steps all worlds and the
learner in one process. Here the same pieces run as Ray actors:

* ``N`` actor processes (:class:`ActorWorker`), each stepping ``E`` worlds with
  the batched recurrent actor (``simfish_rl.actor.BatchedActor``). Their
  epsilons are slices of one Ape-X schedule over all ``N x E`` worlds, so the
  exploration spread is the same as one process with ``N x E`` worlds.
* one learner process (:class:`LearnerWorker`, on a GPU when the cluster has
  one) holding the sequence replay of all ``N x E`` worlds and the learner.
  Its ``add`` is the rate limiter: it returns only once the learner has done
  the learner steps that keep ``samples_per_insert`` (within
  ``MAX_LEARNER_LAG``), so acting cannot outrun learning.
* the driver (this process, :func:`train_distributed`): it asks every actor
  for one chunk of ``sequence_period`` steps of its worlds, hands the chunks
  (as object references: they go from the actors to the learner through
  Ray's object store, not through the driver) to the learner in one call,
  pulls new parameters every ``variable_update_period`` batched actor steps
  (one ``ray.put``-style object shared by all actors), and keeps the run
  directory exactly as the single-machine trainer does (configs, checkpoints,
  ``metrics.csv``, ``episodes.csv``, TensorBoard, progress bar).

Rounds are in lockstep: a round is one chunk from every actor, added to the
replay as one ``[T, N x E]`` block, because the replay keeps one write
position for all worlds. Acting of round ``r + 1`` overlaps the learner's
work on round ``r``.

Faults:

* An actor process that dies is restarted by Ray (``max_restarts``); the
  driver logs it, asks the new process for the lost chunk and goes on. The new
  process resets its worlds, so their streams restart with a ``FIRST`` step,
  which the learner treats as an episode boundary.
* A learner process that dies is restarted by Ray too; the driver restores
  it from the latest checkpoint it holds. Its replay is lost: the log says so,
  and learning waits until the actors have refilled ``min_replay_size``
  sequences.
* Ctrl-C (or ``max_seconds``) stops every worker after a final checkpoint; a
  stopped or killed run resumes from its run directory with the same command.

Checkpoints travel as bytes (the ``.npz`` file) between the learner and the
driver, so the run directory needs to exist only on the driver's machine.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from simfish.config import SimFishConfig
from simfish.errors import SimFishError
from simfish.io.actions import Actions
from simfish_rl.config import TrainingConfig

log = logging.getLogger(__name__)

#: How many learner steps the actors may run ahead of the learner.
MAX_LEARNER_LAG = 2
#: Restarts Ray grants each actor process and the learner process.
MAX_RESTARTS = 100
#: Times the driver retries a learner call that failed because the learner died.
MAX_CHUNK_RETRIES = 5
#: Seconds the driver waits for Ray to bring a lost actor process back.
ACTOR_RESTART_TIMEOUT = 600.0


class DistributedError(SimFishError):
    """Ray is missing, a cluster cannot be reached, or workers keep failing."""


def _ray():
    """The ``ray`` module, or a one-line error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise DistributedError(
            "distributed training needs Ray: pip install 'simfish[distributed]'"
        ) from None
    return ray


@dataclasses.dataclass(frozen=True)
class RayOptions:
    """Where and how wide a distributed run is.

    Attributes:
      address: Ray cluster address (``auto`` or ``HOST:PORT``); None starts a
        local Ray on this machine (loopback only, no dashboard).
      num_actors: N, actor processes.
      envs_per_actor: E, worlds each actor process steps.
      actor_cpus: CPUs Ray reserves per actor process (fractions allowed).
      learner_cpus: CPUs Ray reserves for the learner process.
      learner_gpus: GPUs for the learner; None: 1 if the cluster has a GPU.
      object_store_mb: object store size of a local Ray (MiB).
      jax_cache_dir: JAX persistent compilation cache folder for the workers
        (a path valid on every node); a restarted worker then loads its
        compiled programs instead of compiling them again. None: no cache.
    """

    address: str | None = None
    num_actors: int = 2
    envs_per_actor: int = 32
    actor_cpus: float = 1.0
    learner_cpus: float = 1.0
    learner_gpus: float | None = None
    object_store_mb: int = 200
    jax_cache_dir: str | None = None

    def __post_init__(self):
        if self.num_actors < 1 or self.envs_per_actor < 1:
            raise DistributedError(
                f"--actors ({self.num_actors}) and --envs-per-actor ({self.envs_per_actor}) "
                "must be >= 1"
            )
        if self.actor_cpus < 0 or self.learner_cpus < 0:
            raise DistributedError("actor_cpus and learner_cpus must be >= 0")

    @property
    def num_worlds(self) -> int:
        """N x E, all worlds of the run."""
        return self.num_actors * self.envs_per_actor

    def runtime_env(self, cpu_only: bool) -> dict:
        """Ray ``runtime_env`` of a worker: JAX on CPU for actors, the compilation cache."""
        env = {"JAX_PLATFORMS": "cpu"} if cpu_only else {}
        if self.jax_cache_dir is not None:
            env.update(JAX_COMPILATION_CACHE_DIR=str(self.jax_cache_dir),
                       JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
        return {"env_vars": env}


def start_ray(options: RayOptions) -> bool:
    """Connects to (or starts) Ray; True if this call started it (and should stop it)."""
    ray = _ray()
    if ray.is_initialized():
        return False
    if options.address is not None:
        try:
            ray.init(address=options.address, include_dashboard=False, log_to_driver=True)
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise DistributedError(
                f"--ray-address {options.address}: cannot connect to a Ray cluster ({err})"
            ) from None
        return True
    wanted = options.num_actors * options.actor_cpus + options.learner_cpus
    ray.init(
        num_cpus=max(os.cpu_count() or 1, int(np.ceil(wanted))),
        include_dashboard=False,
        object_store_memory=options.object_store_mb * 1024 * 1024,
        _node_ip_address="127.0.0.1",
        log_to_driver=True,
    )
    return True


# ---------------------------------------------------------------------------
# Worker classes (plain classes; made Ray actors with ``ray.remote`` on use).


def _seed_key(*numbers: int):
    """A JAX key from a tuple of integers (run seed, actor, round, ...)."""
    import jax

    key = jax.random.PRNGKey(numbers[0])
    for n in numbers[1:]:
        key = jax.random.fold_in(key, n)
    return key


def _to_wire(steps) -> Any:
    """Host copy of a chunk ``Step`` [T, E, ...] with the visual field as uint8 (4x smaller)."""
    import jax

    from simfish.world.types import OAR

    steps = jax.device_get(steps)
    visual, *rest = steps.observation.observation
    visual = np.clip(np.floor(visual), 0, 255).astype(np.uint8)
    obs = OAR((visual, *rest), steps.observation.action, steps.observation.reward)
    return steps._replace(observation=obs)


def _from_wire(steps) -> Any:
    """Inverse of :func:`_to_wire` (visual back to float32)."""
    from simfish.world.types import OAR

    visual, *rest = steps.observation.observation
    obs = OAR((visual.astype(np.float32), *rest), steps.observation.action,
              steps.observation.reward)
    return steps._replace(observation=obs)


def _nbytes(tree) -> int:
    import jax

    return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree)))


class ActorWorker:
    """One actor process: ``E`` worlds stepped by the batched recurrent actor.

    Args:
      env_config, actions, training: the run's environment, action set and options.
      index: k, this actor's place among the N (its worlds are ``k*E .. k*E+E-1``).
      options: the run's :class:`RayOptions`.
      seed: the run's seed.
    """

    def __init__(self, env_config: SimFishConfig, actions: Actions, training: TrainingConfig,
                 index: int, options: RayOptions, seed: int):
        from simfish.wrappers.vector_env import episode_stats
        from simfish_rl.actor import BatchedActor, apex_epsilons
        from simfish_rl.simfish_r2d2_network import (
            environment_spec_from_env,
            make_r2d2_networks,
        )
        from simfish_rl.training import make_env

        e = options.envs_per_actor
        all_eps = apex_epsilons(options.num_worlds, training.epsilon_base, training.epsilon_alpha)
        self.epsilons = all_eps[index * e:(index + 1) * e]
        env = make_env(env_config, actions)
        networks = make_r2d2_networks(environment_spec_from_env(env))
        self._actor = BatchedActor(env, networks.apply, networks.initial_state, self.epsilons,
                                   episode_stats_fn=episode_stats)
        self._index, self._e, self._seed = index, e, seed
        self._period = training.sequence_period
        self._state = None

    def pid(self) -> int:
        """This process's id."""
        return os.getpid()

    def collect(self, params, round_index: int) -> tuple[Any, dict]:
        """One chunk: ``sequence_period`` steps of the E worlds with ``params``.

        The first call of a (re)started process resets its worlds with a key
        drawn from (seed, actor, round).

        Returns:
          ``(steps, info)``: ``Step`` arrays [T, E, ...] (visual as uint8) and a
          dict with the finished episodes (rows for ``episodes.csv``), the
          env steps, the seconds spent and this process's pid.
        """
        import jax

        start = time.perf_counter()
        key = _seed_key(self._seed, self._index, round_index)
        k_init, k_run = jax.random.split(key)
        if self._state is None:
            self._state = self._actor.init(k_init)
        self._state, (steps, ended, stats) = self._actor.collect(
            params, self._state, k_run, self._period)
        wire = _to_wire(steps)
        ended = np.asarray(ended)
        episodes = []
        if ended.any():
            stats = jax.device_get(stats)
            for t, w in zip(*np.nonzero(ended), strict=True):
                row = {name: float(v[t, w]) for name, v in stats.items()}
                row.update(t=int(t), world=self._index * self._e + int(w),
                           epsilon=float(self.epsilons[w]))
                episodes.append(row)
        info = {
            "episodes": episodes,
            "env_steps": self._period * self._e,
            "seconds": time.perf_counter() - start,
            "bytes": _nbytes(wire),
            "pid": os.getpid(),
        }
        return wire, info


class LearnerWorker:
    """The learner process: replay of all ``N x E`` worlds and the R2D2 learner.

    A thread does learner steps whenever ``samples_per_insert`` asks for them;
    :meth:`add` blocks until the learner is within ``MAX_LEARNER_LAG`` steps
    of what is due. Methods run concurrently (a threaded Ray actor).
    """

    def __init__(self, env_config: SimFishConfig, actions: Actions, training: TrainingConfig,
                 options: RayOptions, seed: int):
        import threading

        from simfish_rl.training import make_agent

        self.training = training
        self._agent = make_agent(env_config, actions,
                                 training.replace({"num_envs": options.num_worlds}), seed)
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.learner_steps = 0  # step() calls in total (restored from checkpoints)
        self._learned_here = 0  # step() calls since this process started / restored
        self.inserted = 0  # sequences inserted into this process's replay
        self.metrics: dict[str, float] = {}
        self.error: str | None = None
        self._thread = threading.Thread(target=self._learn_loop, name="learner", daemon=True)
        self._thread.start()

    def pid(self) -> int:
        """This process's id."""
        return os.getpid()

    def _due(self) -> int:
        """Learner steps owed to keep ``samples_per_insert``."""
        if not self._agent.replay.can_sample():
            return 0
        cfg = self.training
        wanted = int(self.inserted * cfg.samples_per_insert / cfg.batch_size)
        return max(0, wanted - self._learned_here)

    def _learn_loop(self) -> None:
        try:
            while not self._stop.is_set():
                if self._due() == 0:
                    time.sleep(0.005)
                    continue
                with self._lock:
                    self.metrics = self._agent.learner.step()
                    self.learner_steps += 1
                    self._learned_here += 1
                with self._cond:
                    self._cond.notify_all()
        except BaseException as err:  # reported through status() / add()
            self.error = f"{type(err).__name__}: {err}"
            log.exception("learner thread failed")
            self._stop.set()
            with self._cond:
                self._cond.notify_all()

    def _check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"learner failed: {self.error}")

    def add(self, *chunks) -> dict:
        """Adds one round: chunks ``[T, E, ...]`` of every actor, in actor order.

        Returns once the learner has caught up (the samples-per-insert limiter),
        with :meth:`status`.
        """
        import jax

        self._check()
        steps = jax.tree.map(lambda *xs: np.concatenate(xs, axis=1),
                             *[_from_wire(c) for c in chunks])
        self._agent.replay.add(steps)
        self.inserted += int(np.shape(steps.action)[1])
        with self._cond:
            while (self._due() > MAX_LEARNER_LAG and not self._stop.is_set()
                   and self.error is None):
                self._cond.wait(timeout=0.05)
        self._check()
        return self.status()

    def status(self) -> dict:
        """Learner steps, replay size, latest losses and the pid."""
        return {
            "learner_steps": self.learner_steps,
            "replay_size": self._agent.replay.size(),
            "loss": self.metrics.get("loss", float("nan")),
            "mirrored_loss": self.metrics.get("mirrored_loss", float("nan")),
            "pid": os.getpid(),
            "error": self.error,
        }

    def params(self) -> Any:
        """Host copy of the online parameters (what the actors act with)."""
        import jax

        with self._lock:
            return jax.device_get(self._agent.learner.params)

    def checkpoint(self) -> tuple[Any, bytes, int, int]:
        """The full learner state (host arrays), the same as ``.npz`` bytes, and its
        SGD steps and learner steps."""
        from simfish_rl.simfish_r2d2_learner import save_training_state

        with self._lock:
            state = self._agent.learner.save()
            sgd_steps, learner_steps = self._agent.learner.steps, self.learner_steps
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "learner.npz"
            save_training_state(path, state)
            return state, path.read_bytes(), sgd_steps, learner_steps

    def restore(self, data: bytes, learner_steps: int) -> None:
        """Restores the learner from checkpoint bytes (replay stays as it is)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "learner.npz"
            path.write_bytes(data)
            with self._lock:
                self._agent.learner.restore(path)
                self.learner_steps = learner_steps

    def stop(self) -> None:
        """Stops the learning thread."""
        self._stop.set()
        self._thread.join(timeout=30)


class _CheckpointState:
    """What ``RunDir.save_checkpoint`` needs from a learner: ``steps`` and ``save()``."""

    def __init__(self, state: Any, sgd_steps: int):
        self._state = state
        self.steps = sgd_steps

    def save(self) -> Any:
        """The learner state (host arrays) that the run directory checks and writes."""
        return self._state


# ---------------------------------------------------------------------------
# The driver.


def train_distributed(
    run_dir: str | os.PathLike,
    env_config: SimFishConfig | None = None,
    training: TrainingConfig | None = None,
    num_steps: int = 100_000,
    seed: int = 0,
    actions: Actions | None = None,
    options: RayOptions | None = None,
    progress: bool = True,
    max_seconds: float | None = None,
    on_round: Callable[[dict], None] | None = None,
) -> dict[str, Any]:
    """Trains (or resumes) an R2D2 agent on Ray until ``num_steps`` env steps in total.

    Arguments as :func:`simfish_rl.training.train`, plus:

    Args:
      options: cluster address and the number and width of actor processes;
        ``training.num_envs`` is not used (the run has ``N x E`` worlds).
      on_round: called after every round with ``{"env_steps", "actor_pids",
        "learner_pid", "actor_restarts"}`` (tests use it to kill a worker).

    Returns:
      The summary of ``train`` plus ``actor_restarts``, ``learner_restarts``
      and ``actor_env_steps_per_second`` (per actor, over the whole call).
    """
    from simfish_rl.training import RunDir, open_run

    options = options or RayOptions()
    run = RunDir(Path(run_dir))
    env_config, actions, training, seed, record = open_run(
        run, env_config, training, seed, actions)
    ray = _ray()
    started = start_ray(options)
    driver = _Driver(ray, run, env_config, actions, training, seed, options, record,
                     progress=progress)
    try:
        return driver.run(num_steps, max_seconds, on_round)
    finally:
        driver.shutdown()
        if started:
            ray.shutdown()


class _Driver:
    """Owns the Ray workers and the run directory records of one ``train_distributed`` call."""

    def __init__(self, ray, run, env_config, actions, training, seed, options, record,
                 progress):
        from simfish_rl.training import EPISODE_FIELDS, METRICS_FIELDS, _CsvLog, _tensorboard

        self.ray, self.run_dir, self.training, self.seed = ray, run, training, seed
        self.options, self.progress = options, progress
        self.counts = {"env_steps": 0, "learner_steps": 0, "episodes": 0, "actor_steps": 0}
        self.resumed = record is not None
        self.checkpoint_data: tuple[bytes, int] | None = None
        if record is not None:
            self.counts.update({k: int(record[k]) for k in self.counts})
            path = run.checkpoints / record["learner_file"]
            self.checkpoint_data = (path.read_bytes(), self.counts["learner_steps"])
            log.info("resuming %s from its checkpoint at %d env steps (%d learner steps)",
                     run.path, self.counts["env_steps"], self.counts["learner_steps"])
        self.actor_restarts = 0
        self.learner_restarts = 0
        n = options.num_actors
        self.actor_fields = tuple(f"actor_{k}_env_steps_per_second" for k in range(n))
        self.episodes_csv = _CsvLog(run.path / "episodes.csv", EPISODE_FIELDS)
        self.metrics_csv = _CsvLog(
            run.path / "metrics.csv",
            METRICS_FIELDS + ("actor_restarts", "learner_restarts", "actor_bytes_per_second")
            + self.actor_fields,
        )
        self.tb = _tensorboard(run.path / "tensorboard")
        self.recent = deque(maxlen=100)
        self.recent_prey = deque(maxlen=100)
        self.status: dict = {}

        gpus = options.learner_gpus
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        actor_cls = ray.remote(ActorWorker).options(
            num_cpus=options.actor_cpus, max_restarts=MAX_RESTARTS, max_task_retries=0,
            runtime_env=options.runtime_env(cpu_only=True),
        )
        learner_cls = ray.remote(LearnerWorker).options(
            num_cpus=options.learner_cpus, num_gpus=gpus, max_restarts=MAX_RESTARTS,
            max_task_retries=0, max_concurrency=4, runtime_env=options.runtime_env(cpu_only=False),
        )
        self.actors = [actor_cls.remote(env_config, actions, training, k, options, seed)
                       for k in range(n)]
        self.learner = learner_cls.remote(env_config, actions, training, options, seed)
        self.actor_pids = [None] * n
        self.learner_pid = None
        self._restore_learner()
        log.info("distributed run: %d actor processes x %d worlds, learner on %s",
                 n, options.envs_per_actor, "a GPU" if gpus else "CPU")

    # -- learner calls that survive a learner restart -------------------------

    def _restore_learner(self) -> None:
        """Gives a (new or restarted) learner process the latest checkpoint."""
        deadline = time.time() + ACTOR_RESTART_TIMEOUT
        while True:
            try:
                if self.checkpoint_data is not None:
                    data, learner_steps = self.checkpoint_data
                    self.ray.get(self.learner.restore.remote(data, learner_steps))
                self.learner_pid = self.ray.get(self.learner.pid.remote())
                return
            except self.ray.exceptions.ActorUnavailableError as err:  # still restarting
                if time.time() > deadline:
                    raise DistributedError(
                        f"the learner did not come back within {ACTOR_RESTART_TIMEOUT:.0f} s"
                    ) from err
                time.sleep(0.5)

    def _learner_lost(self, err: Exception) -> None:
        self.learner_restarts += 1
        if self.learner_restarts > MAX_RESTARTS:
            raise DistributedError(f"the learner process failed {MAX_RESTARTS} times") from err
        where = (f"its checkpoint at {self.checkpoint_data[1]} learner steps"
                 if self.checkpoint_data else "scratch (no checkpoint yet)")
        log.warning(
            "learner process lost (%s); Ray restarts it, restoring from %s. Its replay is "
            "lost: refilling it from the actors (learning resumes at %d sequences)",
            type(err).__name__, where, self.training.min_replay_size,
        )
        self._restore_learner()

    def _learner_call(self, method: str, *args):
        """``ray.get(learner.<method>.remote(*args))``, restoring the learner if it died."""
        for _ in range(MAX_CHUNK_RETRIES):
            try:
                return self.ray.get(getattr(self.learner, method).remote(*args))
            except self.ray.exceptions.RayActorError as err:
                self._learner_lost(err)
        raise DistributedError(f"learner call {method} failed {MAX_CHUNK_RETRIES} times")

    # -- one round --------------------------------------------------------------

    def _params_ok(self, params_ref) -> bool:
        """False if ``params_ref`` was lost with a learner process (which is then restored)."""
        try:
            self.ray.get(params_ref)
            return True
        except self.ray.exceptions.RayActorError as err:
            self._learner_lost(err)
            return False

    def _collect_round(self, params_ref, round_index: int) -> tuple[list, list[dict], Any]:
        """One chunk from every actor; an actor that died is asked again once restarted.

        Returns the chunk references, the actors' infos and the parameter
        reference in use (a new one if the learner had to be restored).
        """
        exc = self.ray.exceptions
        pending = {k: a.collect.options(num_returns=2).remote(params_ref, round_index)
                   for k, a in enumerate(self.actors)}
        refs: list = [None] * len(self.actors)
        infos: list = [None] * len(self.actors)
        lost_since: dict[int, float] = {}
        while pending:
            for k, (steps_ref, info_ref) in list(pending.items()):
                try:
                    infos[k] = self.ray.get(info_ref)
                    refs[k] = steps_ref
                    del pending[k]
                except (exc.RayActorError, exc.ObjectLostError) as err:
                    if not self._params_ok(params_ref):
                        params_ref = self.learner.params.remote()
                        pending[k] = self.actors[k].collect.options(num_returns=2).remote(
                            params_ref, round_index)
                        continue
                    now = time.time()
                    if k not in lost_since:
                        # First failure of this actor in this round: it died; later
                        # failures (ActorUnavailableError) mean Ray is still restarting it.
                        lost_since[k] = now
                        self.actor_restarts += 1
                        log.warning("actor process %d (pid %s) lost (%s); Ray restarts it and "
                                    "the run goes on", k, self.actor_pids[k], type(err).__name__)
                    elif now - lost_since[k] > ACTOR_RESTART_TIMEOUT:
                        raise DistributedError(
                            f"actor {k} did not come back within {ACTOR_RESTART_TIMEOUT:.0f} s "
                            f"of being lost ({type(err).__name__}: {err})") from err
                    else:
                        time.sleep(0.5)
                    pending[k] = self.actors[k].collect.options(num_returns=2).remote(
                        params_ref, round_index)
        for k, info in enumerate(infos):
            self.actor_pids[k] = info["pid"]
        return refs, infos, params_ref

    def _add_round(self, refs) -> dict | None:
        """Hands a round to the learner (waits for the rate limiter); None if it was lost."""
        try:
            return self.ray.get(self.learner.add.remote(*refs))
        except self.ray.exceptions.RayActorError as err:
            self._learner_lost(err)
        except self.ray.exceptions.ObjectLostError:
            log.warning("a chunk was lost in transit (its actor's node died); round skipped")
        return None

    def _record_episodes(self, infos: list[dict], env_before: int) -> None:
        from simfish_rl.training import EPISODE_FIELDS, _add_scalars

        num_worlds = self.options.num_worlds
        for info in infos:
            for row in info["episodes"]:
                row = dict(row, env_steps=env_before + (row.pop("t") + 1) * num_worlds)
                self.episodes_csv.write(row)
                self.recent.append(row["episode_return"])
                self.recent_prey.append(row["prey_caught"])
                self.counts["episodes"] += 1
                _add_scalars(self.tb, "episode", {n: row[n] for n in EPISODE_FIELDS[3:]},
                             row["env_steps"])

    def _checkpoint(self) -> None:
        state, data, sgd_steps, learner_steps = self._learner_call("checkpoint")
        self.counts["learner_steps"] = learner_steps
        path = self.run_dir.save_checkpoint(_CheckpointState(state, sgd_steps), dict(self.counts))
        self.checkpoint_data = (data, learner_steps)
        log.info("checkpoint %s at %d env steps", path.name, self.counts["env_steps"])

    def _log_row(self, now, dt, env_delta, learn_delta, actor_steps, bytes_sent) -> dict:
        from simfish_rl.training import _add_scalars

        dt = max(dt, 1e-9)
        row = {
            "time": now,
            **self.counts,
            "env_steps_per_second": env_delta / dt,
            "learner_steps_per_second": learn_delta / dt,
            "replay_size": self.status.get("replay_size", 0),
            "recent_return": float(np.mean(self.recent)) if self.recent else float("nan"),
            "recent_prey_caught": (
                float(np.mean(self.recent_prey)) if self.recent_prey else float("nan")),
            "loss": self.status.get("loss", float("nan")),
            "mirrored_loss": self.status.get("mirrored_loss", float("nan")),
            "actor_restarts": self.actor_restarts,
            "learner_restarts": self.learner_restarts,
            "actor_bytes_per_second": bytes_sent / dt,
        }
        row.update({f: s / dt for f, s in zip(self.actor_fields, actor_steps, strict=True)})
        self.metrics_csv.write(row)
        _add_scalars(self.tb, lambda name: "actors" if name.startswith("actor_") else "train",
                     row, self.counts["env_steps"])
        return row

    # -- the loop ---------------------------------------------------------------

    def run(self, num_steps, max_seconds, on_round) -> dict[str, Any]:
        from tqdm.auto import tqdm

        cfg, n = self.training, self.options.num_actors
        round_env_steps = cfg.sequence_period * self.options.num_worlds
        start = last_log = last_ckpt = time.time()
        env_at_start = self.counts["env_steps"]
        env_at_log, learn_at_log = env_at_start, self.counts["learner_steps"]
        actor_total = np.zeros(n)
        actor_at_log = np.zeros(n)
        bytes_at_log = 0
        interrupted = False
        bar = tqdm(total=num_steps, initial=min(self.counts["env_steps"], num_steps),
                   unit="step", disable=not self.progress, desc="train", dynamic_ncols=True)
        params_ref = self.learner.params.remote()
        pending_add = None
        round_index = self.counts["actor_steps"] // cfg.sequence_period
        try:
            while self.counts["env_steps"] < num_steps:
                if max_seconds is not None and time.time() - start > max_seconds:
                    log.info("stopping after max_seconds=%s", max_seconds)
                    break
                restarts = self.learner_restarts
                refs, infos, params_ref = self._collect_round(params_ref, round_index)
                round_index += 1
                if pending_add is not None:
                    status = self._add_round(pending_add)
                    if status is not None:
                        self.status = status
                        self.counts["learner_steps"] = status["learner_steps"]
                pending_add = refs
                env_before = self.counts["env_steps"]
                self.counts["env_steps"] += round_env_steps
                self.counts["actor_steps"] += cfg.sequence_period
                self._record_episodes(infos, env_before)
                actor_total += [info["env_steps"] for info in infos]
                bytes_at_log += sum(info["bytes"] for info in infos)
                if (self.counts["actor_steps"] % cfg.variable_update_period < cfg.sequence_period
                        or self.learner_restarts != restarts):
                    params_ref = self.learner.params.remote()
                bar.update(round_env_steps)
                if on_round is not None:
                    on_round({"env_steps": self.counts["env_steps"],
                              "actor_pids": list(self.actor_pids),
                              "learner_pid": self.learner_pid,
                              "actor_restarts": self.actor_restarts})
                now = time.time()
                if now - last_log >= cfg.log_every_seconds:
                    row = self._log_row(now, now - last_log, self.counts["env_steps"] - env_at_log,
                                        self.counts["learner_steps"] - learn_at_log,
                                        actor_total - actor_at_log, bytes_at_log)
                    bar.set_postfix(env_sps=f"{row['env_steps_per_second']:.0f}",
                                    learn_sps=f"{row['learner_steps_per_second']:.2f}",
                                    ret=f"{row['recent_return']:.2f}",
                                    restarts=self.actor_restarts)
                    last_log, env_at_log = now, self.counts["env_steps"]
                    learn_at_log, actor_at_log, bytes_at_log = (
                        self.counts["learner_steps"], actor_total.copy(), 0)
                if now - last_ckpt >= cfg.checkpoint_every_minutes * 60:
                    self._checkpoint()
                    last_ckpt = now
            if pending_add is not None:
                status = self._add_round(pending_add)
                if status is not None:
                    self.status = status
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted: stopping the workers after a checkpoint")
        finally:
            bar.close()
        self._checkpoint()
        elapsed = time.time() - start
        return {
            **self.counts,
            "seconds": elapsed,
            "resumed": self.resumed,
            "interrupted": interrupted,
            "recent_return": float(np.mean(self.recent)) if self.recent else float("nan"),
            "recent_prey_caught": (
                float(np.mean(self.recent_prey)) if self.recent_prey else float("nan")),
            "run_dir": str(self.run_dir.path),
            "actor_restarts": self.actor_restarts,
            "learner_restarts": self.learner_restarts,
            "actor_env_steps_per_second": (actor_total / max(elapsed, 1e-9)).tolist(),
        }

    def shutdown(self) -> None:
        """Stops the learner thread and ends every worker process."""
        # A second Ctrl-C while shutting down should not leave workers behind.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            try:
                self.ray.get(self.learner.stop.remote(), timeout=30)
            except Exception as err:  # noqa: BLE001 (a dead learner needs no stopping)
                log.debug("learner stop: %s", err)
            for handle in [*self.actors, self.learner]:
                self.ray.kill(handle, no_restart=True)
            for f in (self.episodes_csv, self.metrics_csv):
                f.close()
            if self.tb is not None:
                self.tb.close()
        finally:
            signal.signal(signal.SIGINT, previous)


# ---------------------------------------------------------------------------
# Evaluation.


def _evaluate_episodes(env_config, actions, params, seed: int, epsilon: float,
                       num_episodes: int) -> list[dict]:
    """Plays ``num_episodes`` in one worker; returns their summaries (for the driver to write).

    The worker runs the same engine as ``eval_agent`` (``ParallelEvaluator``), so
    its summaries hold the same datasets.
    """
    from simfish.wrappers.base_environment import BaseEnvironment
    from simfish_rl.hdf5_logger import EnvInfoKeep
    from simfish_rl.parallel_eval import ParallelEvaluator
    from simfish_rl.simfish_r2d2_network import environment_spec_from_env, make_r2d2_networks

    env = BaseEnvironment(env_config, actions, seed=seed)
    networks = make_r2d2_networks(environment_spec_from_env(env))
    evaluator = ParallelEvaluator(env, networks.apply, networks.initial_state, params, epsilon,
                                  num_worlds=1)
    return list(evaluator.run(num_episodes, seed, observers=[EnvInfoKeep()]))


def evaluate_distributed(
    experiment: Any,
    directory: str | os.PathLike,
    num_episodes: int = 100,
    log_subdir: str = "eval_model",
    *,
    seed: int = 0,
    epsilon: float | None = None,
    overrides: dict | None = None,
    options: RayOptions | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """``eval_agent`` with the episodes spread over Ray workers; the same files.

    Episodes are split over ``options.num_actors`` workers; worker ``k`` plays
    its share with environment and exploration seed ``seed + k`` (so results
    differ from a single-process evaluation with the same seed). The driver
    writes every summary to ``<directory>/logs/<log_subdir>/logs_<k>.hdf5`` in
    worker order, numbering after existing files, as ``eval_agent`` does.
    """
    from tqdm.auto import tqdm

    from simfish.config import load_config
    from simfish.wrappers.base_environment import BaseEnvironment
    from simfish_rl.eval_simfish_agent import load_policy
    from simfish_rl.hdf5_logger import HDF5Logger
    from simfish_rl.training import RunDir, RunDirError

    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    options = options or RayOptions()
    run = RunDir(Path(directory))
    if not run.path.is_dir():
        raise RunDirError(f"{run.path}: no such run directory")
    trained_env_config, trained_actions, training, _ = run.load()
    env_config = load_config(trained_env_config if experiment is None else experiment, overrides)
    _, params, record = load_policy(run.path, BaseEnvironment(env_config, trained_actions))
    eps = training.evaluation_epsilon if epsilon is None else epsilon
    ray = _ray()
    started = start_ray(options)
    try:
        task = ray.remote(_evaluate_episodes).options(
            num_cpus=options.actor_cpus, max_retries=3,
            runtime_env=options.runtime_env(cpu_only=True))
        params_ref = ray.put(params)
        workers = min(options.num_actors, num_episodes)
        shares = [len(s) for s in np.array_split(np.arange(num_episodes), workers)]
        log.info("evaluating %s (checkpoint at %d env steps) in %s: %d episodes on %d workers",
                 run.path, record["env_steps"], env_config.source, num_episodes, workers)
        refs = [task.remote(env_config, trained_actions, params_ref, seed + k, eps, share)
                for k, share in enumerate(shares)]
        logger = HDF5Logger(str(run.path), label=log_subdir, add_uid=False, wait_min=0)
        summaries = []
        try:
            with tqdm(total=num_episodes, desc="evaluate", unit="episode",
                      disable=not progress) as bar:
                for ref in refs:  # in worker order, so file numbers follow the seeds
                    for summary in ray.get(ref):
                        summary["actor_steps"] = np.int64(record["env_steps"])
                        logger.write(summary)
                        summaries.append(summary)
                        bar.update(1)
        finally:
            logger.close()
        return summaries
    finally:
        if started:
            ray.shutdown()


__all__ = [
    "MAX_LEARNER_LAG",
    "ActorWorker",
    "DistributedError",
    "LearnerWorker",
    "RayOptions",
    "evaluate_distributed",
    "start_ray",
    "train_distributed",
]
