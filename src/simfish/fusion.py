"""Keeping XLA from recomputing shared element-wise work (``computed_once``).

XLA fuses an element-wise computation into every fusion that reads its result
and recomputes it there, even when it is expensive (a ``cos``, a ``log``) or
when the reader loops over it many times (a per-feature value read for every
point). Inside the vmapped world step on CPU this made the cos and sin of the
prey's headings three times each per step, and the sediment's random features
once for each of a world's 10,752 (point, feature) pairs
(docs/performance.md, "Work computed once").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def computed_once(*arrays: jax.Array) -> tuple[jax.Array, ...]:
    """``arrays`` unchanged, each computed once before it is read.

    A matrix product is never fused into the code around it, so the arrays go
    through one with the identity matrix: XLA writes them to memory once and
    every reader loads them. Exact for finite values: each entry is one product
    by 1 plus products by 0 (an infinity would spread NaNs to the others).

    Args:
      *arrays: floating arrays of one shape and dtype.

    Returns:
      The arrays, in order.
    """
    stacked = jnp.stack(arrays)
    k = len(arrays)
    # The identity from iotas: an array constant would be captured by the
    # custom_vmap rules of the world step (simfish.world.physics).
    eye = (jnp.arange(k)[:, None] == jnp.arange(k)[None, :]).astype(stacked.dtype)
    flat = jnp.dot(eye, stacked.reshape(k, -1), precision=jax.lax.Precision.HIGHEST)
    return tuple(flat.reshape(stacked.shape))
