"""R2D2 network for SimFish: binocular 1-D retinas, LSTM core and duelling head.

Architecture (as in the users' documentation, ``seed/simfish_rl_api.txt``):

1. ``OAREmbedding``: observation -> ``DeepSimfishTorso`` features, previous
   action one-hot, ``tanh`` of the previous reward, concatenated.
2. ``DeepSimfishTorso``: one shared ``retina`` for both eyes (the right eye's
   positions reversed so that both eyes run nasal -> temporal the same way),
   features of the two eyes concatenated, ReLU, MLP head (``activate_final``),
   then the internal state ``[in_light, energy, salt]`` appended.
3. ``retina``: Conv1D(8, k3, s1) -> ReLU -> Conv1D(8, k5, s2) -> ReLU ->
   Conv1D(8, k5, s2) -> ReLU, ``SAME`` padding (Haiku's default), flattened.
   For 139 positions: 139 -> 139 -> 70 -> 35 positions, 280 features per eye.
4. ``R2D2SimfishNetwork``: embedding -> LSTM(64) -> duelling MLP (hidden 64).

Speed. The retina dominates the cost of a learner step (thousands of eye
images per batch, 8 channels). Two changes keep the math and the parameter
shapes of ``hk.Conv1D`` / ``hk.LSTM`` but run much faster on CPU:

* the torso runs once on all ``time x batch x eyes`` images (one big conv
  per layer instead of one per eye or per time step);
* each convolution runs on blocks of positions: the eye image is cut into
  blocks of 4 positions (``[N, 139, 3] -> [N, 35, 12]``) and every layer is a
  stride-1 convolution from blocks to blocks (``[N, 35, 12] -> [N, 35, 32]
  -> [N, 35, 16] -> [N, 35, 8]``) with a kernel rearranged from the
  ``hk.Conv1D`` weights, computing exactly the same sums. This avoids
  strided convolutions, whose gradient (a dilated convolution) is slow on
  CPU, and gives larger matrix products. Forward + backward of the retina
  (5376 eye images) takes 112 ms of CPU time instead of 148 ms with
  ``hk.Conv1D`` (one thread; the gap is larger with two threads);
* on a CPU, large batches go through the retina in chunks of 512 images: the
  smaller working set makes a learner step ~10% cheaper there (a GPU runs
  them in one chunk, 1.26x faster on an H200);
* ``unroll`` computes the LSTM's input projection for all time steps in one
  matmul and scans only the recurrent part.

Parameter names differ from a plain ``hk.Conv1D``/``hk.LSTM`` network only
in the module path; shapes and initialisers are identical.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
from dm_env import specs

from simfish.world.types import OAR

# Binocular input (left, right) and the LSTM width of the users' network. The
# other shapes (positions, channels, internal state, actions) come from the
# environment's specs: ``default_environment_spec()`` for the default world.
NUM_EYES = 2
LSTM_SIZE = 64
# Eye images per retina chunk on a CPU (see retina): 512 measured best on 2 cores.
# A GPU is faster with one chunk (learner step on an H200: 9.7 ms mean against
# 12.2 ms with chunks of 512), so other backends do not chunk.
RETINA_CHUNK_SIZE = 512


def default_retina_chunk(backend: str | None = None) -> int:
    """Eye images per retina chunk on ``backend`` (default: JAX's); 0 means one chunk."""
    return RETINA_CHUNK_SIZE if (backend or jax.default_backend()) == "cpu" else 0


# ---------------------------------------------------------------------------
# Environment spec
# ---------------------------------------------------------------------------


class EnvironmentSpec(NamedTuple):
    """What the agent needs to know about the environment (as ``acme.specs``).

    Attributes:
      observations: ``OAR(observation=(visual_spec, internal_spec),
        action=previous-action spec, reward=previous-reward spec)``.
      actions: ``dm_env.specs.DiscreteArray`` with ``num_values`` actions.
      rewards: reward spec (float32 scalar).
      discounts: discount spec (float32 scalar in [0, 1]).
    """

    observations: OAR
    actions: specs.DiscreteArray
    rewards: specs.Array
    discounts: specs.BoundedArray


@functools.cache
def default_environment_spec() -> EnvironmentSpec:
    """The spec of the default world (``normal`` preset, default actions), from its env.

    Traced abstractly once per process (about a second), nothing is simulated.
    """
    from simfish.config import load_config
    from simfish.io.actions import Actions
    from simfish.world.env import SimFishEnv

    return environment_spec_from_env(SimFishEnv(load_config("normal"), Actions.default()))


def make_environment_spec(
    num_positions: int | None = None,
    num_channels: int | None = None,
    internal_size: int | None = None,
    num_actions: int | None = None,
) -> EnvironmentSpec:
    """Builds the spec of a SimFish environment from explicit shapes.

    Args:
      num_positions: photoreceptor positions per eye.
      num_channels: visual channels (UV, red at two elevations).
      internal_size: size of the internal state.
      num_actions: number of discrete actions.
      Each one left None is that of ``default_environment_spec()``.

    Returns:
      An ``EnvironmentSpec``; visual is float32 ``[P, C, 2]``, internal
      float32 ``[I]``.
    """
    if None in (num_positions, num_channels, internal_size, num_actions):
        default = default_environment_spec()
        visual, internal = default.observations.observation
        num_positions = visual.shape[0] if num_positions is None else num_positions
        num_channels = visual.shape[1] if num_channels is None else num_channels
        internal_size = internal.shape[0] if internal_size is None else internal_size
        num_actions = default.actions.num_values if num_actions is None else num_actions
    visual = specs.BoundedArray(
        (num_positions, num_channels, NUM_EYES), np.float32, 0.0, 255.0, name="visual"
    )
    internal = specs.Array((internal_size,), np.float32, name="internal")
    actions = specs.DiscreteArray(num_actions, dtype=np.int32, name="action")
    rewards = specs.Array((), np.float32, name="reward")
    observations = OAR(observation=(visual, internal), action=actions, reward=rewards)
    discounts = specs.BoundedArray((), np.float32, 0.0, 1.0, name="discount")
    return EnvironmentSpec(observations, actions, rewards, discounts)


def environment_spec_from_env(env: Any) -> EnvironmentSpec:
    """Builds an ``EnvironmentSpec`` from ``env.observation_spec()/action_spec()``.

    Accepts an observation spec that is an ``OAR`` of specs or a
    ``(visual_spec, internal_spec)`` pair (the previous action and reward
    specs are then derived from the action spec).

    Raises:
      ValueError: the observation spec has no visual ``[P, C, 2]`` entry.
    """
    obs_spec = env.observation_spec()
    action_spec = env.action_spec()
    inner = obs_spec.observation if isinstance(obs_spec, OAR) else obs_spec
    if not isinstance(inner, (tuple, list)) or len(inner) != 2:
        raise ValueError(
            "environment_spec_from_env: expected the observation spec to be "
            f"(visual, internal) or OAR((visual, internal), ...); got {obs_spec!r}"
        )
    visual, internal = inner
    if len(visual.shape) != 3 or visual.shape[-1] != NUM_EYES:
        raise ValueError(
            f"environment_spec_from_env: visual spec shape {visual.shape} is not [P, C, 2]"
        )
    return make_environment_spec(
        num_positions=visual.shape[0],
        num_channels=visual.shape[1],
        internal_size=internal.shape[0],
        num_actions=int(action_spec.num_values),
    )


# ---------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------


class Flatten(hk.Module):
    """Flattens its input and adds a leading axis: any shape -> ``[1, size]``."""

    def __init__(self, name: str = "Flatten"):
        super().__init__(name=name)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Returns ``x`` flattened to ``[1, x.size]``."""
        return jnp.reshape(x, (1, -1))


def _same_padding(length: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """Output length and (low, high) padding of a ``SAME`` convolution."""
    out = -(-length // stride)
    total = max((out - 1) * stride + kernel - length, 0)
    return out, total // 2, total - total // 2


class _Conv1D(hk.Module):
    """``hk.Conv1D`` (channels last, ``SAME`` padding) computed on position blocks.

    Same parameters as ``hk.Conv1D``: ``w [kernel, C_in, C_out]``, ``b [C_out]``
    and the same initialisers. ``blocked`` takes the input as blocks of ``a``
    positions (``[N, L / a, a * C_in]``) and returns blocks of ``b = a /
    stride`` outputs (``[N, L / a, b * C_out]``): a stride-1 convolution with
    a rearranged kernel that computes exactly the same sums. Wider blocks mean
    larger matrix products, and no strided convolution, whose gradient (a
    dilated convolution) is slow on CPU.
    """

    def __init__(self, output_channels: int, kernel_shape: int, stride: int, name: str):
        super().__init__(name=name)
        self._out_channels = output_channels
        self._kernel = kernel_shape
        self._stride = stride

    def _params(self, c_in: int, dtype) -> tuple[jax.Array, jax.Array]:
        stddev = 1.0 / math.sqrt(self._kernel * c_in)
        w = hk.get_parameter(
            "w", [self._kernel, c_in, self._out_channels], dtype,
            init=hk.initializers.TruncatedNormal(stddev=stddev),
        )
        b = hk.get_parameter("b", [self._out_channels], dtype, init=jnp.zeros)
        return w, b

    def blocked(self, x: jax.Array, length: int, in_block: int) -> jax.Array:
        """Convolution on blocks: ``[N, nb, a * C_in] -> [N, nb, (a / s) * C_out]``.

        Args:
          x: input blocks, positions ``>= length`` must be zero.
          length: number of real input positions (sets the SAME padding).
          in_block: ``a``, positions per input block (a multiple of the stride).
        """
        k, s = self._kernel, self._stride
        if in_block % s:
            raise ValueError(f"_Conv1D: block of {in_block} positions is not a multiple of "
                             f"stride {s}")
        out_block = in_block // s
        c_in = x.shape[-1] // in_block
        w, b = self._params(c_in, x.dtype)
        _, lo, _ = _same_padding(length, k, s)
        # Output r of a block, tap i reads input position s*r - lo + i relative to
        # the block start: block offset (s*r - lo + i) // a, in-block (.. ) % a.
        entries = {}
        for r in range(out_block):
            for i in range(k):
                pos = s * r - lo + i
                entries[(pos // in_block, pos % in_block, r)] = i
        first = min(o for o, _, _ in entries)
        last = max(o for o, _, _ in entries)
        tap = np.full((last - first + 1, in_block, out_block), k, np.int32)  # k -> zero
        for (o, inb, r), i in entries.items():
            tap[o - first, inb, r] = i
        w_ext = jnp.concatenate([w, jnp.zeros_like(w[:1])], axis=0)
        kernel = w_ext[tap]  # [O, a, b, C_in, C_out]
        kernel = jnp.transpose(kernel, (0, 1, 3, 2, 4)).reshape(
            tap.shape[0], in_block * c_in, out_block * self._out_channels)
        y = jax.lax.conv_general_dilated(
            x, kernel, (1,), [(-first, last)], dimension_numbers=("NWC", "WIO", "NWC")
        )
        return y + jnp.tile(b, out_block)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Applies the convolution: ``[N, L, C_in] -> [N, ceil(L / stride), C_out]``."""
        n, length, c_in = x.shape
        s = self._stride
        out = -(-length // s)
        x = jnp.pad(x, ((0, 0), (0, out * s - length), (0, 0))).reshape(n, out, s * c_in)
        return self.blocked(x, length, s)


class retina(hk.Module):  # noqa: N801  (name kept from the users' API)
    """1-D convolutional retina for one eye.

    Conv1D(8, k3, s1) -> ReLU -> Conv1D(8, k5, s2) -> ReLU -> Conv1D(8, k5, s2)
    -> ReLU, ``SAME`` padding, flattened.

    Args (call):
      inputs: ``[P, C]`` (one eye image) or ``[B, P, C]`` (a batch).

    Returns:
      ``[F]`` or ``[B, F]`` features, ``F = 8 * ceil(ceil(P / 2) / 2)``
      (280 for P = 139).

    Raises:
      ValueError: if ``inputs`` is not rank 2 or 3.
    """

    def __init__(self, name: str = "retina", chunk_size: int | None = None):
        super().__init__(name=name)
        self._chunk_size = default_retina_chunk() if chunk_size is None else chunk_size
        self._layers = [
            _Conv1D(8, 3, 1, name="conv1_d"),
            _Conv1D(8, 5, 2, name="conv1_d_1"),
            _Conv1D(8, 5, 2, name="conv1_d_2"),
        ]

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """Maps ``[P, C]`` -> ``[F]`` or ``[B, P, C]`` -> ``[B, F]``."""
        rank = jnp.ndim(inputs)
        if rank not in (2, 3):
            raise ValueError(
                f"retina expects inputs of rank 2 [positions, channels] or 3 "
                f"[batch, positions, channels]; got rank {rank} (shape {jnp.shape(inputs)})"
            )
        x = inputs if rank == 3 else inputs[None]
        n = x.shape[0]
        chunk = self._chunk_size
        if chunk and n > chunk:
            # Large batches run in chunks: a smaller working set is markedly
            # faster on CPU (same results).
            parts = [self._features(x[i:i + chunk]) for i in range(0, n, chunk)]
            x = jnp.concatenate(parts, axis=0)
        else:
            x = self._features(x)
        return x if rank == 3 else x[0]

    def _features(self, x: jax.Array) -> jax.Array:
        """``[N, P, C] -> [N, F]`` through the three layers."""
        n, length, channels = x.shape
        # Work on blocks of `block` positions: each layer maps blocks of a
        # positions to blocks of a / stride positions (see _Conv1D.blocked).
        block = math.prod(layer._stride for layer in self._layers)
        num_blocks = -(-length // block)
        x = jnp.pad(x, ((0, 0), (0, num_blocks * block - length), (0, 0)))
        x = x.reshape(n, num_blocks, block * channels)
        for layer in self._layers:
            x = jax.nn.relu(layer.blocked(x, length, block))
            length, block = -(-length // layer._stride), block // layer._stride
            if num_blocks * block > length:  # zero positions past the end (padding)
                valid = np.arange(num_blocks * block) < length
                mask = np.repeat(valid, x.shape[-1] // block).reshape(num_blocks, -1)
                x = x * jnp.asarray(mask, x.dtype)
        x = x.reshape(n, num_blocks * block, -1)[:, :length]
        return jnp.reshape(x, (n, -1))


class DeepSimfishTorso(hk.Module):
    """Binocular torso: shared retina for both eyes, MLP head, internal state.

    Args:
      hidden_sizes: MLP head layer sizes (final layer activated).
      name: module name.

    Call:
      x: ``(visual, internal)`` or ``(visual,)`` with visual ``[B, P, C, 2]``
        (eye 0 left, eye 1 right) and internal ``[B, I]``.

    Returns:
      ``[B, hidden_sizes[-1] + I]`` (or ``[B, hidden_sizes[-1]]`` without
      internal state).
    """

    def __init__(self, hidden_sizes: Sequence[int] = (256,), name: str = "deep_simfish_torso"):
        super().__init__(name=name)
        self.retina = retina()
        self.mlp_head = hk.nets.MLP(output_sizes=list(hidden_sizes), activate_final=True)

    def __call__(self, x: Sequence[jax.Array]) -> jax.Array:
        """Embeds a batch of observations: ``[B, P, C, 2] (+ [B, I]) -> [B, D]``."""
        visual = x[0]
        if jnp.ndim(visual) != 4 or visual.shape[-1] != NUM_EYES:
            raise ValueError(
                f"DeepSimfishTorso expects visual [batch, positions, channels, 2]; "
                f"got shape {jnp.shape(visual)}"
            )
        return self.head(self.eye_features(visual), x[1] if len(x) > 1 else None)

    def eye_features(self, visual: jax.Array) -> jax.Array:
        """Retina features of both eyes: ``[B, P, C, 2] -> [B, 2F]`` (left eye first).

        The reflected observation (``reflect_observations``) shows each eye
        the other eye's image, so its features are these with the two halves
        swapped (see ``swap_eyes``).
        """
        batch = visual.shape[0]
        left = visual[..., 0]
        right = visual[:, ::-1, :, 1]  # align the right eye with the left one
        # One retina pass over both eyes (shared weights): [2B, P, C] -> [2B, F].
        features = self.retina(jnp.concatenate([left, right], axis=0))
        return jnp.concatenate([features[:batch], features[batch:]], axis=-1)

    def head(self, features: jax.Array, internal: jax.Array | None) -> jax.Array:
        """MLP head on eye features, internal state appended: ``[B, 2F] (+ [B, I]) -> [B, D]``."""
        output = self.mlp_head(jax.nn.relu(features))
        if internal is not None:
            output = jnp.concatenate([output, internal.astype(output.dtype)], axis=-1)
        return output


def swap_eyes(features: jax.Array) -> jax.Array:
    """``[..., 2F]`` eye features of an observation -> those of its reflection."""
    half = features.shape[-1] // 2
    return jnp.concatenate([features[..., half:], features[..., :half]], axis=-1)


@dataclasses.dataclass
class OAREmbedding(hk.Module):
    """Embeds ``OAR(observation, previous action, previous reward)`` together.

    Call:
      inputs: OAR with observation ``(visual [B, P, C, 2], internal [B, I])``
        (or without the batch axis), action int ``[B]``, reward float ``[B]``.

    Returns:
      ``[B, D + A + 1]``: torso features, one-hot action, ``tanh(reward)``.
    """

    torso: Any
    num_actions: int

    def __call__(self, inputs: OAR) -> jax.Array:
        """Returns the concatenated embedding ``[B?, D + A + 1]``."""
        observation = tuple(inputs.observation)
        unbatched = jnp.ndim(observation[0]) == 3
        if unbatched:
            observation = tuple(o[None] for o in observation)
        features = self.torso(observation)
        if unbatched:
            features = features[0]
        action = jax.nn.one_hot(inputs.action, self.num_actions, dtype=features.dtype)
        reward = jnp.tanh(jnp.asarray(inputs.reward, features.dtype))
        while reward.ndim < action.ndim:
            reward = reward[..., None]
        return jnp.concatenate([features, action, reward], axis=-1)


class DuellingMLP(hk.Module):
    """Duelling Q head: ``Q = V + A - mean(A)`` with separate MLPs for V and A."""

    def __init__(self, num_actions: int, hidden_sizes: Sequence[int], name: str = "duelling_mlp"):
        super().__init__(name=name)
        self._value_mlp = hk.nets.MLP([*hidden_sizes, 1], name="value_mlp")
        self._advantage_mlp = hk.nets.MLP([*hidden_sizes, num_actions], name="advantage_mlp")

    def __call__(self, inputs: jax.Array) -> jax.Array:
        """``[..., D] -> [..., A]`` Q-values."""
        value = self._value_mlp(inputs)
        advantages = self._advantage_mlp(inputs)
        advantages = advantages - jnp.mean(advantages, axis=-1, keepdims=True)
        return value + advantages


class _LinearParams(hk.Module):
    """The parameters of ``hk.Linear`` (``w [fan_in, size]``, ``b [size]``)."""

    def __init__(self, output_size: int, name: str):
        super().__init__(name=name)
        self._size = output_size

    def __call__(self, fan_in: int, dtype) -> tuple[jax.Array, jax.Array]:
        """Returns ``(w, b)`` initialised as ``hk.Linear`` does."""
        w_init = hk.initializers.TruncatedNormal(stddev=1.0 / math.sqrt(fan_in))
        w = hk.get_parameter("w", [fan_in, self._size], dtype, init=w_init)
        b = hk.get_parameter("b", [self._size], dtype, init=jnp.zeros)
        return w, b


class _LSTM(hk.Module):
    """``hk.LSTM`` (same parameters ``linear/w [D + H, 4H]``, ``linear/b [4H]``).

    Adds ``unroll``, which computes the input projection of all time steps in
    one matmul and scans only the recurrent matmul, and resets the state to
    zero (the initial state) before steps flagged ``start_of_episode``.
    """

    def __init__(self, hidden_size: int, name: str = "lstm"):
        super().__init__(name=name)
        self.hidden_size = hidden_size
        self._linear = _LinearParams(4 * hidden_size, name="linear")

    def _params(self, input_size: int, dtype) -> tuple[jax.Array, jax.Array]:
        return self._linear(input_size + self.hidden_size, dtype)

    @staticmethod
    def _gates(gated: jax.Array, cell: jax.Array) -> tuple[jax.Array, hk.LSTMState]:
        i, g, f, o = jnp.split(gated, 4, axis=-1)
        f = jax.nn.sigmoid(f + 1)  # forget bias, as hk.LSTM
        c = f * cell + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return h, hk.LSTMState(hidden=h, cell=c)

    def __call__(self, inputs: jax.Array, state: hk.LSTMState) -> tuple[jax.Array, hk.LSTMState]:
        """One step: ``[B, D], state [B, H] -> [B, H], state``."""
        w, b = self._params(inputs.shape[-1], inputs.dtype)
        gated = jnp.concatenate([inputs, state.hidden], axis=-1) @ w + b
        return self._gates(gated, state.cell)

    def unroll(
        self,
        inputs: jax.Array,
        state: hk.LSTMState,
        start_of_episode: jax.Array | None = None,
    ) -> tuple[jax.Array, hk.LSTMState]:
        """Unrolls over time: ``[T, B, D] -> [T, B, H]`` and the final state.

        Args:
          inputs: ``[T, B, D]`` embeddings.
          state: ``LSTMState`` with ``[B, H]`` leaves, the state before step 0.
          start_of_episode: optional bool ``[T, B]``; where true the state is
            reset to zeros before that step.
        """
        size_in = inputs.shape[-1]
        w, b = self._params(size_in, inputs.dtype)
        w_x, w_h = w[:size_in], w[size_in:]
        projected = inputs @ w_x + b  # [T, B, 4H], all time steps at once
        if start_of_episode is None:
            keep = jnp.ones(inputs.shape[:2] + (1,), inputs.dtype)
        else:
            keep = 1.0 - start_of_episode.astype(inputs.dtype)[..., None]

        def step(carry, xs):
            x_t, keep_t = xs
            hidden, cell = carry.hidden * keep_t, carry.cell * keep_t
            h, new_state = self._gates(x_t + hidden @ w_h, cell)
            return new_state, h

        final_state, outputs = jax.lax.scan(step, state, (projected, keep))
        return outputs, final_state

    def initial_state(self, batch_size: int | None) -> hk.LSTMState:
        """Zeros: ``[H]`` leaves, or ``[B, H]`` with a batch size."""
        shape = [self.hidden_size] if batch_size is None else [batch_size, self.hidden_size]
        return hk.LSTMState(hidden=jnp.zeros(shape), cell=jnp.zeros(shape))


class R2D2SimfishNetwork(hk.RNNCore):
    """R2D2 network for SimFish: OAR embedding -> LSTM(64) -> duelling head (64).

    Args:
      num_actions: number of discrete actions.
    """

    def __init__(self, num_actions: int):
        super().__init__(name="r2d2_simfish_network")
        self._embed = OAREmbedding(DeepSimfishTorso(hidden_sizes=[32]), num_actions)
        self._core = _LSTM(LSTM_SIZE)
        self._duelling_head = DuellingMLP(num_actions, hidden_sizes=[64])
        self._num_actions = num_actions

    def __call__(self, inputs: OAR, state: hk.LSTMState) -> tuple[jax.Array, hk.LSTMState]:
        """One step: OAR ``[B, ...]``, state ``[B, 64]`` -> Q ``[B, A]``, state."""
        embeddings = self._embed(inputs)
        core_outputs, new_state = self._core(embeddings, state)
        return self._duelling_head(core_outputs), new_state

    def initial_state(self, batch_size: int | None, **unused_kwargs) -> hk.LSTMState:
        """Zero LSTM state, ``[batch_size, 64]`` leaves (``[64]`` for None)."""
        return self._core.initial_state(batch_size)

    def unroll(
        self,
        inputs: OAR,
        state: hk.LSTMState,
        start_of_episode: jax.Array | None = None,
    ) -> tuple[jax.Array, hk.LSTMState]:
        """Unrolls over a sequence: OAR ``[T, B, ...]`` -> Q ``[T, B, A]``, final state.

        The torso runs once on all ``T * B`` observations, the LSTM input
        projection once on all steps, and the duelling head once on all
        outputs. ``start_of_episode`` (bool ``[T, B]``, optional) resets the
        recurrent state to zeros before flagged steps.
        """
        embeddings = hk.BatchApply(self._embed)(inputs)  # [T, B, D + A + 1]
        core_outputs, final_state = self._core.unroll(embeddings, state, start_of_episode)
        q_values = hk.BatchApply(self._duelling_head)(core_outputs)  # [T, B, A]
        return q_values, final_state

    def unroll_pair(
        self,
        inputs: OAR,
        mirrored_action: jax.Array,
        state: hk.LSTMState,
        start_of_episode: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Unrolls a sequence batch and its reflection together, one retina pass.

        Equal (to float rounding) to ``unroll`` on ``inputs`` and on
        ``reflect_observations(inputs)`` with previous actions
        ``mirrored_action``, both from ``state``: the reflection shows each
        eye the other eye's image, so the retina runs once and its features
        are reused with the eyes swapped; the LSTM and head run on ``2B``.

        Args:
          inputs: OAR ``[T, B, ...]`` (visual ``[T, B, P, C, 2]``).
          mirrored_action: int ``[T, B]`` previous actions of the reflection.
          state: ``LSTMState`` ``[B, H]`` before step 0 (used for both).
          start_of_episode: optional bool ``[T, B]``.

        Returns:
          ``(q [T, B, A], mirrored q [T, B, A])``.
        """
        observation = tuple(inputs.observation)
        visual = observation[0]
        t, b = visual.shape[:2]
        features = self._embed.torso.eye_features(visual.reshape((t * b,) + visual.shape[2:]))
        features = jnp.concatenate([features, swap_eyes(features)], axis=0)  # [2TB, 2F]
        internal = None
        if len(observation) > 1:
            flat = observation[1].reshape((t * b,) + observation[1].shape[2:])
            internal = jnp.concatenate([flat, flat], axis=0)
        torso = self._embed.torso.head(features, internal)  # [2TB, D]
        torso = jnp.concatenate([torso[: t * b].reshape(t, b, -1),
                                 torso[t * b:].reshape(t, b, -1)], axis=1)  # [T, 2B, D]
        action = jnp.concatenate([inputs.action, mirrored_action], axis=1)
        reward = jnp.tanh(jnp.asarray(inputs.reward, torso.dtype))
        reward = jnp.concatenate([reward, reward], axis=1)[..., None]
        embeddings = jnp.concatenate(
            [torso, jax.nn.one_hot(action, self._num_actions, dtype=torso.dtype), reward],
            axis=-1)
        both = jax.tree.map(lambda x: jnp.concatenate([x, x], axis=0), state)
        if start_of_episode is not None:
            start_of_episode = jnp.concatenate([start_of_episode, start_of_episode], axis=1)
        core_outputs, _ = self._core.unroll(embeddings, both, start_of_episode)
        q_values = hk.BatchApply(self._duelling_head)(core_outputs)  # [T, 2B, A]
        return q_values[:, :b], q_values[:, b:]


# ---------------------------------------------------------------------------
# Factory
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class R2D2Networks:
    """Pure functions of the R2D2 network (acme ``UnrollableNetwork`` style).

    Attributes:
      init: ``init(key) -> params``.
      apply: ``apply(params, key, inputs OAR [B, ...], state [B, 64]) ->
        (q [B, A], state)``; ``key`` may be None (the network is deterministic).
      unroll: ``unroll(params, key, inputs OAR [T, B, ...], state [B, 64],
        start_of_episode=None bool [T, B]) -> (q [T, B, A], final state)``.
      initial_state: ``initial_state(batch_size) -> LSTMState`` of zeros
        (``[batch_size, 64]`` leaves, ``[64]`` for None).
      num_actions: number of actions.
      environment_spec: the spec the network was built for.
      unroll_pair: optional ``unroll_pair(params, key, inputs OAR [T, B, ...],
        mirrored previous actions [T, B], state [B, 64], start_of_episode)
        -> (q [T, B, A], q of the reflection [T, B, A])``, one retina pass for
        both (see ``R2D2SimfishNetwork.unroll_pair``); None: the learner
        unrolls the two batches separately.
    """

    init: Callable[..., hk.Params]
    apply: Callable[..., tuple[jax.Array, hk.LSTMState]]
    unroll: Callable[..., tuple[jax.Array, hk.LSTMState]]
    initial_state: Callable[[int | None], hk.LSTMState]
    num_actions: int
    environment_spec: EnvironmentSpec
    unroll_pair: Callable[..., tuple[jax.Array, jax.Array]] | None = None


def _zeros_from_spec(spec: specs.Array, batch: int) -> jax.Array:
    return jnp.zeros((batch, *spec.shape), spec.dtype)


def make_r2d2_networks(env_spec: EnvironmentSpec) -> R2D2Networks:
    """Builds the R2D2 network functions for ``env_spec`` with ``hk.multi_transform``.

    Args:
      env_spec: ``EnvironmentSpec`` (see ``make_environment_spec`` and
        ``environment_spec_from_env``).

    Returns:
      ``R2D2Networks`` with init / apply / unroll / initial_state.
    """
    num_actions = int(env_spec.actions.num_values)

    def make_fns():
        network = R2D2SimfishNetwork(num_actions)

        def init():
            dummy = jax.tree.map(
                lambda s: _zeros_from_spec(s, 1), env_spec.observations,
                is_leaf=lambda x: isinstance(x, specs.Array),
            )
            return network(dummy, network.initial_state(1))

        return init, (network.__call__, network.unroll, network.unroll_pair)

    transformed = hk.multi_transform(make_fns)
    apply_fn, unroll_fn, unroll_pair_fn = transformed.apply

    def init(key: jax.Array) -> hk.Params:
        return transformed.init(key)

    def initial_state(batch_size: int | None) -> hk.LSTMState:
        shape = [LSTM_SIZE] if batch_size is None else [batch_size, LSTM_SIZE]
        return hk.LSTMState(hidden=jnp.zeros(shape), cell=jnp.zeros(shape))

    return R2D2Networks(
        init=init,
        apply=apply_fn,
        unroll=unroll_fn,
        initial_state=initial_state,
        num_actions=num_actions,
        environment_spec=env_spec,
        unroll_pair=unroll_pair_fn,
    )


def count_parameters(params: hk.Params) -> int:
    """Total number of scalars in a parameter tree."""
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(params)))


__all__ = [
    "DeepSimfishTorso",
    "DuellingMLP",
    "EnvironmentSpec",
    "Flatten",
    "OAREmbedding",
    "R2D2Networks",
    "R2D2SimfishNetwork",
    "count_parameters",
    "environment_spec_from_env",
    "default_environment_spec",
    "make_environment_spec",
    "make_r2d2_networks",
    "retina",
    "swap_eyes",
]
