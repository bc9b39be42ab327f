"""Speed of the simulator: world-steps per second at several batch sizes.

Used by ``simfish bench`` and ``benchmarks/``. Compilation is timed separately
and excluded from the rates: every key, action and compiled function is made
before the timer starts, and :func:`count_compiles` checks that nothing was
compiled inside the timed region. Every measurement ends with
``block_until_ready``.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from simfish.config import SimFishConfig
from simfish.io.actions import Actions

KINDS = ("sim", "env")

#: The JAX monitoring event recorded once per backend compilation.
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def count_compiles() -> Iterator[list[float]]:
    """Counts XLA compilations inside the ``with`` block.

    Yields a list that receives the duration (s) of each backend compilation
    made while the block runs; ``len`` of it is the number of compilations.
    """
    durations: list[float] = []

    def listener(event: str, seconds: float, **_: Any) -> None:
        if event == _COMPILE_EVENT:
            durations.append(seconds)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield durations
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _tree_bytes(tree: Any) -> int:
    return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree)))


def time_steps(env: Any, batch: int, steps: int, seed: int = 0, chunk: int = 20) -> dict[str, float]:
    """Times ``steps`` random-action steps of ``batch`` worlds of ``env``.

    Returns:
      ``batch``, ``steps_per_second`` (world-steps/s), ``compile_seconds``,
      ``state_bytes_per_world`` (the world state's device memory),
      ``step_bytes_per_world`` (XLA's estimate of arguments + outputs +
      temporaries of the compiled chunk, per world; None where the backend
      does not report it) and ``timed_compiles`` (compilations inside the
      timed region: 0 unless something is wrong with the benchmark).
    """
    from simfish.wrappers.vector_env import VectorEnv

    worlds = VectorEnv(env, batch)
    chunk = max(1, min(chunk, steps))

    def body(carry, key):
        state, ts = carry
        k_act, k_env = jax.random.split(key)
        action = jax.random.randint(k_act, (batch,), 0, env.num_actions, jnp.int32)
        return worlds.step(state, action, k_env), None

    @jax.jit
    def run(state, ts, key):
        (state, ts), _ = jax.lax.scan(body, (state, ts), jax.random.split(key, chunk))
        return state, ts

    key = jax.random.PRNGKey(seed)
    state, ts = jax.jit(worlds.reset)(key)
    t0 = time.perf_counter()
    compiled = run.lower(state, ts, key).compile()
    state, ts = jax.block_until_ready(compiled(state, ts, key))  # warm-up
    compile_s = time.perf_counter() - t0
    n_chunks = max(1, -(-steps // chunk))
    # One key per chunk, made (and split into Python-held arrays) before timing.
    chunk_keys = jax.block_until_ready(list(jax.random.split(key, n_chunks)))
    with count_compiles() as compiles:
        t0 = time.perf_counter()
        for chunk_key in chunk_keys:
            state, ts = compiled(state, ts, chunk_key)
        jax.block_until_ready(state)
        elapsed = time.perf_counter() - t0
    if compiles:
        logger.warning("bench: %d compilation(s) inside the timed region", len(compiles))
    return {
        "batch": batch,
        "steps_per_second": n_chunks * chunk * batch / elapsed,
        "compile_seconds": compile_s,
        "state_bytes_per_world": _tree_bytes(state) / batch,
        "step_bytes_per_world": _xla_bytes(compiled, batch),
        "timed_compiles": len(compiles),
    }


def _xla_bytes(compiled: Any, batch: int) -> float | None:
    """XLA's memory estimate of a compiled computation, per world."""
    try:
        mem = compiled.memory_analysis()
    except (AttributeError, NotImplementedError):  # backend specific
        return None
    if mem is None:
        return None
    total = mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
    return total / batch


def run(
    what: str,
    config: SimFishConfig,
    batch_sizes: Sequence[int] = (1, 64, 256),
    steps: int = 200,
    seed: int = 0,
    actions: Actions | None = None,
) -> list[dict[str, float]]:
    """Benchmarks the dynamics alone (``sim``) or the full step with vision (``env``)."""
    from simfish.world.env import SimFishEnv

    if what not in KINDS:
        raise ValueError(f"unknown benchmark {what!r} (choose from {', '.join(KINDS)})")
    env = SimFishEnv(config, actions or Actions.default(), vision=(what == "env"))
    rows = []
    for batch in batch_sizes:
        row = time_steps(env, batch, steps, seed)
        row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append(row)
    return rows


def format_table(what: str, rows: Sequence[dict[str, float]]) -> str:
    """A small text table of benchmark rows."""
    title = {"sim": "world dynamics only", "env": "full env step (dynamics + vision)"}[what]
    lines = [
        f"simfish bench {what}: {title}; backend {jax.default_backend()}, "
        f"{len(jax.devices())} device(s)",
        f"{'batch':>6} {'steps/s':>12} {'compile s':>10} {'state KB/world':>15} "
        f"{'XLA KB/world':>13} {'peak RSS MB':>12}",
    ]
    for r in rows:
        xla = "n/a" if r["step_bytes_per_world"] is None else f"{r['step_bytes_per_world'] / 1024:.1f}"
        lines.append(
            f"{r['batch']:>6} {r['steps_per_second']:>12,.0f} {r['compile_seconds']:>10.1f} "
            f"{r['state_bytes_per_world'] / 1024:>15.1f} {xla:>13} {r['peak_rss_mb']:>12.0f}"
        )
    return "\n".join(lines)
