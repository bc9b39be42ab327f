"""Damped motion and walls, and the sub-step loop that composes the subsystems.

Motion model (SPEC 4.1): per sub-step, impulses (kicks) change velocities,
then x <- x + v dt, then v <- v d. An impulse meant to move a body L px is a
velocity change of L (1 - d) / dt. :func:`integrate_step` runs the
``n_substeps`` sub-steps of one step over typed entity pytrees
(``FishState``, ``PreyState``, ``PredatorState``, the contact record
:class:`~simfish.world.contacts.Contacts`); each sub-step is a fixed
sequence of small stages (fish motion and walls, prey motion and walls,
body contacts, capture, push-out, predator). Per-step decisions (turns,
gaits, escape times, spawning) are made before the loop by the subsystem
modules, so the loop itself draws no random numbers.

Only prey that may interact with the fish during the step (or whose wall
contact the closed form cannot resolve) go through the loop, in chunks of
``static.n_near_prey``; the others coast in closed form (:func:`coast`),
which gives the same motion. The fish and the predator do not depend on the
prey (the fish is treated as immovable in prey contacts), so chunks are
independent except for the one-meal-per-step rule, which
:func:`integrate_step` resolves exactly. Prey do not collide with one
another or with the predator.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp

from simfish.world import contacts as contacts_lib
from simfish.world.contacts import CONTACT_SLOP, Contacts
from simfish.world.params import EnvParams, StaticParams
from simfish.world.prey import PreyPlan
from simfish.world.state import FishState, PredatorState, PreyState
from simfish.world.types import pytree_dataclass

__all__ = [
    "CONTACT_SLOP",
    "Bout",
    "PredatorLine",
    "bounce",
    "coast",
    "slide",
    "fish_walls",
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
      cos, sin: [] heading of the fish during the step (before wall turns).
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
class Substep:
    """The loop carry: the entities and the contact record."""

    fish: FishState
    prey: PreyState
    predator: PredatorTrack
    contacts: Contacts


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


def fish_walls(x, y, vx, vy, turned, params: EnvParams):
    """Stops a fish that touches a wall and puts it back inside (or bounces it).

    Returns (x, y, vx, vy, turned, touched), each [].
    """
    r = params.head_radius
    w, h = params.width, params.height
    touched = (x < r) | (x > w - r) | (y < r) | (y > h - r)
    # Normal walls: back just inside. Bouncing walls: well inside, turned around.
    margin = jnp.where(params.wall_bounce, 40.0 + params.head_radius + params.tail_length, r)
    margin_x = jnp.minimum(margin, 0.5 * w)
    margin_y = jnp.minimum(margin, 0.5 * h)
    nx = jnp.where(x < r, margin_x, jnp.where(x > w - r, w - margin_x, x))
    ny = jnp.where(y < r, margin_y, jnp.where(y > h - r, h - margin_y, y))
    x = jnp.where(touched, nx, x)
    y = jnp.where(touched, ny, y)
    vx = jnp.where(touched, 0.0, vx)
    vy = jnp.where(touched, 0.0, vy)
    turned = turned ^ (touched & params.wall_bounce)
    return x, y, vx, vy, turned, touched


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
    dn = d**n_substeps
    geo = (1.0 - dn) / (1.0 - d)  # sum of d^j, j < n
    a = kick * h
    x = x + params.dt * (v * geo + a * (n_substeps - d * geo) / (1.0 - d))
    v = v * dn + a * d * geo
    x, v = slide(x, v, lo, hi)
    return x, v, h


def travel_bound(v, a, params: EnvParams, n_substeps: int):
    """Upper bound (px) of the distance a body with speed ``v`` and kick ``a`` covers in a step."""
    d = params.damping
    geo = (1.0 - d**n_substeps) / (1.0 - d)
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


def fish_substep(fish: FishState, contacts: Contacts, params: EnvParams):
    """Fish: move, damp, walls. Returns (fish, contacts with wall touch and turn)."""
    d, dt = params.damping, params.dt
    x = fish.x + fish.vx * dt
    y = fish.y + fish.vy * dt
    x, y, vx, vy, turned, touch = fish_walls(x, y, fish.vx * d, fish.vy * d, contacts.turned, params)
    fish = fish.replace(x=x, y=y, vx=vx, vy=vy)
    return fish, contacts.replace(turned=turned, wall=contacts.wall | touch)


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


def predator_substep(track: PredatorTrack, line: PredatorLine, fish: FishState, c, s, contacts, params):
    """Predator: kick along its line, move, damp; catch or arrive. Returns (track, contacts)."""
    d = params.damping
    sv = track.sv + jnp.where(track.present, params.predator_velocity * (1.0 - d), 0.0)
    s = track.s + sv * params.dt
    sv = sv * d
    gx = line.x0 + line.ex * s - fish.x
    gy = line.y0 + line.ey * s - fish.y
    touch = contacts_lib.predator_touches_fish(gx, gy, c, s, params)
    caught = track.present & line.can_catch & touch
    arrived = track.present & ~caught & (s >= line.goal)
    contacts = contacts.replace(caught=contacts.caught | caught, avoided=contacts.avoided | arrived)
    return PredatorTrack(s=s, sv=sv, present=track.present & ~(caught | arrived)), contacts


def substep(k, carry: Substep, inputs: StepInputs, params: EnvParams, static: StaticParams):
    """One sub-step: the stages in order."""
    # Fish: move, damp, walls (a bouncing wall turns the heading around).
    fish, contacts = fish_substep(carry.fish, carry.contacts, params)
    sign = jnp.where(contacts.turned, -1.0, 1.0)
    c, s = inputs.bout.cos * sign, inputs.bout.sin * sign
    # Prey: kicks, move, damp, sliding walls.
    prey = prey_substep(k, carry.prey, carry.contacts, inputs.prey, params)
    # Contacts with the fish's body: capture, else an elastic push-out.
    prey, contacts = fish_prey_contacts(
        k, fish, prey, contacts, c, s, inputs.bout, inputs.may_eat, params
    )
    # A push-out never leaves a prey beyond its walls.
    plan = inputs.prey
    px, pvx = slide(prey.x, prey.vx, plan.lo_x, plan.hi_x)
    py, pvy = slide(prey.y, prey.vy, plan.lo_y, plan.hi_y)
    prey = prey.replace(x=px, y=py, vx=pvx, vy=pvy)
    # Predator: along its line; a touch of the whole body is a catch, else it may arrive.
    track = carry.predator
    if static.predator_enabled:
        track, contacts = predator_substep(track, inputs.line, fish, c, s, contacts, params)
    return Substep(fish=fish, prey=prey, predator=track, contacts=contacts)


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


def detailed_loop(fish, prey, track, inputs: StepInputs, params, static):
    """Runs the sub-steps for the fish, the given prey [P'] and the predator."""
    b = inputs.bout
    contacts = contacts_lib.start_contacts(
        fish, b.cos, b.sin, prey.x, prey.y, prey.alive, static.n_substeps, params
    )
    init = Substep(fish=fish, prey=prey, predator=track, contacts=contacts)
    return jax.lax.fori_loop(
        0, static.n_substeps, lambda k, c: substep(k, c, inputs, params, static), init
    )


def interacting(fish: FishState, prey: PreyState, plan: PreyPlan, params, static):
    """Live prey [P] that must go through the sub-step loop.

    Those that may come within sensing or body distance of the fish during
    the step (fish path + prey path + the larger of the sensing distance and
    the body length, with the wall jump of the fish), and those whose wall
    contact the closed form does not follow (:func:`wall_ambiguous`).
    """
    n = static.n_substeps
    travel = travel_bound(jnp.sqrt(fish.vx * fish.vx + fish.vy * fish.vy), 0.0, params, n)
    # A wall the fish may reach can put it back inside by up to the bouncing margin.
    r = params.head_radius
    near_wall = (jnp.minimum(fish.x, params.width - fish.x) <= travel + r) | (
        jnp.minimum(fish.y, params.height - fish.y) <= travel + r
    )
    wall_jump = jnp.where(near_wall, 40.0 + r + params.tail_length, 0.0)
    body = params.head_radius + params.tail_length + params.prey_radius
    reach = travel + wall_jump + jnp.maximum(params.sensing_distance, body)
    prey_speed = jnp.sqrt(prey.vx * prey.vx + prey.vy * prey.vy)
    reach = reach + travel_bound(prey_speed, plan.gait_kick, params, n) + 1.0
    d2 = (prey.x - fish.x) ** 2 + (prey.y - fish.y) ** 2
    ax, ay = plan.gait_kick * plan.hx, plan.gait_kick * plan.hy
    ambiguous = wall_ambiguous(prey.x, prey.vx, ax, plan.lo_x, plan.hi_x, params, n) | (
        wall_ambiguous(prey.y, prey.vy, ay, plan.lo_y, plan.hi_y, params, n)
    )
    return prey.alive & ((d2 <= reach * reach) | ambiguous)


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
      the arena and turned by pi if bouncing walls turned it an odd number of
      times; prey angles unchanged (walls do not turn prey).
    """
    chex.assert_rank([fish.x, fish.y, fish.vx, fish.vy, bout.cos, bout.capture], 0)
    chex.assert_rank([prey.x, prey.y, prey.vx, prey.vy, prey.alive, prey_plan.hx], 1)
    chex.assert_type([prey.x, prey_plan.gait_kick], jnp.float32)
    f32 = jnp.float32
    fish = fish.replace(**{n: jnp.asarray(getattr(fish, n), f32) for n in ("x", "y", "vx", "vy")})
    line, track = predator_line(predator, predator_can_catch)
    inputs = StepInputs(bout=bout, prey=prey_plan, line=line, may_eat=jnp.ones((), bool))
    if static.n_near_prey >= prey.x.shape[-1]:
        out = detailed_loop(fish, prey, track, inputs, params, static)
        new_prey, contacts = out.prey, out.contacts
    else:
        out, new_prey, contacts = _chunked(fish, prey, track, inputs, params, static)
    return finish_step(fish, out, new_prey, contacts, predator, line, params)


def _run_chunk(start, order, count, prey, full, fish, track, inputs, may_eat, params, static):
    """Runs the loop for ``order[start:start + K]`` and writes the valid rows into ``full``.

    Returns (loop output, updated full prey, the chunk's meal (sub-step, index)).
    """
    k = static.n_near_prey
    idx = jax.lax.dynamic_slice_in_dim(order, start, k)
    valid = start + jnp.arange(k) < count
    take = lambda tree: jax.tree_util.tree_map(lambda a: a[idx], tree)  # noqa: E731
    chunk_inputs = inputs.replace(prey=take(inputs.prey), may_eat=may_eat & valid)
    out = detailed_loop(fish, take(prey), track, chunk_inputs, params, static)

    # Padding rows (beyond ``count``) are dropped: only valid rows are written.
    dest = jnp.where(valid, idx, prey.x.shape[-1])
    full = jax.tree_util.tree_map(lambda f, part: f.at[dest].set(part, mode="drop"), full, out.prey)
    eaten = valid & take(prey.alive) & ~out.prey.alive
    meal_index = jnp.where(jnp.any(eaten), idx[jnp.argmax(eaten)], prey.x.shape[-1])
    return out, full, (out.contacts.meal_substep, meal_index)


def _chunked(fish, prey, track, inputs: StepInputs, params, static):
    """The loop over the interacting prey in chunks, the rest coasted: (out, prey, contacts).

    Chunks run independently (each with its own capture window); the step's
    meal is the earliest (sub-step, then lowest index) of the chunks' meals,
    and the chunks whose meal lost are run again without capture, which is
    exactly what one loop over all prey does. A while loop adds chunks only
    when needed, so the usual cost is one chunk.
    """
    k, n_prey = static.n_near_prey, prey.x.shape[-1]
    needs = interacting(fish, prey, inputs.prey, params, static)
    count = jnp.sum(needs.astype(jnp.int32))
    # The interacting prey's indices in increasing order (ties in a meal go to the lowest
    # index), padded with 0 (room for the last slice): a scatter, much cheaper than a sort.
    index = jnp.arange(n_prey, dtype=jnp.int32)
    slot = jnp.where(needs, jnp.cumsum(needs.astype(jnp.int32)) - 1, n_prey + k + index)
    order = jnp.zeros((n_prey + k,), jnp.int32).at[slot].set(
        index, mode="drop", unique_indices=True
    )
    full = coast_prey(prey, inputs.prey, params, static)
    args = (order, count, prey)
    run = functools.partial(_run_chunk, fish=fish, track=track, inputs=inputs, params=params,
                            static=static)
    out, full, best = run(0, *args, full, may_eat=True)
    n_chunks = (n_prey + k - 1) // k
    no_meal = jnp.array([static.n_substeps, n_prey], jnp.int32)
    meals = jnp.tile(no_meal, (n_chunks, 1)).at[0].set(jnp.stack(best))

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
    contacts = out.contacts.replace(
        n_eaten=ate.astype(jnp.int32), meal_substep=meals[winner, 0]
    )
    return out, full, contacts


def coast_prey(prey: PreyState, plan: PreyPlan, params: EnvParams, static: StaticParams):
    """Every prey coasted in closed form over the step."""
    n = static.n_substeps
    x, vx, _ = coast(prey.x, prey.vx, plan.hx, plan.gait_kick, plan.lo_x, plan.hi_x, params, n)
    y, vy, _ = coast(prey.y, prey.vy, plan.hy, plan.gait_kick, plan.lo_y, plan.hi_y, params, n)
    return _live_only(prey, x, y, vx, vy)


def finish_step(fish, out: Substep, prey, contacts, predator, line, params):
    """The entities after the loop: fish clamped and turned, predator back in the plane."""
    x = jnp.clip(out.fish.x, 0.0, params.width)
    y = jnp.clip(out.fish.y, 0.0, params.height)
    turn = jnp.where(contacts.turned, jnp.pi, 0.0).astype(jnp.float32)
    fish = out.fish.replace(x=x, y=y, angle=fish.angle + turn)
    predator, contacts = predator_after(predator, line, out.predator, contacts, params)
    return fish, prey, predator, contacts
