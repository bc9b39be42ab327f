"""Epsilon-greedy action selection, the one copy used by acting and evaluation.

Both the batched training actor (``simfish_rl.actor``) and the evaluation
actors (``simfish_rl.eval_simfish_agent``) choose actions here, through
``rlax.epsilon_greedy``: with probability ``epsilon`` a uniformly random
action, otherwise the greedy one (ties split evenly, as rlax does).
"""

from __future__ import annotations

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import rlax

with warnings.catch_warnings():
    # rlax announces that epsilon_greedy will move to distrax; the sampler it
    # returns is the same distrax.EpsilonGreedy either way.
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    _EPSILON_GREEDY = rlax.epsilon_greedy()


def epsilon_greedy(key: jax.Array, q_values: jax.Array, epsilon: jax.Array) -> jax.Array:
    """One epsilon-greedy action from the Q-values of one world.

    Args:
      key: PRNG key.
      q_values: float [A].
      epsilon: float [] in [0, 1].

    Returns:
      int32 [] action id.
    """
    chex.assert_rank([q_values, epsilon], [1, 0])
    chex.assert_type(q_values, float)
    return _EPSILON_GREEDY.sample(key, q_values, epsilon).astype(jnp.int32)


def batched_epsilon_greedy(key: jax.Array, q_values: jax.Array,
                           epsilons: jax.Array) -> jax.Array:
    """Epsilon-greedy actions of E worlds, each with its own epsilon.

    Args:
      key: one PRNG key for the batch (split into one per world).
      q_values: float [E, A].
      epsilons: float [E].

    Returns:
      int32 [E] action ids.
    """
    chex.assert_rank([q_values, epsilons], [2, 1])
    chex.assert_equal_shape_prefix([q_values, epsilons], 1)
    keys = jax.random.split(key, q_values.shape[0])
    return jax.vmap(epsilon_greedy)(keys, q_values, epsilons)


__all__ = ["batched_epsilon_greedy", "epsilon_greedy"]


class RandomActor:
    """Uniformly random bouts from a numpy Generator: a baseline for evaluation loops.

    It has the actor interface the evaluation loops use (``observe_first``,
    ``select_action``, ``observe``, ``update``) and no recurrent state.
    """

    def __init__(self, num_actions: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.num_actions = num_actions

    def observe_first(self, timestep) -> None:
        """Nothing to remember."""

    def select_action(self, observation) -> np.int32:
        """A uniformly random action id."""
        return np.int32(self.rng.integers(self.num_actions))

    def observe(self, action, next_timestep) -> None:
        """Nothing to learn."""

    def update(self) -> None:
        """Nothing to update."""
