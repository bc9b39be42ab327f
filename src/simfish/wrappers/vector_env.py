"""Many worlds stepped together, each reset after its episode ends.

``VectorEnv`` vmaps a :class:`simfish.SimFishEnv` over ``E`` worlds. The env's
``step`` follows dm_env per world: a world whose last time step was LAST starts
a new episode instead (its action is ignored), so each world's stream reads
``FIRST, MID, ..., LAST, FIRST, ...`` with no host-side resets. All functions
are pure and jit-able.
"""

from __future__ import annotations

from typing import Any

import dm_env
import jax
import jax.numpy as jnp

from simfish.wrappers.metrics import episode_metrics


def where_worlds(mask: jax.Array, a: Any, b: Any) -> Any:
    """Per-world select of two pytrees with leading axis E."""
    return jax.tree.map(
        lambda x, y: jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, y), a, b
    )


class VectorEnv:
    """``num_worlds`` copies of ``env`` stepped together.

    Args:
      env: an object with pure ``reset(key)`` and ``step(state, action, key)``.
      num_worlds: E, the number of worlds.
    """

    def __init__(self, env: Any, num_worlds: int):
        if num_worlds < 1:
            raise ValueError(f"num_worlds must be >= 1, got {num_worlds}")
        self.env = env
        self.num_worlds = num_worlds
        self._reset = jax.vmap(env.reset)
        self._step = jax.vmap(env.step)

    def reset(self, key: jax.Array) -> tuple[Any, dm_env.TimeStep]:
        """Resets every world: states and time steps with leading axis E."""
        return self._reset(jax.random.split(key, self.num_worlds))

    def step(self, state: Any, action: jax.Array, key: jax.Array) -> tuple[Any, dm_env.TimeStep]:
        """Steps every world (a world whose last time step was LAST starts anew).

        Args:
          state: world states [E, ...].
          action: int32 [E].
          key: one PRNG key for the whole batch.
        """
        return self._step(state, action, jax.random.split(key, self.num_worlds))


def episode_stats(state: Any) -> dict[str, jax.Array]:
    """Per-episode totals of one world's state (valid when its episode has ended).

    The keys and readers are ``simfish.wrappers.metrics.EPISODE_METRICS``.
    """
    return episode_metrics(state)
