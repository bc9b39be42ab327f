"""SimFish R2D2 learner with mirrored (reflected) training examples.

The world is left/right symmetric: reflecting it across the fish's body axis
swaps the two eyes and reverses their position axis (SPEC 5.5) and swaps each
``_R`` turn with its ``_L`` partner. Each learner ``step()`` therefore does two
SGD steps on the same replay batch, one on the batch as recorded and one on its
reflection, in random order, and sends priorities back after each.

Layout (acme R2D2 split):

* ``reflect_observations`` / ``reflect_actions`` / ``reflect_samples``: the
  augmentation, pure functions.
* ``r2d2_loss``: the loss, top-down: burn-in from the stored core state,
  double Q, n-step transformed Q-learning (signed hyperbolic pair),
  importance weights, priorities.
* ``TrainingState`` and ``make_sgd_step``: a pure
  ``sgd_step(state, batch) -> (state, priorities, metrics)`` with Adam
  (any optax transformation) and the periodic target update.
* ``make_learner_step``: both SGD steps of a learner step (regular and
  mirrored, random order) as one pure function, the same computation as two
  ``sgd_step`` calls with the target network's forward pass shared between
  them (the device loop and ``SimfishR2D2Learner`` use it).
* ``SimfishR2D2Learner``: owns the state, pulls batches from an iterator,
  pushes priorities to replay, serves parameters to actors, saves and
  restores its full state.

Episode boundaries inside a sequence (see ``simfish_rl.types``): the LSTM
state is reset before ``start_of_episode`` steps; a transition from step
``t`` into a new episode (``start_of_episode[t + 1]``) is not trained on and
not bootstrapped from; and the n-step return from earlier steps stops at the
episode's last observation, bootstrapping from it with its own discount (0
when the fish died or ate everything, 1 at the time limit).
"""

from __future__ import annotations

import functools
import os
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import rlax

from simfish.io.atomic import atomic_path
from simfish.world.types import OAR
from simfish_rl.counting import Counter
from simfish_rl.simfish_r2d2_network import R2D2Networks
from simfish_rl.types import ReplaySample, SampleInfo

CHECKPOINT_FORMAT = "simfish_r2d2_learner_state_v1"


# ---------------------------------------------------------------------------
# Reflection
# ---------------------------------------------------------------------------


def _reflect_visual(visual: jax.Array) -> jax.Array:
    """``[..., P, C, 2]``: swap the eyes and reverse the positions."""
    return jnp.flip(visual, axis=(-3, -1))


def reflect_observations(values: Any) -> Any:
    """Reflects observations across the fish's body axis.

    Args:
      values: an observation ``(visual, internal)`` (or ``(visual,)``), or an
        ``OAR`` whose ``observation`` is one. Visual ``[..., P, C, 2]``.

    Returns:
      The same structure with the visual array's eyes swapped and positions
      reversed; internal state (and an OAR's action and reward) unchanged.
      Use ``reflect_actions`` for the previous action of an OAR.
    """
    if isinstance(values, OAR):
        return values._replace(observation=reflect_observations(values.observation))
    visual, *rest = values
    if jnp.ndim(visual) < 3 or jnp.shape(visual)[-1] != 2:
        raise ValueError(
            f"reflect_observations: visual must be [..., positions, channels, 2]; "
            f"got shape {jnp.shape(visual)}"
        )
    return (_reflect_visual(visual), *rest)


def mirror_table(actions_mirror: Mapping[int, int] | Sequence[int] | np.ndarray) -> np.ndarray:
    """An int32 table ``[A]`` mapping each action id to its mirror id.

    Args:
      actions_mirror: a dict ``{id: mirror id}`` (as
        ``Actions.get_opposing_dict()``; missing ids map to themselves) or a
        full table ``[A]`` (as ``Actions.mirror``).

    Raises:
      ValueError: the map is not an involution on non-negative ids.
    """
    if isinstance(actions_mirror, Mapping):
        items = {int(k): int(v) for k, v in actions_mirror.items()}
        size = max([*items.keys(), *items.values(), -1]) + 1
        table = np.arange(size, dtype=np.int32)
        for k, v in items.items():
            table[k] = v
    else:
        table = np.asarray(actions_mirror, dtype=np.int32).reshape(-1)
    if np.any(table < 0) or np.any(table >= max(len(table), 1)):
        raise ValueError(f"actions_mirror: ids out of range in {table.tolist()}")
    if len(table) and not np.array_equal(table[table], np.arange(len(table))):
        raise ValueError(
            f"actions_mirror must pair actions (mirror of mirror = itself); got {table.tolist()}"
        )
    return table


def reflect_actions(values: Any, actions_mirror: Mapping[int, int] | Sequence[int]) -> Any:
    """Maps actions to their mirror actions (``_R`` <-> ``_L``, others unchanged).

    Args:
      values: integer array (any shape) or pytree of them.
      actions_mirror: ``{id: mirror id}`` or a full table ``[A]``.

    Returns:
      The mirrored actions, same shapes and dtypes; ids outside the table are
      returned unchanged.
    """
    table = jnp.asarray(mirror_table(actions_mirror))
    size = table.shape[0]

    def reflect(a):
        a = jnp.asarray(a)
        inside = (a >= 0) & (a < size)
        return jnp.where(inside, table[jnp.clip(a, 0, max(size - 1, 0))], a).astype(a.dtype)

    return jax.tree.map(reflect, values)


def reflect_samples(samples: ReplaySample, actions_mirror: Mapping[int, int] | Sequence[int]):
    """Reflects a replay batch: visual observations, previous and taken actions.

    Internal state, rewards, discounts, episode flags and the stored core
    state are kept (the core state is not a mirror image; burn-in refreshes
    it).

    Args:
      samples: ``ReplaySample`` with ``data`` fields ``[B, L, ...]``.
      actions_mirror: ``{id: mirror id}`` or a full table ``[A]``.
    """
    data = samples.data
    observation = reflect_observations(data.observation)
    observation = observation._replace(
        action=reflect_actions(observation.action, actions_mirror)
    )
    data = data._replace(
        observation=observation, action=reflect_actions(data.action, actions_mirror)
    )
    return samples._replace(data=data)


# ---------------------------------------------------------------------------
# Loss and SGD step
# ---------------------------------------------------------------------------


class TrainingState(NamedTuple):
    """Everything the learner needs to continue training.

    Attributes:
      params: online network parameters.
      target_params: target network parameters.
      opt_state: optimiser state.
      steps: int32 [] SGD steps done (two per learner ``step()``).
      random_key: uint32 [2] raw PRNG key.
    """

    params: Any
    target_params: Any
    opt_state: Any
    steps: jax.Array
    random_key: jax.Array


class LossConfig(NamedTuple):
    """Static settings of ``r2d2_loss`` (see ``SimfishR2D2Learner`` args)."""

    burn_in_length: int
    discount: float
    importance_sampling_exponent: float
    max_priority_weight: float
    bootstrap_n: int
    tx_pair: Any
    clip_rewards: bool
    max_abs_reward: float
    use_core_state: bool


def _time_major(x: jax.Array) -> jax.Array:
    return jnp.swapaxes(x, 0, 1)


def r2d2_loss(
    networks: R2D2Networks,
    config: LossConfig,
    params: Any,
    target_params: Any,
    key: jax.Array,
    batch: ReplaySample,
    target_q: jax.Array | None = None,
) -> tuple[jax.Array, tuple[jax.Array, dict]]:
    """The R2D2 loss of a batch of sequences.

    Args:
      networks: network functions.
      config: loss settings.
      params, target_params: online and target parameters.
      key: PRNG key for the network applications.
      batch: ``ReplaySample`` with data ``[B, L, ...]``, ``L = burn_in + T``.
      target_q: optional ``[L, B, A]``, the target network's Q-values of the
        whole sequence from the stored state (``target_q_values``), when the
        caller has them already; computed here if None.

    Returns:
      ``(mean_loss, (priorities [B], metrics))``.
    """
    chex.assert_rank([batch.data.action, batch.data.reward, batch.data.discount,
                      batch.info.probability], [2, 2, 2, 1])
    chex.assert_type([batch.data.action, batch.data.reward, batch.data.discount],
                     [int, float, float])
    data = jax.tree.map(_time_major, batch.data._replace(core_state=None))  # [L, B, ...]
    core_state = batch.data.core_state
    batch_size = data.action.shape[1]
    burn_in = config.burn_in_length
    key_burn, key_online, key_target = jax.random.split(key, 3)

    # 1. Initial recurrent state: the one stored with the sequence, or zeros.
    if config.use_core_state:
        online_state = core_state
    else:
        online_state = networks.initial_state(batch_size)
    target_state = online_state

    # 2. Burn-in: warm up the online state on the first steps, no gradient.
    # (The target network runs over burn-in and trace in one unroll below,
    # which is the same computation as a separate burn-in.)
    if burn_in:
        burn = jax.tree.map(lambda x: x[:burn_in], data)
        _, online_state = networks.unroll(
            params, key_burn, burn.observation, online_state, burn.start_of_episode
        )
        online_state = jax.lax.stop_gradient(online_state)
    if target_q is None:
        target_q, _ = networks.unroll(
            target_params, key_target, data.observation, target_state, data.start_of_episode
        )
    target_q = jax.lax.stop_gradient(target_q[burn_in:])
    data = jax.tree.map(lambda x: x[burn_in:], data)  # [T, B, ...]

    # 3. Q-values on the trained part; double Q: online net selects actions.
    online_q, _ = networks.unroll(
        params, key_online, data.observation, online_state, data.start_of_episode
    )
    selector_actions = jnp.argmax(online_q, axis=-1)  # [T, B]

    # 4. Episode boundaries. Transition t -> t+1 crosses into a new episode when
    # start[t+1]: mask it and its bootstrap. The n-step chain from t stops at
    # s_{t+1} (lambda = 0) when s_{t+1} is an episode's last observation.
    start = data.start_of_episode.astype(online_q.dtype)  # [T, B]
    same_episode = 1.0 - start[1:]  # [T-1, B], transition t stays in its episode
    last_obs_next = jnp.concatenate([start[2:], jnp.zeros_like(start[:1])], axis=0)
    lambdas = 1.0 - last_obs_next  # [T-1, B]

    rewards = data.reward.astype(online_q.dtype)
    if config.clip_rewards:
        rewards = jnp.clip(rewards, -config.max_abs_reward, config.max_abs_reward)
    discounts = data.discount.astype(online_q.dtype) * config.discount

    # 5. Transformed n-step Q-learning TD errors [T-1, B].
    def td_error(q_tm1, a_tm1, target_q_t, a_t, r_t, discount_t, lambda_t):
        v_t = rlax.batched_index(target_q_t, a_t)
        target_tm1 = rlax.transformed_n_step_returns(
            config.tx_pair, r_t, discount_t, v_t, config.bootstrap_n,
            lambda_t=lambda_t, stop_target_gradients=True,
        )
        return target_tm1 - rlax.batched_index(q_tm1, a_tm1)

    batch_td_error = jax.vmap(td_error, in_axes=1, out_axes=1)(
        online_q[:-1],
        data.action[:-1],
        target_q[1:],
        selector_actions[1:],
        rewards[:-1],
        discounts[:-1] * same_episode,
        lambdas,
    )
    batch_td_error = batch_td_error * same_episode
    batch_loss = 0.5 * jnp.sum(jnp.square(batch_td_error), axis=0)  # [B]

    # 6. Importance weights from the sampling probabilities.
    probabilities = batch.info.probability.astype(online_q.dtype)
    importance_weights = (1.0 / (probabilities + 1e-6)) ** config.importance_sampling_exponent
    importance_weights = importance_weights / jnp.max(importance_weights)
    mean_loss = jnp.mean(importance_weights * batch_loss)

    # 7. Priorities: mix of max and mean |TD| over the (valid) sequence steps.
    abs_td = jnp.abs(batch_td_error)
    count = jnp.maximum(jnp.sum(same_episode, axis=0), 1.0)
    max_priority = config.max_priority_weight * jnp.max(abs_td, axis=0)
    mean_priority = (1.0 - config.max_priority_weight) * jnp.sum(abs_td, axis=0) / count
    priorities = max_priority + mean_priority

    metrics = {
        "loss": mean_loss,
        "mean_abs_td_error": jnp.sum(abs_td) / jnp.maximum(jnp.sum(same_episode), 1.0),
        "mean_q": jnp.mean(online_q),
    }
    return mean_loss, (priorities, metrics)


def _initial_core_state(networks: R2D2Networks, config: LossConfig, batch: ReplaySample):
    if config.use_core_state:
        return batch.data.core_state
    return networks.initial_state(batch.data.action.shape[0])


def target_q_values(networks: R2D2Networks, config: LossConfig, target_params: Any,
                    key: jax.Array, batch: ReplaySample) -> jax.Array:
    """The target network's Q-values ``[L, B, A]`` of a batch (as ``r2d2_loss`` computes them)."""
    observation = jax.tree.map(_time_major, batch.data.observation)
    start = _time_major(batch.data.start_of_episode)
    q, _ = networks.unroll(target_params, key, observation,
                           _initial_core_state(networks, config, batch), start)
    return jax.lax.stop_gradient(q)


def target_q_values_pair(networks: R2D2Networks, config: LossConfig, target_params: Any,
                         key: jax.Array, batch: ReplaySample,
                         mirrored: ReplaySample) -> tuple[jax.Array, jax.Array]:
    """Target Q-values ``[L, B, A]`` of a batch and of its reflection ``mirrored``.

    With ``networks.unroll_pair`` the retina runs once for both (the
    reflection shows each eye the other's image); otherwise two unrolls.
    """
    if networks.unroll_pair is None:
        return (target_q_values(networks, config, target_params, key, batch),
                target_q_values(networks, config, target_params, key, mirrored))
    observation = jax.tree.map(_time_major, batch.data.observation)
    q, q_mirrored = networks.unroll_pair(
        target_params, key, observation, _time_major(mirrored.data.observation.action),
        _initial_core_state(networks, config, batch), _time_major(batch.data.start_of_episode))
    return jax.lax.stop_gradient(q), jax.lax.stop_gradient(q_mirrored)


def make_sgd_step(networks: R2D2Networks, optimizer: optax.GradientTransformation,
                  config: LossConfig, target_update_period: int):
    """Builds the pure ``sgd_step(state, batch) -> (state, priorities, metrics)``.

    Args:
      networks: network functions.
      optimizer: optax transformation (Adam in the users' runs).
      config: loss settings.
      target_update_period: copy online -> target every this many SGD steps.
    """
    grad_fn = jax.grad(functools.partial(r2d2_loss, networks, config), has_aux=True)

    def sgd_step(state: TrainingState, batch: ReplaySample):
        key, key_loss = jax.random.split(state.random_key)
        gradients, (priorities, metrics) = grad_fn(
            state.params, state.target_params, key_loss, batch
        )
        updates, opt_state = optimizer.update(gradients, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        steps = state.steps + 1
        target_params = optax.periodic_update(
            params, state.target_params, steps, target_update_period
        )
        new_state = TrainingState(params, target_params, opt_state, steps, key)
        return new_state, priorities, metrics

    return sgd_step


class LearnerStepOutput(NamedTuple):
    """What ``learner_step`` returns besides the new state.

    Attributes:
      priorities: float32 [2, B], of the first and second SGD step.
      metrics: dict of [2] arrays (first, second SGD step).
      mirrored_first: bool [], the mirrored SGD step ran first.
    """

    priorities: jax.Array
    metrics: dict
    mirrored_first: jax.Array


def _select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def make_learner_step(networks: R2D2Networks, optimizer: optax.GradientTransformation,
                      config: LossConfig, target_update_period: int, mirror: np.ndarray):
    """Builds the pure ``learner_step(state, batch) -> (state, LearnerStepOutput)``.

    One learner step in one computation: the batch is reflected, and a regular
    and a mirrored SGD step run in random order, exactly as two calls of
    ``make_sgd_step``'s function would (same loss, same gradients, to float
    rounding). The difference is speed: the target network's Q-values of the
    batch and of its reflection are computed together before the first step
    (one retina pass, see ``target_q_values_pair``); they are recomputed for
    the second step only when the first one updated the target network.

    Args:
      networks, optimizer, config, target_update_period: as ``make_sgd_step``.
      mirror: int32 [A] action mirror table (``mirror_table``).
    """
    grad_fn = jax.grad(functools.partial(r2d2_loss, networks, config), has_aux=True)

    def one_sgd_step(state: TrainingState, batch: ReplaySample, target_q: jax.Array):
        key, key_loss = jax.random.split(state.random_key)
        gradients, (priorities, metrics) = grad_fn(
            state.params, state.target_params, key_loss, batch, target_q
        )
        updates, opt_state = optimizer.update(gradients, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        steps = state.steps + 1
        target_params = optax.periodic_update(
            params, state.target_params, steps, target_update_period
        )
        return TrainingState(params, target_params, opt_state, steps, key), priorities, metrics

    def target_key(state: TrainingState) -> jax.Array:
        # The key r2d2_loss would use for the target network in this SGD step.
        _, key_loss = jax.random.split(state.random_key)
        return jax.random.split(key_loss, 3)[2]

    def learner_step(state: TrainingState, batch: ReplaySample):
        mirrored = reflect_samples(batch, mirror)
        mirrored_first = jax.random.bernoulli(jax.random.fold_in(state.random_key, 0x5F3))
        first = _select(mirrored_first, mirrored, batch)
        second = _select(mirrored_first, batch, mirrored)
        q_regular, q_mirrored = target_q_values_pair(
            networks, config, state.target_params, target_key(state), batch, mirrored)
        q_first = jnp.where(mirrored_first, q_mirrored, q_regular)
        q_second = jnp.where(mirrored_first, q_regular, q_mirrored)

        state, p_first, m_first = one_sgd_step(state, first, q_first)
        target_changed = state.steps % target_update_period == 0
        q_second = jax.lax.cond(
            target_changed,
            lambda: target_q_values(networks, config, state.target_params,
                                    target_key(state), second),
            lambda: q_second,
        )
        state, p_second, m_second = one_sgd_step(state, second, q_second)
        metrics = jax.tree.map(lambda a, b: jnp.stack([a, b]), m_first, m_second)
        return state, LearnerStepOutput(jnp.stack([p_first, p_second]), metrics, mirrored_first)

    return learner_step


# ---------------------------------------------------------------------------
# Checkpoint format: .npz of the flattened state (no pickle)
# ---------------------------------------------------------------------------


def _flatten_with_names(tree: Any) -> dict[str, np.ndarray]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def save_training_state(path: str | os.PathLike, state: TrainingState) -> None:
    """Writes ``state`` to ``path`` (.npz, no pickle), atomically.

    The file is written next to ``path`` and renamed over it, so a crash
    never leaves a half-written checkpoint.
    """
    arrays = _flatten_with_names(state)
    arrays["__format__"] = np.array(CHECKPOINT_FORMAT)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())


def load_training_state(path: str | os.PathLike, like: TrainingState) -> TrainingState:
    """Reads a state saved by ``save_training_state``, shaped like ``like``.

    Raises:
      ValueError: the file is not a learner checkpoint, or its arrays do not
        match ``like`` (names, shapes, dtypes), e.g. another network size.
    """
    path = os.fspath(path)
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(like)
    with np.load(path, allow_pickle=False) as f:
        if "__format__" not in f.files or str(f["__format__"]) != CHECKPOINT_FORMAT:
            raise ValueError(f"{path}: not a SimFish R2D2 learner checkpoint ({CHECKPOINT_FORMAT})")
        leaves = []
        for p, ref in leaves_with_path:
            name = jax.tree_util.keystr(p)
            if name not in f.files:
                raise ValueError(f"{path}: missing array {name!r}")
            value = f[name]
            ref = np.asarray(ref)
            if value.shape != ref.shape or value.dtype != ref.dtype:
                raise ValueError(
                    f"{path}: array {name!r} is {value.dtype}{list(value.shape)}, "
                    f"expected {ref.dtype}{list(ref.shape)}"
                )
            leaves.append(jnp.asarray(value))
    return jax.tree_util.tree_unflatten(treedef, leaves)


# ---------------------------------------------------------------------------
# Learner
# ---------------------------------------------------------------------------


class _Prefetcher:
    """Pulls items from an iterator on a daemon thread into a bounded queue.

    The thread starts at the first ``next()``, so building a learner before
    replay can sample is fine.
    """

    _END = object()

    def __init__(self, iterator: Iterator, size: int):
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._thread = threading.Thread(target=self._run, args=(iterator,), daemon=True)

    def _run(self, iterator: Iterator) -> None:
        try:
            for item in iterator:
                self._queue.put(jax.device_put(item))
        except BaseException as error:  # handed to the consumer
            self._queue.put(error)
            return
        self._queue.put(self._END)

    def __iter__(self):
        return self

    def __next__(self):
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()
        item = self._queue.get()
        if item is self._END:
            self._queue.put(item)
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item


def _raw_key(key: jax.Array) -> jax.Array:
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key.astype(jnp.uint32)


class SimfishR2D2Learner:
    """R2D2 learner with mirrored augmentation: two SGD steps per ``step()``.

    Args:
      networks: ``R2D2Networks`` from ``make_r2d2_networks``.
      batch_size: sequences per batch (used to check batches).
      random_key: PRNG key (typed or raw uint32 [2]).
      burn_in_length: steps at the start of each sequence used only to warm
        up the recurrent state.
      discount: gamma, multiplies the stored environment discounts.
      importance_sampling_exponent: beta of prioritised replay.
      max_priority_weight: priority = w * max|TD| + (1 - w) * mean|TD|.
      target_update_period: SGD steps between target network updates.
      iterator: yields ``ReplaySample`` batches ``[B, L, ...]``.
      optimizer: optax transformation (e.g. ``optax.adam(1e-4)``).
      actions_mirror: ``{id: mirror id}`` (``Actions.get_opposing_dict()``) or
        a full table ``[A]``.
      bootstrap_n: n of the n-step return.
      tx_pair: value rescaling pair (``rlax.SIGNED_HYPERBOLIC_PAIR``).
      clip_rewards: clip rewards to ``[-max_abs_reward, max_abs_reward]``.
      max_abs_reward: reward clip bound.
      use_core_state: start from the stored core state (else zeros).
      prefetch_size: batches fetched ahead on a background thread (0: none).
      replay_client: object with ``update_priorities(info, priorities)``
        (e.g. ``simfish_rl.replay.SequenceReplay``), or None.
      counter: object with ``increment(**counts)`` (a ``Counter`` if None).
      logger: object with ``write(dict)``, or None.
    """

    def __init__(
        self,
        networks: R2D2Networks,
        batch_size: int,
        random_key: jax.Array,
        burn_in_length: int,
        discount: float,
        importance_sampling_exponent: float,
        max_priority_weight: float,
        target_update_period: int,
        iterator: Iterator[ReplaySample],
        optimizer: optax.GradientTransformation,
        actions_mirror: Mapping[int, int] | Sequence[int],
        bootstrap_n: int = 5,
        tx_pair: rlax.TxPair = rlax.SIGNED_HYPERBOLIC_PAIR,
        clip_rewards: bool = False,
        max_abs_reward: float = 1.0,
        use_core_state: bool = True,
        prefetch_size: int = 2,
        replay_client: Any | None = None,
        counter: Any | None = None,
        logger: Any | None = None,
    ):
        if batch_size < 1 or burn_in_length < 0 or bootstrap_n < 1 or target_update_period < 1:
            raise ValueError(
                "SimfishR2D2Learner: need batch_size >= 1, burn_in_length >= 0, "
                f"bootstrap_n >= 1, target_update_period >= 1; got {batch_size}, "
                f"{burn_in_length}, {bootstrap_n}, {target_update_period}"
            )
        self._networks = networks
        self._batch_size = batch_size
        self._mirror = mirror_table(actions_mirror)
        if len(self._mirror) > networks.num_actions:
            raise ValueError(
                f"actions_mirror has ids up to {len(self._mirror) - 1} but the network "
                f"has {networks.num_actions} actions"
            )
        full = np.arange(networks.num_actions, dtype=np.int32)
        full[: len(self._mirror)] = self._mirror
        self._mirror = full
        self._config = LossConfig(
            burn_in_length=burn_in_length,
            discount=discount,
            importance_sampling_exponent=importance_sampling_exponent,
            max_priority_weight=max_priority_weight,
            bootstrap_n=bootstrap_n,
            tx_pair=tx_pair,
            clip_rewards=clip_rewards,
            max_abs_reward=max_abs_reward,
            use_core_state=use_core_state,
        )
        self._optimizer = optimizer
        self._replay_client = replay_client
        self._counter = counter if counter is not None else Counter()
        self._logger = logger
        self._iterator = _Prefetcher(iterator, prefetch_size) if prefetch_size > 0 else iterator

        self._target_update_period = target_update_period
        learner_step = make_learner_step(networks, optimizer, self._config,
                                         target_update_period, self._mirror)
        self._learner_step = jax.jit(learner_step, donate_argnums=(0,))

        key = _raw_key(random_key)
        key, key_init = jax.random.split(key)
        params = networks.init(key_init)
        self._state = TrainingState(
            params=params,
            target_params=jax.tree.map(jnp.copy, params),
            opt_state=optimizer.init(params),
            steps=jnp.zeros((), jnp.int32),
            random_key=key,
        )

    # -- training -----------------------------------------------------------

    @property
    def learner_step_fn(self):
        """The pure ``learner_step(state, batch) -> (state, LearnerStepOutput)`` of this learner.

        The same function ``step()`` runs (see ``make_learner_step``), for loops
        that keep the state themselves (``simfish_rl.device_loop``).
        """
        return make_learner_step(self._networks, self._optimizer, self._config,
                                 self._target_update_period, self._mirror)

    def _send_priorities(self, info: SampleInfo, priorities: jax.Array) -> None:
        if self._replay_client is not None:
            self._replay_client.update_priorities(info, priorities)

    def step(self) -> dict[str, float]:
        """One learner step: a regular and a mirrored SGD step, random order.

        Priorities are sent to the replay client after each SGD step.

        Returns:
          Metrics of both SGD steps (``loss``, ``mirrored_loss``, ...) and counts.
        """
        batch = next(self._iterator)
        leading = jax.tree.leaves(batch.data.action)[0].shape[0]
        if leading != self._batch_size:
            raise ValueError(f"batch has {leading} sequences, learner expects {self._batch_size}")
        self._state, out = self._learner_step(self._state, batch)
        # Both SGD steps ran on the same sequences: send their priorities in order.
        self._send_priorities(batch.info, out.priorities[0])
        self._send_priorities(batch.info, out.priorities[1])
        mirrored_first = bool(out.mirrored_first)
        metrics = jax.device_get(out.metrics)
        results = {}
        for i, is_mirrored in enumerate((mirrored_first, not mirrored_first)):
            prefix = "mirrored_" if is_mirrored else ""
            results.update({prefix + k: float(v[i]) for k, v in metrics.items()})
        results["mirrored_first"] = float(mirrored_first)
        counts = self._counter.increment(learner_steps=1, learner_sgd_steps=2)
        results.update(counts)
        if self._logger is not None:
            self._logger.write(results)
        return results

    # -- variable source ----------------------------------------------------

    def get_variables(self, names: Sequence[str] = ("policy",)) -> list[Any]:
        """Online parameters for each requested name (acme variable source).

        Returns copies: the learner donates its own buffers to the next SGD
        step, so actors may keep what they get for as long as they like.
        """
        return [jax.tree.map(jnp.copy, self._state.params) for _ in names]

    @property
    def params(self) -> Any:
        """A copy of the current online parameters."""
        return jax.tree.map(jnp.copy, self._state.params)

    @property
    def state(self) -> TrainingState:
        """The current full training state (live buffers: copy before the next ``step``)."""
        return self._state

    @property
    def steps(self) -> int:
        """SGD steps done so far (two per ``step()``)."""
        return int(self._state.steps)

    # -- save / restore -----------------------------------------------------

    def save(self, path: str | os.PathLike | None = None) -> TrainingState:
        """Returns a host copy of the full state; also writes it to ``path`` if given."""
        state = jax.tree.map(np.asarray, self._state)
        if path is not None:
            save_training_state(path, state)
        return state

    def restore(self, state: TrainingState | str | os.PathLike) -> None:
        """Restores the full state from a ``TrainingState`` or a checkpoint path."""
        if not isinstance(state, TrainingState):
            state = load_training_state(state, self._state)
        else:
            ref = jax.tree.structure(self._state)
            if jax.tree.structure(state) != ref:
                raise ValueError("restore: state does not match this learner's structure")
        self._state = jax.tree.map(jnp.array, state)


__all__ = [
    "Counter",
    "LearnerStepOutput",
    "LossConfig",
    "SimfishR2D2Learner",
    "TrainingState",
    "load_training_state",
    "make_learner_step",
    "make_sgd_step",
    "mirror_table",
    "r2d2_loss",
    "reflect_actions",
    "reflect_observations",
    "reflect_samples",
    "save_training_state",
    "target_q_values",
    "target_q_values_pair",
]
