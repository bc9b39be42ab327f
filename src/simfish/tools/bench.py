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
from simfish.tools.cli import huge_pages_on

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
      does not report it), ``timed_compiles`` (compilations inside the
      timed region: 0 unless something is wrong with the benchmark) and
      ``devices`` (how many devices the worlds were spread over, see
      ``VectorEnv``).
    """
    from simfish.wrappers.vector_env import VectorEnv

    worlds = VectorEnv(env, batch)
    devices = 1 if worlds.sharding is None else len(worlds.sharding.device_set)
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
        # XLA reports one device's share: divide by the worlds on one device.
        "step_bytes_per_world": _xla_bytes(compiled, batch // devices),
        "devices": devices,
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
        f"{'batch':>6} {'devices':>8} {'steps/s':>12} {'compile s':>10} {'state KB/world':>15} "
        f"{'XLA KB/world':>13} {'peak RSS MB':>12}",
    ]
    for r in rows:
        xla = "n/a" if r["step_bytes_per_world"] is None else f"{r['step_bytes_per_world'] / 1024:.1f}"
        lines.append(
            f"{r['batch']:>6} {r['devices']:>8} {r['steps_per_second']:>12,.0f} "
            f"{r['compile_seconds']:>10.1f} "
            f"{r['state_bytes_per_world'] / 1024:>15.1f} {xla:>13} {r['peak_rss_mb']:>12.0f}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Training throughput (``simfish bench train``).

TRAIN_MODES = ("auto", "device", "host")


def _timed(fn, *args, repeats: int = 3) -> tuple[float, Any]:
    """Best wall time of ``repeats`` calls of ``fn(*args)`` (after one warm-up call)."""
    out = jax.block_until_ready(fn(*args))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best, out


def train_benchmark(
    config: SimFishConfig,
    training: Any,
    seconds: float = 60.0,
    mode: str = "auto",
    iterations_per_call: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """Measures training throughput and where its time goes on the current backend.

    Times, each compiled once and then run warm: acting alone (the batched
    actor, ``sequence_period`` steps of ``num_envs`` worlds), one learner step
    alone (regular + mirrored SGD step on a replay batch), and then the
    training loop itself for ``seconds``: the one-device loop (``device``) or
    the host loop of ``simfish train`` (``host``); ``auto`` picks what
    ``simfish train`` would (device on a GPU). The loop's time is split into
    acting and learning at the measured rates; the rest is ``waiting``
    (replay, host round trips, threads waiting on each other).

    Returns:
      A dict of rates (env steps/s, learner steps/s), compile seconds and the
      time split (fractions of the loop's wall time).
    """
    from simfish_rl.device_loop import DeviceLoop

    if mode not in TRAIN_MODES:
        raise ValueError(f"unknown mode {mode!r} (choose from {', '.join(TRAIN_MODES)})")
    if mode == "auto":
        mode = "device" if jax.default_backend() == "gpu" else "host"
    actions = Actions.default()
    from simfish_rl.training import make_env

    env = make_env(config, actions)
    loop = DeviceLoop(env, training, actions.get_opposing_dict(), iterations_per_call)
    key = jax.random.PRNGKey(seed)
    state = loop.init(key)
    per_iteration = loop.env_steps_per_iteration

    # Acting alone.
    t0 = time.perf_counter()
    act = jax.jit(lambda p, s, k: loop.actor._collect(p, s, k, training.sequence_period))
    act_compiled = act.lower(state.actor_params, state.actor, key).compile()
    act_compile_s = time.perf_counter() - t0
    act_s, _ = _timed(act_compiled, state.actor_params, state.actor, key)
    acting_sps = per_iteration / act_s

    # Fill replay with the loop until learning starts (this compiles the loop).
    t0 = time.perf_counter()
    state, out = loop.run(state)
    jax.block_until_ready(out)
    loop_compile_s = time.perf_counter() - t0
    while int(out.replay_size[-1]) < training.min_replay_size:
        state, out = loop.run(state)

    # One learner step alone, on a batch from that replay.
    sample = jax.jit(loop.buffer.sample, static_argnums=(2,))(state.replay, key,
                                                              training.batch_size)
    t0 = time.perf_counter()
    learn = jax.jit(loop._learner_step).lower(state.training, sample).compile()
    learn_compile_s = time.perf_counter() - t0
    learn_s, _ = _timed(lambda: learn(state.training, sample)[1].priorities)
    learner_sps_alone = 1.0 / learn_s

    if mode == "device":
        env_steps = learner_steps = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            state, out = loop.run(state)
            learner_steps += int(jnp.sum(out.learner_steps))  # waits for the call
            env_steps += iterations_per_call * per_iteration
        wall = time.perf_counter() - t0
        env_sps, learner_sps = env_steps / wall, learner_steps / wall
    else:
        del state, out, sample
        env_sps, learner_sps, wall = _host_training_rates(config, training, seconds, seed)
    acting = env_sps / acting_sps
    learning = learner_sps / learner_sps_alone
    return {
        "backend": jax.default_backend(),
        "huge_pages": huge_pages_on(),
        "mode": mode,
        "num_envs": training.num_envs,
        "batch_size": training.batch_size,
        "seconds": wall,
        "env_steps_per_second": env_sps,
        "learner_steps_per_second": learner_sps,
        "acting_only_env_steps_per_second": acting_sps,
        "learner_only_steps_per_second": learner_sps_alone,
        "fraction_acting": acting,
        "fraction_learning": learning,
        "fraction_waiting": 1.0 - acting - learning,
        "compile_seconds": {"acting": act_compile_s, "device_loop": loop_compile_s,
                            "learner_step": learn_compile_s},
    }


def _host_training_rates(config: SimFishConfig, training: Any, seconds: float,
                         seed: int) -> tuple[float, float, float]:
    """Env and learner steps/s of ``simfish_rl.training.train`` once learning runs."""
    import csv
    import tempfile
    from pathlib import Path

    from simfish_rl.training import train

    training = training.replace({"log_every_seconds": min(training.log_every_seconds,
                                                          max(seconds / 6, 1.0))})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train(Path(tmp) / "run", config, training, num_steps=10**12, seed=seed,
              progress=False, max_seconds=seconds)
        wall = time.perf_counter() - t0
        with open(Path(tmp) / "run" / "metrics.csv") as f:
            rows = [r for r in csv.DictReader(f) if float(r["learner_steps"]) > 0][1:]
    if not rows:
        raise RuntimeError(f"bench train: learning did not start within {seconds:.0f} s; "
                           "raise --seconds")
    env_sps = float(np.mean([float(r["env_steps_per_second"]) for r in rows]))
    learner_sps = float(np.mean([float(r["learner_steps_per_second"]) for r in rows]))
    return env_sps, learner_sps, wall


def format_train_report(r: dict[str, Any]) -> str:
    """Text report of ``train_benchmark``."""
    c = r["compile_seconds"]
    return "\n".join([
        f"simfish bench train: {r['mode']} loop, backend {r['backend']}, {r['num_envs']} worlds, "
        f"batch {r['batch_size']}, {r['seconds']:.0f} s measured, malloc huge pages "
        f"{'on' if r['huge_pages'] else 'off'}",
        f"  training:      {r['env_steps_per_second']:>12,.0f} env steps/s "
        f"{r['learner_steps_per_second']:>8.2f} learner steps/s",
        f"  acting alone:  {r['acting_only_env_steps_per_second']:>12,.0f} env steps/s",
        f"  learner alone: {r['learner_only_steps_per_second']:>30.2f} learner steps/s "
        "(regular + mirrored SGD step)",
        f"  time: acting {100 * r['fraction_acting']:.0f}%, learning "
        f"{100 * r['fraction_learning']:.0f}%, waiting/other {100 * r['fraction_waiting']:.0f}%"
        + (" (host loop overlaps acting and learning: shares can sum past 100%)"
           if r["mode"] == "host" else ""),
        f"  compile s: acting {c['acting']:.1f}, device loop {c['device_loop']:.1f}, "
        f"learner step {c['learner_step']:.1f}",
    ])
