"""World state: nested pytree dataclasses with fixed-capacity entity arrays.

P is the prey capacity (``StaticParams.prey_capacity``), C the number of prey
clouds and E the number of predator epochs. All floats are float32.
"""

from __future__ import annotations

import jax.numpy as jnp

from simfish.world.types import pytree_dataclass


@pytree_dataclass
class FishState:
    """The fish: body origin (the mouth centre), heading, velocity and energy.

    Attributes:
      x, y: [] position (px).
      angle: [] heading (rad, counter-clockwise from +x; not wrapped).
      vx, vy: [] velocity (px/s).
      energy: [] energy level (<= 1).
      omega: [] angular velocity (rad/s, counter-clockwise), from wall contacts
        off the origin (``world.walls``); it carries over between steps.
      mouth_at_wall: [] bool, the mouth overlaps a wall (a contact that began
        earlier counts no new wall touch).
    """

    x: jnp.ndarray
    y: jnp.ndarray
    angle: jnp.ndarray
    vx: jnp.ndarray
    vy: jnp.ndarray
    energy: jnp.ndarray
    omega: jnp.ndarray
    mouth_at_wall: jnp.ndarray


@pytree_dataclass
class PreyState:
    """Prey in fixed-size arrays with an alive mask.

    Attributes:
      x, y: [P] position (px).
      vx, vy: [P] velocity (px/s).
      angle: [P] heading (rad).
      gait: [P] int32, 0 still, 1 slow, 2 fast.
      age: [P] int32 steps since birth.
      cloud: [P] int32 index of the prey's cloud (0 when there are none).
      alive: [P] bool.
    """

    x: jnp.ndarray
    y: jnp.ndarray
    vx: jnp.ndarray
    vy: jnp.ndarray
    angle: jnp.ndarray
    gait: jnp.ndarray
    age: jnp.ndarray
    cloud: jnp.ndarray
    alive: jnp.ndarray


@pytree_dataclass
class PredatorState:
    """The (single) predator and the episode's attack epochs.

    Attributes:
      x, y, vx, vy: [] position (px) and velocity (px/s); meaningless when absent.
      target_x, target_y: [] where it is heading (the fish's position at spawn).
      present: [] bool.
      epoch_starts: [E] int32 first step of each attack epoch.
    """

    x: jnp.ndarray
    y: jnp.ndarray
    vx: jnp.ndarray
    vy: jnp.ndarray
    target_x: jnp.ndarray
    target_y: jnp.ndarray
    present: jnp.ndarray
    epoch_starts: jnp.ndarray


@pytree_dataclass
class ArenaState:
    """Per-episode features of the arena.

    Attributes:
      salt_x, salt_y: [] salt source position (px).
      cloud_x, cloud_y: [C] centres of the prey clouds (px).
    """

    salt_x: jnp.ndarray
    salt_y: jnp.ndarray
    cloud_x: jnp.ndarray
    cloud_y: jnp.ndarray


@pytree_dataclass
class RewardTerms:
    """One float32 [] per reward term (for a step, or summed over an episode)."""

    energy: jnp.ndarray
    consumption: jnp.ndarray
    salt: jnp.ndarray
    predator: jnp.ndarray
    wall: jnp.ndarray

    def total(self) -> jnp.ndarray:
        """The reward: the sum of the terms."""
        return self.energy + self.consumption + self.salt + self.predator + self.wall

    @classmethod
    def zeros(cls) -> RewardTerms:
        """All terms zero."""
        z = jnp.zeros((), jnp.float32)
        return cls(energy=z, consumption=z, salt=z, predator=z, wall=z)


@pytree_dataclass
class Events:
    """What happened during one step, or int32 counts over an episode.

    Attributes:
      prey_caught: [] int32 prey eaten.
      attacks_avoided: [] int32 predators gone without catching the fish.
      attacks_captured: [] int32 predators that caught the fish.
      wall_touches: [] int32 steps in which the fish touched a wall.
    """

    prey_caught: jnp.ndarray
    attacks_avoided: jnp.ndarray
    attacks_captured: jnp.ndarray
    wall_touches: jnp.ndarray

    @classmethod
    def zeros(cls) -> Events:
        """All counts zero."""
        z = jnp.zeros((), jnp.int32)
        return cls(prey_caught=z, attacks_avoided=z, attacks_captured=z, wall_touches=z)

    def __add__(self, other: Events) -> Events:
        return Events(
            prey_caught=self.prey_caught + other.prey_caught,
            attacks_avoided=self.attacks_avoided + other.attacks_avoided,
            attacks_captured=self.attacks_captured + other.attacks_captured,
            wall_touches=self.wall_touches + other.wall_touches,
        )


@pytree_dataclass
class EnvState:
    """The whole world.

    Attributes:
      fish, prey, predator, arena: the entities.
      step: [] int32 steps taken in this episode (0 after reset).
      done: [] bool, the last time step was LAST (the next ``step`` resets).
      salt_concentration: [] salt concentration at the fish (0 without salt).
      last_terms / last_events: reward terms and events of the last step.
      totals / counts: their sums over the episode.
      episode_key: PRNG key drawn at reset, fixed for the episode (e.g. for
        the sediment texture).
    """

    fish: FishState
    prey: PreyState
    predator: PredatorState
    arena: ArenaState
    step: jnp.ndarray
    done: jnp.ndarray
    salt_concentration: jnp.ndarray
    last_terms: RewardTerms
    last_events: Events
    totals: RewardTerms
    counts: Events
    episode_key: jnp.ndarray


# ---------------------------------------------------------------------------
# Helpers that place entities (scenes for tests, vision checks, stimuli).


def with_fish(state: EnvState, x, y, angle, energy=None) -> EnvState:
    """The state with the fish placed at rest at (x, y) facing ``angle`` (no wall contact yet)."""
    f32 = jnp.float32
    fish = state.fish.replace(
        x=jnp.asarray(x, f32),
        y=jnp.asarray(y, f32),
        angle=jnp.asarray(angle, f32),
        vx=jnp.zeros((), f32),
        vy=jnp.zeros((), f32),
        energy=state.fish.energy if energy is None else jnp.asarray(energy, f32),
        omega=jnp.zeros((), f32),
        mouth_at_wall=jnp.zeros((), bool),
    )
    return state.replace(fish=fish)


def with_prey(state: EnvState, xy, angle=None) -> EnvState:
    """The state with prey at rest at ``xy`` [n, 2] (n <= capacity); others dead.

    The placed prey are still (gait 0) and face ``angle`` ([n] or scalar, 0 by
    default).
    """
    xy = jnp.asarray(xy, jnp.float32).reshape(-1, 2)
    n = xy.shape[0]
    cap = state.prey.x.shape[-1]
    if n > cap:
        raise ValueError(f"with_prey: {n} prey exceed the prey capacity {cap}")
    pad = cap - n
    z = jnp.zeros((cap,), jnp.float32)
    ang = (
        jnp.zeros((n,), jnp.float32)
        if angle is None
        else jnp.broadcast_to(jnp.asarray(angle, jnp.float32), (n,))
    )
    prey = state.prey.replace(
        x=jnp.concatenate([xy[:, 0], jnp.zeros((pad,), jnp.float32)]),
        y=jnp.concatenate([xy[:, 1], jnp.zeros((pad,), jnp.float32)]),
        vx=z,
        vy=z,
        angle=jnp.concatenate([ang, jnp.zeros((pad,), jnp.float32)]),
        gait=jnp.zeros((cap,), jnp.int32),
        age=jnp.zeros((cap,), jnp.int32),
        alive=jnp.arange(cap) < n,
    )
    return state.replace(prey=prey)


def with_predator(state: EnvState, x, y, target_x, target_y) -> EnvState:
    """The state with a predator at rest at (x, y) heading for the target."""
    f32 = jnp.float32
    pred = state.predator.replace(
        x=jnp.asarray(x, f32),
        y=jnp.asarray(y, f32),
        vx=jnp.zeros((), f32),
        vy=jnp.zeros((), f32),
        target_x=jnp.asarray(target_x, f32),
        target_y=jnp.asarray(target_y, f32),
        present=jnp.asarray(True),
    )
    return state.replace(predator=pred)
