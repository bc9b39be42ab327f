"""One explicit conversion: typed config + actions -> traced and static parameters.

``StaticParams`` holds everything that fixes array shapes or the structure of
the jitted step (capacities, sub-step count, which subsystems exist); it is
hashable and closed over by ``jit``. ``EnvParams`` is a pytree of scalars and
small arrays (biology, physics, rewards) that are traced, so they can change
without recompiling and can be vmapped.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from simfish.config import SimFishConfig
from simfish.io.actions import Actions
from simfish.vision.observe import Vision, make_vision
from simfish.world.types import pytree_dataclass

#: Damping per second used by the users' tool (pymunk ``space.damping = 0.7``
#: per 1/50 s).
DAMPING_PER_SECOND = 0.7**50
#: Margin (px) from the walls for random start positions.
START_MARGIN = 40.0
#: Prey within this distance (px) of the fish do not die of old age.
DEATH_PROTECTION_DISTANCE = 200.0
#: Typical distance (px) within which a prey may interact with the fish
#: during one step: the longest bouts cover ~15 mm, plus the sensing range;
#: it sizes the chunks of the sub-step loop (more chunks run when needed).
REACH_PX = 260.0
#: The sub-step loop's chunk size is a multiple of this: 8 float32 prey make
#: one 256-bit vector row per world, which the CPU backend runs fastest
#: (measured: 13 or 16 prey per chunk cost 1.3-1.6x more than 8 at batch 256).
CHUNK_LANES = 8
#: Number of candidate spawn angles tried for a predator.
PREDATOR_SPAWN_TRIES = 16


@dataclasses.dataclass(frozen=True)
class StaticParams:
    """Shape- and structure-fixing settings (hashable, not traced).

    Attributes:
      n_substeps: physics sub-steps per step.
      prey_capacity: length of the prey arrays (>= prey.num, plus room for births).
      cloud_num: number of prey clouds (0: prey spread over the arena).
      reproduction: births and deaths happen (reproduction_mode with clouds).
      confine_to_clouds: prey bounce inside their cloud square.
      n_epochs: number of predator attack epochs (0: no predator ever).
      salt_enabled: a salt source exists.
      test_sensory_system: the fish only rotates by 0.1 rad per step.
      num_actions: number of actions.
      null_action: id of the action reported on the first step of an episode.
      n_near_prey: chunk size of the detailed sub-step loop (contacts,
        captures, escapes): the prey that may interact with the fish go
        through it in chunks of this many (one chunk in the usual case).
      vision: the static eye model (:class:`~simfish.vision.Vision`) of the
        config; its light field gives ``EnvParams.dark_y``, so the eyes and
        the internal ``in_light`` use the same dark band. Not compared or
        hashed (it holds arrays).
    """

    n_substeps: int
    prey_capacity: int
    cloud_num: int
    reproduction: bool
    confine_to_clouds: bool
    n_epochs: int
    salt_enabled: bool
    test_sensory_system: bool
    num_actions: int
    null_action: int
    n_near_prey: int
    vision: Vision = dataclasses.field(compare=False, hash=False, repr=False)

    @property
    def predator_enabled(self) -> bool:
        """Whether any predator can appear in an episode (the sensory test scripts one)."""
        return self.n_epochs > 0 or self.test_sensory_system


@pytree_dataclass
class EnvParams:
    """Traced world parameters (float32 / int32 / bool scalars unless noted)."""

    # Time and motion.
    dt: jnp.ndarray
    damping: jnp.ndarray  # per sub-step factor d = D ** dt
    max_steps: jnp.ndarray
    # Arena.
    width: jnp.ndarray
    height: jnp.ndarray
    dark_y: jnp.ndarray  # the dark band: rows y <= dark_y (an integer row; 0: none)
    wall_bounce: jnp.ndarray
    # Fish.
    mouth_radius: jnp.ndarray
    head_radius: jnp.ndarray
    tail_length: jnp.ndarray
    deterministic_action: jnp.ndarray
    paralyze: jnp.ndarray
    fixed_energy: jnp.ndarray
    fixed_energy_level: jnp.ndarray
    init_energy: jnp.ndarray
    init_x: jnp.ndarray  # NaN: random
    init_y: jnp.ndarray
    init_angle: jnp.ndarray
    # Actions ([A, 2], [A, 2, 2], [A]).
    action_means: jnp.ndarray
    action_factors: jnp.ndarray
    action_is_capture: jnp.ndarray
    # Capture.
    capture_first_substep: jnp.ndarray
    capture_last_substep: jnp.ndarray
    permissive_angle: jnp.ndarray
    capture_cost_scaling: jnp.ndarray
    # Prey.
    prey_radius: jnp.ndarray
    prey_num: jnp.ndarray
    sensing_distance: jnp.ndarray
    max_turning_angle: jnp.ndarray
    p_slow: jnp.ndarray
    p_fast: jnp.ndarray
    p_escape_substep: jnp.ndarray
    p_switch: jnp.ndarray
    p_large_turn: jnp.ndarray
    velocity_slow: jnp.ndarray
    velocity_fast: jnp.ndarray
    velocity_jump: jnp.ndarray
    birth_rate: jnp.ndarray
    cloud_region_size: jnp.ndarray
    safe_duration: jnp.ndarray
    p_death: jnp.ndarray
    # Predator.
    predator_radius: jnp.ndarray
    predator_velocity: jnp.ndarray
    immunity_steps: jnp.ndarray
    distance_from_fish: jnp.ndarray
    epoch_duration: jnp.ndarray
    p_predator: jnp.ndarray
    # Salt.
    salt_decay: jnp.ndarray
    # Rewards.
    reward_predator_caught: jnp.ndarray
    reward_predator_avoidance: jnp.ndarray
    reward_consumption: jnp.ndarray
    energy_use_factor: jnp.ndarray
    reward_wall_touch: jnp.ndarray
    salt_factor: jnp.ndarray
    # Energy.
    energy_distance_factor: jnp.ndarray
    energy_angle_factor: jnp.ndarray
    energy_baseline: jnp.ndarray


def _f(x) -> jnp.ndarray:
    return jnp.asarray(x, dtype=jnp.float32)


def _i(x) -> jnp.ndarray:
    return jnp.asarray(x, dtype=jnp.int32)


def _b(x) -> jnp.ndarray:
    return jnp.asarray(bool(x))


def _nan_if_none(x) -> jnp.ndarray:
    return _f(math.nan if x is None else x)


def near_prey_count(config: SimFishConfig, capacity: int) -> int:
    """Chunk size of the detailed sub-step loop (a speed setting: results never depend on it).

    Prey that cannot reach the fish within a step coast in closed form; the
    others run through the loop in chunks of this size, more chunks only
    when there are more of them. The size is the expected number of prey
    within ``REACH_PX`` of the fish at uniform density, rounded up to a
    multiple of ``CHUNK_LANES`` (at most the capacity). Clouds are not
    counted specially: a fish inside a cloud costs one more chunk, which is
    cheaper than every world carrying a chunk the size of a cloud.
    """
    area = float(config.arena.width) * float(config.arena.height)
    expected = config.prey.num * math.pi * REACH_PX**2 / max(area, 1.0)
    wanted = CHUNK_LANES * max(1, math.ceil(expected / CHUNK_LANES))
    return int(min(capacity, wanted))


def make_params(config: SimFishConfig, actions: Actions) -> tuple[EnvParams, StaticParams]:
    """Converts a typed config and an action set into (traced, static) parameters.

    Args:
      config: a validated ``SimFishConfig``.
      actions: the action set (``Actions``).

    Returns:
      ``(params, static)``.
    """
    n_sub = int(config.phys_steps_per_sim_step)
    dt = float(config.sim_step_duration_seconds) / n_sub
    prey, pred, fish = config.prey, config.predator, config.fish
    reproduction = bool(prey.reproduction_mode) and prey.cloud_num > 0
    capacity = int(prey.num) + (int(prey.cloud_num) if reproduction else 0)
    if config.test_sensory_system:  # the five fixed test prey
        capacity, reproduction = max(capacity, 5), False
    max_steps = int(config.max_sim_steps_per_episode)
    # Epoch starts are drawn in [immunity, max_steps - duration): none when empty.
    epoch_room = max_steps - int(pred.epoch_duration) - int(pred.immunity_steps)
    n_epochs = int(pred.epoch_num)
    if epoch_room <= 0 or pred.probability_per_epoch_step <= 0.0 or pred.epoch_duration <= 0:
        n_epochs = 0
    # The eyes, with the light field that also fixes the dark band of the internal state.
    vision = make_vision(config)
    names = list(actions.names)
    null_action = names.index("Null") if "Null" in names else 0
    static = StaticParams(
        n_substeps=n_sub,
        prey_capacity=max(capacity, 1),
        cloud_num=int(prey.cloud_num),
        reproduction=reproduction,
        confine_to_clouds=prey.cloud_num > 0 and not bool(prey.reproduction_mode),
        n_epochs=n_epochs,
        salt_enabled=bool(config.salt.enabled),
        test_sensory_system=bool(config.test_sensory_system),
        num_actions=int(actions.num_actions),
        null_action=int(null_action),
        n_near_prey=near_prey_count(config, max(capacity, 1)),
        vision=vision,
    )
    fixed = fish.energy_is_fixed
    init_energy = fish.start_energy
    params = EnvParams(
        dt=_f(dt),
        damping=_f(DAMPING_PER_SECOND**dt),
        max_steps=_i(max_steps),
        width=_f(config.arena.width),
        height=_f(config.arena.height),
        dark_y=_f(vision.light.dark_row),
        wall_bounce=_b(config.arena.wall_bounce),
        mouth_radius=_f(fish.mouth_radius),
        head_radius=_f(fish.head_radius),
        tail_length=_f(fish.tail_length),
        deterministic_action=_b(fish.deterministic_action),
        paralyze=_b(fish.paralyze),
        fixed_energy=_b(fixed),
        fixed_energy_level=_f(init_energy if fixed else 1.0),
        init_energy=_f(init_energy),
        init_x=_nan_if_none(fish.init_x),
        init_y=_nan_if_none(fish.init_y),
        init_angle=_nan_if_none(fish.init_angle),
        action_means=_f(np.asarray(actions.means, dtype=np.float64)),
        action_factors=_f(np.asarray(actions.cov_factors, dtype=np.float64)),
        action_is_capture=jnp.asarray(np.asarray(actions.is_capture, dtype=bool)),
        capture_first_substep=_i(1),
        capture_last_substep=_i(1 + int(n_sub * config.capture_swim.permissive_time_fraction)),
        permissive_angle=_f(config.capture_swim.permissive_angle),
        capture_cost_scaling=_f(config.capture_swim.energy_cost_scaling),
        prey_radius=_f(prey.radius),
        prey_num=_i(prey.num),
        sensing_distance=_f(prey.sensing_distance),
        max_turning_angle=_f(prey.max_turning_angle),
        p_slow=_f(prey.p_slow),
        p_fast=_f(prey.p_fast),
        p_escape_substep=_f(1.0 - (1.0 - prey.p_escape) ** (1.0 / n_sub)),
        p_switch=_f(prey.p_switch),
        p_large_turn=_f(prey.p_large_turn),
        velocity_slow=_f(prey.velocity_slow),
        velocity_fast=_f(prey.velocity_fast),
        velocity_jump=_f(prey.velocity_jump),
        birth_rate=_f(prey.birth_rate),
        cloud_region_size=_f(prey.cloud_region_size),
        safe_duration=_i(prey.safe_duration),
        p_death=_f(prey.p_death),
        predator_radius=_f(pred.radius),
        predator_velocity=_f(pred.velocity),
        immunity_steps=_i(pred.immunity_steps),
        distance_from_fish=_f(pred.distance_from_fish),
        epoch_duration=_i(pred.epoch_duration),
        p_predator=_f(pred.probability_per_epoch_step),
        salt_decay=_f(config.salt.concentration_decay),
        reward_predator_caught=_f(config.reward.predator_caught),
        reward_predator_avoidance=_f(config.reward.predator_avoidance),
        reward_consumption=_f(config.reward.consumption),
        energy_use_factor=_f(config.reward.energy_use_factor),
        reward_wall_touch=_f(config.reward.wall_touch),
        salt_factor=_f(config.reward.salt_factor),
        energy_distance_factor=_f(config.energy.distance_factor),
        energy_angle_factor=_f(config.energy.angle_factor),
        energy_baseline=_f(config.energy.baseline),
    )
    return params, static
