"""Batched recurrent epsilon-greedy actors on vectorised SimFish worlds.

One jitted call steps ``E`` worlds and their recurrent Q-network together for a
chunk of steps (``lax.scan``), with a separate exploration epsilon per world
(the Ape-X schedule), and returns what happened as time-major arrays
``[T, E, ...]``. The actor is pure: ``init`` and ``collect`` take and return an
explicit :class:`ActorState`; parameters are passed in, so the caller decides
when to pull new ones from the learner (``variable_update_period``).

The step stream follows dm_env: after a ``LAST`` time step the next step of that
world is a reset (its action is ignored), so the recorded stream is
``FIRST, MID, ..., LAST, FIRST, ...`` and the learner sees every boundary.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import chex
import dm_env
import jax
import jax.numpy as jnp
import numpy as np

from simfish.world.types import pytree_dataclass
from simfish.wrappers.vector_env import VectorEnv, where_worlds
from simfish_rl.policy import batched_epsilon_greedy
from simfish_rl.types import Step


def apex_epsilons(num_actors: int, base: float = 0.4, alpha: float = 7.0) -> np.ndarray:
    """The Ape-X exploration schedule: eps_i = base ** (1 + alpha * i / (N - 1)).

    Args:
      num_actors: N, the number of actors (worlds).
      base: epsilon of the most exploratory actor.
      alpha: how fast epsilon falls across actors.

    Returns:
      float32 [N] epsilons, from ``base`` down to ``base ** (1 + alpha)``.
    """
    if num_actors < 1:
        raise ValueError(f"num_actors must be >= 1, got {num_actors}")
    if num_actors == 1:
        return np.array([base], dtype=np.float32)
    i = np.arange(num_actors, dtype=np.float64)
    return (base ** (1.0 + alpha * i / (num_actors - 1))).astype(np.float32)


@pytree_dataclass
class ActorState:
    """The batched actor's state between calls."""

    env_state: Any  # [E] world states
    timestep: Any  # [E] current dm_env.TimeStep
    core_state: Any  # [E] recurrent state after the last processed step
    epsilons: jnp.ndarray  # float32 [E]
    steps: jnp.ndarray  # int32 [] batched steps taken


class BatchedActor:
    """Steps E worlds with an epsilon-greedy recurrent Q-network.

    Args:
      env: a ``simfish.SimFishEnv`` (pure ``reset(key)`` / ``step(state, a, key)``).
      apply_fn: ``(params, key, observation, core_state) -> (q_values, new_core_state)``
        for a batch of observations (q_values [E, A]).
      initial_state_fn: ``(batch_size) -> core_state`` (zeros LSTM state).
      epsilons: float32 [E] per-world exploration rates.
      episode_stats_fn: ``(env_state) -> dict of scalars`` for one world (e.g. the
        episode's reward-term totals); collected at every step and meaningful
        where the episode has just ended.
    """

    def __init__(
        self,
        env: Any,
        apply_fn: Callable[..., Any],
        initial_state_fn: Callable[[int], Any],
        epsilons: np.ndarray,
        episode_stats_fn: Callable[[Any], dict] | None = None,
    ):
        self._env = env
        self._apply = apply_fn
        self._initial_state_fn = initial_state_fn
        self._epsilons = jnp.asarray(epsilons, dtype=jnp.float32)
        self.num_worlds = int(self._epsilons.shape[0])
        self._stats_fn = jax.vmap(episode_stats_fn or (lambda _: {}))
        self._worlds = VectorEnv(env, self.num_worlds)
        self.collect = jax.jit(self._collect, static_argnums=(3,), donate_argnums=(1,))

    def init(self, key: jax.Array) -> ActorState:
        """Resets all worlds and the recurrent states."""
        env_state, timestep = self._worlds.reset(key)
        return ActorState(
            env_state=env_state,
            timestep=timestep,
            core_state=self._initial_state_fn(self.num_worlds),
            epsilons=self._epsilons,
            steps=jnp.zeros((), jnp.int32),
        )

    def _act(self, params, state: ActorState, key):
        """One batched step: choose actions, step the worlds, record the step."""
        k_net, k_act, k_env = jax.random.split(key, 3)
        ts = state.timestep
        first = ts.step_type == dm_env.StepType.FIRST
        core = where_worlds(first, self._initial_state_fn(self.num_worlds), state.core_state)
        q, new_core = self._apply(params, k_net, ts.observation, core)
        chex.assert_shape(q, (self.num_worlds, None))
        action = batched_epsilon_greedy(k_act, q, state.epsilons)

        env_state, next_ts = self._worlds.step(state.env_state, action, k_env)
        last = ts.step_type == dm_env.StepType.LAST
        step = Step(
            observation=ts.observation,
            action=action,
            reward=jnp.where(last, 0.0, next_ts.reward).astype(jnp.float32),
            discount=jnp.where(last, 0.0, next_ts.discount).astype(jnp.float32),
            start_of_episode=first,
            core_state=core,
        )
        new_state = ActorState(
            env_state=env_state,
            timestep=next_ts,
            core_state=new_core,
            epsilons=state.epsilons,
            steps=state.steps + 1,
        )
        return new_state, step

    def _collect(self, params, state: ActorState, key, num_steps: int):
        """Runs ``num_steps`` batched steps.

        Returns:
          ``(state, (steps, ended, stats))``: the new actor state; ``Step`` arrays
          [T, E, ...]; bool [T, E], an episode ended with this step; and the
          episode statistics [T, E] of each world after the step.
        """

        def body(carry, k):
            new_state, step = self._act(params, carry, k)
            ended = new_state.timestep.step_type == dm_env.StepType.LAST
            return new_state, (step, ended, self._stats_fn(new_state.env_state))

        return jax.lax.scan(body, state, jax.random.split(key, num_steps))
