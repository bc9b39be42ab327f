"""Prey: placement, clouds, per-step gaits/turns/escape timing, births and deaths."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from simfish.fusion import computed_once
from simfish.world.params import DEATH_PROTECTION_DISTANCE, START_MARGIN, EnvParams, StaticParams
from simfish.world.state import ArenaState, PreyState
from simfish.world.types import pytree_dataclass


@pytree_dataclass
class PreyPlan:
    """Per-step prey decisions that the physics sub-steps use.

    Attributes:
      hx, hy: [P] unit heading of each prey for this step.
      gait_kick: [P] velocity kick per sub-step from the gait (px/s).
      escape_t1, escape_t2: [P] int32 sub-steps at which an escape triggers
        if the fish is within sensing distance (>= n_substeps: never).
      lo_x, hi_x, lo_y, hi_y: [P] walls for prey centres (arena or cloud
        square, inset by the prey radius).
    """

    hx: jnp.ndarray
    hy: jnp.ndarray
    gait_kick: jnp.ndarray
    escape_t1: jnp.ndarray
    escape_t2: jnp.ndarray
    lo_x: jnp.ndarray
    hi_x: jnp.ndarray
    lo_y: jnp.ndarray
    hi_y: jnp.ndarray


def reset_clouds(key, params: EnvParams, static: StaticParams):
    """Cloud centres [C] x, y: uniform, whole squares inside the 40 px margin when possible."""
    kx, ky = jax.random.split(key)
    c = static.cloud_num
    half = 0.5 * params.cloud_region_size + START_MARGIN
    lo_x = jnp.minimum(half, 0.5 * params.width)
    lo_y = jnp.minimum(half, 0.5 * params.height)
    cx = jax.random.uniform(kx, (c,), jnp.float32, lo_x, params.width - lo_x)
    cy = jax.random.uniform(ky, (c,), jnp.float32, lo_y, params.height - lo_y)
    return cx, cy


def _draw_gait(key, shape, params: EnvParams):
    u = jax.random.uniform(key, shape)
    return jnp.where(
        u < params.p_slow, 1, jnp.where(u < params.p_slow + params.p_fast, 2, 0)
    ).astype(jnp.int32)


def _cloud_square(cloud, arena: ArenaState, params: EnvParams):
    """Bounds (lo_x, hi_x, lo_y, hi_y) of each prey's cloud square, clipped to the arena."""
    half = 0.5 * params.cloud_region_size
    cx = arena.cloud_x[cloud]
    cy = arena.cloud_y[cloud]
    return (
        jnp.maximum(cx - half, 0.0),
        jnp.minimum(cx + half, params.width),
        jnp.maximum(cy - half, 0.0),
        jnp.minimum(cy + half, params.height),
    )


def _positions(key, cloud, arena: ArenaState, params: EnvParams, static: StaticParams):
    """Uniform positions [P] in the arena (40 px margin) or in each prey's cloud square."""
    kx, ky = jax.random.split(key)
    shape = cloud.shape
    if static.cloud_num > 0:
        lo_x, hi_x, lo_y, hi_y = _cloud_square(cloud, arena, params)
    else:
        lo_x, hi_x = START_MARGIN, params.width - START_MARGIN
        lo_y, hi_y = START_MARGIN, params.height - START_MARGIN
    x = jax.random.uniform(kx, shape, jnp.float32, lo_x, hi_x)
    y = jax.random.uniform(ky, shape, jnp.float32, lo_y, hi_y)
    return x, y


#: The fixed prey of ``test_sensory_system``, as offsets (px) from the arena centre.
SENSORY_TEST_PREY = ((30.0, 30.0), (0.0, -40.0), (0.0, 40.0), (30.0, -30.0), (5.0, 50.0))


def reset_prey(key, arena: ArenaState, params: EnvParams, static: StaticParams) -> PreyState:
    """``prey.num`` prey at rest with random headings and gaits; the rest of the capacity dead.

    With ``test_sensory_system``: the five fixed prey of ``SENSORY_TEST_PREY``
    (at rest, still, heading 0) and nothing else.
    """
    kpos, kang, kgait = jax.random.split(key, 3)
    cap = static.prey_capacity
    idx = jnp.arange(cap, dtype=jnp.int32)
    cloud = idx % max(static.cloud_num, 1)
    x, y = _positions(kpos, cloud, arena, params, static)
    zero = jnp.zeros((cap,), jnp.float32)
    prey = PreyState(
        x=x,
        y=y,
        vx=zero,
        vy=zero,
        angle=jax.random.uniform(kang, (cap,), jnp.float32, 0.0, 2.0 * jnp.pi),
        gait=_draw_gait(kgait, (cap,), params),
        age=jnp.zeros((cap,), jnp.int32),
        cloud=cloud,
        alive=idx < params.prey_num,
    )
    if static.test_sensory_system:
        prey = _sensory_test_prey(prey, params)
    return prey


def _sensory_test_prey(prey: PreyState, params: EnvParams) -> PreyState:
    """The five fixed test prey in the first slots of ``prey`` (capacity >= 5), the rest dead."""
    n = len(SENSORY_TEST_PREY)
    off = jnp.asarray(SENSORY_TEST_PREY, jnp.float32)
    pad = prey.x.shape[-1] - n
    fill = jnp.zeros((pad,), jnp.float32)
    return prey.replace(
        x=jnp.concatenate([0.5 * params.width + off[:, 0], fill]),
        y=jnp.concatenate([0.5 * params.height + off[:, 1], fill]),
        angle=jnp.zeros_like(prey.angle),
        gait=jnp.zeros_like(prey.gait),
        alive=jnp.arange(prey.x.shape[-1]) < n,
    )


def plan_prey_step(
    key, prey: PreyState, arena: ArenaState, params: EnvParams, static: StaticParams
) -> tuple[PreyState, PreyPlan]:
    """Per-step prey decisions: gait switches, turns, escape times and walls.

    Returns:
      (prey with new gait and angle, its :class:`PreyPlan` with every field [P]).
    """
    k_sw, k_gait, k_turn, k_large, k_large_angle, k_esc = jax.random.split(key, 6)
    shape = prey.x.shape
    # Gaits: re-drawn with probability p_switch.
    switch = jax.random.uniform(k_sw, shape) < params.p_switch
    gait = jnp.where(switch, _draw_gait(k_gait, shape, params), prey.gait)
    # Turns: small uniform turn, plus sometimes a large one.
    turn = jax.random.uniform(
        k_turn, shape, jnp.float32, -params.max_turning_angle, params.max_turning_angle
    )
    large = jax.random.uniform(k_large, shape) < params.p_large_turn
    large_angle = jax.random.uniform(k_large_angle, shape, jnp.float32, -jnp.pi, jnp.pi)
    angle = prey.angle + turn + jnp.where(large, large_angle, 0.0)
    # Escapes: the first two sub-steps at which a per-sub-step Bernoulli fires.
    u1, u2 = jax.random.uniform(k_esc, (2,) + shape, jnp.float32, 1e-12, 1.0)
    log_q = jnp.log1p(-params.p_escape_substep)
    n = static.n_substeps
    safe_log_q = jnp.where(log_q < 0.0, log_q, -1.0)
    g1 = jnp.where(log_q < 0.0, jnp.floor(jnp.log(u1) / safe_log_q), n)
    g2 = jnp.where(log_q < 0.0, jnp.floor(jnp.log(u2) / safe_log_q), n)
    t1 = jnp.minimum(g1, n).astype(jnp.int32)
    t2 = jnp.minimum(g1 + 1.0 + g2, n).astype(jnp.int32)
    speed = jnp.stack([jnp.zeros((), jnp.float32), params.velocity_slow, params.velocity_fast])
    gait_kick = speed[gait] * (1.0 - params.damping)
    # Walls for prey centres: the arena, or the cloud square when confined.
    r = params.prey_radius
    if static.confine_to_clouds:
        lo_x, hi_x, lo_y, hi_y = _cloud_square(prey.cloud, arena, params)
        lo_x, hi_x, lo_y, hi_y = lo_x + r, hi_x - r, lo_y + r, hi_y - r
    else:
        lo_x, hi_x = r, params.width - r
        lo_y, hi_y = r, params.height - r
    lo_x, hi_x, lo_y, hi_y = (jnp.broadcast_to(b, shape) for b in (lo_x, hi_x, lo_y, hi_y))
    # Read by every coasted and looped prey position and speed: computed once.
    hx, hy, gait_kick = computed_once(jnp.cos(angle), jnp.sin(angle), gait_kick)
    plan = PreyPlan(
        hx=hx,
        hy=hy,
        gait_kick=gait_kick,
        escape_t1=t1,
        escape_t2=t2,
        lo_x=lo_x,
        hi_x=hi_x,
        lo_y=lo_y,
        hi_y=hi_y,
    )
    return prey.replace(gait=gait, angle=angle), plan


def population_step(
    key, prey: PreyState, fish_x, fish_y, arena: ArenaState, params: EnvParams, static: StaticParams
) -> PreyState:
    """Ageing, deaths and births (only with reproduction_mode and clouds).

    Prey older than ``safe_duration`` die with probability ``p_death`` unless
    within 200 px of the fish; each cloud gives birth with probability
    ``birth_rate * (num - alive count)`` unless the fish is inside its square.
    Newborns fill the first free slots of the fixed-size arrays.
    """
    age = jnp.where(prey.alive, prey.age + 1, prey.age)
    prey = prey.replace(age=age)
    if not static.reproduction:
        return prey
    k_death, k_birth, k_pos, k_ang, k_gait = jax.random.split(key, 5)
    shape = prey.x.shape
    # Deaths.
    far = (prey.x - fish_x) ** 2 + (prey.y - fish_y) ** 2 > DEATH_PROTECTION_DISTANCE**2
    dies = (
        prey.alive
        & (prey.age > params.safe_duration)
        & far
        & (jax.random.uniform(k_death, shape) < params.p_death)
    )
    alive = prey.alive & ~dies
    # Births, one draw per cloud.
    c = static.cloud_num
    p_birth = params.birth_rate * (params.prey_num - jnp.sum(alive)).astype(jnp.float32)
    half = 0.5 * params.cloud_region_size
    fish_inside = (jnp.abs(arena.cloud_x - fish_x) <= half) & (
        jnp.abs(arena.cloud_y - fish_y) <= half
    )
    born = (jax.random.uniform(k_birth, (c,)) < p_birth) & ~fish_inside
    free = ~alive
    rank = jnp.cumsum(free.astype(jnp.int32)) - 1
    slot_cloud = jnp.clip(rank, 0, c - 1)
    newborn = free & (rank < c) & born[slot_cloud]
    nx, ny = _positions(k_pos, slot_cloud, arena, params, static)
    zero = jnp.zeros(shape, jnp.float32)
    return PreyState(
        x=jnp.where(newborn, nx, prey.x),
        y=jnp.where(newborn, ny, prey.y),
        vx=jnp.where(newborn, zero, prey.vx),
        vy=jnp.where(newborn, zero, prey.vy),
        angle=jnp.where(
            newborn, jax.random.uniform(k_ang, shape, jnp.float32, 0.0, 2.0 * jnp.pi), prey.angle
        ),
        gait=jnp.where(newborn, _draw_gait(k_gait, shape, params), prey.gait),
        age=jnp.where(newborn, 0, prey.age),
        cloud=jnp.where(newborn, slot_cloud, prey.cloud),
        alive=alive | newborn,
    )


def alive_count(prey: PreyState):
    """Number of live prey (int32 [])."""
    return jnp.sum(prey.alive.astype(jnp.int32))
