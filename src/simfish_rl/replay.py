"""Prioritised sequence replay for R2D2, as a fixed-capacity JAX buffer.

Each of ``W`` vectorised worlds writes its step stream into its own ring of
``S`` steps (``[W, S, ...]`` arrays). A sequence of ``L = burn_in + trace + 1``
steps starts every ``sequence_period`` steps of each world, so consecutive
sequences overlap and a step is stored once, not ``L / period`` times. The
recurrent state is kept only at sequence starts. A sequence becomes
sampleable when its last step is written (with the largest priority seen so
far) and stops being sampleable when its first step is overwritten.

Sequences are windows of the continuous stream: they may cross episode
boundaries, which stay visible through ``start_of_episode`` and ``discount``
(see ``simfish_rl.types``; the learner masks them).

Why our own buffer rather than flashbax (0.1.3 is installed here): its
prioritised trajectory buffer has the same ring-per-world layout, but it
would store the LSTM state at every step (128 float32 = 512 bytes, 60% on top
of the 834-byte uint8 visual observation) where we need it only at sequence
starts; its ``add`` copies the whole buffer unless the caller donates the
state (measured here); we want priority updates to skip slots overwritten
since they were sampled (the sequence start is checked); and it is not a
declared dependency. This buffer is small, in flashbax's style (a frozen
dataclass of pure ``init / add / sample / can_sample / set_priorities``),
stores visual observations as uint8 (they are integers 0..255) and adds all
worlds at once.

``SequenceReplay`` wraps the pure buffer for a training loop: it owns the
state, jits the functions with the state donated, is thread-safe, and offers
``update_priorities`` for the learner and an iterator of batches.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from simfish.world.types import OAR, pytree_dataclass
from simfish_rl.types import ReplaySample, SampleInfo, SequenceData, Step


@pytree_dataclass
class ReplayState:
    """The buffer's contents.

    Attributes:
      steps: ``Step`` without ``core_state``; leaves ``[W, S, ...]`` (visual uint8).
      core_states: recurrent state at each sequence start, leaves ``[W, M, ...]``.
      priorities: float32 ``[W, M]`` raw priorities (before the exponent).
      valid: bool ``[W, M]`` the sequence in this slot can be sampled.
      sequence_start: int32 ``[M]`` global step at which slot m's sequence starts.
      write_count: int32 [] steps written per world so far.
      max_priority: float32 [] largest priority seen (new sequences get it).
    """

    steps: Any
    core_states: Any
    priorities: jax.Array
    valid: jax.Array
    sequence_start: jax.Array
    write_count: jax.Array
    max_priority: jax.Array


def _visual_to_storage(visual: jax.Array) -> jax.Array:
    return jnp.clip(jnp.floor(visual), 0, 255).astype(jnp.uint8)


@dataclasses.dataclass(frozen=True)
class SequenceReplayBuffer:
    """Pure prioritised sequence replay over ``num_worlds`` step streams.

    Attributes:
      num_worlds: W, worlds writing together (each ``add`` has all of them).
      steps_per_world: S, ring capacity per world in steps; a multiple of
        ``sequence_period`` and at least ``sequence_length``. Capacity in
        sequences: ``W * S / sequence_period``.
      sequence_length: L = burn_in + trace + 1.
      sequence_period: steps between sequence starts.
      priority_exponent: alpha; sampling probability ~ priority ** alpha.
      min_size: sequences needed before ``can_sample`` is true.
    """

    num_worlds: int
    steps_per_world: int
    sequence_length: int
    sequence_period: int
    priority_exponent: float = 0.9
    min_size: int = 1

    def __post_init__(self):
        if self.num_worlds < 1 or self.sequence_length < 1 or self.sequence_period < 1:
            raise ValueError(
                "SequenceReplayBuffer: num_worlds, sequence_length and sequence_period must "
                f"be >= 1; got {self.num_worlds}, {self.sequence_length}, {self.sequence_period}"
            )
        if self.steps_per_world % self.sequence_period:
            raise ValueError(
                f"SequenceReplayBuffer: steps_per_world ({self.steps_per_world}) must be a "
                f"multiple of sequence_period ({self.sequence_period})"
            )
        if self.steps_per_world < self.sequence_length + self.sequence_period:
            raise ValueError(
                f"SequenceReplayBuffer: steps_per_world ({self.steps_per_world}) must be at "
                f"least sequence_length + sequence_period "
                f"({self.sequence_length + self.sequence_period})"
            )
        if self.priority_exponent < 0:
            raise ValueError(f"priority_exponent must be >= 0, got {self.priority_exponent}")

    @property
    def slots_per_world(self) -> int:
        """M, sequence slots per world."""
        return self.steps_per_world // self.sequence_period

    @property
    def max_sequences(self) -> int:
        """Capacity in sequences, ``W * M``."""
        return self.num_worlds * self.slots_per_world

    def init(self, example_step: Step) -> ReplayState:
        """Empty buffer for steps shaped like ``example_step`` (one world, no leading axes)."""
        w, s, m = self.num_worlds, self.steps_per_world, self.slots_per_world

        def storage(x, length):
            x = jnp.asarray(x)
            return jnp.zeros((w, length) + x.shape, x.dtype)

        example_step = as_step(example_step)
        body = example_step._replace(core_state=None)
        visual = example_step.observation.observation[0]
        body = _replace_visual(body, np.zeros(np.shape(visual), np.uint8))
        steps = jax.tree.map(lambda x: storage(x, s), body)
        return ReplayState(
            steps=steps,
            core_states=jax.tree.map(lambda x: storage(x, m), example_step.core_state),
            priorities=jnp.zeros((w, m), jnp.float32),
            valid=jnp.zeros((w, m), bool),
            sequence_start=jnp.full((m,), -1, jnp.int32),
            write_count=jnp.zeros((), jnp.int32),
            max_priority=jnp.ones((), jnp.float32),
        )

    def add(self, state: ReplayState, steps: Step) -> ReplayState:
        """Appends ``K`` steps of every world, time-major ``[K, W, ...]``.

        ``K`` may be anything with ``K + sequence_length <= steps_per_world``;
        the actor's chunk (``[T, E, ...]`` from a scan) fits directly.
        """
        num_new = jax.tree.leaves(steps.action)[0].shape[0]
        if steps.action.shape[1] != self.num_worlds:
            raise ValueError(
                f"add: steps have {steps.action.shape[1]} worlds, buffer has {self.num_worlds}"
            )
        if num_new + self.sequence_length > self.steps_per_world:
            raise ValueError(
                f"add: {num_new} steps at once + sequence_length {self.sequence_length} exceed "
                f"steps_per_world {self.steps_per_world}; add smaller chunks"
            )
        steps = as_step(steps)
        s, m, p, length = (self.steps_per_world, self.slots_per_world,
                           self.sequence_period, self.sequence_length)
        global_step = state.write_count + jnp.arange(num_new, dtype=jnp.int32)  # [K]
        position = global_step % s

        # Write the steps (world-major storage).
        body = steps._replace(core_state=None)
        body = _replace_visual(body, _visual_to_storage(body.observation.observation[0]))
        new_steps = jax.tree.map(
            lambda buf, x: buf.at[:, position].set(jnp.swapaxes(x, 0, 1).astype(buf.dtype)),
            state.steps, body,
        )

        # Steps that start a sequence: keep their core state; the old sequence
        # in that slot loses its first step and stops being valid.
        is_start = global_step % p == 0
        slot = jnp.where(is_start, (global_step // p) % m, m)  # m = out of range: dropped
        core_states = jax.tree.map(
            lambda buf, x: buf.at[:, slot].set(jnp.swapaxes(x, 0, 1).astype(buf.dtype),
                                               mode="drop"),
            state.core_states, steps.core_state,
        )
        valid = state.valid.at[:, slot].set(False, mode="drop")

        # Sequences whose last step was just written become valid.
        seq_begin = global_step - (length - 1)
        completes = (seq_begin >= 0) & (seq_begin % p == 0)
        done_slot = jnp.where(completes, (seq_begin // p) % m, m)
        valid = valid.at[:, done_slot].set(True, mode="drop")
        priorities = state.priorities.at[:, done_slot].set(state.max_priority, mode="drop")
        sequence_start = state.sequence_start.at[done_slot].set(seq_begin, mode="drop")

        return ReplayState(
            steps=new_steps,
            core_states=core_states,
            priorities=priorities,
            valid=valid,
            sequence_start=sequence_start,
            write_count=state.write_count + num_new,
            max_priority=state.max_priority,
        )

    def size(self, state: ReplayState) -> jax.Array:
        """Number of sampleable sequences (int32 [])."""
        return jnp.sum(state.valid.astype(jnp.int32))

    def can_sample(self, state: ReplayState) -> jax.Array:
        """True once at least ``min_size`` sequences are sampleable."""
        return self.size(state) >= max(self.min_size, 1)

    def probabilities(self, state: ReplayState) -> jax.Array:
        """float32 ``[W * M]`` sampling probability of each slot (0 for invalid ones)."""
        weights = jnp.where(state.valid, state.priorities, 0.0) ** self.priority_exponent
        weights = jnp.where(state.valid, weights, 0.0).reshape(-1)
        return weights / jnp.maximum(jnp.sum(weights), 1e-30)

    def sample(self, state: ReplayState, key: jax.Array, batch_size: int) -> ReplaySample:
        """Samples ``batch_size`` sequences with probability ~ priority ** alpha.

        Returns:
          ``ReplaySample``; data ``[B, L, ...]`` with visual float32. Only call
          when ``can_sample`` is true (otherwise the sequences are empty slots).
        """
        probs = self.probabilities(state)
        cdf = jnp.cumsum(probs)
        u = jax.random.uniform(key, (batch_size,), maxval=cdf[-1])
        index = jnp.searchsorted(cdf, u, side="right").astype(jnp.int32)
        index = jnp.clip(index, 0, self.max_sequences - 1)
        # Guard against rounding landing on a zero-probability slot.
        index = jnp.where(probs[index] > 0, index, jnp.argmax(probs).astype(jnp.int32))
        world, slot = index // self.slots_per_world, index % self.slots_per_world
        start = state.sequence_start[slot]
        position = (start[:, None] + jnp.arange(self.sequence_length)) % self.steps_per_world

        data = jax.tree.map(lambda x: x[world[:, None], position], state.steps)
        visual = data.observation.observation[0].astype(jnp.float32)
        data = _replace_visual(data, visual)
        core_state = jax.tree.map(lambda x: x[world, slot], state.core_states)
        sequence = SequenceData(
            observation=data.observation,
            action=data.action,
            reward=data.reward,
            discount=data.discount,
            start_of_episode=data.start_of_episode,
            core_state=core_state,
        )
        info = SampleInfo(index=index, start=start, probability=probs[index])
        return ReplaySample(info=info, data=sequence)

    def set_priorities(self, state: ReplayState, info: SampleInfo,
                       priorities: jax.Array) -> ReplayState:
        """Sets priorities of sampled sequences that are still in the buffer.

        Slots overwritten since sampling (different start step) are left alone.
        """
        world = info.index // self.slots_per_world
        slot = info.index % self.slots_per_world
        current = (state.sequence_start[slot] == info.start) & state.valid[world, slot]
        world = jnp.where(current, world, self.num_worlds)  # out of range: dropped
        # A tiny floor keeps every stored sequence sampleable.
        priorities = jnp.maximum(jnp.asarray(priorities, jnp.float32), 1e-6)
        new = state.priorities.at[world, slot].set(priorities, mode="drop")
        max_priority = jnp.maximum(
            state.max_priority, jnp.max(jnp.where(current, priorities, 0.0))
        )
        return dataclasses.replace(state, priorities=new, max_priority=max_priority)


def buffer_for_training(training: Any) -> SequenceReplayBuffer:
    """The buffer a training run uses: ``max_replay_size`` sequences over ``num_envs`` worlds.

    Args:
      training: a ``simfish_rl.config.TrainingConfig``.
    """
    period = training.sequence_period
    per_world = max(training.max_replay_size // training.num_envs, 1)
    steps_per_world = max(per_world * period, training.sequence_length + period)
    steps_per_world = -(-steps_per_world // period) * period
    return SequenceReplayBuffer(
        num_worlds=training.num_envs,
        steps_per_world=steps_per_world,
        sequence_length=training.sequence_length,
        sequence_period=period,
        priority_exponent=training.priority_exponent,
        min_size=training.min_replay_size,
    )


def as_step(step: Any) -> Step:
    """Converts any step-like object (same field names, e.g. an actor's own
    ``Step`` class) into ``simfish_rl.types.Step`` with an ``OAR`` observation."""
    observation = step.observation
    return Step(
        observation=OAR(tuple(observation.observation), observation.action, observation.reward),
        action=step.action,
        reward=step.reward,
        discount=step.discount,
        start_of_episode=step.start_of_episode,
        core_state=step.core_state,
    )


def _replace_visual(step: Any, visual: jax.Array) -> Any:
    observation = step.observation
    inner = (visual, *tuple(observation.observation)[1:])
    return step._replace(observation=OAR(inner, observation.action, observation.reward))


class SequenceReplay:
    """Thread-safe owner of a ``SequenceReplayBuffer`` state (the replay "client").

    Args:
      buffer: the pure buffer.
      example_step: one world's ``Step`` (no leading axes) giving shapes/dtypes.
      key: PRNG key for sampling.

    Methods ``add(steps [K, W, ...])``, ``sample(batch_size)``,
    ``update_priorities(info, priorities)`` and ``iterator(batch_size)`` are
    what actors, the learner and a training loop use.
    """

    def __init__(self, buffer: SequenceReplayBuffer, example_step: Step, key: jax.Array):
        self.buffer = buffer
        self._state = buffer.init(example_step)
        self._key = key
        self._lock = threading.Lock()
        self._add = jax.jit(buffer.add, donate_argnums=(0,))
        self._sample = jax.jit(buffer.sample, static_argnums=(2,))
        self._set = jax.jit(buffer.set_priorities, donate_argnums=(0,))
        self._size = jax.jit(buffer.size)

    @property
    def state(self) -> ReplayState:
        """The current buffer state (read-only use)."""
        return self._state

    def add(self, steps: Step) -> None:
        """Appends steps of all worlds, time-major ``[K, W, ...]``."""
        with self._lock:
            self._state = self._add(self._state, steps)

    def size(self) -> int:
        """Number of sampleable sequences."""
        with self._lock:
            return int(self._size(self._state))

    def can_sample(self) -> bool:
        """True once ``buffer.min_size`` sequences are sampleable."""
        return self.size() >= max(self.buffer.min_size, 1)

    def sample(self, batch_size: int) -> ReplaySample:
        """Samples a batch (raises RuntimeError if the buffer cannot sample yet)."""
        with self._lock:
            if int(self._size(self._state)) < max(self.buffer.min_size, 1):
                raise RuntimeError(
                    f"replay has {int(self._size(self._state))} sequences, needs "
                    f"{self.buffer.min_size} before sampling"
                )
            self._key, key = jax.random.split(self._key)
            sample = self._sample(self._state, key, batch_size)
            return jax.block_until_ready(sample)

    def update_priorities(self, info: SampleInfo, priorities: jax.Array) -> None:
        """Sets new priorities for sampled sequences (the learner calls this)."""
        with self._lock:
            self._state = self._set(self._state, info, priorities)

    def iterator(self, batch_size: int) -> Iterator[ReplaySample]:
        """Endless iterator of batches (for ``SimfishR2D2Learner(iterator=...)``)."""
        while True:
            yield self.sample(batch_size)


def example_step(num_positions: int | None = None, num_channels: int | None = None,
                 internal_size: int | None = None, core_size: int | None = None) -> Step:
    """A zero ``Step`` for one world (for ``init``); shapes left None are the default world's."""
    from simfish_rl.simfish_r2d2_network import make_environment_spec

    spec = make_environment_spec(num_positions, num_channels, internal_size, num_actions=1)
    return example_step_from_spec(spec, core_size)


def example_step_from_spec(env_spec: Any, core_size: int | None = None) -> Step:
    """A zero ``Step`` for one world shaped by an ``EnvironmentSpec``.

    Args:
      env_spec: ``simfish_rl.simfish_r2d2_network.EnvironmentSpec`` (visual
        ``[P, C, 2]``, internal ``[I]``).
      core_size: LSTM width (default: the network's ``LSTM_SIZE``).
    """
    import haiku as hk  # local: only the LSTMState type

    from simfish_rl.simfish_r2d2_network import LSTM_SIZE

    core_size = LSTM_SIZE if core_size is None else core_size
    visual_spec, internal_spec = env_spec.observations.observation
    visual = np.zeros(visual_spec.shape, np.float32)
    internal = np.zeros(internal_spec.shape, np.float32)
    return Step(
        observation=OAR((visual, internal), np.int32(0), np.float32(0)),
        action=np.int32(0),
        reward=np.float32(0),
        discount=np.float32(0),
        start_of_episode=np.bool_(False),
        core_state=hk.LSTMState(hidden=np.zeros(core_size, np.float32),
                                cell=np.zeros(core_size, np.float32)),
    )


__all__ = [
    "ReplayState",
    "SequenceReplay",
    "SequenceReplayBuffer",
    "as_step",
    "buffer_for_training",
    "example_step",
    "example_step_from_spec",
]
