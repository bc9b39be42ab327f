"""Damped motion and walls, and the sub-step loop that composes the subsystems.

Motion model (SPEC 4.1): per sub-step, impulses (kicks) change velocities,
then x <- x + v dt, then v <- v d. An impulse meant to move a body L px is a
velocity change of L (1 - d) / dt. :func:`integrate_step` runs the
``n_substeps`` sub-steps of one step over typed entity pytrees
(``FishState``, ``PreyState``, ``PredatorState``, the contact record
:class:`~simfish.world.contacts.Contacts`). Per-step decisions (turns,
gaits, escape times, spawning) are made before the loop by the subsystem
modules, so the loops themselves draw no random numbers.

The fish and the predator do not depend on the prey (the fish is treated as
immovable in prey contacts), so a step runs in two loops:

1. :func:`fish_loop`: the fish (motion, turning, its whole body at the
   walls, :mod:`simfish.world.walls`) and the predator (its line, catch,
   arrival), recording the fish's pose after every sub-step
   (:class:`FishPath`). A fish away from the walls with no predator about
   moves by pure damping, in closed form instead (:func:`coast_fish`);
   batched worlds run the loop only for the others, pooled;
2. :func:`prey_loop`: the prey that may interact with the fish (motion,
   sliding walls, body contacts, capture, push-out) against that recorded
   pose, in chunks of ``static.n_near_prey``. The other prey coast in closed
   form (:func:`coast`), which gives the same motion. Chunks are
   independent except for the one-meal-per-step rule, which
   :func:`integrate_step` resolves exactly. Prey do not collide with one
   another or with the predator.
"""

from __future__ import annotations

import functools
import math

import chex
import jax
import jax.numpy as jnp

from simfish.world import contacts as contacts_lib
from simfish.world import walls as walls_lib
from simfish.world.contacts import CONTACT_SLOP, Contacts
from simfish.world.params import CHUNK_LANES, EnvParams, StaticParams
from simfish.world.prey import PreyPlan
from simfish.world.state import FishState, PredatorState, PreyState
from simfish.world.types import pytree_dataclass

__all__ = [
    "CONTACT_SLOP",
    "Bout",
    "PredatorLine",
    "bounce",
    "FishPath",
    "coast",
    "slide",
    "fish_substep",
    "impulse_speed",
    "integrate_step",
]


def impulse_speed(distance_px, params: EnvParams):
    """Initial speed (px/s) that makes a damped body travel ``distance_px`` in total."""
    return distance_px * (1.0 - params.damping) / params.dt


@pytree_dataclass
class Bout:
    """The fish's per-step decisions that the sub-steps use.

    Attributes:
      cos, sin: [] heading of the fish at the start of the step (after its
        turn); walls may turn it within the step (see :class:`FishPath`).
      capture: [] bool, the bout is a capture bout.
    """

    cos: jnp.ndarray
    sin: jnp.ndarray
    capture: jnp.ndarray


@pytree_dataclass
class PredatorLine:
    """The predator's straight path to its target during one step.

    The predator spawns at rest aimed at its target, so steering towards the
    target never changes its heading: its centre is (x0, y0) + (ex, ey) s,
    with s the distance travelled this step. It arrives when its position
    rounds to the target's, i.e. within half a pixel (s >= goal).

    Attributes:
      x0, y0: [] start of the step.  ex, ey: [] unit direction.
      goal: [] distance at which it arrives.  can_catch: [] bool, immunity is over.
    """

    x0: jnp.ndarray
    y0: jnp.ndarray
    ex: jnp.ndarray
    ey: jnp.ndarray
    goal: jnp.ndarray
    can_catch: jnp.ndarray


@pytree_dataclass
class PredatorTrack:
    """The predator inside the loop: distance ``s`` and speed ``sv`` along its line, presence."""

    s: jnp.ndarray
    sv: jnp.ndarray
    present: jnp.ndarray


@pytree_dataclass
class FishPath:
    """The fish's pose after each sub-step of a step: what prey meet in :func:`prey_loop`.

    Attributes:
      x, y: [n] mouth centre (px).  vx, vy: [n] velocity (px/s).
      c, s: [n] heading (cos, sin).
    """

    x: jnp.ndarray
    y: jnp.ndarray
    vx: jnp.ndarray
    vy: jnp.ndarray
    c: jnp.ndarray
    s: jnp.ndarray


@pytree_dataclass
class FishOutcome:
    """What :func:`fish_loop` returns besides the path.

    Attributes:
      fish: the fish after the step (not yet clamped).  predator: the predator's track.
      wall: [] bool, a wall touch began.
      caught, avoided: [] bool, the predator caught the fish / left without it.
    """

    fish: FishState
    predator: PredatorTrack
    wall: jnp.ndarray
    caught: jnp.ndarray
    avoided: jnp.ndarray


@pytree_dataclass
class StepInputs:
    """Everything constant over the sub-steps of one step."""

    bout: Bout
    prey: PreyPlan
    line: PredatorLine
    may_eat: jnp.ndarray  # [] or [P'] bool: captures allowed for these prey


# ---------------------------------------------------------------- walls, coasting


def bounce(x, v, h, lo, hi):
    """Reflects positions ``x`` off walls at ``lo`` and ``hi`` (velocity and heading flip)."""
    below = x < lo
    above = x > hi
    hit = below | above
    x = jnp.where(below, 2.0 * lo - x, jnp.where(above, 2.0 * hi - x, x))
    x = jnp.clip(x, lo, hi)
    return x, jnp.where(hit, -v, v), jnp.where(hit, -h, h)


def slide(x, v, lo, hi):
    """Stops bodies at walls ``lo``/``hi``: inelastic and frictionless (position clamped, normal speed 0)."""
    hit = (x < lo) | (x > hi)
    return jnp.clip(x, lo, hi), jnp.where(hit, 0.0, v)


def damped_sum(d, n_substeps: int):
    """Sum of d^j for j < ``n_substeps``: a body's travel over a step in units of v0 dt."""
    return (1.0 - d**n_substeps) / (1.0 - d)


def coast(x, v, h, kick, lo, hi, params: EnvParams, n_substeps: int):
    """Closed form of ``n_substeps`` sub-steps of a body kicked by ``kick`` along ``h``.

    Per sub-step: v += kick h; x += v dt; v *= d; then :func:`slide` at the
    walls ``lo``/``hi``. Exact when the body is not kicked away from a wall
    it reaches (see :func:`wall_ambiguous`): it then stays on the wall with
    no normal speed. Shapes broadcast; the heading is unchanged.

    Returns:
      (x, v, h) after the step.
    """
    d = params.damping
    geo = damped_sum(d, n_substeps)
    a = kick * h
    x = x + params.dt * (v * geo + a * (n_substeps - d * geo) / (1.0 - d))
    v = v * d**n_substeps + a * d * geo
    x, v = slide(x, v, lo, hi)
    return x, v, h


def travel_bound(v, a, params: EnvParams, n_substeps: int):
    """Upper bound (px) of the distance a body with speed ``v`` and kick ``a`` covers in a step."""
    d = params.damping
    geo = damped_sum(d, n_substeps)
    return params.dt * (jnp.abs(v) * geo + jnp.abs(a) * (n_substeps - d * geo) / (1.0 - d))


def wall_ambiguous(x, v, a, lo, hi, params: EnvParams, n_substeps: int):
    """Bodies moving towards a wall they may reach while kicked away from it ([P] bool).

    Only those can hit a wall and come back within a step, which the closed
    form does not follow; they go through the sub-step loop.
    """
    reach = travel_bound(v, 0.0, params, n_substeps) + 1.0
    to_hi = (v > 0.0) & (a < 0.0) & (x + reach >= hi)
    to_lo = (v < 0.0) & (a > 0.0) & (x - reach <= lo)
    return to_hi | to_lo


# ---------------------------------------------------------------- sub-step stages


def fish_substep(fish: FishState, c, s, params: EnvParams):
    """Fish: move and turn, the mouth's wall handler, damp, whole-body wall contacts.

    The order of a pymunk step: positions, then collision callbacks, then
    damping, then the contact solver (:mod:`simfish.world.walls`).

    Args:
      fish: the fish before the sub-step; c, s: [] its heading (cos, sin of ``fish.angle``).

    Returns:
      (fish, c, s, touched): the fish and its heading after the sub-step
      (a bouncing wall's turn by pi included); whether a wall touch began
      ([] bool).
    """
    d, dt = params.damping, params.dt
    spin = fish.omega * dt
    c, s = walls_lib.rotate(c, s, spin)
    x, y, vx, vy, c, s, at_wall, touched, turned = walls_lib.mouth_handler(
        fish.x + fish.vx * dt, fish.y + fish.vy * dt, fish.vx, fish.vy, c, s,
        fish.mouth_at_wall, params,
    )
    x, y, vx, vy, omega, push_turn = walls_lib.solve_contacts_if_near(
        x, y, vx * d, vy * d, fish.omega * d, c, s, params
    )
    c, s = walls_lib.rotate(c, s, push_turn)
    turn = spin + push_turn + jnp.where(turned, jnp.pi, 0.0).astype(jnp.float32)
    fish = fish.replace(
        x=x, y=y, vx=vx, vy=vy, angle=fish.angle + turn, omega=omega, mouth_at_wall=at_wall
    )
    return fish, c, s, touched


def prey_substep(k, prey: PreyState, contacts: Contacts, plan: PreyPlan, params: EnvParams):
    """Prey: kicks (gait, escape, contact jump), move, damp, sliding walls."""
    d, dt = params.damping, params.dt
    jump_kick = params.velocity_jump * (1.0 - d)
    escape = contacts.near & ((k == plan.escape_t1) | (k == plan.escape_t2))
    kick = plan.gait_kick + jnp.where(escape | contacts.jump, jump_kick, 0.0)
    vx = prey.vx + kick * plan.hx
    vy = prey.vy + kick * plan.hy
    x, vx = slide(prey.x + vx * dt, vx * d, plan.lo_x, plan.hi_x)
    y, vy = slide(prey.y + vy * dt, vy * d, plan.lo_y, plan.hi_y)
    return _live_only(prey, x, y, vx, vy)


def _live_only(prey: PreyState, x, y, vx, vy) -> PreyState:
    """The prey with the new motion for live prey; dead (eaten) prey stay where they are."""
    a = prey.alive
    return prey.replace(
        x=jnp.where(a, x, prey.x),
        y=jnp.where(a, y, prey.y),
        vx=jnp.where(a, vx, prey.vx),
        vy=jnp.where(a, vy, prey.vy),
    )


def fish_prey_contacts(k, fish, prey: PreyState, contacts: Contacts, c, s, bout, may_eat, params):
    """Body contacts, capture and push-out of the prey. Returns (prey, contacts)."""
    hits = contacts_lib.body_hits(fish.x, fish.y, c, s, prey.x, prey.y, prey.alive, params)
    eaten = contacts_lib.capture(hits, contacts, k, bout.capture & may_eat, params)
    pushed = hits.any & ~eaten
    nx, ny, depth = contacts_lib.contact_normal(hits, c, s, params)
    px, py, pvx, pvy = contacts_lib.push_out(
        prey.x, prey.y, prey.vx, prey.vy, fish.vx, fish.vy, pushed, nx, ny, depth
    )
    prey = prey.replace(x=px, y=py, vx=pvx, vy=pvy, alive=prey.alive & ~eaten)
    return prey, contacts_lib.update_contacts(contacts, hits, eaten, pushed, k, params)


def predator_substep(track: PredatorTrack, line: PredatorLine, fish, c, s, params):
    """Predator: kick along its line, move, damp; catch or arrive.

    ``fish`` is the fish's pose (x, y []) after this sub-step, (c, s) its heading.
    Returns (track, caught, arrived), the flags [] bool.
    """
    d = params.damping
    sv = track.sv + jnp.where(track.present, params.predator_velocity * (1.0 - d), 0.0)
    dist = track.s + sv * params.dt
    sv = sv * d
    gx = line.x0 + line.ex * dist - fish.x
    gy = line.y0 + line.ey * dist - fish.y
    touch = contacts_lib.predator_touches_fish(gx, gy, c, s, params)
    caught = track.present & line.can_catch & touch
    arrived = track.present & ~caught & (dist >= line.goal)
    return PredatorTrack(s=dist, sv=sv, present=track.present & ~(caught | arrived)), caught, arrived


def fish_loop(fish: FishState, track: PredatorTrack, bout: Bout, line: PredatorLine, params,
              static):
    """The fish and the predator over the step's sub-steps: (:class:`FishOutcome`, :class:`FishPath`)."""
    false = jnp.zeros((), bool)

    def body(carry, _):
        fish, c, s, track, wall, caught, avoided = carry
        fish, c, s, touched = fish_substep(fish, c, s, params)
        if static.predator_enabled:
            track, got, arrived = predator_substep(track, line, fish, c, s, params)
            caught, avoided = caught | got, avoided | arrived
        carry = (fish, c, s, track, wall | touched, caught, avoided)
        return carry, FishPath(x=fish.x, y=fish.y, vx=fish.vx, vy=fish.vy, c=c, s=s)

    init = (fish, bout.cos, bout.sin, track, false, false, false)
    (fish, _, _, track, wall, caught, avoided), path = jax.lax.scan(
        body, init, None, length=static.n_substeps
    )
    outcome = FishOutcome(
        fish=fish, predator=track, wall=wall, caught=caught, avoided=avoided
    )
    return outcome, path


def fish_is_free(fish: FishState, track: PredatorTrack, params, static):
    """Whether :func:`coast_fish` gives what :func:`fish_loop` gives ([] bool).

    The fish moves freely when no predator is present and no wall can touch
    it during the step. Between walls its sub-steps are pure damping, so its
    positions lie on the segment from where it starts to where it would
    coast; :func:`~simfish.world.walls.clear_of_walls` holds on a rectangle,
    so it holds along the whole segment when it holds at both ends (its
    one-pixel margin covers the rounding between the loop and the closed form).
    """
    geo = damped_sum(params.damping, static.n_substeps)
    end_x = fish.x + fish.vx * params.dt * geo
    end_y = fish.y + fish.vy * params.dt * geo
    clear = walls_lib.clear_of_walls(fish.x, fish.y, params) & walls_lib.clear_of_walls(
        end_x, end_y, params
    )
    if static.predator_enabled:
        clear = clear & ~track.present
    return clear


def coast_fish(fish: FishState, track: PredatorTrack, bout: Bout, params, static):
    """:func:`fish_loop` in closed form for a fish that :func:`fish_is_free`.

    Sub-step k (1-based) leaves the fish at x0 + v0 dt g_k with velocity
    v0 d^k and heading turned by omega0 dt g_k, where g_k = (1 - d^k) / (1 - d);
    the absent predator's track coasts the same way. The results agree with
    the loop's to float32 rounding (the loop adds its 100 sub-steps one by
    one and turns the heading by a Taylor series each time).
    """
    n, d, dt = static.n_substeps, params.damping, params.dt
    dk = d ** jnp.arange(1, n + 1, dtype=jnp.float32)  # [n]
    geo = (1.0 - dk) / (1.0 - d)
    turn = fish.omega * dt * geo
    ct, st = jnp.cos(turn), jnp.sin(turn)
    path = FishPath(
        x=fish.x + fish.vx * dt * geo, y=fish.y + fish.vy * dt * geo,
        vx=fish.vx * dk, vy=fish.vy * dk,
        c=bout.cos * ct - bout.sin * st, s=bout.sin * ct + bout.cos * st,
    )
    false = jnp.zeros((), bool)
    fish = fish.replace(
        x=path.x[-1], y=path.y[-1], vx=path.vx[-1], vy=path.vy[-1],
        angle=fish.angle + turn[-1], omega=fish.omega * dk[-1], mouth_at_wall=false,
    )
    if static.predator_enabled:
        track = track.replace(s=track.s + track.sv * dt * geo[-1], sv=track.sv * dk[-1])
    outcome = FishOutcome(fish=fish, predator=track, wall=false, caught=false, avoided=false)
    return outcome, path


def prey_substep_all(k, prey: PreyState, contacts: Contacts, pose: FishPath, inputs, params):
    """One sub-step of the prey against the fish's pose: motion, contacts, walls."""
    # Prey: kicks, move, damp, sliding walls.
    moved = prey_substep(k, prey, contacts, inputs.prey, params)
    # Contacts with the fish's body: capture, else an elastic push-out.
    moved, contacts = fish_prey_contacts(
        k, pose, moved, contacts, pose.c, pose.s, inputs.bout, inputs.may_eat, params
    )
    # A push-out never leaves a prey beyond its walls.
    plan = inputs.prey
    px, pvx = slide(moved.x, moved.vx, plan.lo_x, plan.hi_x)
    py, pvy = slide(moved.y, moved.vy, plan.lo_y, plan.hi_y)
    return moved.replace(x=px, y=py, vx=pvx, vy=pvy), contacts


# ---------------------------------------------------------------- the step


def predator_line(predator: PredatorState, can_catch) -> tuple[PredatorLine, PredatorTrack]:
    """The predator's line to its target and its starting track."""
    f32 = jnp.float32
    x0, y0 = jnp.asarray(predator.x, f32), jnp.asarray(predator.y, f32)
    ex = predator.target_x - x0
    ey = predator.target_y - y0
    dist = jnp.sqrt(ex * ex + ey * ey)
    ex = jnp.where(dist > 0.0, ex / jnp.maximum(dist, 1e-6), 1.0)
    ey = jnp.where(dist > 0.0, ey / jnp.maximum(dist, 1e-6), 0.0)
    line = PredatorLine(x0=x0, y0=y0, ex=ex, ey=ey, goal=dist - 0.5, can_catch=can_catch)
    sv = jnp.asarray(predator.vx, f32) * ex + jnp.asarray(predator.vy, f32) * ey
    track = PredatorTrack(s=jnp.zeros((), f32), sv=sv, present=jnp.asarray(predator.present))
    return line, track


def predator_after(predator: PredatorState, line: PredatorLine, track, contacts, params):
    """The predator back in the plane; leaving the arena also ends an attack."""
    x = line.x0 + line.ex * track.s
    y = line.y0 + line.ey * track.s
    left = track.present & (
        (x < 0.0) | (x > params.width) | (y < 0.0) | (y > params.height)
    )
    predator = predator.replace(
        x=x, y=y, vx=line.ex * track.sv, vy=line.ey * track.sv, present=track.present & ~left
    )
    return predator, contacts.replace(avoided=contacts.avoided | left)


def prey_loop(fish: FishState, path: FishPath, prey, inputs: StepInputs, params, static):
    """Runs the sub-steps for the given prey [P'] against the fish's path: (prey, contacts)."""
    b = inputs.bout
    contacts = contacts_lib.start_contacts(
        fish, b.cos, b.sin, prey.x, prey.y, prey.alive, static.n_substeps, params
    )

    def body(carry, xs):
        k, pose = xs
        return prey_substep_all(k, *carry, pose, inputs, params), None

    steps = jnp.arange(static.n_substeps, dtype=jnp.int32)
    (prey, contacts), _ = jax.lax.scan(body, (prey, contacts), (steps, path))
    return prey, contacts


def interacting(fish: FishState, path: FishPath, prey: PreyState, plan: PreyPlan, params, static):
    """Live prey [P] that must go through the sub-step loop.

    Those that may come within sensing or body distance of the fish's path
    during the step (the box around the path, widened by the larger of the
    sensing distance and the body length and by the prey's own path), and
    those whose wall contact the closed form does not follow
    (:func:`wall_ambiguous`).
    """
    n = static.n_substeps
    lo_x = jnp.minimum(fish.x, jnp.min(path.x))
    hi_x = jnp.maximum(fish.x, jnp.max(path.x))
    lo_y = jnp.minimum(fish.y, jnp.min(path.y))
    hi_y = jnp.maximum(fish.y, jnp.max(path.y))
    body = params.head_radius + params.tail_length + params.prey_radius
    reach = jnp.maximum(params.sensing_distance, body)
    prey_speed = jnp.sqrt(prey.vx * prey.vx + prey.vy * prey.vy)
    reach = reach + travel_bound(prey_speed, plan.gait_kick, params, n) + 1.0
    dx = jnp.maximum(jnp.maximum(lo_x - prey.x, prey.x - hi_x), 0.0)
    dy = jnp.maximum(jnp.maximum(lo_y - prey.y, prey.y - hi_y), 0.0)
    ax, ay = plan.gait_kick * plan.hx, plan.gait_kick * plan.hy
    ambiguous = wall_ambiguous(prey.x, prey.vx, ax, plan.lo_x, plan.hi_x, params, n) | (
        wall_ambiguous(prey.y, prey.vy, ay, plan.lo_y, plan.hi_y, params, n)
    )
    return prey.alive & ((dx * dx + dy * dy <= reach * reach) | ambiguous)


def integrate_step(
    fish: FishState,
    prey: PreyState,
    predator: PredatorState,
    prey_plan: PreyPlan,
    bout: Bout,
    predator_can_catch,
    params: EnvParams,
    static: StaticParams,
) -> tuple[FishState, PreyState, PredatorState, Contacts]:
    """Integrates one step of ``static.n_substeps`` damped sub-steps.

    The prey that may interact with the fish (:func:`interacting`) go
    through the detailed loop in chunks of ``static.n_near_prey`` (one chunk
    unless they are unusually many); the others coast in closed form. The
    result is that of running every prey through the loop.

    Args:
      fish: the fish after its bout impulse (scalars []).
      prey: the prey ([P] fields) after their per-step decisions.
      predator: the predator (maybe just spawned).
      prey_plan: the prey's per-step :class:`PreyPlan` ([P] fields).
      bout: the fish's :class:`Bout`.
      predator_can_catch: [] bool, the immunity period is over.
      params, static: world parameters.

    Returns:
      (fish, prey, predator, contacts) after the step: the fish clamped into
      the arena, with the heading and angular velocity the walls left it
      (its angular velocity carries over to the next step, damped every
      sub-step, as a pymunk body's does); prey angles unchanged (walls do
      not turn prey).
    """
    chex.assert_rank([fish.x, fish.y, fish.vx, fish.vy, bout.cos, bout.capture], 0)
    chex.assert_rank([prey.x, prey.y, prey.vx, prey.vy, prey.alive, prey_plan.hx], 1)
    chex.assert_type([prey.x, prey_plan.gait_kick], jnp.float32)
    f32 = jnp.float32
    names = ("x", "y", "vx", "vy", "angle", "omega")
    fish = fish.replace(**{n: jnp.asarray(getattr(fish, n), f32) for n in names})
    line, track = predator_line(predator, predator_can_catch)
    inputs = StepInputs(bout=bout, prey=prey_plan, line=line, may_eat=jnp.ones((), bool))
    outcome, path = _fish_phase(static)(fish, track, bout, line, params)
    if static.n_near_prey >= prey.x.shape[-1]:
        new_prey, contacts = prey_loop(fish, path, prey, inputs, params, static)
    else:
        new_prey, contacts = _prey_phase(static)(fish, path, prey, inputs, params)
    contacts = contacts.replace(
        wall=outcome.wall, caught=outcome.caught, avoided=outcome.avoided
    )
    return finish_step(outcome, new_prey, contacts, predator, line, params)


def _run_chunk(start, order, count, prey, full, fish, path, inputs, may_eat, params, static):
    """Runs the prey loop for ``order[start:start + K]`` and writes the valid rows into ``full``.

    Returns (the chunk's contacts, updated full prey, the chunk's meal (sub-step, index)).
    """
    k = static.n_near_prey
    idx = jax.lax.dynamic_slice_in_dim(order, start, k)
    valid = start + jnp.arange(k) < count
    take = lambda tree: jax.tree_util.tree_map(lambda a: a[idx], tree)  # noqa: E731
    chunk_inputs = inputs.replace(prey=take(inputs.prey), may_eat=may_eat & valid)
    part, contacts = prey_loop(fish, path, take(prey), chunk_inputs, params, static)

    # Padding rows (beyond ``count``) are dropped: only valid rows are written.
    dest = jnp.where(valid, idx, prey.x.shape[-1])
    full = jax.tree_util.tree_map(lambda f, p: f.at[dest].set(p, mode="drop"), full, part)
    eaten = valid & take(prey.alive) & ~part.alive
    meal_index = jnp.where(jnp.any(eaten), idx[jnp.argmax(eaten)], prey.x.shape[-1])
    return contacts, full, (contacts.meal_substep, meal_index)


def _step_contacts(k, static, n_eaten=0, meal_substep=None) -> Contacts:
    """The contacts that the chunked loop returns: the step's meal, nothing per prey.

    Only the step-wide fields are read after the loop (:func:`integrate_step`
    fills in the fish's wall touch and the predator's outcome); the per-prey
    fields ([k], all False) keep the shape of one chunk's record.
    """
    false = jnp.zeros((k,), bool)
    meal = static.n_substeps if meal_substep is None else meal_substep
    return Contacts(
        mouth=false, near=false, touched=false, jump=false, wall=jnp.zeros((), bool),
        n_eaten=jnp.asarray(n_eaten, jnp.int32),
        meal_substep=jnp.asarray(meal, jnp.int32),
        caught=jnp.zeros((), bool), avoided=jnp.zeros((), bool),
    )


def _no_chunk(full, k, n_prey, static):
    """What :func:`_run_chunk` gives for a chunk without a valid row: no change, no meal."""
    contacts = _step_contacts(k, static)
    return contacts, full, (contacts.meal_substep, jnp.asarray(n_prey, jnp.int32))


#: Positions per block of :func:`_running_count`'s matrix products.
COUNT_BLOCK = 128


def _running_count(selected):
    """``jnp.cumsum(selected)`` for a bool [n]: int32 [n], from two small matrix products.

    XLA on CPU makes a cumulative sum about log2(n) passes over the array and
    fuses whatever computed ``selected`` into each of them (2 ms per step for
    the 61,440 (world, prey) pairs of 512 worlds). Matrix products read
    ``selected`` once: a running count within blocks of ``COUNT_BLOCK``
    positions, then one over the blocks' totals. Exact: sums of zeros and ones
    below 2**24 in float32.
    """
    n = selected.shape[-1]
    if n == 0:
        return jnp.zeros((0,), jnp.int32)
    size = min(COUNT_BLOCK, n)
    blocks = -(-n // size)
    x = jnp.pad(selected.astype(jnp.float32), (0, blocks * size - n)).reshape(blocks, size)
    def upper(m: int, strict: int) -> jax.Array:
        # Triangular [m, m] from iotas: an array constant would be captured by the
        # custom_vmap of _prey_phase, as in _chunked.
        return (jnp.arange(m)[:, None] + strict <= jnp.arange(m)[None, :]).astype(jnp.float32)

    highest = jax.lax.Precision.HIGHEST
    within = jnp.dot(x, upper(size, 0), precision=highest)
    before = jnp.dot(within[:, -1], upper(blocks, 1), precision=highest)
    return (within + before[:, None]).reshape(-1)[:n].astype(jnp.int32)


def _selected_in_order(selected, pad: int):
    """The indices where ``selected`` [n] is True, in increasing order: (order, count).

    ``order`` [n + pad] int32 holds them first, then zeros, so that a slice of
    ``pad`` rows from any start below ``count`` stays in bounds; it is a running
    count and a scatter, much cheaper than a sort.
    """
    n = selected.shape[-1]
    index = jnp.arange(n, dtype=jnp.int32)
    running = _running_count(selected)
    # Read the selection back from the count (a step up where selected), not from
    # ``selected``: XLA would fuse the test that made it into each use again.
    chosen = running > jnp.concatenate([jnp.zeros((1,), jnp.int32), running[:-1]])
    slot = jnp.where(chosen, running - 1, n + pad + index)
    order = jnp.zeros((n + pad,), jnp.int32).at[slot].set(index, mode="drop", unique_indices=True)
    return order, running[-1] if n else jnp.zeros((), jnp.int32)


def _chunked(fish, path, prey, inputs: StepInputs, params, static):
    """The prey loop over the interacting prey in chunks, the rest coasted: (prey, contacts).

    Chunks run independently (each with its own capture window); the step's
    meal is the earliest (sub-step, then lowest index) of the chunks' meals,
    and the chunks whose meal lost are run again without capture, which is
    exactly what one loop over all prey does. A while loop adds chunks only
    when needed, so the usual cost is one chunk; for one world (no ``vmap``)
    a step without interacting prey (about half of them on ``normal``, nine
    in ten on ``sparse``) runs none.
    """
    k, n_prey = static.n_near_prey, prey.x.shape[-1]
    needs = interacting(fish, path, prey, inputs.prey, params, static)
    # The interacting prey in increasing order (ties in a meal go to the lowest index).
    order, count = _selected_in_order(needs, k)
    full = coast_prey(prey, inputs.prey, params, static)
    args = (order, count, prey)
    run = functools.partial(_run_chunk, fish=fish, path=path, inputs=inputs, params=params,
                            static=static)
    _, full, best = jax.lax.cond(
        count > 0,
        lambda full: run(0, *args, full, may_eat=True),
        lambda full: _no_chunk(full, k, n_prey, static),
        full,
    )
    n_chunks = (n_prey + k - 1) // k
    # (Built from scalars: an array constant here would be captured by _prey_phase's
    # custom_vmap, which vmap's lax.cond then batches, and custom_vmap refuses.)
    no_meal = jnp.stack([jnp.full((n_chunks,), static.n_substeps, jnp.int32),
                         jnp.full((n_chunks,), n_prey, jnp.int32)], axis=1)
    meals = no_meal.at[0].set(jnp.stack(best))

    def more(carry):
        c, full, meals = carry
        _, full, meal = run(c * k, *args, full, may_eat=True)
        return c + 1, full, meals.at[c].set(jnp.stack(meal))

    _, full, meals = jax.lax.while_loop(lambda c: c[0] * k < count, more, (1, full, meals))
    # The step's meal, then the chunks whose meal lost it, again without capture.
    key = meals[:, 0] * (n_prey + 1) + meals[:, 1]
    winner = jnp.argmin(key)
    lost = (meals[:, 1] < n_prey) & (jnp.arange(n_chunks) != winner)

    def redo(carry):
        lost, full = carry
        c = jnp.argmax(lost)
        _, full, _ = run(c * k, *args, full, may_eat=False)
        return lost.at[c].set(False), full

    _, full = jax.lax.while_loop(lambda c: jnp.any(c[0]), redo, (lost, full))
    ate = meals[winner, 1] < n_prey
    return full, _step_contacts(k, static, ate.astype(jnp.int32), meals[winner, 0])


def _prey_phase(static: StaticParams):
    """The prey loop of one world (:func:`_chunked`), pooled across worlds under ``vmap``.

    Called as ``_prey_phase(static)(fish, path, prey, inputs, params)``. For
    one world it is :func:`_chunked`. Under ``vmap`` a while loop over one
    world's chunks runs as often as the busiest world needs, and every world
    computes every chunk: at 256 worlds, 2,048 prey rows or more per step for
    the ~190 (``normal``) or ~60 (``sparse``) prey that do interact. The
    batching rule (:func:`_pooled`) runs those pairs instead, from all worlds
    together, with the same arithmetic per prey.
    """

    @jax.custom_batching.custom_vmap
    def phase(fish, path, prey, inputs, params):
        return _chunked(fish, path, prey, inputs, params, static)

    phase.def_vmap(_pooling_rule(_pooled, static))
    return phase


def _pooling_rule(pooled, static: StaticParams):
    """A ``custom_vmap`` batching rule that hands the whole batch of worlds to ``pooled``.

    The wrapped function's arguments are world pytrees and, last, the
    parameters; ``pooled(*worlds, params, params_batched, static)`` gets the
    worlds with a leading world axis (unbatched ones broadcast) and the
    parameters as they come, shared or per world (``vmap``'s ``lax.cond``
    passes them batched, as it does every operand of a branch). With worlds
    spread over several devices (``VectorEnv``'s world sharding holds
    contiguous blocks) each device's block is pooled on its own, which keeps
    every gather on its device.
    """

    def rule(axis_size, in_batched, *args):
        spread = lambda x, b: x if b else jnp.broadcast_to(x, (axis_size, *jnp.shape(x)))  # noqa: E731
        *worlds, params = args
        params_batched = in_batched[-1]
        worlds = jax.tree_util.tree_map(spread, tuple(worlds), tuple(in_batched[:-1]))
        groups = jax.local_device_count()
        if groups > 1 and axis_size % groups == 0:
            split = lambda a: a.reshape((groups, axis_size // groups, *a.shape[1:]))  # noqa: E731
            p_axes = jax.tree_util.tree_map(lambda b: 0 if b else None, params_batched)
            grouped = jax.tree_util.tree_map(
                lambda a, b: split(a) if b else a, params, params_batched)
            out = jax.vmap(lambda w, p: pooled(*w, p, params_batched, static),
                           in_axes=(0, p_axes))(jax.tree_util.tree_map(split, worlds), grouped)
            out = jax.tree_util.tree_map(lambda a: a.reshape((axis_size, *a.shape[2:])), out)
        else:
            out = pooled(*worlds, params, params_batched, static)
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return rule


def _fish_phase(static: StaticParams):
    """The fish loop of one world, in closed form when the fish moves freely; pooled under ``vmap``.

    Called as ``_fish_phase(static)(fish, track, bout, line, params)``; gives
    what :func:`fish_loop` gives. For one world a fish that
    :func:`fish_is_free` (away from the walls, no predator: 65-78 % of
    steps under random play on ``normal``) skips the loop for
    :func:`coast_fish`. Under ``vmap`` that branch would become a select that
    runs the loop for every world; the batching rule (:func:`_fish_pooled`)
    coasts every world and runs the loop for the others only.
    """

    @jax.custom_batching.custom_vmap
    def phase(fish, track, bout, line, params):
        return jax.lax.cond(
            fish_is_free(fish, track, params, static),
            lambda: coast_fish(fish, track, bout, params, static),
            lambda: fish_loop(fish, track, bout, line, params, static),
        )

    phase.def_vmap(_pooling_rule(_fish_pooled, static))
    return phase


#: Worlds per pass of :func:`_fish_pooled`, as a fraction of the batch (rounded
#: up to ``CHUNK_LANES``). Under random play on ``normal`` 22-35 % of the
#: worlds are near a wall or under attack in a step (at most 41 % of 256).
FISH_POOL_FRACTION = 0.375


def _fish_pooled(fish, track, bout, line, params, params_batched, static):
    """:func:`_fish_phase` for a batch of worlds: every fish coasted, the loop for those not free.

    The worlds whose fish is not :func:`fish_is_free` go through
    :func:`fish_loop` ``FISH_POOL_FRACTION`` of the batch at a time, and
    their outcome and path replace the closed form's. Inputs and outputs
    carry a leading world axis, and so do the leaves of ``params`` marked
    True in ``params_batched``.
    """
    batch = fish.x.shape[0]
    pool = min(batch, _whole_lanes(batch * FISH_POOL_FRACTION))
    tree_map = jax.tree_util.tree_map
    p_axes = tree_map(lambda b: 0 if b else None, params_batched)
    free = jax.vmap(lambda f, t, p: fish_is_free(f, t, p, static), in_axes=(0, 0, p_axes))(
        fish, track, params)
    coasted = jax.vmap(lambda f, t, b, p: coast_fish(f, t, b, p, static),
                       in_axes=(0, 0, 0, p_axes))(fish, track, bout, params)
    order, count = _selected_in_order(~free, pool)

    def body(carry):
        start, out = carry
        idx = jax.lax.dynamic_slice_in_dim(order, start, pool)
        valid = start + jnp.arange(pool) < count
        at = lambda tree: tree_map(lambda a: a[idx], tree)  # noqa: E731
        pool_params = tree_map(lambda a, b: a[idx] if b else a, params, params_batched)
        part = jax.vmap(lambda f, t, b, ln, p: fish_loop(f, t, b, ln, p, static),
                        in_axes=(0, 0, 0, 0, p_axes))(
            at(fish), at(track), at(bout), at(line), pool_params)
        dest = jnp.where(valid, idx, batch)
        out = tree_map(lambda o, q: o.at[dest].set(q, mode="drop"), out, part)
        return start + pool, out

    _, out = jax.lax.while_loop(lambda c: c[0] < count, body, (jnp.zeros((), jnp.int32), coasted))
    return out


#: Prey-world pairs per pass of :func:`_pooled`, per world (rounded up to
#: ``CHUNK_LANES``): one pair per world covers the ~0.75 (``normal``) and
#: ~0.25 (``sparse``) interacting prey per world of random play in one pass.
POOL_PAIRS_PER_WORLD = 1.0


def _whole_lanes(rows: float) -> int:
    """``rows`` rounded up to a positive multiple of ``CHUNK_LANES`` (a pool's size)."""
    return CHUNK_LANES * max(1, math.ceil(rows / CHUNK_LANES))


def _pool_size(batch: int, n_prey: int) -> int:
    return min(_whole_lanes(batch * POOL_PAIRS_PER_WORLD), batch * n_prey)


def _pooled(fish, path, prey, inputs: StepInputs, params, params_batched, static):
    """:func:`_chunked` for a batch of worlds, the interacting prey of all worlds pooled.

    Every interacting (world, prey) pair goes through the sub-step loop on
    its own, ``_pool_size`` pairs per pass, against its world's fish path,
    with captures allowed; the others coast. Each world's meal is then the
    earliest (sub-step, then lowest index) of its pairs' meals, and the pairs
    whose meal lost are run again without capture: exactly what
    :func:`_chunked` does with chunks of one prey, which is what one loop
    over all prey does. Inputs and outputs carry a leading world axis, and
    so do the leaves of ``params`` marked True in ``params_batched``.
    """
    batch, n_prey = prey.x.shape
    size, n_sub = batch * n_prey, static.n_substeps
    pool = _pool_size(batch, n_prey)
    tree_map = jax.tree_util.tree_map
    p_axes = tree_map(lambda b: 0 if b else None, params_batched)
    needs = jax.vmap(lambda f, pa, pr, pl, p: interacting(f, pa, pr, pl, p, static),
                     in_axes=(0, 0, 0, 0, p_axes))(fish, path, prey, inputs.prey, params)
    full = jax.vmap(lambda pr, pl, p: coast_prey(pr, pl, p, static), in_axes=(0, 0, p_axes))(
        prey, inputs.prey, params
    )
    flat = lambda tree: tree_map(lambda a: a.reshape((size, *a.shape[2:])), tree)  # noqa: E731
    prey_f, plan_f = flat(prey), flat(inputs.prey)
    no_meal = n_sub * (n_prey + 1)  # larger than every meal's key

    def one_pair(f, pth, bout, line, pr, plan, may_eat, p):
        row = lambda tree: tree_map(lambda a: a[None], tree)  # noqa: E731
        pair_inputs = StepInputs(bout=bout, prey=row(plan), line=line, may_eat=may_eat)
        part, contacts = prey_loop(f, pth, row(pr), pair_inputs, p, static)
        return tree_map(lambda a: a[0], part), contacts.meal_substep

    def run_pairs(selected, full_f, may_eat: bool):
        """Runs every selected pair, ``pool`` at a time: (full_f, meal keys [size])."""
        order, count = _selected_in_order(selected, pool)

        def body(carry):
            start, full_f, keys = carry
            idx = jax.lax.dynamic_slice_in_dim(order, start, pool)
            valid = start + jnp.arange(pool) < count
            world, row = idx // n_prey, idx % n_prey
            at = lambda tree, i: tree_map(lambda a: a[i], tree)  # noqa: E731
            pair_params = tree_map(lambda a, b: a[world] if b else a, params, params_batched)
            part, meal = jax.vmap(one_pair, in_axes=(0,) * 7 + (p_axes,))(
                at(fish, world), at(path, world), at(inputs.bout, world),
                at(inputs.line, world), at(prey_f, idx), at(plan_f, idx), valid & may_eat,
                pair_params,
            )
            dest = jnp.where(valid, idx, size)
            full_f = tree_map(lambda f, p: f.at[dest].set(p, mode="drop"), full_f, part)
            eaten = valid & at(prey_f.alive, idx) & ~part.alive
            key = jnp.where(eaten, meal * (n_prey + 1) + row, no_meal)
            return start + pool, full_f, keys.at[dest].set(key, mode="drop")

        keys = jnp.full((size,), no_meal, jnp.int32)
        _, full_f, keys = jax.lax.while_loop(
            lambda c: c[0] < count, body, (jnp.zeros((), jnp.int32), full_f, keys)
        )
        return full_f, keys

    full_f, keys = run_pairs(needs.reshape(size), flat(full), True)
    keys = keys.reshape(batch, n_prey)
    best = jnp.min(keys, axis=1)  # [batch]: each world's meal, if any
    lost = (keys < no_meal) & (keys != best[:, None])
    full_f = jax.lax.cond(
        jnp.any(lost), lambda f: run_pairs(lost.reshape(size), f, False)[0], lambda f: f, full_f
    )
    ate = best < no_meal
    contacts = jax.vmap(lambda e, m: _step_contacts(static.n_near_prey, static, e, m))(
        ate.astype(jnp.int32), jnp.where(ate, best // (n_prey + 1), n_sub)
    )
    new_prey = tree_map(lambda a: a.reshape((batch, n_prey, *a.shape[1:])), full_f)
    return new_prey, contacts


def coast_prey(prey: PreyState, plan: PreyPlan, params: EnvParams, static: StaticParams):
    """Every prey coasted in closed form over the step."""
    n = static.n_substeps
    x, vx, _ = coast(prey.x, prey.vx, plan.hx, plan.gait_kick, plan.lo_x, plan.hi_x, params, n)
    y, vy, _ = coast(prey.y, prey.vy, plan.hy, plan.gait_kick, plan.lo_y, plan.hi_y, params, n)
    return _live_only(prey, x, y, vx, vy)


def finish_step(outcome: FishOutcome, prey, contacts, predator, line, params):
    """The entities after the loops: fish clamped into the arena, predator back in the plane."""
    fish = outcome.fish
    fish = fish.replace(
        x=jnp.clip(fish.x, 0.0, params.width), y=jnp.clip(fish.y, 0.0, params.height)
    )
    predator, contacts = predator_after(predator, line, outcome.predator, contacts, params)
    return fish, prey, predator, contacts
