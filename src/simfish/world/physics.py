"""Damped motion, walls and fish-body collisions: the physics sub-step loop.

Motion model (SPEC 4.1): per sub-step, impulses (kicks) change velocities,
then x <- x + v dt, then v <- v d. An impulse meant to move a body L px is a
velocity change of L (1 - d) / dt. The loop here integrates the fish, the
prey and the predator over the ``n_substeps`` sub-steps of one step; only what
must change within a step lives inside it (positions, velocities, contacts,
captures); per-step decisions (turns, gaits, escape times, spawning) are made
before it by the subsystem modules. Only the prey nearest to the fish go
through the loop; the others cannot interact with it during the step and
coast in closed form (``coast``). Prey do not collide with one another or
with the predator.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from simfish.world.params import EnvParams, StaticParams
from simfish.world.types import pytree_dataclass

#: Extra distance (px) within which an ongoing contact is still "the same
#: contact" (no new capture attempt), like a collision arbiter's persistence.
CONTACT_SLOP = 0.5


def impulse_speed(distance_px, params: EnvParams):
    """Initial speed (px/s) that makes a damped body travel ``distance_px`` in total."""
    return distance_px * (1.0 - params.damping) / params.dt


@pytree_dataclass
class SubstepPlan:
    """Per-step inputs of the sub-step loop (decided before it).

    Attributes:
      fish_cos, fish_sin: [] heading of the fish during the step.
      capture_bout: [] bool, the bout is a capture bout.
      prey_hx, prey_hy: [P] unit heading of each prey.
      prey_gait_kick: [P] velocity kick per sub-step from the gait (px/s).
      prey_escape_t1, prey_escape_t2: [P] int32 sub-steps at which an escape
        triggers if the fish is within sensing distance (>= n: never).
      prey_lo_x, prey_hi_x, prey_lo_y, prey_hi_y: [P] or [] walls for prey
        centres (arena or cloud square, inset by the prey radius).
      predator_can_catch: [] bool, the immunity period is over.
    """

    fish_cos: jnp.ndarray
    fish_sin: jnp.ndarray
    capture_bout: jnp.ndarray
    prey_hx: jnp.ndarray
    prey_hy: jnp.ndarray
    prey_gait_kick: jnp.ndarray
    prey_escape_t1: jnp.ndarray
    prey_escape_t2: jnp.ndarray
    prey_lo_x: jnp.ndarray
    prey_hi_x: jnp.ndarray
    prey_lo_y: jnp.ndarray
    prey_hi_y: jnp.ndarray
    predator_can_catch: jnp.ndarray


@pytree_dataclass
class SubstepResult:
    """What the sub-step loop returns.

    Attributes:
      fish_x, fish_y, fish_vx, fish_vy: [] fish after the step.
      fish_turned: [] bool, a bouncing wall turned the fish around (odd count).
      wall_touched: [] bool.
      prey_x, prey_y, prey_vx, prey_vy, prey_hx, prey_hy: [P].
      prey_alive: [P] bool (eaten prey removed).
      n_eaten: [] int32 prey eaten during the step.
      pred_x, pred_y, pred_vx, pred_vy: [] predator.
      pred_present: [] bool.
      pred_caught: [] bool, the predator caught the fish this step.
      pred_avoided: [] bool, the predator left without catching the fish.
    """

    fish_x: jnp.ndarray
    fish_y: jnp.ndarray
    fish_vx: jnp.ndarray
    fish_vy: jnp.ndarray
    fish_turned: jnp.ndarray
    wall_touched: jnp.ndarray
    prey_x: jnp.ndarray
    prey_y: jnp.ndarray
    prey_vx: jnp.ndarray
    prey_vy: jnp.ndarray
    prey_hx: jnp.ndarray
    prey_hy: jnp.ndarray
    prey_alive: jnp.ndarray
    n_eaten: jnp.ndarray
    pred_x: jnp.ndarray
    pred_y: jnp.ndarray
    pred_vx: jnp.ndarray
    pred_vy: jnp.ndarray
    pred_present: jnp.ndarray
    pred_caught: jnp.ndarray
    pred_avoided: jnp.ndarray


class _Carry(NamedTuple):
    """Loop carry: fish and prey as in ``SubstepResult``, the predator on its line, contacts."""

    fish_x: jnp.ndarray
    fish_y: jnp.ndarray
    fish_vx: jnp.ndarray
    fish_vy: jnp.ndarray
    fish_turned: jnp.ndarray
    wall_touched: jnp.ndarray
    prey_x: jnp.ndarray
    prey_y: jnp.ndarray
    prey_vx: jnp.ndarray
    prey_vy: jnp.ndarray
    prey_hx: jnp.ndarray
    prey_hy: jnp.ndarray
    prey_alive: jnp.ndarray
    n_eaten: jnp.ndarray
    pred_s: jnp.ndarray  # distance travelled along the line to the target
    pred_sv: jnp.ndarray  # speed along that line
    pred_present: jnp.ndarray
    pred_caught: jnp.ndarray
    pred_avoided: jnp.ndarray
    mouth_prev: jnp.ndarray  # [P] bool, in contact with the mouth
    near: jnp.ndarray  # [P] bool, within sensing distance of the fish
    touched: jnp.ndarray  # [P] bool, touched by the fish in the last sub-step


_SHARED_FIELDS = (
    "fish_x",
    "fish_y",
    "fish_vx",
    "fish_vy",
    "fish_turned",
    "wall_touched",
    "prey_x",
    "prey_y",
    "prey_vx",
    "prey_vy",
    "prey_hx",
    "prey_hy",
    "prey_alive",
    "n_eaten",
)


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

    Returns (x, y, vx, vy, turned, touched).
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


def integrate_step(
    fish_xy_v,
    prey_xy_v,
    prey_alive,
    pred_xy_v,
    pred_target,
    pred_present,
    plan: SubstepPlan,
    params: EnvParams,
    static: StaticParams,
) -> SubstepResult:
    """Integrates one step of ``static.n_substeps`` damped sub-steps.

    Only the ``static.n_near_prey`` live prey nearest to the fish at the start
    of the step go through the detailed sub-step loop (contacts, captures,
    escapes, touch-jumps); the others cannot reach the fish within a step and
    coast in closed form (``coast``), which gives the same motion.

    Args:
      fish_xy_v: (x, y, vx, vy) of the fish, each [] (velocity after the bout impulse).
      prey_xy_v: (x, y, vx, vy) of the prey, each [P].
      prey_alive: [P] bool.
      pred_xy_v: (x, y, vx, vy) of the predator, each [].
      pred_target: (x, y) target of the predator.
      pred_present: [] bool.
      plan: the per-step decisions (``SubstepPlan``).
      params, static: world parameters.

    Returns:
      A ``SubstepResult``.
    """
    n_prey = prey_alive.shape[-1]
    k = static.n_near_prey
    bounds = [
        jnp.broadcast_to(b, (n_prey,))
        for b in (plan.prey_lo_x, plan.prey_hi_x, plan.prey_lo_y, plan.prey_hi_y)
    ]
    plan = plan.replace(
        prey_lo_x=bounds[0], prey_hi_x=bounds[1], prey_lo_y=bounds[2], prey_hi_y=bounds[3]
    )
    if k >= n_prey:
        return _integrate_detailed(
            fish_xy_v,
            prey_xy_v,
            prey_alive,
            pred_xy_v,
            pred_target,
            pred_present,
            plan,
            params,
            static,
        )
    px, py, pvx, pvy = prey_xy_v
    # Pick the prey that may interact with the fish during this step.
    d2 = (px - fish_xy_v[0]) ** 2 + (py - fish_xy_v[1]) ** 2
    _, near = jax.lax.top_k(jnp.where(prey_alive, -d2, -jnp.inf), k)

    def take(a):
        return a[near]

    near_plan = plan.replace(
        prey_hx=take(plan.prey_hx),
        prey_hy=take(plan.prey_hy),
        prey_gait_kick=take(plan.prey_gait_kick),
        prey_escape_t1=take(plan.prey_escape_t1),
        prey_escape_t2=take(plan.prey_escape_t2),
        prey_lo_x=take(plan.prey_lo_x),
        prey_hi_x=take(plan.prey_hi_x),
        prey_lo_y=take(plan.prey_lo_y),
        prey_hi_y=take(plan.prey_hi_y),
    )
    res = _integrate_detailed(
        fish_xy_v,
        tuple(take(a) for a in prey_xy_v),
        take(prey_alive),
        pred_xy_v,
        pred_target,
        pred_present,
        near_plan,
        params,
        static,
    )
    # Everyone else coasts.
    kick = plan.prey_gait_kick
    cx, cvx, chx = coast(
        px, pvx, plan.prey_hx, kick, bounds[0], bounds[1], params, static.n_substeps
    )
    cy, cvy, chy = coast(
        py, pvy, plan.prey_hy, kick, bounds[2], bounds[3], params, static.n_substeps
    )
    return res.replace(
        prey_x=cx.at[near].set(res.prey_x),
        prey_y=cy.at[near].set(res.prey_y),
        prey_vx=cvx.at[near].set(res.prey_vx),
        prey_vy=cvy.at[near].set(res.prey_vy),
        prey_hx=chx.at[near].set(res.prey_hx),
        prey_hy=chy.at[near].set(res.prey_hy),
        prey_alive=prey_alive.at[near].set(res.prey_alive),
    )


def _integrate_detailed(
    fish_xy_v,
    prey_xy_v,
    prey_alive,
    pred_xy_v,
    pred_target,
    pred_present,
    plan: SubstepPlan,
    params: EnvParams,
    static: StaticParams,
) -> SubstepResult:
    """The sub-step loop for the fish, the given prey and the predator.

    Args:
      fish_xy_v: (x, y, vx, vy) of the fish, each [] (velocity after the bout impulse).
      prey_xy_v: (x, y, vx, vy) of the prey, each [P].
      prey_alive: [P] bool.
      pred_xy_v: (x, y, vx, vy) of the predator, each [].
      pred_target: (x, y) target of the predator.
      pred_present: [] bool.
      plan: the per-step decisions (``SubstepPlan``).
      params, static: world parameters.

    Returns:
      A ``SubstepResult``.
    """
    d = params.damping
    dt = params.dt
    f32 = jnp.float32
    pr = params.prey_radius
    r_mouth = params.mouth_radius + pr
    r_mouth_sq = r_mouth * r_mouth
    r_mouth_slop_sq = (r_mouth + CONTACT_SLOP) ** 2
    hr = params.head_radius
    r_head_sq = (hr + pr) ** 2
    tail = params.tail_length
    tail_end = -(hr + tail)
    tail_slope = hr / jnp.maximum(tail, 1e-6)
    cos_pa = jnp.cos(params.permissive_angle)
    cos_pa_sq = cos_pa * cos_pa
    sensing_sq = params.sensing_distance**2
    jump_kick = params.velocity_jump * (1.0 - d)
    pred_kick = params.predator_velocity * (1.0 - d)
    pred_reach_sq = (params.predator_radius + hr) ** 2
    # The predator moves on the straight line to its target (it spawns at rest
    # aimed at it, so steering towards the target never changes its heading):
    # q = q0 + e s. It arrives when its position rounds to the target's, i.e.
    # within half a pixel.
    q0x, q0y, q0vx, q0vy = (jnp.asarray(v, f32) for v in pred_xy_v)
    ex = pred_target[0] - q0x
    ey = pred_target[1] - q0y
    q_dist = jnp.sqrt(ex * ex + ey * ey)
    ex = jnp.where(q_dist > 0.0, ex / jnp.maximum(q_dist, 1e-6), 1.0)
    ey = jnp.where(q_dist > 0.0, ey / jnp.maximum(q_dist, 1e-6), 0.0)
    q_goal = q_dist - 0.5
    q_sv0 = q0vx * ex + q0vy * ey
    n_prey = prey_alive.shape[-1]
    idx = jnp.arange(n_prey)
    c0, s0 = plan.fish_cos, plan.fish_sin

    def prey_rel(px, py, fx, fy, c, s):
        rx = px - fx
        ry = py - fy
        u = rx * c + ry * s
        w = ry * c - rx * s
        return rx, ry, u, w

    # Contact state at the start of the step: a prey already touching the
    # mouth is an ongoing contact (no capture); prey within sensing range
    # may escape from the first sub-step.
    rx0, ry0, _, _ = prey_rel(prey_xy_v[0], prey_xy_v[1], fish_xy_v[0], fish_xy_v[1], c0, s0)
    d2_0 = rx0 * rx0 + ry0 * ry0
    mouth_prev0 = d2_0 <= (r_mouth + 1e-3) ** 2
    near0 = d2_0 <= sensing_sq
    touched0 = jnp.zeros((n_prey,), bool)

    def body(k, carry: _Carry) -> _Carry:
        fx, fy, fvx, fvy = carry.fish_x, carry.fish_y, carry.fish_vx, carry.fish_vy
        px, py, pvx, pvy = carry.prey_x, carry.prey_y, carry.prey_vx, carry.prey_vy
        hx, hy, alive = carry.prey_hx, carry.prey_hy, carry.prey_alive
        q_s, q_sv = carry.pred_s, carry.pred_sv
        q_present, q_caught, q_avoided = carry.pred_present, carry.pred_caught, carry.pred_avoided
        mouth_prev, near, touched = carry.mouth_prev, carry.near, carry.touched

        # Fish: move, damp, walls.
        fx = fx + fvx * dt
        fy = fy + fvy * dt
        fvx = fvx * d
        fvy = fvy * d
        fx, fy, fvx, fvy, turned, touch = fish_walls(fx, fy, fvx, fvy, carry.fish_turned, params)
        sign = jnp.where(turned, -1.0, 1.0)
        c = c0 * sign
        s = s0 * sign

        # Prey: kicks (gait, escape, touch-jump), move, damp, walls.
        escape = near & ((k == plan.prey_escape_t1) | (k == plan.prey_escape_t2))
        kick = plan.prey_gait_kick + jnp.where(escape | touched, jump_kick, 0.0)
        pvx = pvx + kick * hx
        pvy = pvy + kick * hy
        px = px + pvx * dt
        py = py + pvy * dt
        pvx = pvx * d
        pvy = pvy * d
        px, pvx, hx = bounce(px, pvx, hx, plan.prey_lo_x, plan.prey_hi_x)
        py, pvy, hy = bounce(py, pvy, hy, plan.prey_lo_y, plan.prey_hi_y)

        # Contacts with the fish's body (mouth circle, head circle, tail triangle).
        rx, ry, u, w = prey_rel(px, py, fx, fy, c, s)
        d2 = rx * rx + ry * ry
        at_mouth = d2 <= r_mouth_sq
        uh = u + hr
        at_head = uh * uh + w * w <= r_head_sq
        half_width = (u - tail_end) * tail_slope + pr
        at_tail = (u <= -hr) & (u >= tail_end - pr) & (jnp.abs(w) <= half_width)
        contact = alive & (at_mouth | at_head | at_tail)

        # Capture: a new mouth contact inside the window, within the permissive angle
        # (angle to the prey <= a  <=>  u >= cos(a) |r|, written without the sqrt).
        # A capture bout eats at most one prey: the window closes after a meal.
        in_window = (
            plan.capture_bout
            & (k >= params.capture_first_substep)
            & (k <= params.capture_last_substep)
            & (carry.n_eaten == 0)
        )
        u_sq = u * u
        cone = cos_pa_sq * d2
        in_angle = jnp.where(
            cos_pa >= 0.0, (u >= 0.0) & (u_sq >= cone), (u >= 0.0) | (u_sq <= cone)
        )
        can_eat = contact & at_mouth & ~mouth_prev & in_angle & in_window
        any_eat = jnp.any(can_eat)
        eaten = any_eat & (idx == jnp.argmax(can_eat))
        alive = alive & ~eaten

        # Push touched prey out of the body (the fish is much heavier).
        pushed = contact & ~eaten
        inv_m = jax.lax.rsqrt(jnp.maximum(d2, 1e-12))
        dist = d2 * inv_m
        dhx = rx + hr * c
        dhy = ry + hr * s
        dh_sq = jnp.maximum(dhx * dhx + dhy * dhy, 1e-12)
        inv_h = jax.lax.rsqrt(dh_sq)
        dh = dh_sq * inv_h
        side = jnp.where(w >= 0, 1.0, -1.0)
        nx = jnp.where(at_mouth, rx * inv_m, jnp.where(at_head, dhx * inv_h, -s * side))
        ny = jnp.where(at_mouth, ry * inv_m, jnp.where(at_head, dhy * inv_h, c * side))
        depth = jnp.where(
            at_mouth,
            r_mouth - dist,
            jnp.where(at_head, hr + pr - dh, half_width - jnp.abs(w)),
        )
        depth = jnp.where(pushed, jnp.maximum(depth, 0.0), 0.0)
        px = px + depth * nx
        py = py + depth * ny
        vrel = (pvx - fvx) * nx + (pvy - fvy) * ny
        dv = jnp.where(pushed & (vrel < 0.0), -vrel, 0.0)
        pvx = pvx + dv * nx
        pvy = pvy + dv * ny
        # A contact begins at the mouth radius and lasts while within the slop.
        mouth_prev = at_mouth | (mouth_prev & (d2 <= r_mouth_slop_sq))
        near = d2 <= sensing_sq
        touched = pushed

        # Predator: kick along its line to the target, move, damp; catch or arrive.
        if static.predator_enabled:
            q_sv = q_sv + jnp.where(q_present, pred_kick, 0.0)
            q_s = q_s + q_sv * dt
            q_sv = q_sv * d
            gx = q0x + ex * q_s - fx
            gy = q0y + ey * q_s - fy
            caught = q_present & plan.predator_can_catch & (gx * gx + gy * gy <= pred_reach_sq)
            arrived = q_present & ~caught & (q_s >= q_goal)
            q_caught = q_caught | caught
            q_avoided = q_avoided | arrived
            q_present = q_present & ~(caught | arrived)

        return _Carry(
            fish_x=fx,
            fish_y=fy,
            fish_vx=fvx,
            fish_vy=fvy,
            fish_turned=turned,
            wall_touched=carry.wall_touched | touch,
            prey_x=px,
            prey_y=py,
            prey_vx=pvx,
            prey_vy=pvy,
            prey_hx=hx,
            prey_hy=hy,
            prey_alive=alive,
            n_eaten=carry.n_eaten + any_eat.astype(jnp.int32),
            pred_s=q_s,
            pred_sv=q_sv,
            pred_present=q_present,
            pred_caught=q_caught,
            pred_avoided=q_avoided,
            mouth_prev=mouth_prev,
            near=near,
            touched=touched,
        )

    false = jnp.zeros((), bool)
    fish_x, fish_y, fish_vx, fish_vy = (jnp.asarray(v, f32) for v in fish_xy_v)
    init = _Carry(
        fish_x=fish_x,
        fish_y=fish_y,
        fish_vx=fish_vx,
        fish_vy=fish_vy,
        fish_turned=false,
        wall_touched=false,
        prey_x=prey_xy_v[0],
        prey_y=prey_xy_v[1],
        prey_vx=prey_xy_v[2],
        prey_vy=prey_xy_v[3],
        prey_hx=plan.prey_hx,
        prey_hy=plan.prey_hy,
        prey_alive=prey_alive,
        n_eaten=jnp.zeros((), jnp.int32),
        pred_s=jnp.zeros((), f32),
        pred_sv=q_sv0,
        pred_present=jnp.asarray(pred_present),
        pred_caught=false,
        pred_avoided=false,
        mouth_prev=mouth_prev0,
        near=near0,
        touched=touched0,
    )
    out = jax.lax.fori_loop(0, static.n_substeps, body, init)
    # Predator back to the plane; leaving the arena also ends an attack.
    pred_x = q0x + ex * out.pred_s
    pred_y = q0y + ey * out.pred_s
    left = (pred_x < 0.0) | (pred_x > params.width) | (pred_y < 0.0) | (pred_y > params.height)
    left = out.pred_present & left
    return SubstepResult(
        **{f: getattr(out, f) for f in _SHARED_FIELDS},
        pred_x=pred_x,
        pred_y=pred_y,
        pred_vx=ex * out.pred_sv,
        pred_vy=ey * out.pred_sv,
        pred_present=out.pred_present & ~left,
        pred_caught=out.pred_caught,
        pred_avoided=out.pred_avoided | left,
    )
