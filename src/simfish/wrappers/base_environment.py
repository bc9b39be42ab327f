"""BaseEnvironment: a ``dm_env.Environment`` for one world, as in the users' tool.

It runs the same jitted ``reset``/``step`` as :class:`simfish.SimFishEnv` on a
single world and returns numpy time steps. Besides the dm_env API it offers
what the users' scripts read from their environment: ``get_info()`` (each
value a one-element list so observers can concatenate step after step),
``env_variables`` (the flat config dict), ``salt_location``, and the per-episode
metrics of ``simfish.wrappers.metrics.ENV_ATTRIBUTE_METRICS`` as attributes
(reward-term totals, prey and attack counts, wall touches).
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import dm_env
import jax
import jax.numpy as jnp
import numpy as np

from simfish.config import SimFishConfig, from_flat_dict, load_config
from simfish.io.actions import Actions, as_actions
from simfish.world.env import SimFishEnv, VisionFn
from simfish.wrappers.metrics import ENV_ATTRIBUTE_METRICS, EpisodeMetric

logger = logging.getLogger(__name__)


def _as_config(env_variables) -> SimFishConfig:
    if isinstance(env_variables, SimFishConfig):
        return env_variables
    if isinstance(env_variables, Mapping):
        return from_flat_dict(env_variables)
    return load_config(env_variables)


class FlatPack:
    """A pytree of arrays as one flat array of 32-bit words, and back.

    Calling a compiled function costs a few microseconds per array passed in
    or out; the world state has about fifty. Packed, one world's state is one
    uint32 array, and so is its time step: every leaf is flattened and its
    bits reinterpreted as words (``bitcast``; bools become 0 / 1, integers
    and floats narrower than 32 bits are widened, 64-bit ones take two words),
    so packing and unpacking lose nothing, and on the host the time step's
    leaves are views of its words (docs/performance.md, "One world: fewer
    arrays per call").

    Args:
      example: a pytree of arrays or ``jax.ShapeDtypeStruct`` giving the
        structure, shapes and dtypes.
    """

    def __init__(self, example):
        leaves, self._treedef = jax.tree.flatten(example)
        # (first word, words, dtype, shape) per leaf.
        self._slots: list[tuple[int, int, np.dtype, tuple[int, ...]]] = []
        offset = 0
        for leaf in leaves:
            dtype = np.dtype(leaf.dtype)  # typed PRNG keys have no numpy dtype: TypeError
            if dtype.itemsize > 8 or dtype.kind not in "biuf":
                raise TypeError(f"FlatPack: cannot pack leaves of dtype {dtype}")
            size = int(np.prod(leaf.shape, dtype=np.int64)) * (2 if dtype.itemsize == 8 else 1)
            self._slots.append((offset, size, dtype, tuple(leaf.shape)))
            offset += size
        self.num_words = offset

    @staticmethod
    def _wide(dtype: np.dtype) -> np.dtype:
        """The 32-bit type a narrower leaf is stored as (itself if 32 or 64 bits)."""
        if dtype.itemsize >= 4:
            return dtype
        return np.dtype(np.float32 if dtype.kind == "f" else np.int32)

    def pack(self, tree) -> jax.Array:
        """The leaves of ``tree`` as one uint32 array of :attr:`num_words` words (jit-able)."""
        words = []
        for leaf, (_, _, dtype, _) in zip(jax.tree.leaves(tree), self._slots, strict=True):
            flat = jnp.ravel(leaf).astype(self._wide(dtype))
            words.append(jnp.ravel(jax.lax.bitcast_convert_type(flat, jnp.uint32)))
        return jnp.concatenate(words) if words else jnp.zeros((0,), jnp.uint32)

    def unpack(self, words, xp=jnp):
        """The pytree back from :meth:`pack`'s words (``xp=np`` unpacks a numpy array on the host).

        On the host the leaves are views of ``words`` where the dtype allows
        (every 32- and 64-bit leaf), so the time step of a one-world step is
        unpacked without copies.
        """
        if xp is np:
            words = np.ascontiguousarray(words)
        leaves = []
        for start, size, dtype, shape in self._slots:
            part = words[start:start + size]
            wide = self._wide(dtype)
            if xp is np:
                value = part.view(wide)
            elif wide.itemsize == 8:
                value = jax.lax.bitcast_convert_type(part.reshape(-1, 2), wide)
            else:
                value = jax.lax.bitcast_convert_type(part, wide)
            if dtype.kind == "b":
                value = value != 0
            elif wide != dtype:
                value = value.astype(dtype)
            leaves.append(value.reshape(shape))
        return jax.tree.unflatten(self._treedef, leaves)


class _PackedCalls(NamedTuple):
    """One world's compiled calls on packed arrays (see ``_packed_calls``)."""

    states: FlatPack  # the world state
    steps: FlatPack  # the time step
    infos: FlatPack  # ``SimFishEnv.info``
    reset: Callable  # carried key -> (key, state words, time-step words)
    step: Callable  # (key, state words, action) -> (key, state words, time-step words)
    info: Callable  # state words -> info words


def _packed_calls(env: SimFishEnv) -> _PackedCalls:
    """Compiled reset/step/info of one world that take and return packed arrays.

    Each call splits the carried key inside the compiled function (one
    dispatch per step; an eager split would be a second one). States, time
    steps and infos cross each call as one array of words (``FlatPack``).
    """
    shapes = jax.eval_shape(env.reset, jax.random.PRNGKey(0))
    states, steps = FlatPack(shapes[0]), FlatPack(shapes[1])
    infos = FlatPack(jax.eval_shape(env.info, shapes[0]))

    def reset(carried):
        carried, key = jax.random.split(carried)
        state, timestep = env.reset(key)
        return carried, states.pack(state), steps.pack(timestep)

    def step(carried, packed, action):
        carried, key = jax.random.split(carried)
        state, timestep = env.step(states.unpack(packed), action, key)
        return carried, states.pack(state), steps.pack(timestep)

    def info(packed):
        return infos.pack(env.info(states.unpack(packed)))

    return _PackedCalls(states, steps, infos, jax.jit(reset), jax.jit(step), jax.jit(info))


class BaseEnvironment(dm_env.Environment):
    """One SimFish world behind the ``dm_env.Environment`` interface.

    Args:
      env_variables: a ``SimFishConfig``, the users' flat ``section_key`` dict,
        or a preset name / YAML path.
      actions: an ``Actions``, the users' list of action dicts, or None (default set).
      seed: seeds the world's PRNG key (None: fresh entropy).
      vision: True (default) for the eyes of ``simfish.vision`` built from
        the config, a vision function (see ``simfish.world.env.VisionFn``), or
        None / False for a vision-less world (observation ``(internal,)``).
    """

    def __init__(
        self,
        env_variables: SimFishConfig | Mapping[str, Any] | str,
        actions: Actions | Sequence[Mapping[str, Any]] | None = None,
        seed: int | None = None,
        vision: VisionFn | bool | None = True,
    ):
        self.config = _as_config(env_variables)
        self.actions = as_actions(actions)
        self.env = SimFishEnv(self.config, self.actions, vision=vision)
        self.seed(seed)
        # The world state lives packed (FlatPack) between calls; ``state``
        # unpacks it on demand.
        calls = _packed_calls(self.env)
        self._states, self._steps, self._infos = calls.states, calls.steps, calls.infos
        self._reset_fn, self._step_fn, self._info_fn = calls.reset, calls.step, calls.info
        self._device_actions = tuple(jax.device_put(np.arange(self.env.num_actions,
                                                              dtype=np.int32)))
        self._pack_fn = jax.jit(self._states.pack)
        self._unpack_fn = jax.jit(self._states.unpack)
        self._packed = None
        self._state = None  # the unpacked state, made when first asked for
        self._reset_next = True

    # -------------------------------------------------------------- dm_env

    def seed(self, seed: int | None = None) -> None:
        """Re-seeds the world's PRNG (None: fresh entropy); the next step resets."""
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**63))
        self._key = jax.random.PRNGKey(seed)
        self._reset_next = True

    def reset(self) -> dm_env.TimeStep:
        """Starts a new episode and returns its FIRST time step."""
        self._key, self._packed, timestep = self._reset_fn(self._key)
        self._state = None
        self._reset_next = False
        return self._convert(timestep)

    def step(self, action) -> dm_env.TimeStep:
        """Takes one action; after a LAST time step (or before any reset), resets instead."""
        if self._reset_next:
            return self.reset()
        self._key, self._packed, timestep = self._step_fn(self._key, self._packed,
                                                          self._device_action(action))
        self._state = None
        timestep = self._convert(timestep)
        self._reset_next = timestep.last()
        return timestep

    def _device_action(self, action) -> jax.Array | np.int32:
        """``action`` as the step's int32 argument; valid ids come ready on the device.

        Handing the compiled step a host integer costs a transfer per call (about
        a twentieth of a one-world step on a CPU); the ids 0 .. num_actions - 1
        are made once. Anything else goes in as ``np.int32(action)``, as before.
        """
        try:
            index = operator.index(action)
        except TypeError:  # e.g. a float
            return np.int32(action)
        if 0 <= index < len(self._device_actions):
            return self._device_actions[index]
        return np.int32(action)

    def _convert(self, packed: jax.Array) -> dm_env.TimeStep:
        ts = self._steps.unpack(np.asarray(packed), xp=np)
        step_type = dm_env.StepType(int(ts.step_type))
        first = step_type == dm_env.StepType.FIRST
        return dm_env.TimeStep(
            step_type=step_type,
            reward=None if first else ts.reward,
            discount=None if first else ts.discount,
            observation=ts.observation,
        )

    def observation_spec(self):
        """The OAR observation specs (see ``SimFishEnv.observation_spec``)."""
        return self.env.observation_spec()

    def action_spec(self):
        """One discrete action id."""
        return self.env.action_spec()

    def reward_spec(self):
        """Scalar float32 reward."""
        return self.env.reward_spec()

    def discount_spec(self):
        """Scalar float32 discount."""
        return self.env.discount_spec()

    # ------------------------------------------------- users' extra API

    @property
    def state(self):
        """The current world state (``EnvState``), or None before the first reset."""
        if self._state is None and self._packed is not None:
            self._state = self._unpack_fn(self._packed)
        return self._state

    def _require_packed(self):
        if self._packed is None:
            raise RuntimeError("BaseEnvironment: call reset() before reading the world state")
        return self._packed

    def _require_state(self):
        self._require_packed()
        return self.state

    def get_info(self) -> dict[str, list]:
        """Per-step info, each value a one-element list (prey lists hold live prey only).

        As in the users' files, ``predator_x`` / ``predator_y`` are 0 when no
        predator is present; ``predator_present`` says whether one is.
        """
        words = np.asarray(self._info_fn(self._require_packed()))
        return info_lists(self._infos.unpack(words, xp=np))

    def set_state(self, state) -> None:
        """Makes ``state`` (one world's ``EnvState``) the current one, e.g. to read its
        attributes for a world that was stepped elsewhere (batched evaluation)."""
        self._packed = self._pack_fn(state)
        self._state = state
        self._reset_next = False

    @property
    def env_variables(self) -> dict[str, Any]:
        """The configuration as the users' flat ``section_key`` dict."""
        return self.config.to_flat_dict()

    @property
    def sediment_record(self):
        """The episode's sediment texture (``simfish.vision.Sediment``, ~1 KB).

        It regenerates the whole texture (``render_sediment``); evaluation logs
        store it so that an episode's red-channel input can be redrawn.
        """
        from simfish.vision.bind import episode_sediment

        return jax.device_get(episode_sediment(self._require_state().episode_key, self.config))

    def sediment_image(self) -> np.ndarray:
        """The episode's whole sediment texture, unlit, as float32 [height, width] (row = y).

        One pixel per arena px, pixel centres at integer coordinates; this is
        the ``sediment`` image of the episode logs.
        """
        from simfish.vision import arena_sediment_image

        return arena_sediment_image(self.sediment_record, self.config.arena)

    def render_sediment(self, x0: float, y0: float, width: int, height: int,
                        px: float = 1.0, lit: bool = True) -> np.ndarray:
        """A region of this episode's sediment as float32 [height, width] (row = y).

        Args:
          x0, y0: arena coordinates of the top-left pixel; px: arena px per pixel.
          lit: multiply by the luminance (dark band, 0 outside the arena).
        """
        from simfish.vision import make_light_field, render_sediment

        light = make_light_field(self.config.arena) if lit else None
        return render_sediment(self.sediment_record, x0, y0, width, height, px, light=light)

    @property
    def salt_location(self) -> np.ndarray | None:
        """Salt source (x, y) of the episode, float64 [2], or None without salt."""
        if not self.env.static.salt_enabled:
            return None
        arena = self._require_state().arena
        return np.array([float(arena.salt_x), float(arena.salt_y)])


def info_lists(info: Mapping[str, np.ndarray]) -> dict[str, list]:
    """``SimFishEnv.info`` of one world (numpy values) as ``get_info()`` gives it.

    Each value becomes a one-element list of a Python scalar; ``prey_x`` /
    ``prey_y`` become a list of the live prey's coordinates; an absent
    predator is at 0 (the users' convention), as ``predator_present`` says.
    """
    out: dict[str, list] = {}
    present = bool(np.asarray(info.get("predator_present", True)))
    for name, value in info.items():
        value = np.asarray(value)
        if name in ("predator_x", "predator_y") and not present:
            value = np.zeros_like(value)
        if name in ("prey_x", "prey_y"):
            out[name] = [value[~np.isnan(value)].astype(float).tolist()]
        elif value.dtype == bool:
            out[name] = [bool(value)]
        elif np.issubdtype(value.dtype, np.integer):
            out[name] = [int(value)]
        else:
            out[name] = [float(value)]
    return out


def _metric_property(metric: EpisodeMetric) -> property:
    """A read-only attribute giving one episode metric of the current world state."""

    def getter(self: BaseEnvironment) -> int | float:
        return metric.kind(metric.read(self._require_state()))

    getter.__name__ = metric.name
    getter.__doc__ = metric.doc
    return property(getter)


# energy_associated_reward, ..., total_attacks_avoided, prey_caught, wall_touches:
# one attribute per entry of the shared metric list.
for _metric in ENV_ATTRIBUTE_METRICS:
    setattr(BaseEnvironment, _metric.name, _metric_property(_metric))
del _metric
