"""Many worlds stepped together, each reset after its episode ends.

``VectorEnv`` vmaps a :class:`simfish.SimFishEnv` over ``E`` worlds. The env's
``step`` follows dm_env per world: a world whose last time step was LAST starts
a new episode instead (its action is ignored), so each world's stream reads
``FIRST, MID, ..., LAST, FIRST, ...`` with no host-side resets. All functions
are pure and jit-able.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dm_env
import jax
import jax.numpy as jnp
import numpy as np

from simfish.wrappers.metrics import episode_metrics


def where_worlds(mask: jax.Array, a: Any, b: Any) -> Any:
    """Per-world select of two pytrees with leading axis E."""
    return jax.tree.map(
        lambda x, y: jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, y), a, b
    )


def world_sharding(num_worlds: int, devices: Sequence[jax.Device] | None = None):
    """A sharding that splits a leading world axis evenly over ``devices``.

    Args:
      num_worlds: E, the length of the world axis.
      devices: the devices to use (default: every local device of JAX's
        default backend; on a CPU, ``jax_num_cpu_devices`` or the ``simfish
        --cpu-devices`` option sets how many there are).

    Returns:
      A ``NamedSharding`` over a one-axis mesh ``("worlds",)``, or None when
      there is a single device or E is not a multiple of the device count
      (the worlds then stay on the default device).
    """
    devices = list(jax.local_devices() if devices is None else devices)
    if len(devices) < 2 or num_worlds % len(devices):
        return None
    mesh = jax.sharding.Mesh(np.array(devices), ("worlds",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("worlds"))


def shard_worlds(tree: Any, sharding) -> Any:
    """Lays out every leaf of ``tree`` (leading world axis) by ``sharding`` (None: unchanged).

    Inside ``jit`` this is a sharding constraint; the compiled step then runs
    each device's worlds on that device, in parallel.
    """
    if sharding is None:
        return tree
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), tree)


class VectorEnv:
    """``num_worlds`` copies of ``env`` stepped together.

    With several local devices (several GPUs, or a CPU split into devices by
    ``jax_num_cpu_devices``) the worlds are spread evenly over them (see
    :func:`world_sharding`): each device steps its own worlds, in parallel,
    with the same per-world results as on one device.

    Args:
      env: an object with pure ``reset(key)`` and ``step(state, action, key)``.
      num_worlds: E, the number of worlds.
      devices: the devices to spread the worlds over (default: every local
        device; ``[]`` or one device: no spreading).
    """

    def __init__(self, env: Any, num_worlds: int, devices: Sequence[jax.Device] | None = None):
        if num_worlds < 1:
            raise ValueError(f"num_worlds must be >= 1, got {num_worlds}")
        self.env = env
        self.num_worlds = num_worlds
        self.sharding = world_sharding(num_worlds, devices)
        self._reset = jax.vmap(env.reset)
        self._step = jax.vmap(env.step)

    def reset(self, key: jax.Array) -> tuple[Any, dm_env.TimeStep]:
        """Resets every world: states and time steps with leading axis E."""
        return shard_worlds(self._reset(jax.random.split(key, self.num_worlds)), self.sharding)

    def step(self, state: Any, action: jax.Array, key: jax.Array) -> tuple[Any, dm_env.TimeStep]:
        """Steps every world (a world whose last time step was LAST starts anew).

        Args:
          state: world states [E, ...].
          action: int32 [E].
          key: one PRNG key for the whole batch.
        """
        out = self._step(state, action, jax.random.split(key, self.num_worlds))
        return shard_worlds(out, self.sharding)


def episode_stats(state: Any) -> dict[str, jax.Array]:
    """Per-episode totals of one world's state (valid when its episode has ended).

    The keys and readers are ``simfish.wrappers.metrics.EPISODE_METRICS``.
    """
    return episode_metrics(state)
