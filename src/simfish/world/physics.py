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
modules, so the loop itself draws no random numbers. Only the prey nearest
to the fish go through the loop; the others cannot interact with it during
the step and coast in closed form (:func:`coast`). Prey do not collide with
one another or with the predator.
"""

from __future__ import annotations

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
class PreyHeading:
    """[P] unit headings of the prey inside the loop (walls reflect them)."""

    hx: jnp.ndarray
    hy: jnp.ndarray


@pytree_dataclass
class Substep:
    """The loop carry: the entities and the contact record."""

    fish: FishState
    prey: PreyState
    heading: PreyHeading
    predator: PredatorTrack
    contacts: Contacts


@pytree_dataclass
class StepInputs:
    """Everything constant over the sub-steps of one step."""

    bout: Bout
    prey: PreyPlan
    line: PredatorLine


# ---------------------------------------------------------------- walls, coasting


def bounce(x, v, h, lo, hi):
    """Reflects positions ``x`` off walls at ``lo`` and ``hi`` (velocity and heading flip)."""
    below = x < lo
    above = x > hi
    hit = below | above
    x = jnp.where(below, 2.0 * lo - x, jnp.where(above, 2.0 * hi - x, x))
    x = jnp.clip(x, lo, hi)
    return x, jnp.where(hit, -v, v), jnp.where(hit, -h, h)


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

    Per sub-step: v += kick h; x += v dt; v *= d. Walls at ``lo``/``hi``
    reflect the end position (at most once). Shapes broadcast.

    Returns:
      (x, v, h) after the step.
    """
    d = params.damping
    dn = d**n_substeps
    geo = (1.0 - dn) / (1.0 - d)  # sum of d^j, j < n
    a = kick * h
    x = x + params.dt * (v * geo + a * (n_substeps - d * geo) / (1.0 - d))
    v = v * dn + a * d * geo
    return bounce(x, v, h, lo, hi)


# ---------------------------------------------------------------- sub-step stages


def fish_substep(fish: FishState, contacts: Contacts, params: EnvParams):
    """Fish: move, damp, walls. Returns (fish, contacts with wall touch and turn)."""
    d, dt = params.damping, params.dt
    x = fish.x + fish.vx * dt
    y = fish.y + fish.vy * dt
    x, y, vx, vy, turned, touch = fish_walls(x, y, fish.vx * d, fish.vy * d, contacts.turned, params)
    fish = fish.replace(x=x, y=y, vx=vx, vy=vy)
    return fish, contacts.replace(turned=turned, wall=contacts.wall | touch)


def prey_substep(
    k, prey: PreyState, heading: PreyHeading, contacts: Contacts, plan: PreyPlan, params
):
    """Prey: kicks (gait, escape, touch-jump), move, damp, walls. Returns (prey, heading)."""
    d, dt = params.damping, params.dt
    jump_kick = params.velocity_jump * (1.0 - d)
    escape = contacts.near & ((k == plan.escape_t1) | (k == plan.escape_t2))
    kick = plan.gait_kick + jnp.where(escape | contacts.touched, jump_kick, 0.0)
    vx = prey.vx + kick * heading.hx
    vy = prey.vy + kick * heading.hy
    x = prey.x + vx * dt
    y = prey.y + vy * dt
    x, vx, hx = bounce(x, vx * d, heading.hx, plan.lo_x, plan.hi_x)
    y, vy, hy = bounce(y, vy * d, heading.hy, plan.lo_y, plan.hi_y)
    return prey.replace(x=x, y=y, vx=vx, vy=vy), PreyHeading(hx=hx, hy=hy)


def fish_prey_contacts(k, fish: FishState, prey: PreyState, contacts: Contacts, c, s, bout, params):
    """Body contacts, capture and push-out of the prey. Returns (prey, contacts)."""
    hits = contacts_lib.body_hits(fish.x, fish.y, c, s, prey.x, prey.y, prey.alive, params)
    eaten = contacts_lib.capture(hits, contacts, k, bout.capture, params)
    pushed = hits.any & ~eaten
    nx, ny, depth = contacts_lib.contact_normal(hits, c, s, params)
    px, py, pvx, pvy = contacts_lib.push_out(
        prey.x, prey.y, prey.vx, prey.vy, fish.vx, fish.vy, pushed, nx, ny, depth
    )
    prey = prey.replace(x=px, y=py, vx=pvx, vy=pvy, alive=prey.alive & ~eaten)
    return prey, contacts_lib.update_contacts(contacts, hits, eaten, pushed, params)


def predator_substep(track: PredatorTrack, line: PredatorLine, fish: FishState, contacts, params):
    """Predator: kick along its line, move, damp; catch or arrive. Returns (track, contacts)."""
    d = params.damping
    sv = track.sv + jnp.where(track.present, params.predator_velocity * (1.0 - d), 0.0)
    s = track.s + sv * params.dt
    sv = sv * d
    gx = line.x0 + line.ex * s - fish.x
    gy = line.y0 + line.ey * s - fish.y
    caught = track.present & line.can_catch & contacts_lib.predator_touches_fish(gx, gy, params)
    arrived = track.present & ~caught & (s >= line.goal)
    contacts = contacts.replace(caught=contacts.caught | caught, avoided=contacts.avoided | arrived)
    return PredatorTrack(s=s, sv=sv, present=track.present & ~(caught | arrived)), contacts


def substep(k, carry: Substep, inputs: StepInputs, params: EnvParams, static: StaticParams):
    """One sub-step: the stages in order."""
    # Fish: move, damp, walls (a bouncing wall turns the heading around).
    fish, contacts = fish_substep(carry.fish, carry.contacts, params)
    sign = jnp.where(contacts.turned, -1.0, 1.0)
    c, s = inputs.bout.cos * sign, inputs.bout.sin * sign
    # Prey: kicks, move, damp, walls.
    prey, heading = prey_substep(k, carry.prey, carry.heading, carry.contacts, inputs.prey, params)
    # Contacts with the fish's body: capture, else push-out.
    prey, contacts = fish_prey_contacts(k, fish, prey, contacts, c, s, inputs.bout, params)
    # Predator: along its line; catch or arrive.
    track = carry.predator
    if static.predator_enabled:
        track, contacts = predator_substep(track, inputs.line, fish, contacts, params)
    return Substep(fish=fish, prey=prey, heading=heading, predator=track, contacts=contacts)


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


def detailed_loop(fish, prey, heading, track, inputs: StepInputs, params, static):
    """Runs the sub-steps for the fish, the given prey [P'] and the predator."""
    contacts = contacts_lib.start_contacts(fish.x, fish.y, prey.x, prey.y, prey.alive, params)
    init = Substep(fish=fish, prey=prey, heading=heading, predator=track, contacts=contacts)
    return jax.lax.fori_loop(
        0, static.n_substeps, lambda k, c: substep(k, c, inputs, params, static), init
    )


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

    Only the ``static.n_near_prey`` live prey nearest to the fish at the start
    of the step go through the detailed loop (contacts, captures, escapes,
    touch-jumps); the others cannot reach the fish within a step and coast in
    closed form (:func:`coast`), which gives the same motion.

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
      times; prey angles from their final headings.
    """
    chex.assert_rank([fish.x, fish.y, fish.vx, fish.vy, bout.cos, bout.capture], 0)
    chex.assert_rank([prey.x, prey.y, prey.vx, prey.vy, prey.alive, prey_plan.hx], 1)
    chex.assert_type([prey.x, prey_plan.gait_kick], jnp.float32)
    f32 = jnp.float32
    fish = fish.replace(**{n: jnp.asarray(getattr(fish, n), f32) for n in ("x", "y", "vx", "vy")})
    line, track = predator_line(predator, predator_can_catch)
    inputs = StepInputs(bout=bout, prey=prey_plan, line=line)
    heading = PreyHeading(hx=prey_plan.hx, hy=prey_plan.hy)
    n_prey, k = prey.x.shape[-1], static.n_near_prey
    if k >= n_prey:
        out = detailed_loop(fish, prey, heading, track, inputs, params, static)
        new_prey, new_heading = out.prey, out.heading
    else:
        # Pick the prey that may interact with the fish during this step.
        d2 = (prey.x - fish.x) ** 2 + (prey.y - fish.y) ** 2
        _, near = jax.lax.top_k(jnp.where(prey.alive, -d2, -jnp.inf), k)
        take = lambda tree: jax.tree_util.tree_map(lambda a: a[near], tree)  # noqa: E731
        near_inputs = inputs.replace(prey=take(prey_plan))
        out = detailed_loop(fish, take(prey), take(heading), track, near_inputs, params, static)
        # Everyone else coasts.
        far_prey, far_heading = coast_prey(prey, prey_plan, params, static)
        put = lambda full, part: full.at[near].set(part)  # noqa: E731
        new_prey = jax.tree_util.tree_map(put, far_prey, out.prey)
        new_heading = jax.tree_util.tree_map(put, far_heading, out.heading)
    return finish_step(fish, out, new_prey, new_heading, predator, line, params)


def coast_prey(prey: PreyState, plan: PreyPlan, params: EnvParams, static: StaticParams):
    """Every prey coasted in closed form over the step: (prey, heading)."""
    n = static.n_substeps
    x, vx, hx = coast(prey.x, prey.vx, plan.hx, plan.gait_kick, plan.lo_x, plan.hi_x, params, n)
    y, vy, hy = coast(prey.y, prey.vy, plan.hy, plan.gait_kick, plan.lo_y, plan.hi_y, params, n)
    return prey.replace(x=x, y=y, vx=vx, vy=vy), PreyHeading(hx=hx, hy=hy)


def finish_step(fish, out: Substep, prey, heading, predator, line, params):
    """The entities after the loop: fish clamped and turned, prey angles, predator in the plane."""
    x = jnp.clip(out.fish.x, 0.0, params.width)
    y = jnp.clip(out.fish.y, 0.0, params.height)
    turn = jnp.where(out.contacts.turned, jnp.pi, 0.0).astype(jnp.float32)
    fish = out.fish.replace(x=x, y=y, angle=fish.angle + turn)
    prey = prey.replace(angle=jnp.arctan2(heading.hy, heading.hx))
    predator, contacts = predator_after(predator, line, out.predator, out.contacts, params)
    return fish, prey, predator, contacts
