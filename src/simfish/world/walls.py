"""The fish's whole body at the arena walls (SPEC 4.2).

The users' tool builds its walls from pymunk segments of radius 5: each wall
is a slab 10 px thick centred on a line near an arena edge, at x = 0,
x = width - 5, y = 5 and y = height (:func:`wall_lines`), so the inner faces
lie 5 px inside at x = 5 and y = height - 5, and 10 px inside at
x = width - 10 and y = 10. The fish is one
rigid body (mass 50) whose origin is the mouth centre: the mouth circle, the
head circle behind it and the tail triangle behind the head. It turns about
its origin, so a bout (an impulse through the origin) never turns it; only
wall contacts off the origin do. Here, each sub-step, after the fish has
moved and turned:

1. **Mouth handler** (:func:`mouth_handler`). When the mouth starts to
   overlap a wall (it did not in the previous sub-step; the flag
   ``FishState.mouth_at_wall`` carries over between steps) the fish's
   velocity is set to 0 (its angular velocity is kept), it is put back
   inside if past the bound (per axis: below 8 px -> 10 px, above size - 7
   -> size - 9), and the step counts a wall touch. At the walls whose face
   lies 5 px inside, that puts the mouth off the wall; at the other two the
   mouth stays on it, and the contact lasts while the fish presses on or
   slides along the wall. With ``wall_bounce`` it
   is instead put well inside (40 px + head + tail from a wall it is within
   40 px of) and turned by pi: a wall touch without the penalty. A contact that
   persists counts nothing until the mouth leaves the wall and touches anew.
2. **Damping** of the linear and angular velocity.
3. **Contacts** (:func:`solve_contacts`): inelastic and frictionless, for
   the mouth, the head and the tail. A shape that overlaps a wall's slab is
   pushed out through the slab's nearer face, as pymunk resolves it: the
   mouth and the head always inwards; the tail inwards while its extent
   across the slab is centred on the arena's side of the wall's centre
   line, outwards once it is centred beyond that line. A tail that a turn has
   swung through a wall is thus held outside, and the fish stays pinned at
   that wall, sliding along it, until a turn brings the tail back inside.
   This is why the users' fish spends much of its time at the walls (about
   40 % within 100 px under a random policy, against about 20 % for a fish
   that only has a mouth); see docs/walls.md. Per axis, the deepest point
   pushed in (mouth, head or tail) and the deepest point of a tail pushed
   out each take the normal impulse that cancels
   their approaching normal speed, through the body's mass and moment
   (sequential impulses, :data:`SOLVER_ITERATIONS` passes), and the
   penetration beyond :data:`SLOP` is corrected gradually, by the fraction
   :data:`BIAS_RATE` per sub-step, as pymunk's collision bias does.

Everything here works on per-world scalars ([] fields; [B] under vmap).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from simfish.world.params import EnvParams

#: Half the thickness (px) of a wall: the users' segments have radius 5.
HALF_THICKNESS = 5.0
#: The mouth handler's bounds (px): a mouth centre below ``PUT_BACK_BELOW``
#: goes to ``PUT_BACK_LOW``; above size - ``PUT_BACK_ABOVE`` to size - ``PUT_BACK_HIGH``.
PUT_BACK_BELOW, PUT_BACK_LOW = 8.0, 10.0
PUT_BACK_ABOVE, PUT_BACK_HIGH = 7.0, 9.0
#: Bouncing walls: a mouth within this distance (px) of an edge is moved to
#: this distance plus the body length from it.
BOUNCE_ZONE = 40.0
#: The fish's mass (SPEC 4.1: fish 50, prey 1, predator 150).
FISH_MASS = 50.0
#: Penetration (px) left uncorrected (pymunk's collision slop).
SLOP = 0.1
#: Passes of the sequential-impulse solver over the contacts per sub-step.
SOLVER_ITERATIONS = 4


def bias_rate(params: EnvParams):
    """Fraction of a wall penetration corrected per sub-step: pymunk's default, 1 - 0.9^(60 dt)."""
    return 1.0 - jnp.power(0.9, 60.0 * params.dt)


def body_inertia(params: EnvParams):
    """Moment of inertia [] of the fish about its origin: the users' tool's value.

    The users' tool gives its fish body the moment of a uniform disc of mass
    ``FISH_MASS`` and the head's radius (pymunk.moment_for_circle), 156 with
    the default body, not the moment of its shapes (1.36e4 with the mass
    shared by area). A light body turns readily when its tail meets a wall,
    which changes where the fish spends its time: under a random policy on
    ``normal`` the fish is within 100 px of a wall 39 % of the time with this
    moment (the users' tool: 38-44 %), 58 % with the shapes' moment (see
    docs/walls.md).
    """
    return 0.5 * FISH_MASS * params.head_radius * params.head_radius


def body_points(c, s, params: EnvParams):
    """Offsets from the origin (ox, oy) of the mouth and head centres and the tail's vertices.

    Returns (ox, oy), each a tuple of 5 [] values: mouth centre, head
    centre, the tail's two base corners, the tail's tip.
    """
    hr, tl = params.head_radius, params.tail_length
    zero = jnp.zeros_like(c)
    local = ((0.0, 0.0), (-hr, 0.0), (-hr, hr), (-hr, -hr), (-(hr + tl), 0.0))
    ox = tuple(zero + u * c - w * s for u, w in local)
    oy = tuple(zero + u * s + w * c for u, w in local)
    return ox, oy


def wall_lines(params: EnvParams):
    """The walls' centre lines, as in the users' tool: ((low x, high x), (low y, high y))."""
    return (0.0, params.width - HALF_THICKNESS), (HALF_THICKNESS, params.height)


def mouth_overlaps(x, y, params: EnvParams):
    """Whether the mouth circle overlaps a wall's slab ([] bool)."""
    reach = HALF_THICKNESS + params.mouth_radius
    (lo_x, hi_x), (lo_y, hi_y) = wall_lines(params)
    return (x < lo_x + reach) | (x > hi_x - reach) | (y < lo_y + reach) | (y > hi_y - reach)


def mouth_handler(x, y, vx, vy, c, s, at_wall, params: EnvParams):
    """The mouth's wall handler, at the start of a mouth-wall contact.

    Args:
      x, y, vx, vy: [] the fish after this sub-step's motion; c, s: [] its heading.
      at_wall: [] bool, the mouth overlapped a wall after the previous sub-step.

    Returns:
      (x, y, vx, vy, c, s, at_wall, touched, turned): the fish after the
      handler, the new contact flag, whether a wall touch began and whether
      a bouncing wall turned the fish by pi ([] bool each).
    """
    w, h = params.width, params.height
    overlaps = mouth_overlaps(x, y, params)
    begins = overlaps & ~at_wall
    bounce = params.wall_bounce

    def put_back(p, size):
        return jnp.where(
            p < PUT_BACK_BELOW,
            PUT_BACK_LOW,
            jnp.where(p > size - PUT_BACK_ABOVE, size - PUT_BACK_HIGH, p),
        )

    def well_inside(p, size):
        margin = jnp.minimum(BOUNCE_ZONE + params.head_radius + params.tail_length, 0.5 * size)
        return jnp.where(p < BOUNCE_ZONE, margin, jnp.where(p > size - BOUNCE_ZONE, size - margin, p))

    nx = jnp.where(bounce, well_inside(x, w), put_back(x, w))
    ny = jnp.where(bounce, well_inside(y, h), put_back(y, h))
    turned = begins & bounce
    flip = jnp.where(turned, -1.0, 1.0)
    x, y = jnp.where(begins, nx, x), jnp.where(begins, ny, y)
    return (
        x,
        y,
        jnp.where(begins, 0.0, vx),
        jnp.where(begins, 0.0, vy),
        c * flip,
        s * flip,
        mouth_overlaps(x, y, params),
        begins,
        turned,
    )


def _axis_contacts(pos, lines, offsets, params: EnvParams):
    """The two contacts with the nearer wall along one axis: the deepest pushed in, the tail pushed out.

    Args:
      pos: [] the origin's coordinate on this axis.
      lines: the low and high walls' centre lines on this axis.
      offsets: the body points' offsets on this axis (tuple of 5 []).

    Returns:
      (sigma, front, tail): sigma [] is +1 at the low wall, -1 at the high
      wall (the wall's normal into the arena); ``front`` (the deepest point
      pushed inwards: mouth, head or a tail on the arena's side) and
      ``tail`` (a tail pushed outwards) are (depth, index, direction):
      depth [] > 0 for a contact, index [] the body point that takes it,
      direction [] +1 inwards, -1 outwards.
    """
    half = HALF_THICKNESS
    lo_line, hi_line = lines
    sigma = jnp.where(pos - lo_line < hi_line - pos, 1.0, -1.0)
    edge = jnp.where(sigma > 0.0, lo_line, hi_line)
    # Each point's distance into the arena from the wall's centre line.
    u = [sigma * (pos + o - edge) for o in offsets]
    # Mouth and head: pushed in through the inner face.
    depth_mouth = half - (u[0] - params.mouth_radius)
    depth_head = half - (u[1] - params.head_radius)
    # The tail: its extent [lo, hi] across the slab decides the face.
    lo = jnp.minimum(jnp.minimum(u[2], u[3]), u[4])
    hi = jnp.maximum(jnp.maximum(u[2], u[3]), u[4])
    index_lo = jnp.where(u[4] <= jnp.minimum(u[2], u[3]), 4, jnp.where(u[2] <= u[3], 2, 3))
    index_hi = jnp.where(u[4] >= jnp.maximum(u[2], u[3]), 4, jnp.where(u[2] >= u[3], 2, 3))
    overlaps = (lo < half) & (hi > -half)
    inward = lo + hi >= 0.0
    depth_tail_in = jnp.where(overlaps & inward, half - lo, 0.0)
    # Pushed in: the deepest of the mouth, the head and a tail on the arena's side.
    depth, index = depth_mouth, jnp.zeros_like(index_lo)
    index = jnp.where(depth_head > depth, 1, index)
    depth = jnp.maximum(depth, depth_head)
    index = jnp.where(depth_tail_in > depth, index_lo, index)
    front = (jnp.maximum(depth, depth_tail_in), index, jnp.ones_like(pos))
    # Pushed out: a tail centred beyond the wall's centre line.
    tail = (jnp.where(overlaps & ~inward, hi + half, 0.0), index_hi, -jnp.ones_like(pos))
    return sigma, front, tail


def _pick(values, index):
    """``values[index]`` for a tuple of 5 [] values and an int index []."""
    out = values[0]
    for i in range(1, len(values)):
        out = jnp.where(index == i, values[i], out)
    return out


def clear_of_walls(x, y, params: EnvParams):
    """Whether no part of a fish with its origin at (x, y) can touch a wall ([] bool).

    A conservative test: every point of the body lies within ``mouth_radius
    + 2 head_radius + tail_length`` of the origin, so a fish farther than that
    (plus a pixel) from every wall's inner face has no contact, and
    :func:`solve_contacts` would leave it exactly as it is.
    """
    reach = params.mouth_radius + 2.0 * params.head_radius + params.tail_length + 1.0
    reach = reach + HALF_THICKNESS
    (lo_x, hi_x), (lo_y, hi_y) = wall_lines(params)
    return (x > lo_x + reach) & (x < hi_x - reach) & (y > lo_y + reach) & (y < hi_y - reach)


def solve_contacts_if_near(x, y, vx, vy, omega, c, s, params: EnvParams):
    """:func:`solve_contacts`, skipped for a fish :func:`clear_of_walls` (same results).

    Away from the walls no contact is active and every impulse is zero, so
    the solver returns its input unchanged and a zero turn; skipping it then
    changes no bit. For one world the skip is a real branch (the solver is
    about a third of a one-world step's dynamics on a CPU); under ``vmap`` it
    becomes a select and every world pays for the solver as before.
    """
    def skip(x, y, vx, vy, omega, c, s):
        return x, y, vx, vy, omega, jnp.zeros_like(x)

    def solve(x, y, vx, vy, omega, c, s):
        return solve_contacts(x, y, vx, vy, omega, c, s, params)

    return jax.lax.cond(clear_of_walls(x, y, params), skip, solve, x, y, vx, vy, omega, c, s)


def solve_contacts(x, y, vx, vy, omega, c, s, params: EnvParams):
    """Inelastic, frictionless contacts of the mouth, head and tail with the walls.

    Up to four contacts (per axis, with the nearer wall: the deepest point
    pushed in and a tail pushed out) with normal n and lever r from the origin. Each
    pass gives each contact the impulse that cancels its approaching normal
    speed v_n = (v + omega x r) . n, j = -v_n / (1/m + (r x n)^2 / I), with
    the accumulated impulse kept >= 0 (contacts push, never pull); a second
    set of impulses on a separate "bias" velocity moves the body out of the
    walls by ``bias_rate`` of the penetration beyond :data:`SLOP`.

    Args:
      x, y, vx, vy, omega: [] the fish (origin position and velocity, angular velocity).
      c, s: [] its heading.

    Returns:
      (x, y, vx, vy, omega, turn), each []: the fish after the contacts and
      the correction, ``turn`` the rotation (rad) the correction gave it.
    """
    inv_m = 1.0 / FISH_MASS
    inv_i = 1.0 / body_inertia(params)
    ox, oy = body_points(c, s, params)
    lines_x, lines_y = wall_lines(params)
    sx, in_x, out_x = _axis_contacts(x, lines_x, ox, params)
    sy, in_y, out_y = _axis_contacts(y, lines_y, oy, params)
    rate = bias_rate(params) / params.dt
    contacts = []
    for axis, sigma, front, tail in ((0, sx, in_x, out_x), (1, sy, in_y, out_y)):
        for depth, index, sign in (front, tail):
            # Normal n = sign * sigma * e_axis; the lever's component across it.
            lever = _pick(oy, index) if axis == 0 else _pick(ox, index)
            n = sign * sigma
            k = 1.0 / (inv_m + inv_i * lever * lever)
            bias = rate * jnp.maximum(depth - SLOP, 0.0)
            contacts.append((axis, n, lever, k, depth > 0.0, bias))

    def point_speed(axis, n, lever, vx, vy, omega):
        # Along x: vx - omega r_y; along y: vy + omega r_x.
        return n * (vx - omega * lever) if axis == 0 else n * (vy + omega * lever)

    def apply(axis, n, lever, j, vx, vy, omega):
        # r x n: -r_y n along x, r_x n along y.
        if axis == 0:
            return vx + n * j * inv_m, vy, omega - n * j * lever * inv_i
        return vx, vy + n * j * inv_m, omega + n * j * lever * inv_i

    zero = jnp.zeros_like(x)
    bx, by, bw = zero, zero, zero
    total = [zero] * len(contacts)
    total_bias = [zero] * len(contacts)
    for _ in range(SOLVER_ITERATIONS):
        for i, (axis, n, lever, k, active, bias) in enumerate(contacts):
            vn = point_speed(axis, n, lever, vx, vy, omega)
            new = jnp.where(active, jnp.maximum(total[i] - vn * k, 0.0), 0.0)
            vx, vy, omega = apply(axis, n, lever, new - total[i], vx, vy, omega)
            total[i] = new
            bn = point_speed(axis, n, lever, bx, by, bw)
            new = jnp.where(active, jnp.maximum(total_bias[i] + (bias - bn) * k, 0.0), 0.0)
            bx, by, bw = apply(axis, n, lever, new - total_bias[i], bx, by, bw)
            total_bias[i] = new
    dt = params.dt
    return x + bx * dt, y + by * dt, vx, vy, omega, bw * dt


def rotate(c, s, delta):
    """The heading (c, s) turned by a small angle ``delta`` [] (|delta| < 0.5 rad: error < 2e-6).

    A Taylor series instead of cos/sin, which cost more than the rest of the
    fish's sub-step on a CPU. The heading is recomputed from the angle at the
    start of every step, so the tiny error does not accumulate.
    """
    d2 = delta * delta
    cd = 1.0 - d2 * (0.5 - d2 * (1.0 / 24.0 - d2 / 720.0))
    sd = delta * (1.0 - d2 * (1.0 / 6.0 - d2 * (1.0 / 120.0 - d2 / 5040.0)))
    return c * cd - s * sd, s * cd + c * sd

