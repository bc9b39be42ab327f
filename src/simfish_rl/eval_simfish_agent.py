"""Evaluation: an environment loop that hands the actor's LSTM state to observers.

`StateEnvLoop` plays episodes of a `dm_env.Environment` with an actor (the
acme actor interface, plus `get_recurrent_state()`), lets observers such as
`EnvInfoKeep` record every step together with the actor's hidden state, and
returns a summary per episode that an `HDF5Logger` writes as one file.

`RecurrentQActor` wraps a recurrent Q-network (e.g. restored R2D2 parameters)
as such an actor for one world. An evaluation therefore only builds the pieces
and runs the loop::

    actor = RecurrentQActor(networks.apply, networks.initial_state, params,
                            jax.random.key(seed), epsilon=1e-3)
    logger = HDF5Logger(run_dir, label="eval_model", add_uid=False, wait_min=0)
    loop = StateEnvLoop(env, actor, logger=logger, should_update=False,
                        observers=[EnvInfoKeep()])
    loop.run(num_episodes=100)
    logger.close()
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import dm_env
import jax
import jax.numpy as jnp
import numpy as np

from simfish_rl.checkpoint import load_policy
from simfish_rl.counting import Counter
from simfish_rl.hdf5_logger import EnvLoopObserver, Logger
from simfish_rl.policy import epsilon_greedy

_LOG = logging.getLogger(__name__)

SUMMARY_KEYS = (
    "episode_length",
    "episode_return",
    "steps_per_second",
    "episode_duration_sec",
    "env_reset_duration_sec",
    "select_action_duration_sec",
    "env_step_duration_sec",
)
"""Keys every `run_episode()` summary has (plus counts and observer metrics)."""


@runtime_checkable
class Actor(Protocol):
    """What `StateEnvLoop` expects from an actor (acme's `core.Actor`, plus the state).

    The loop calls, per episode: `observe_first(first_timestep)`, then per step
    `select_action(observation)`, `get_recurrent_state()` (right after
    `select_action`: the hidden state that chose the action, having consumed
    `observation`), `observe(action, next_timestep=...)` and, when
    `should_update`, `update()`.
    """

    def observe_first(self, timestep: dm_env.TimeStep) -> None:
        """Starts an episode (resets the recurrent state)."""

    def select_action(self, observation: Any) -> Any:
        """Returns the action (an int or 0-d integer array) for an observation."""

    def observe(self, action: Any, next_timestep: dm_env.TimeStep) -> None:
        """Sees the result of the action."""

    def update(self, wait: bool = False) -> None:
        """Refreshes parameters from the learner, if any."""

    def get_recurrent_state(self) -> Any:
        """Returns the LSTM hidden state h [hidden] (64 for the SimFish network), or None."""


@functools.partial(jax.jit, static_argnums=0)
def _epsilon_greedy_step(apply_fn, params, key, observation, state, epsilon):
    """One epsilon-greedy action of a recurrent Q-network for one unbatched observation.

    Compiled once per `apply_fn` (a static argument), shared by all actors using it.

    Returns:
      (action int32 [], new recurrent state).
    """
    k_net, k_act = jax.random.split(key)
    batched = jax.tree.map(lambda x: jnp.asarray(x)[None], observation)
    q, new_state = apply_fn(params, k_net, batched, state)
    action = epsilon_greedy(k_act, q[0], epsilon)
    return action, new_state


class RecurrentQActor:
    """An acme-like actor for one world: epsilon-greedy on a recurrent Q-network.

    It satisfies `Actor`: `get_recurrent_state()` returns the LSTM hidden state
    h [hidden] after the last `select_action`. With the SimFish network::

        networks = make_r2d2_networks(environment_spec_from_env(env))
        actor = RecurrentQActor(networks.apply, networks.initial_state, params,
                                jax.random.key(seed), epsilon=1e-3)

    Args:
      apply_fn: `(params, key, observation [1, ...], state) -> (q [1, A], new_state)`
        (`R2D2Networks.apply`); the observation is batched to size 1 here.
      initial_state_fn: `(batch_size) -> state` whose `.hidden` is [batch, hidden]
        (`R2D2Networks.initial_state`).
      params: network parameters.
      key: JAX PRNG key for the network and exploration; the actor splits it
        once per action, so the same key gives the same actions.
      epsilon: probability of a uniformly random action (SPEC 6: evaluation 1e-3).
      variable_source: optional `() -> params`, called by `update()` to refresh
        the parameters (None: parameters stay fixed, as in evaluation).
    """

    def __init__(
        self,
        apply_fn: Any,
        initial_state_fn: Any,
        params: Any,
        key: jax.Array,
        epsilon: float = 1e-3,
        variable_source: Any | None = None,
    ) -> None:
        if not 0.0 <= float(epsilon) <= 1.0:
            raise ValueError(f"RecurrentQActor: epsilon must be in [0, 1], got {epsilon}")
        self._initial_state_fn = initial_state_fn
        self._params = params
        self._key = key
        self._epsilon = jnp.float32(epsilon)
        self._variable_source = variable_source
        self._state = initial_state_fn(1)
        self._apply_fn = apply_fn

    def observe_first(self, timestep: dm_env.TimeStep) -> None:
        """Resets the recurrent state for a new episode."""
        self._state = self._initial_state_fn(1)

    def select_action(self, observation: Any) -> np.int32:
        """Chooses an action for one observation (an OAR of unbatched arrays)."""
        self._key, key = jax.random.split(self._key)
        action, self._state = _epsilon_greedy_step(
            self._apply_fn, self._params, key, observation, self._state, self._epsilon
        )
        return np.int32(action)

    def observe(self, action: Any, next_timestep: dm_env.TimeStep) -> None:
        """Nothing to record: evaluation does not learn."""

    def update(self, wait: bool = False) -> None:
        """Pulls fresh parameters from `variable_source`, if any."""
        if self._variable_source is not None:
            self._params = self._variable_source()

    def get_recurrent_state(self) -> np.ndarray | None:
        """Returns the LSTM hidden state h [hidden] (float32), or None for a core without one."""
        hidden = getattr(self._state, "hidden", None)
        return None if hidden is None else np.asarray(hidden, dtype=np.float32)[0]


def _mean(values: Sequence[float]) -> float:
    """Mean of a list; NaN for an empty one (no numpy warning)."""
    return math.fsum(values) / len(values) if values else math.nan


class StateEnvLoop:
    """An environment loop that keeps track of the actor's recurrent state.

    Args:
      environment: a `dm_env.Environment` (one world; e.g. `simfish.BaseEnvironment`).
      actor: see `Actor`; an actor without `get_recurrent_state` gives observers
        `actor_state=None`.
      counter: anything with `increment(**counts) -> Mapping` (acme's Counter
        works); a fresh `Counter()` when None. Its counts join the summary.
      logger: anything with `write(mapping)`; `run()` writes each episode's
        summary to it (`run_episode()` alone does not).
      should_update: call `actor.update()` after every step (False for a
        frozen, restored agent).
      label: name used in log messages.
      observers: `EnvLoopObserver`s; their `get_metrics()` join the summary.
    """

    def __init__(
        self,
        environment: dm_env.Environment,
        actor: Actor,
        counter: Any | None = None,
        logger: Logger | None = None,
        should_update: bool = True,
        label: str = "environment_loop",
        observers: Sequence[EnvLoopObserver] = (),
    ) -> None:
        for method in ("observe_first", "select_action", "observe", "update"):
            if not callable(getattr(actor, method, None)):
                raise TypeError(
                    f"StateEnvLoop: actor {type(actor).__name__} has no {method}() method"
                )
        self._environment = environment
        self._actor = actor
        self._counter = counter if counter is not None else Counter()
        self._logger = logger
        self._should_update = should_update
        self._label = label
        self._observers = tuple(observers)

    def _actor_state(self) -> np.ndarray | None:
        """Returns a host copy of the actor's hidden state, or None."""
        get_state = getattr(self._actor, "get_recurrent_state", None)
        if get_state is None:
            return None
        state = get_state()
        return None if state is None else np.array(state)

    def run_episode(self) -> dict[str, Any]:
        """Runs one episode and returns its summary.

        Returns:
          A dict with `episode_length` (steps taken), `episode_return` (sum of
          rewards, float), `steps_per_second`, `episode_duration_sec`,
          `env_reset_duration_sec`, `select_action_duration_sec` and
          `env_step_duration_sec` (means per step), the counter's counts
          (`episodes`, `steps`, possibly prefixed), then every observer's
          metrics (later observers win on equal keys).
        """
        episode_start = time.perf_counter()
        select_action_durations: list[float] = []
        env_step_durations: list[float] = []
        episode_steps = 0
        episode_return = 0.0

        reset_start = time.perf_counter()
        timestep = self._environment.reset()
        env_reset_duration = time.perf_counter() - reset_start
        self._actor.observe_first(timestep)
        for observer in self._observers:
            observer.observe_first(self._environment, timestep)

        while not timestep.last():
            episode_steps += 1

            # The actor chooses; its hidden state now reflects the observation it consumed.
            select_start = time.perf_counter()
            action = self._actor.select_action(timestep.observation)
            actor_state = self._actor_state()
            select_action_durations.append(time.perf_counter() - select_start)

            step_start = time.perf_counter()
            timestep = self._environment.step(action)
            env_step_durations.append(time.perf_counter() - step_start)

            self._actor.observe(action, next_timestep=timestep)
            for observer in self._observers:
                observer.observe(self._environment, timestep, action, actor_state=actor_state)
            if self._should_update:
                self._actor.update()
            if timestep.reward is not None:
                episode_return += float(np.asarray(timestep.reward))

        counts = self._counter.increment(episodes=1, steps=episode_steps)
        episode_duration = time.perf_counter() - episode_start
        result: dict[str, Any] = {
            "episode_length": episode_steps,
            "episode_return": episode_return,
            "steps_per_second": episode_steps / episode_duration
            if episode_duration > 0
            else math.nan,
            "episode_duration_sec": episode_duration,
            "env_reset_duration_sec": env_reset_duration,
            "select_action_duration_sec": _mean(select_action_durations),
            "env_step_duration_sec": _mean(env_step_durations),
        }
        result.update(counts)
        for observer in self._observers:
            result.update(observer.get_metrics())
        return result

    def run(self, num_episodes: int | None = None, num_steps: int | None = None) -> int:
        """Runs episodes, writing each summary to the logger; returns the steps taken.

        Args:
          num_episodes: stop after this many episodes.
          num_steps: stop after the episode during which this many steps are reached.
            With neither, run forever.

        Raises:
          ValueError: both limits are given, or one is negative.
        """
        if num_episodes is not None and num_steps is not None:
            raise ValueError("StateEnvLoop.run: give num_episodes or num_steps, not both")
        for name, value in (("num_episodes", num_episodes), ("num_steps", num_steps)):
            if value is not None and value < 0:
                raise ValueError(f"StateEnvLoop.run: {name} must be >= 0, got {value}")
        episodes = steps = 0
        while (num_episodes is None or episodes < num_episodes) and (
            num_steps is None or steps < num_steps
        ):
            result = self.run_episode()
            episodes += 1
            steps += int(result["episode_length"])
            _LOG.info(
                "%s: episode %d, length %d, return %.3f, %.1f steps/s",
                self._label,
                episodes,
                result["episode_length"],
                result["episode_return"],
                result["steps_per_second"],
            )
            if self._logger is not None:
                self._logger.write(result)
        return steps


def summary_scalars(result: Mapping[str, Any]) -> dict[str, float | int]:
    """Returns the scalar entries of a `run_episode()` summary (for printing or training logs)."""
    return {
        k: v.item() if isinstance(v, np.generic) else v
        for k, v in result.items()
        if isinstance(v, (int, float, np.generic)) and not isinstance(v, bool)
    }


# ---------------------------------------------------------------------------
# Evaluating a trained run.


def eval_agent(
    experiment: Any,
    directory: str | os.PathLike,
    num_episodes: int = 100,
    log_subdir: str = "eval_model",
    *,
    seed: int = 0,
    epsilon: float | None = None,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = False,
    sediment: str = "image",
    num_parallel: int = 1,
) -> list[dict[str, Any]]:
    """Plays ``num_episodes`` with the latest checkpoint of a run and logs them to HDF5.

    Each episode becomes ``<directory>/logs/<log_subdir>/logs_<k>.hdf5``
    (numbering continues after existing files). Episodes are played
    ``num_parallel`` at a time in vectorised worlds
    (``simfish_rl.parallel_eval.ParallelEvaluator``); episode ``i`` of a given
    ``seed`` gives the same datasets whatever ``num_parallel`` on a CPU (on a
    GPU they were seen to differ: ``docs/training_speed.md``).

    Args:
      experiment: the environment to evaluate in: a ``SimFishConfig``, a preset
        name or YAML path (e.g. ``"tethered_pred"``), or None for the run's own
        training environment.
      directory: the training run directory.
      num_episodes: episodes to play.
      log_subdir: the label (sub-folder of ``logs/``).
      seed: fixes the environment and the actor's exploration.
      epsilon: exploration rate (default: the run's ``evaluation_epsilon``).
      overrides: dotted-key config overrides applied to ``experiment``.
      progress: show a progress bar over episodes.
      sediment: "image" (default) logs the episode's sediment texture as an
        image (1, height, width) plus its record; "record" only the record.
      num_parallel: E, episodes played at once (1: one world at a time).

    Returns:
      The episode summaries (as written to the files), each with
      ``actor_steps``: the env steps the evaluated checkpoint was trained for.
    """
    from tqdm.auto import tqdm

    from simfish.config import load_config
    from simfish.wrappers.base_environment import BaseEnvironment
    from simfish_rl.checkpoint import RunDir, RunDirError
    from simfish_rl.hdf5_logger import EnvInfoKeep, HDF5Logger
    from simfish_rl.parallel_eval import ParallelEvaluator

    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    if num_parallel < 1:
        raise ValueError(f"num_parallel must be >= 1, got {num_parallel}")
    run = RunDir(Path(directory))
    if not run.path.is_dir():
        raise RunDirError(f"{run.path}: no such run directory")
    trained_env_config, trained_actions, training, _ = run.load()
    base = trained_env_config if experiment is None else experiment
    env_config = load_config(base, overrides)
    env = BaseEnvironment(env_config, trained_actions, seed=seed)
    networks, params, record = load_policy(run.path, env)
    eps = training.evaluation_epsilon if epsilon is None else epsilon
    evaluator = ParallelEvaluator(env, networks.apply, networks.initial_state, params, eps,
                                  num_worlds=min(num_parallel, num_episodes))
    # Files are written in a background thread while the next episodes play and are
    # prepared (close(), below, waits for every one), at gzip level 1: the same
    # datasets as at the default level 4, about 5% larger files, a third less time.
    logger = HDF5Logger(str(run.path), label=log_subdir, add_uid=False, wait_min=0,
                        sediment=sediment, background=True, max_pending=4,
                        compression_level=1)
    actor_steps = np.int64(record["env_steps"])
    _LOG.info("evaluating %s (checkpoint at %d env steps) in %s for %d episodes, %d at a time",
              run.path, record["env_steps"], env_config.source, num_episodes, num_parallel)
    summaries = []
    try:
        episodes = evaluator.run(num_episodes, seed, observers=[EnvInfoKeep(sediment=sediment)])
        for summary in tqdm(episodes, total=num_episodes, desc="evaluate", unit="episode",
                            disable=not progress):
            summary["actor_steps"] = actor_steps
            logger.write(summary)
            summaries.append(summary)
    finally:
        logger.close()
    return summaries
