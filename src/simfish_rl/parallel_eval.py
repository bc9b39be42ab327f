"""Evaluation of many episodes at once: vectorised worlds and a batched recurrent actor.

``ParallelEvaluator`` plays episodes in ``E`` world slots inside one jitted
``lax.scan`` of ``chunk`` steps; a slot whose episode ended starts the next
pending episode at the next chunk (one jitted reset of that world, put into
the slot on the host). Each step's record (the world's info, the time step,
the action and the LSTM hidden state) comes back to the host once per chunk.
A finished episode goes to ordinary observers: as whole arrays to those with
``observe_steps`` (``EnvInfoKeep``), step by step through a per-slot
``dm_env`` view to the others, so the episode files are written by the same
observer and logger code as a one-world loop.

Same episode, same numbers, whatever ``E``:

* every episode has its own keys, ``episode_keys(seed, index)``: the world's
  key stream (one split for the reset, then one per step) and the actor's (one
  split per action) depend only on the seed and the episode's index;
* the worlds are ``vmap``-ed (per-world results do not depend on the batch
  size: checked by ``tests/rl/test_parallel_eval.py``), while the network runs
  one world at a time inside ``lax.map``: a batched matmul rounds differently
  from a one-row one, and ``lax.map`` keeps the one-row computation.

``E = 1`` is the one-world path; on a CPU any ``E`` gives byte-identical
datasets. On a GPU (H200, JAX 0.11.2) the LSTM state was seen to differ
between E = 1 and E = 3 (``docs/training_speed.md``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import dm_env
import jax
import jax.numpy as jnp
import numpy as np

from simfish.vision import arena_sediment_image
from simfish.vision.bind import episode_sediment
from simfish.wrappers.base_environment import BaseEnvironment, info_lists
from simfish.wrappers.vector_env import where_worlds
from simfish_rl.counting import Counter
from simfish_rl.hdf5_logger import EnvLoopObserver
from simfish_rl.policy import epsilon_greedy

_LOG = logging.getLogger(__name__)

LAST = int(dm_env.StepType.LAST)

COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}
"""XLA options of the evaluation programs: on CPU, LLVM's level 1 compiles the
world step about a third faster than the default level and runs it as fast
(``benchmarks/bench_eval.py``); results are the same for every batch size."""


def episode_keys(seed: int, index: int) -> tuple[jax.Array, jax.Array]:
    """The (world key, actor key) of episode ``index`` of an evaluation with ``seed``."""
    world_key, actor_key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), index))
    return world_key, actor_key


class _Slot(NamedTuple):
    """One world slot's carry (leading axis E when batched)."""

    env_state: Any
    timestep: Any
    world_key: jax.Array  # uint32 [2]
    actor_key: jax.Array  # uint32 [2]
    core_state: Any  # LSTMState with [1, H] leaves (one world's batch of one)
    done: jax.Array  # bool []: the episode has ended (the slot is idle)


class _Record(NamedTuple):
    """What one step of one slot left behind (leading axes [K, E] per chunk)."""

    active: jax.Array  # bool: the slot was playing an episode at this step
    info: Any  # SimFishEnv.info of the world after the step
    timestep: Any  # the time step after the step
    action: jax.Array  # int32
    hidden: jax.Array  # float32 [H], LSTM hidden state that chose the action


class _WorldView:
    """What observers read from one slot: a ``BaseEnvironment`` fed with replayed data.

    ``get_info()`` gives the recorded info of the step being replayed,
    ``sediment_record`` the sediment computed at the reset and
    ``sediment_image()`` its texture; every other
    attribute (salt location, env variables, episode totals) is
    the ``BaseEnvironment``'s, read from the world state set with ``show``
    (the reset state at the episode start, the final state at its end).
    """

    def __init__(self, base: BaseEnvironment, sediment: Any = None,
                 image: Callable[[], np.ndarray] | None = None):
        self._base = base
        self._info: dict[str, list] | None = None
        self._sediment = sediment
        self._image = image

    def sediment_image(self) -> np.ndarray:
        """The episode's sediment texture float32 [height, width] (else the base's)."""
        return self._base.sediment_image() if self._image is None else self._image()

    @property
    def sediment_record(self) -> Any:
        """The episode's sediment, computed with the batch at the reset (else the base's)."""
        return self._base.sediment_record if self._sediment is None else self._sediment

    def show(self, state: Any = None, info: dict[str, list] | None = None) -> None:
        """Sets the world state (if given) and the info of the step being replayed."""
        if state is not None:
            self._base.set_state(state)
        self._info = info

    def get_info(self) -> dict[str, list]:
        """The recorded per-step info (``BaseEnvironment.get_info`` format)."""
        if self._info is None:
            raise RuntimeError("no step is being replayed")
        return self._info

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)


def _host_timestep(ts: Any) -> dm_env.TimeStep:
    """A numpy time step as ``BaseEnvironment`` returns it (no reward on FIRST)."""
    step_type = dm_env.StepType(int(ts.step_type))
    first = step_type == dm_env.StepType.FIRST
    return dm_env.TimeStep(
        step_type=step_type,
        reward=None if first else ts.reward,
        discount=None if first else ts.discount,
        observation=ts.observation,
    )


class ParallelEvaluator:
    """Plays evaluation episodes in ``num_worlds`` slots at once.

    Args:
      base: a ``BaseEnvironment`` of the evaluation world (its ``env`` is the
        pure ``SimFishEnv`` that is vectorised; it also serves the observers).
      apply_fn: ``(params, key, observation [1, ...], state) -> (q [1, A], state)``.
      initial_state_fn: ``(batch_size) -> LSTMState``.
      params: network parameters.
      epsilon: exploration rate of every episode.
      num_worlds: E, episodes played at once.
      chunk: steps per jitted call (records come to the host once per chunk).
    """

    def __init__(self, base: BaseEnvironment, apply_fn: Callable, initial_state_fn: Callable,
                 params: Any, epsilon: float, num_worlds: int, chunk: int = 50):
        if num_worlds < 1:
            raise ValueError(f"num_parallel must be >= 1, got {num_worlds}")
        if not 0.0 <= float(epsilon) <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.base = base
        self.env = base.env
        self.num_worlds = num_worlds
        self.chunk = chunk
        self._params = params
        self._apply = apply_fn
        self._initial_state_fn = initial_state_fn
        self._epsilon = jnp.float32(epsilon)
        self._keys = jax.jit(jax.vmap(episode_keys, in_axes=(None, 0)))
        self._start = jax.jit(self._start_one, compiler_options=COMPILER_OPTIONS)
        self._play = jax.jit(self._play_chunk, static_argnums=(2,),
                             compiler_options=COMPILER_OPTIONS)

    # -- device side ------------------------------------------------------------

    def _start_one(self, world_key: jax.Array, actor_key: jax.Array) -> tuple[_Slot, Any]:
        """Resets one world for a new episode (one key split, as per step); also its info."""
        world_key, k_reset = jax.random.split(world_key)
        env_state, timestep = self.env.reset(k_reset)
        slot = _Slot(env_state, timestep, world_key, actor_key,
                     self._initial_state_fn(1), jnp.zeros((), bool))
        sediment = episode_sediment(env_state.episode_key, self.base.config)
        return slot, (self.env.info(env_state), sediment)

    def _live_step(self, env_state: Any, action: jax.Array, key: jax.Array):
        """``env.step`` of a world whose episode goes on (one world; vmapped by ``_step``).

        An idle slot is never advanced (``_step`` keeps its state) and a new
        episode starts with ``_start_one``, so ``done`` is replaced by the
        constant False: under ``vmap`` the world's restart branch then stays
        unbatched and XLA drops it, instead of computing a reset for every
        world at every step. The stepped worlds' numbers are unchanged.
        """
        return self.env.step(env_state.replace(done=jnp.zeros((), bool)), action, key)

    def _act_one(self, params, slot: _Slot):
        """One world's action: network on a batch of one, then epsilon-greedy."""
        actor_key, key = jax.random.split(slot.actor_key)
        k_net, k_act = jax.random.split(key)
        observation = jax.tree.map(lambda x: x[None], slot.timestep.observation)
        q, core_state = self._apply(params, k_net, observation, slot.core_state)
        return actor_key, epsilon_greedy(k_act, q[0], self._epsilon), core_state

    def _step(self, params, slots: _Slot):
        """One step of every slot; idle slots keep their (final) state."""
        actor_key, action, core_state = jax.lax.map(
            lambda s: self._act_one(params, s), slots)
        split = jax.vmap(jax.random.split)(slots.world_key)
        world_key, k_step = split[:, 0], split[:, 1]
        env_state, timestep = jax.vmap(self._live_step)(slots.env_state, action, k_step)
        active = ~slots.done
        moved = _Slot(env_state, timestep, world_key, actor_key, core_state,
                      timestep.step_type == LAST)
        new = where_worlds(active, moved, slots)
        record = _Record(active, jax.vmap(self.env.info)(env_state), timestep, action,
                         core_state.hidden[:, 0])
        return new, record

    def _play_chunk(self, params, slots: _Slot, num_steps: int):
        """``num_steps`` steps of every slot: ``(slots, records [K, E, ...])``."""
        return jax.lax.scan(lambda s, _: self._step(params, s), slots, None, length=num_steps)

    # -- host side --------------------------------------------------------------

    def run(self, num_episodes: int, seed: int,
            observers: Sequence[EnvLoopObserver]) -> Iterator[dict[str, Any]]:
        """Plays episodes ``0 .. num_episodes - 1``; yields their summaries in index order.

        Args:
          num_episodes: episodes to play.
          seed: the evaluation seed (see ``episode_keys``).
          observers: ``EnvLoopObserver``s; each finished episode is replayed into
            them in full (``observe_first``, every ``observe``, ``get_metrics``)
            before the next one, as in a one-world loop.

        Yields:
          Each episode's summary, with the keys of ``StateEnvLoop.run_episode``
          (timings are shares of the batched wall time; the reset and action
          times are not measured separately and are NaN) and the observers' metrics.
        """
        world_keys, actor_keys = jax.device_get(
            self._keys(seed, np.arange(num_episodes, dtype=np.int32)))
        e = self.num_worlds
        compiling = self._compile_ahead(world_keys[0], actor_keys[0])
        playing: list[int | None] = [i if i < num_episodes else None for i in range(e)]
        episodes: dict[int, dict[str, Any]] = {}
        finished: dict[int, dict[str, Any]] = {}
        counter = Counter()
        fresh = [self._begin(episodes, i, world_keys, actor_keys) for i in playing
                 if i is not None]
        # Slots without an episode copy the first one's start and stay idle.
        fresh += [fresh[0]._replace(done=np.ones((), bool))] * (e - len(fresh))
        slots = jax.tree.map(lambda *xs: np.stack(xs), *fresh)
        next_episode = min(e, num_episodes)
        to_yield = 0
        compiling.join()
        while to_yield < num_episodes:
            t0 = time.perf_counter()
            slots, records = self._play(self._params, slots, self.chunk)
            records, done = jax.device_get((records, slots.done))
            per_step = (time.perf_counter() - t0) / (self.chunk * e)
            host = None
            for slot, episode in enumerate(playing):
                if episode is None:
                    continue
                active = records.active[:, slot]
                episodes[episode]["chunks"].append(
                    jax.tree.map(lambda x, s=slot, a=active: x[a, s], records))
                if not done[slot]:
                    continue
                if host is None:  # writable host copies of every slot
                    host = jax.tree.map(np.array, jax.device_get(slots))
                finished[episode] = self._replay(
                    episodes.pop(episode),
                    jax.tree.map(lambda x, s=slot: np.array(x[s]), host.env_state),
                    observers, per_step, counter)
                playing[slot] = None
                if next_episode < num_episodes:
                    playing[slot] = next_episode
                    started = self._begin(episodes, next_episode, world_keys, actor_keys)
                    for leaf, new in zip(jax.tree.leaves(host), jax.tree.leaves(started),
                                         strict=True):
                        leaf[slot] = new
                    next_episode += 1
            if host is not None:
                slots = host
            while to_yield in finished:
                yield finished.pop(to_yield)
                to_yield += 1

    def _compile_ahead(self, world_key: np.ndarray, actor_key: np.ndarray) -> threading.Thread:
        """Compiles the chunk program in a thread while the first episodes are reset.

        The program is compiled for the slots' shapes (numpy arrays [E, ...],
        as ``run`` stacks them), so the first ``_play`` call finds it in jit's
        cache. A failure here is only logged: that call then compiles (and
        raises) itself.
        """
        shapes = jax.eval_shape(self._start_one, world_key, actor_key)[0]
        slots = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct((self.num_worlds, *x.shape), x.dtype), shapes)

        def compile_play() -> None:
            try:
                self._play.lower(self._params, slots, self.chunk).compile()
            except Exception:  # noqa: BLE001 -- the first call reports it
                _LOG.debug("compiling the chunk program ahead failed", exc_info=True)

        thread = threading.Thread(target=compile_play, name="compile-eval-chunk", daemon=True)
        thread.start()
        return thread

    def _begin(self, episodes: dict, episode: int, world_keys: np.ndarray,
               actor_keys: np.ndarray) -> _Slot:
        """Starts ``episode`` (one jitted reset); keeps its start; returns its host slot."""
        slot, (info, sediment) = jax.device_get(
            self._start(world_keys[episode], actor_keys[episode]))
        episodes[episode] = {
            "state": slot.env_state,
            "timestep": slot.timestep,
            "info": info_lists(info),
            "sediment": sediment,
            "chunks": [],
            "begun": time.perf_counter(),
        }
        return slot

    def _replay(self, episode: dict, final_state: Any, observers, per_step: float,
                counter: Counter) -> dict[str, Any]:
        """Feeds one finished episode to the observers; returns its summary."""
        records = jax.tree.map(lambda *xs: np.concatenate(xs), *episode["chunks"])
        length = len(records.action)
        seconds = time.perf_counter() - episode["begun"]
        arena = self.base.config.arena
        view = _WorldView(self.base, sediment=episode["sediment"],
                          image=lambda: arena_sediment_image(episode["sediment"], arena))
        view.show(episode["state"], episode["info"])
        for observer in observers:
            observer.observe_first(view, _host_timestep(episode["timestep"]))
        # Observers that take a whole episode's arrays (EnvInfoKeep.observe_steps) get
        # them at once; the others see the steps one by one through the view.
        whole = [o for o in observers if callable(getattr(o, "observe_steps", None))]
        stepwise = [o for o in observers if o not in whole]
        for observer in whole:
            observer.observe_steps(records.info, records.timestep, records.action, records.hidden)
        if not stepwise:
            view.show(final_state)  # the world as it ended, for get_metrics()
        for t in range(length if stepwise else 0):
            ts = _host_timestep(jax.tree.map(lambda x, t=t: x[t], records.timestep))
            info = info_lists(jax.tree.map(lambda x, t=t: x[t], records.info))
            view.show(final_state if t == length - 1 else None, info)
            action = np.int32(records.action[t])
            for observer in stepwise:
                observer.observe(view, ts, action, actor_state=np.array(records.hidden[t]))
        episode_return = 0.0
        first = records.timestep.step_type == int(dm_env.StepType.FIRST)
        for reward, is_first in zip(records.timestep.reward.tolist(), first.tolist(), strict=True):
            if not is_first:  # a FIRST time step has no reward
                episode_return += reward
        counts = counter.increment(episodes=1, steps=length)
        result: dict[str, Any] = {
            "episode_length": length,
            "episode_return": episode_return,
            "steps_per_second": length / seconds if seconds > 0 else math.nan,
            "episode_duration_sec": seconds,
            "env_reset_duration_sec": math.nan,
            "select_action_duration_sec": math.nan,
            "env_step_duration_sec": per_step,
        }
        result.update(counts)
        for observer in observers:
            result.update(observer.get_metrics())
        return result



__all__ = ["ParallelEvaluator", "episode_keys"]
