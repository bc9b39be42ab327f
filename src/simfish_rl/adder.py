"""Cuts each world's step stream into overlapping replay sequences.

Every ``period`` steps each world emits its last ``sequence_length`` steps
(burn-in + trace + 1), so consecutive sequences of a world overlap by
``sequence_length - period`` steps, as in R2D2. Sequences are windows of the
continuous stream and may cross an episode boundary; the boundary stays visible
through the ``start_of_episode`` flags and the zero discount after each LAST
step, which the learner uses to reset its recurrent state and stop
bootstrapping. The recurrent state stored with a sequence is the one the actor
held before the window's first step.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


class SequenceAdder:
    """A rolling window of the last ``sequence_length`` steps of every world.

    Args:
      sequence_length: steps per emitted sequence (burn_in + trace + 1).
      period: steps between two sequences of the same world; each ``add`` takes
        a chunk of exactly this many steps.
    """

    def __init__(self, sequence_length: int, period: int):
        if period < 1 or sequence_length < 1:
            raise ValueError(
                f"sequence_length ({sequence_length}) and period ({period}) must be >= 1"
            )
        if period > sequence_length:
            raise ValueError(
                f"period ({period}) must not exceed sequence_length ({sequence_length}): "
                "steps between sequences would never be replayed"
            )
        self.sequence_length = sequence_length
        self.period = period
        self._shift = jax.jit(self._shift_impl, donate_argnums=(0,))

    def init(self, chunk: Any) -> dict:
        """An empty window shaped like a chunk ``[period, E, ...]`` of steps."""
        window = jax.tree.map(
            lambda x: jnp.zeros((x.shape[1], self.sequence_length) + x.shape[2:], x.dtype), chunk
        )
        return {"window": window, "filled": 0}

    def _shift_impl(self, window, chunk):
        batch_major = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), chunk)
        return jax.tree.map(
            lambda w, c: jnp.concatenate([w[:, self.period :], c], axis=1), window, batch_major
        )

    def add(self, state: dict, chunk: Any) -> tuple[dict, Any | None]:
        """Appends a chunk ``[period, E, ...]``.

        Returns:
          ``(state, sequences)``: sequences are ``[E, sequence_length, ...]``
          once the window is full, else None.
        """
        length = jax.tree.leaves(chunk)[0].shape[0]
        if length != self.period:
            raise ValueError(f"chunk has {length} steps, expected period = {self.period}")
        window = self._shift(state["window"], chunk)
        filled = min(state["filled"] + self.period, self.sequence_length)
        new_state = {"window": window, "filled": filled}
        return new_state, (window if filled >= self.sequence_length else None)
