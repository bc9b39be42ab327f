"""Benchmark: SimFish R2D2 learner steps/s (each step = regular + mirrored SGD step).

Usage: python benchmarks/bench_learner.py [--batch 32] [--burn-in 8] [--trace 75] [--steps 20]
       [--retina-chunk N] [--breakdown]

``--breakdown`` times the parts of a learner step separately (retina, LSTM,
target forward, loss gradient, the fused step) instead.

Like ``simfish train``, the benchmark restarts itself once with
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` where that helps (Linux, glibc 2.35
or later, transparent huge pages in ``madvise`` mode; see
``simfish.tools.cli.huge_pages_environment``), so that it measures what
training gets; ``--no-huge-pages`` (or ``SIMFISH_HUGE_PAGES=0``) measures
without. The report says which.

Uses a synthetic replay batch with the SimFish observation layout (visual
[139, 3, 2] with integer values 0..255, internal [3], 21 actions) and the
users' defaults (n-step 5, discount 0.997, Adam 1e-4). Reports the compile
time of the first step and the steady-state learner steps/s.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from simfish.tools.cli import huge_pages_on, restart_with_huge_pages
from simfish.world.types import OAR
from simfish_rl.replay import SequenceReplay, SequenceReplayBuffer, example_step
from simfish_rl.simfish_r2d2_learner import SimfishR2D2Learner
from simfish_rl.simfish_r2d2_network import make_environment_spec, make_r2d2_networks
from simfish_rl.types import ReplaySample, SampleInfo, SequenceData


def synthetic_batch(batch: int, length: int, num_actions: int, seed: int = 0) -> ReplaySample:
    """A random replay batch ``[batch, length, ...]`` shaped like SimFish data."""
    rng = np.random.default_rng(seed)
    visual = np.floor(rng.random((batch, length, 139, 3, 2)) * 256).astype(np.float32)
    internal = rng.random((batch, length, 3)).astype(np.float32)
    actions = rng.integers(0, num_actions, (batch, length)).astype(np.int32)
    rewards = rng.normal(size=(batch, length)).astype(np.float32) * 0.1
    prev_actions = np.concatenate([np.zeros((batch, 1), np.int32), actions[:, :-1]], 1)
    prev_rewards = np.concatenate([np.zeros((batch, 1), np.float32), rewards[:, :-1]], 1)
    start = np.zeros((batch, length), bool)
    start[:, length // 2] = True
    discount = np.ones((batch, length), np.float32)
    discount[:, length // 2 - 1] = 0.0
    data = SequenceData(
        observation=OAR((visual, internal), prev_actions, prev_rewards),
        action=actions,
        reward=rewards,
        discount=discount,
        start_of_episode=start,
        core_state=type(make_r2d2_networks(make_environment_spec()).initial_state(1))(
            hidden=np.zeros((batch, 64), np.float32), cell=np.zeros((batch, 64), np.float32)
        ),
    )
    info = SampleInfo(
        index=np.arange(batch, dtype=np.int32),
        start=np.zeros(batch, np.int32),
        probability=np.full(batch, 1.0 / batch, np.float32),
    )
    return jax.device_put(ReplaySample(info, data))


class _NullReplay:
    def __init__(self):
        self.updates = 0

    def update_priorities(self, info, priorities):
        jax.block_until_ready(priorities)
        self.updates += 1


def make_plain_haiku_networks(num_actions: int = 21):
    """The users' plain formulation, for comparison: ``hk.Conv1D`` retina called
    once per eye, ``hk.LSTM`` with ``hk.dynamic_unroll`` (episode resets ignored,
    which only makes it cheaper)."""
    import haiku as hk

    from simfish_rl.simfish_r2d2_network import (
        DuellingMLP,
        R2D2Networks,
        make_environment_spec,
    )

    class PlainNet(hk.RNNCore):
        def __init__(self):
            super().__init__(name="plain")
            self._retina = hk.Sequential([
                hk.Conv1D(8, 3, 1), jax.nn.relu, hk.Conv1D(8, 5, 2), jax.nn.relu,
                hk.Conv1D(8, 5, 2), jax.nn.relu])
            self._mlp = hk.nets.MLP([32], activate_final=True)
            self._core = hk.LSTM(64)
            self._head = DuellingMLP(num_actions, [64])

        def _embed(self, inputs):
            visual, internal = inputs.observation
            left = self._retina(visual[..., 0]).reshape(visual.shape[0], -1)
            right = self._retina(visual[:, ::-1, :, 1]).reshape(visual.shape[0], -1)
            features = self._mlp(jax.nn.relu(jnp.concatenate([left, right], -1)))
            action = jax.nn.one_hot(inputs.action, num_actions)
            reward = jnp.tanh(inputs.reward)[..., None]
            return jnp.concatenate([features, internal, action, reward], -1)

        def __call__(self, inputs, state):
            out, state = self._core(self._embed(inputs), state)
            return self._head(out), state

        def initial_state(self, batch_size):
            return self._core.initial_state(batch_size)

        def unroll(self, inputs, state, start_of_episode=None):
            embeddings = hk.BatchApply(self._embed)(inputs)
            out, state = hk.dynamic_unroll(self._core, embeddings, state)
            return hk.BatchApply(self._head)(out), state

    spec = make_environment_spec(num_actions=num_actions)

    def make():
        net = PlainNet()

        def init():
            dummy = OAR((jnp.zeros((1, 139, 3, 2)), jnp.zeros((1, 3))),
                        jnp.zeros((1,), jnp.int32), jnp.zeros((1,)))
            return net(dummy, net.initial_state(1))

        return init, (net.__call__, net.unroll)

    t = hk.multi_transform(make)
    return R2D2Networks(
        init=t.init, apply=t.apply[0], unroll=t.apply[1],
        initial_state=lambda b: make_r2d2_networks(spec).initial_state(b),
        num_actions=num_actions, environment_spec=spec,
    )


def use_retina_chunk(chunk: int | None) -> None:
    """Makes networks built from now on run the retina in chunks of ``chunk`` eye images
    (0: one chunk; None: leave the network's ``default_retina_chunk``)."""
    if chunk is not None:
        from simfish_rl import simfish_r2d2_network

        simfish_r2d2_network.default_retina_chunk = lambda backend=None: chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--burn-in", type=int, default=8)
    parser.add_argument("--trace", type=int, default=75)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--compare-plain", action="store_true",
                        help="also time the plain hk.Conv1D/dynamic_unroll network, interleaved")
    parser.add_argument("--retina-chunk", type=int, default=None,
                        help="eye images per retina chunk (0: one chunk; default: the "
                             "network's default_retina_chunk(), 512 on CPU, one chunk "
                             "elsewhere)")
    parser.add_argument("--breakdown", action="store_true",
                        help="time the parts of a learner step separately")
    parser.add_argument("--no-huge-pages", action="store_true",
                        help="do not restart with glibc's huge pages (as simfish train does)")
    args = parser.parse_args()
    if not args.no_huge_pages:
        restart_with_huge_pages("bench train", [sys.executable, *sys.argv])
    use_retina_chunk(args.retina_chunk)
    if args.breakdown:
        breakdown(args)
        return
    if args.compare_plain:
        compare_plain(args)
        return
    length = args.burn_in + args.trace + 1
    networks = make_r2d2_networks(make_environment_spec())
    batch = synthetic_batch(args.batch, length, networks.num_actions)
    replay = _NullReplay()
    learner = _make_learner(networks, batch, args, replay)
    t0 = time.perf_counter()
    learner.step()
    compile_s = time.perf_counter() - t0
    learner.step()
    t0, c0 = time.perf_counter(), time.process_time()
    per_step = []
    for _ in range(args.steps):
        t = time.perf_counter()
        learner.step()  # returns float metrics: the step has finished
        per_step.append(time.perf_counter() - t)
    jax.block_until_ready(learner.state.params)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"device: {jax.devices()[0].device_kind}, cpus: {os.cpu_count()}, "
          f"malloc huge pages: {'on' if huge_pages_on() else 'off'}")
    print(f"batch {args.batch} x {length} steps (burn-in {args.burn_in}, trace {args.trace})")
    print(f"first step (compile + run): {compile_s:.1f} s")
    print(f"learner steps/s: {args.steps / elapsed:.2f}  (SGD steps/s: {2 * args.steps / elapsed:.2f})")
    print(f"per-step wall time: median {np.median(per_step):.3f} s, best {min(per_step):.3f} s "
          f"(best = {1 / min(per_step):.2f} learner steps/s)")
    print(f"CPU time per learner step: {cpu / args.steps:.3f} s "
          f"(load average {os.getloadavg()[0]:.1f}: other processes slow the wall clock)")
    print(f"priority updates: {replay.updates}, sgd steps: {learner.steps}")
    bench_replay(args.batch, length)


def _make_learner(networks, batch, args, replay=None):
    mirror = {i: i + 1 for i in range(1, 14, 2)} | {i + 1: i for i in range(1, 14, 2)}
    return SimfishR2D2Learner(
        networks=networks, batch_size=args.batch, random_key=jax.random.PRNGKey(0),
        burn_in_length=args.burn_in, discount=0.997, importance_sampling_exponent=0.6,
        max_priority_weight=0.9, target_update_period=1200, iterator=itertools.repeat(batch),
        optimizer=optax.adam(1e-4), actions_mirror=mirror, prefetch_size=0,
        replay_client=replay,
    )


def compare_plain(args) -> None:
    """Interleaves steps of our learner and one with the plain network (shared machine)."""
    length = args.burn_in + args.trace + 1
    ours_net = make_r2d2_networks(make_environment_spec())
    batch = synthetic_batch(args.batch, length, ours_net.num_actions)
    learners = {"ours": _make_learner(ours_net, batch, args),
                "plain": _make_learner(make_plain_haiku_networks(), batch, args)}
    for name, learner in learners.items():
        t0 = time.perf_counter()
        learner.step()
        print(f"{name}: first step (compile + run) {time.perf_counter() - t0:.1f} s")
        learner.step()
    times = {name: [] for name in learners}
    cpu = {name: [] for name in learners}
    for _ in range(args.steps):
        for name, learner in learners.items():
            t0, c0 = time.perf_counter(), time.process_time()
            learner.step()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    for name, ts in times.items():
        print(f"{name}: median {np.median(ts):.3f} s/step, best {min(ts):.3f} s/step "
              f"({1 / min(ts):.2f} learner steps/s at best); CPU {np.median(cpu[name]):.3f} s/step")
    ratio = np.median(np.array(times["plain"]) / np.array(times["ours"]))
    print(f"plain / ours time per learner step (median of paired ratios): {ratio:.2f}")


def _time_call(fn, *args, repeats: int = 5) -> tuple[float, float]:
    """(best wall ms, median CPU ms) of ``fn(*args)`` after a warm-up call."""
    jax.block_until_ready(fn(*args))
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(*args))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1e3 * min(wall), 1e3 * float(np.median(cpu))


def breakdown(args) -> None:
    """Times the parts of one learner step (regular + mirrored SGD step)."""
    import haiku as hk
    import rlax

    from simfish_rl import simfish_r2d2_learner as lrn
    from simfish_rl.simfish_r2d2_network import _LSTM, retina

    length = args.burn_in + args.trace + 1
    nets = make_r2d2_networks(make_environment_spec())
    batch = synthetic_batch(args.batch, length, nets.num_actions)
    mirror = lrn.mirror_table({i: i + 1 for i in range(1, 14, 2)}
                              | {i + 1: i for i in range(1, 14, 2)})
    mirror = np.concatenate([mirror, np.arange(len(mirror), 21, dtype=np.int32)])
    mirrored = lrn.reflect_samples(batch, mirror)
    cfg = lrn.LossConfig(args.burn_in, 0.997, 0.6, 0.9, 5, rlax.SIGNED_HYPERBOLIC_PAIR,
                         False, 1.0, True)
    key = jax.random.PRNGKey(1)
    params = nets.init(key)
    optimizer = optax.adam(1e-4)
    state = lrn.TrainingState(params, params, optimizer.init(params), jnp.zeros((), jnp.int32),
                              jax.random.PRNGKey(2))
    n_images = length * args.batch * 2
    images = jnp.asarray(np.floor(np.random.default_rng(0).random((n_images, 139, 3)) * 256),
                         jnp.float32)
    ret = hk.without_apply_rng(hk.transform(lambda x: retina()(x)))
    ret_p = ret.init(key, images[:2])

    def lstm_fn(x):
        core = _LSTM(64)
        return core.unroll(x, core.initial_state(args.batch))[0]

    lstm = hk.without_apply_rng(hk.transform(lstm_fn))
    emb = jnp.ones((args.trace + 1, args.batch, 57), jnp.float32)
    lstm_p = lstm.init(key, emb)
    parts = [
        (f"retina forward, {n_images} eye images", jax.jit(ret.apply), (ret_p, images)),
        ("retina forward + backward", jax.jit(jax.grad(lambda p, x: jnp.sum(ret.apply(p, x)))),
         (ret_p, images)),
        (f"LSTM unroll forward [{args.trace + 1}, {args.batch}]", jax.jit(lstm.apply),
         (lstm_p, emb)),
        ("LSTM unroll forward + backward",
         jax.jit(jax.grad(lambda p, x: jnp.sum(lstm.apply(p, x)))), (lstm_p, emb)),
        ("target forward, one batch (L steps)",
         jax.jit(lambda p, b: lrn.target_q_values(nets, cfg, p, key, b)), (params, batch)),
        ("target forward, batch + reflection (unroll_pair)",
         jax.jit(lambda p, b, m: lrn.target_q_values_pair(nets, cfg, p, key, b, m)),
         (params, batch, mirrored)),
        ("loss forward (burn-in, target, trace)",
         jax.jit(lambda p, b: lrn.r2d2_loss(nets, cfg, p, p, key, b)[0]), (params, batch)),
        ("loss gradient (one SGD step without Adam)",
         jax.jit(jax.grad(lambda p, b: lrn.r2d2_loss(nets, cfg, p, p, key, b)[0])),
         (params, batch)),
        ("one SGD step (make_sgd_step)",
         jax.jit(lambda s, b: lrn.make_sgd_step(nets, optimizer, cfg, 1200)(s, b)[0].params),
         (state, batch)),
        ("learner step: 2 SGD steps (make_learner_step)",
         jax.jit(lambda s, b: lrn.make_learner_step(nets, optimizer, cfg, 1200, mirror)(
             s, b)[0].params), (state, batch)),
    ]
    print(f"device: {jax.devices()[0].device_kind}, cpus: {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}; batch {args.batch} x {length} steps; "
          f"malloc huge pages: {'on' if huge_pages_on() else 'off'}")
    # (Each timed function returns what depends on all its work: new parameters or
    # gradients, so that XLA cannot drop the backward pass.)
    print(f"{'part':<52} {'best wall ms':>12} {'median CPU ms':>14}")
    for name, fn, fn_args in parts:
        wall, cpu = _time_call(fn, *fn_args)
        print(f"{name:<52} {wall:>12.1f} {cpu:>14.1f}", flush=True)


def bench_replay(batch: int, length: int, worlds: int = 64, steps_per_world: int = 2000,
                 period: int = 20) -> None:
    """Times replay add (one chunk of `period` steps of all worlds) and sample."""
    buffer = SequenceReplayBuffer(num_worlds=worlds, steps_per_world=steps_per_world,
                                  sequence_length=length, sequence_period=period)
    replay = SequenceReplay(buffer, example_step(), jax.random.PRNGKey(0))
    chunk = jax.tree.map(
        lambda x: jnp.zeros((period, worlds) + np.shape(x), np.asarray(x).dtype), example_step()
    )
    for _ in range(length // period + 2):
        replay.add(chunk)
    replay.sample(batch)
    t0 = time.perf_counter()
    for _ in range(20):
        replay.add(chunk)
    jax.block_until_ready(replay.state)
    add_ms = (time.perf_counter() - t0) / 20 * 1000
    t0 = time.perf_counter()
    for _ in range(20):
        replay.sample(batch)
    sample_ms = (time.perf_counter() - t0) / 20 * 1000
    print(f"replay ({worlds} worlds x {steps_per_world} steps): add {period} steps of all "
          f"worlds {add_ms:.1f} ms, sample batch {batch} {sample_ms:.1f} ms")


if __name__ == "__main__":
    main()
