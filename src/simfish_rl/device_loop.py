"""Training on one device: acting, replay and learning in one compiled loop.

The Anakin design of Hessel et al. (2021), "Podracer architectures for
scalable reinforcement learning": everything a training iteration does stays
on the accelerator, and the host only launches a compiled call that runs
``iterations_per_call`` iterations and reads back a few numbers.

One iteration (inside ``lax.scan``):

1. the batched actor steps ``num_envs`` worlds for ``sequence_period`` steps
   (``BatchedActor``'s scan, epsilon-greedy per world);
2. the steps go into the on-device prioritised sequence replay
   (``SequenceReplayBuffer.add``, a pure function of the replay state);
3. once replay can sample, the learner owes ``samples_per_insert * num_envs /
   batch_size`` learner steps per iteration (fractions carry over); each one
   samples a batch, runs the regular + mirrored SGD steps
   (``make_learner_step``) and writes both priorities back;
4. every ``variable_update_period`` actor steps the actor takes the learner's
   parameters.

Differences from ``simfish_rl.training.train`` (the host loop): learning is
paced from the moment replay can sample (the host loop also pays back, in a
burst, the inserts made while replay was filling up), and the actor's
parameters are the learner's at exact iteration boundaries, so a run is a pure
function of its seed. The replay is not checkpointed (as in the host loop): a
resumed run refills it. Run directory, checkpoints (same learner file format,
so ``simfish evaluate`` loads them), ``metrics.csv`` / ``episodes.csv``,
``--max-minutes``, Ctrl-C and resume work as in the host loop.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from simfish.config import SimFishConfig
from simfish.io.actions import Actions
from simfish.world.types import pytree_dataclass
from simfish.wrappers.vector_env import episode_stats
from simfish_rl.actor import BatchedActor, apex_epsilons
from simfish_rl.config import TrainingConfig
from simfish_rl.replay import ReplayState, buffer_for_training, example_step
from simfish_rl.simfish_r2d2_learner import (
    SimfishR2D2Learner,
    TrainingState,
    load_training_state,
    save_training_state,
)
from simfish_rl.simfish_r2d2_network import environment_spec_from_env, make_r2d2_networks

log = logging.getLogger(__name__)

#: Episode rows kept per iteration for ``episodes.csv`` (more are counted, not written).
EPISODE_ROWS_PER_ITERATION = 32


@pytree_dataclass
class LoopState:
    """Everything the compiled loop carries from one call to the next.

    Attributes:
      training: the learner's ``TrainingState``.
      replay: the replay buffer's ``ReplayState``.
      actor: the batched actor's ``ActorState`` (worlds, time steps, LSTM states).
      actor_params: the parameters the actor acts with.
      key: uint32 [2] PRNG key of the loop.
      credit: float32 [] learner steps owed (fractions carry over).
    """

    training: Any
    replay: Any
    actor: Any
    actor_params: Any
    key: jax.Array
    credit: jax.Array


class IterationOutput(NamedTuple):
    """What one iteration reports (stacked ``[K, ...]`` over a call's iterations).

    Attributes:
      learner_steps: int32 [], learner steps done.
      loss, mirrored_loss: float32 [], sums over those steps.
      episodes: int32 [], episodes that ended.
      rows_valid: bool [R], which episode rows are filled (R =
        ``EPISODE_ROWS_PER_ITERATION``, or fewer for small runs).
      rows_time, rows_world: int32 [R], step within the iteration and world.
      rows: dict of float32 [R] episode statistics (``episode_stats`` keys).
      replay_size: int32 [], sampleable sequences after the iteration.
    """

    learner_steps: jax.Array
    loss: jax.Array
    mirrored_loss: jax.Array
    episodes: jax.Array
    rows_valid: jax.Array
    rows_time: jax.Array
    rows_world: jax.Array
    rows: dict
    replay_size: jax.Array


class DeviceLoop:
    """The compiled acting + replay + learning loop for one run's settings.

    Args:
      env: ``SimFishEnv`` with vision.
      training: the run's ``TrainingConfig``.
      actions_mirror: ``{id: mirror id}`` (``Actions.get_opposing_dict()``).
      iterations_per_call: K, iterations run by one ``run`` call.
    """

    def __init__(self, env: Any, training: TrainingConfig, actions_mirror: Any,
                 iterations_per_call: int = 10):
        if iterations_per_call < 1:
            raise ValueError(f"iterations_per_call must be >= 1, got {iterations_per_call}")
        self.env = env
        self.training = training
        self.iterations_per_call = iterations_per_call
        self.networks = make_r2d2_networks(environment_spec_from_env(env))
        self.buffer = buffer_for_training(training)
        # The learner object only supplies its initial state and its pure step.
        self._learner = SimfishR2D2Learner(
            networks=self.networks,
            batch_size=training.batch_size,
            random_key=jax.random.PRNGKey(0),
            burn_in_length=training.burn_in_length,
            discount=training.discount,
            importance_sampling_exponent=training.importance_sampling_exponent,
            max_priority_weight=training.max_priority_weight,
            target_update_period=training.target_update_period,
            iterator=iter(()),
            optimizer=optax.adam(training.learning_rate, eps=training.adam_eps),
            actions_mirror=actions_mirror,
            bootstrap_n=training.bootstrap_n,
            clip_rewards=training.clip_rewards,
            max_abs_reward=training.max_abs_reward,
            prefetch_size=0,
        )
        self._learner_step = self._learner.learner_step_fn
        self.actor = BatchedActor(
            env,
            apply_fn=self.networks.apply,
            initial_state_fn=self.networks.initial_state,
            epsilons=apex_epsilons(training.num_envs, training.epsilon_base,
                                   training.epsilon_alpha),
            episode_stats_fn=episode_stats,
        )
        self.env_steps_per_iteration = training.sequence_period * training.num_envs
        self.run = jax.jit(self._run, donate_argnums=(0,))

    # -- state ------------------------------------------------------------------

    @property
    def training_state_like(self) -> TrainingState:
        """A learner state with this run's structure (for ``load_training_state``)."""
        return self._learner.state

    def init(self, key: jax.Array, training_state: TrainingState | None = None) -> LoopState:
        """A fresh loop state: new worlds, empty replay, new (or given) learner state."""
        k_learner, k_actor, k_loop = jax.random.split(key, 3)
        if training_state is None:
            fresh = self._learner.state
            k_init, k_rest = jax.random.split(k_learner)
            params = self.networks.init(k_init)
            training_state = fresh._replace(
                params=params, target_params=jax.tree.map(jnp.copy, params),
                opt_state=self._learner._optimizer.init(params), random_key=k_rest)
        training_state = jax.tree.map(jnp.asarray, training_state)
        visual_spec, internal_spec = self.env.observation_spec().observation
        replay = self.buffer.init(example_step(visual_spec.shape[0], visual_spec.shape[1],
                                               internal_spec.shape[0]))
        return LoopState(
            training=training_state,
            replay=replay,
            actor=self.actor.init(k_actor),
            actor_params=jax.tree.map(jnp.copy, training_state.params),
            key=k_loop,
            credit=jnp.zeros((), jnp.float32),
        )

    # -- the compiled loop --------------------------------------------------------

    def _learn(self, training: TrainingState, replay: ReplayState, key: jax.Array,
               num_steps: jax.Array):
        """``num_steps`` learner steps from replay; returns states and loss sums."""
        batch_size = self.training.batch_size

        def body(_, carry):
            training, replay, key, loss, mirrored_loss = carry
            key, k_sample = jax.random.split(key)
            sample = self.buffer.sample(replay, k_sample, batch_size)
            training, out = self._learner_step(training, sample)
            replay = self.buffer.set_priorities(replay, sample.info, out.priorities[0])
            replay = self.buffer.set_priorities(replay, sample.info, out.priorities[1])
            first, second = out.metrics["loss"][0], out.metrics["loss"][1]
            regular = jnp.where(out.mirrored_first, second, first)
            mirrored = jnp.where(out.mirrored_first, first, second)
            return training, replay, key, loss + regular, mirrored_loss + mirrored

        zero = jnp.zeros((), jnp.float32)
        training, replay, _, loss, mirrored_loss = jax.lax.fori_loop(
            0, num_steps, body, (training, replay, key, zero, zero))
        return training, replay, loss, mirrored_loss

    def _iteration(self, state: LoopState, _):
        cfg = self.training
        key, k_act, k_learn = jax.random.split(state.key, 3)
        actor_state, (steps, ended, stats) = self.actor._collect(
            state.actor_params, state.actor, k_act, cfg.sequence_period)
        replay = self.buffer.add(state.replay, steps)

        owed_per_iteration = cfg.samples_per_insert * cfg.num_envs / cfg.batch_size
        credit = state.credit + jnp.where(self.buffer.can_sample(replay),
                                          jnp.float32(owed_per_iteration), 0.0)
        num_learn = jnp.floor(credit).astype(jnp.int32)
        training, replay, loss, mirrored_loss = self._learn(
            state.training, replay, k_learn, num_learn)
        credit = credit - num_learn

        # The actor takes new parameters every variable_update_period actor steps.
        pull = actor_state.steps % cfg.variable_update_period < cfg.sequence_period
        actor_params = jax.tree.map(lambda new, old: jnp.where(pull, new, old),
                                    training.params, state.actor_params)

        out = self._episode_rows(ended, stats)
        out = out._replace(learner_steps=num_learn, loss=loss, mirrored_loss=mirrored_loss,
                           replay_size=self.buffer.size(replay))
        new_state = LoopState(training=training, replay=replay, actor=actor_state,
                              actor_params=actor_params, key=key, credit=credit)
        return new_state, out

    def _episode_rows(self, ended: jax.Array, stats: dict) -> IterationOutput:
        """Compacts the episodes that ended (bool [T, E]) into fixed-size rows."""
        t, e = ended.shape
        cap = min(EPISODE_ROWS_PER_ITERATION, t * e)
        flat = ended.reshape(-1)
        (index,) = jnp.nonzero(flat, size=cap, fill_value=t * e)
        valid = index < t * e
        safe = jnp.minimum(index, t * e - 1)
        rows = {name: value.reshape(-1)[safe].astype(jnp.float32)
                for name, value in stats.items()}
        zero = jnp.zeros((), jnp.int32)
        return IterationOutput(
            learner_steps=zero, loss=jnp.zeros(()), mirrored_loss=jnp.zeros(()),
            episodes=jnp.sum(flat.astype(jnp.int32)), rows_valid=valid,
            rows_time=(safe // e).astype(jnp.int32), rows_world=(safe % e).astype(jnp.int32),
            rows=rows, replay_size=zero,
        )

    def _run(self, state: LoopState) -> tuple[LoopState, IterationOutput]:
        """``iterations_per_call`` iterations; outputs stacked ``[K, ...]``."""
        return jax.lax.scan(self._iteration, state, None, length=self.iterations_per_call)


class _CheckpointSource:
    """What ``RunDir.save_checkpoint`` needs from a learner: ``steps`` and ``save()``."""

    def __init__(self, training_state: TrainingState):
        self._state = jax.device_get(training_state)

    @property
    def steps(self) -> int:
        """SGD steps done."""
        return int(self._state.steps)

    def save(self, path: str | os.PathLike | None = None) -> TrainingState:
        """The host copy of the learner state; also written to ``path`` if given."""
        if path is not None:
            save_training_state(path, self._state)
        return self._state


#: Below this many worlds acting is a large share of a GPU's device loop (36% at 256 on an H200).
GPU_WORLDS_HINT = 256


def few_worlds_hint(num_envs: int, backend: str) -> str | None:
    """A hint when a GPU runs the device loop with few worlds (None otherwise)."""
    if backend != "gpu" or num_envs >= GPU_WORLDS_HINT:
        return None
    return (f"training {num_envs} worlds on a GPU: more worlds train faster there (on an H200, "
            "users' settings: 51,000 env steps/s with 1,024 worlds, 39,000 with 256); "
            "try --num-envs 1024 (docs/training_speed.md)")


def train_device_loop(
    run_dir: str | os.PathLike,
    env_config: SimFishConfig | None = None,
    training: TrainingConfig | None = None,
    num_steps: int = 100_000,
    seed: int = 0,
    actions: Actions | None = None,
    progress: bool = True,
    max_seconds: float | None = None,
    iterations_per_call: int = 10,
) -> dict[str, Any]:
    """Trains (or resumes) an R2D2 agent with the one-device loop (``DeviceLoop``).

    Same arguments, run directory and summary as ``simfish_rl.training.train``
    (without ``overlap``); ``iterations_per_call`` sets how many iterations
    (each ``sequence_period * num_envs`` env steps) one compiled call runs:
    more means fewer host round trips, coarser checkpoint and log timing.
    """
    from simfish_rl.training import (
        EPISODE_FIELDS,
        RunDir,
        _add_scalars,
        _CsvLog,
        _tensorboard,
        make_env,
        open_run,
    )

    run = RunDir(Path(run_dir))
    env_config, actions, training, seed, record = open_run(
        run, env_config, training, seed, actions)
    hint = few_worlds_hint(training.num_envs, jax.default_backend())
    if hint:
        log.warning(hint)
    env = make_env(env_config, actions)
    loop = DeviceLoop(env, training, actions.get_opposing_dict(), iterations_per_call)
    counts = {"env_steps": 0, "learner_steps": 0, "episodes": 0, "actor_steps": 0}
    key = jax.random.PRNGKey(seed)
    training_state = None
    if record is not None:
        training_state = load_training_state(run.checkpoints / record["learner_file"],
                                             loop.training_state_like)
        counts.update({k: int(record[k]) for k in counts})
        log.info("resuming %s from its checkpoint at %d env steps (%d learner steps)",
                 run.path, counts["env_steps"], counts["learner_steps"])
    # A resumed run continues with a fresh stream of worlds and samples.
    state = loop.init(jax.random.fold_in(key, counts["env_steps"]), training_state)

    episodes_csv = _CsvLog(run.path / "episodes.csv", EPISODE_FIELDS)
    metrics_csv = _CsvLog(
        run.path / "metrics.csv",
        ("time", "env_steps", "learner_steps", "episodes", "env_steps_per_second",
         "learner_steps_per_second", "replay_size", "recent_return", "recent_prey_caught",
         "loss", "mirrored_loss"))
    tb = _tensorboard(run.path / "tensorboard")
    recent, recent_prey = deque(maxlen=100), deque(maxlen=100)
    epsilons = np.asarray(state.actor.epsilons)
    per_iteration = loop.env_steps_per_iteration
    start = time.time()
    last_log = last_ckpt = start
    env_at_log, learn_at_log = counts["env_steps"], counts["learner_steps"]
    loss = mirrored_loss = math.nan
    replay_size = 0
    interrupted = False

    def checkpoint():
        path = run.save_checkpoint(_CheckpointSource(state.training), dict(counts))
        log.info("checkpoint %s at %d env steps", path.name, counts["env_steps"])

    bar = tqdm(total=num_steps, initial=min(counts["env_steps"], num_steps), unit="step",
               disable=not progress, desc="train (device loop)", dynamic_ncols=True)
    try:
        while counts["env_steps"] < num_steps:
            if max_seconds is not None and time.time() - start > max_seconds:
                log.info("stopping after max_seconds=%s", max_seconds)
                break
            state, out = loop.run(state)
            out = jax.device_get(out)
            for k in range(loop.iterations_per_call):
                env_before = counts["env_steps"] + k * per_iteration
                for r in np.nonzero(out.rows_valid[k])[0]:
                    row = {name: float(v[k, r]) for name, v in out.rows.items()}
                    row.update(env_steps=env_before + (int(out.rows_time[k, r]) + 1)
                               * training.num_envs,
                               world=int(out.rows_world[k, r]),
                               epsilon=float(epsilons[out.rows_world[k, r]]))
                    episodes_csv.write(row)
                    recent.append(row["episode_return"])
                    recent_prey.append(row["prey_caught"])
            n_learn = int(np.sum(out.learner_steps))
            if n_learn:
                loss = float(np.sum(out.loss)) / n_learn
                mirrored_loss = float(np.sum(out.mirrored_loss)) / n_learn
            counts["env_steps"] += loop.iterations_per_call * per_iteration
            counts["actor_steps"] += loop.iterations_per_call * training.sequence_period
            counts["learner_steps"] += n_learn
            counts["episodes"] += int(np.sum(out.episodes))
            replay_size = int(out.replay_size[-1])
            bar.update(loop.iterations_per_call * per_iteration)
            now = time.time()
            if now - last_log >= training.log_every_seconds:
                dt = max(now - last_log, 1e-9)
                row = {
                    "time": now, **counts,
                    "env_steps_per_second": (counts["env_steps"] - env_at_log) / dt,
                    "learner_steps_per_second": (counts["learner_steps"] - learn_at_log) / dt,
                    "replay_size": replay_size,
                    "recent_return": float(np.mean(recent)) if recent else math.nan,
                    "recent_prey_caught": float(np.mean(recent_prey)) if recent_prey else math.nan,
                    "loss": loss, "mirrored_loss": mirrored_loss,
                }
                metrics_csv.write(row)
                _add_scalars(tb, "train", row, counts["env_steps"])
                bar.set_postfix(env_sps=f"{row['env_steps_per_second']:.0f}",
                                learn_sps=f"{row['learner_steps_per_second']:.2f}")
                last_log, env_at_log, learn_at_log = (
                    now, counts["env_steps"], counts["learner_steps"])
            if now - last_ckpt >= training.checkpoint_every_minutes * 60:
                checkpoint()
                last_ckpt = now
    except KeyboardInterrupt:
        interrupted = True
        log.warning("interrupted: saving a checkpoint before exiting")
    finally:
        bar.close()
    checkpoint()
    episodes_csv.close()
    metrics_csv.close()
    if tb is not None:
        tb.close()
    return {
        **counts,
        "seconds": time.time() - start,
        "resumed": record is not None,
        "interrupted": interrupted,
        "recent_return": float(np.mean(recent)) if recent else math.nan,
        "recent_prey_caught": float(np.mean(recent_prey)) if recent_prey else math.nan,
        "run_dir": str(run.path),
    }


__all__ = ["DeviceLoop", "IterationOutput", "LoopState", "train_device_loop"]
