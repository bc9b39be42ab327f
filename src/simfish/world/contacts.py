"""Contacts with the fish's body: geometry, capture and push-out (SPEC 4.1, 4.3).

The fish's body is three shapes in its own frame (u forward along the
heading, w to its left, origin at the mouth centre): the mouth circle
(``mouth_radius``) at the origin, the head circle (``head_radius``) centred
``head_radius`` behind it, and the tail triangle from the back of the head
(u = -head_radius, half-width ``head_radius``) to its tip at
u = -(head_radius + tail_length). Every function here works on one world:
prey arrays are [P], everything else [].
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from simfish.world.params import EnvParams
from simfish.world.state import FishState
from simfish.world.types import pytree_dataclass

#: Extra distance (px) within which an ongoing contact is still "the same
#: contact" (no new capture attempt), like a collision arbiter's persistence.
CONTACT_SLOP = 0.5


@pytree_dataclass
class Contacts:
    """What the sub-steps of one step remember about contacts and their outcomes.

    Attributes:
      mouth: [P] bool, prey in (ongoing) contact with the mouth.
      near: [P] bool, prey within sensing distance of the fish.
      touched: [P] bool, prey touching the fish's body at the end of the last sub-step.
      jump: [P] bool, prey whose contact began in the last sub-step (they jump now).
      wall: [] bool, the fish touched a wall during the step.
      n_eaten: [] int32 prey eaten during the step.
      meal_substep: [] int32 sub-step of the meal (n_substeps when none).
      caught: [] bool, the predator caught the fish.
      avoided: [] bool, the predator left without catching the fish.
    """

    mouth: jnp.ndarray
    near: jnp.ndarray
    touched: jnp.ndarray
    jump: jnp.ndarray
    wall: jnp.ndarray
    n_eaten: jnp.ndarray
    meal_substep: jnp.ndarray
    caught: jnp.ndarray
    avoided: jnp.ndarray


@pytree_dataclass
class BodyHits:
    """Where each prey lies relative to the fish's body in one sub-step.

    Attributes:
      rx, ry: [P] prey centre minus the mouth centre (px, arena frame).
      u, w: [P] the same in the fish's frame (forward, left).
      d2: [P] squared distance to the mouth centre.
      half_width: [P] tail half-width at u, widened by the prey radius.
      at_mouth, at_head, at_tail: [P] bool overlap with each shape.
      any: [P] bool, a live prey overlaps some shape.
    """

    rx: jnp.ndarray
    ry: jnp.ndarray
    u: jnp.ndarray
    w: jnp.ndarray
    d2: jnp.ndarray
    half_width: jnp.ndarray
    at_mouth: jnp.ndarray
    at_head: jnp.ndarray
    at_tail: jnp.ndarray
    any: jnp.ndarray


def start_contacts(fish: FishState, c, s, prey_x, prey_y, prey_alive, n_substeps, params):
    """Contacts at the start of a step.

    A prey already at the mouth is an ongoing contact (no capture), and one
    already touching the body is not a new contact (no jump).
    """
    chex.assert_rank([fish.x, fish.y, c, s], 0)
    chex.assert_rank([prey_x, prey_y, prey_alive], 1)
    d2 = (prey_x - fish.x) ** 2 + (prey_y - fish.y) ** 2
    r_mouth = params.mouth_radius + params.prey_radius
    hits = body_hits(fish.x, fish.y, c, s, prey_x, prey_y, prey_alive, params)
    false = jnp.zeros((), bool)
    return Contacts(
        mouth=d2 <= (r_mouth + 1e-3) ** 2,
        near=d2 <= params.sensing_distance**2,
        touched=hits.any,
        jump=jnp.zeros(prey_alive.shape, bool),
        wall=false,
        n_eaten=jnp.zeros((), jnp.int32),
        meal_substep=jnp.asarray(n_substeps, jnp.int32),
        caught=false,
        avoided=false,
    )


def body_hits(fish_x, fish_y, c, s, prey_x, prey_y, prey_alive, params: EnvParams) -> BodyHits:
    """Overlap of each prey circle with the mouth circle, the head circle and the tail triangle."""
    pr = params.prey_radius
    hr = params.head_radius
    r_mouth = params.mouth_radius + pr
    tail_end = -(hr + params.tail_length)
    tail_slope = hr / jnp.maximum(params.tail_length, 1e-6)
    rx = prey_x - fish_x
    ry = prey_y - fish_y
    u = rx * c + ry * s
    w = ry * c - rx * s
    d2 = rx * rx + ry * ry
    at_mouth = d2 <= r_mouth * r_mouth
    uh = u + hr
    at_head = uh * uh + w * w <= (hr + pr) ** 2
    half_width = (u - tail_end) * tail_slope + pr
    at_tail = (u <= -hr) & (u >= tail_end - pr) & (jnp.abs(w) <= half_width)
    return BodyHits(
        rx=rx,
        ry=ry,
        u=u,
        w=w,
        d2=d2,
        half_width=half_width,
        at_mouth=at_mouth,
        at_head=at_head,
        at_tail=at_tail,
        any=prey_alive & (at_mouth | at_head | at_tail),
    )


def capture(hits: BodyHits, contacts: Contacts, substep, capture_bout, params: EnvParams):
    """Which prey is eaten in this sub-step: [P] bool, at most one (the first in array order).

    A capture is a new mouth contact during the capture window of a capture
    bout, with the prey within the permissive angle of the heading (angle
    <= a  <=>  u >= cos(a) |r|, written without the sqrt). The window closes
    after a meal. ``capture_bout`` may be [] or [P] (per-prey permission).
    """
    in_window = (
        capture_bout
        & (substep >= params.capture_first_substep)
        & (substep <= params.capture_last_substep)
        & (contacts.n_eaten == 0)
    )
    cos_pa = jnp.cos(params.permissive_angle)
    u_sq = hits.u * hits.u
    cone = cos_pa * cos_pa * hits.d2
    in_angle = jnp.where(
        cos_pa >= 0.0, (hits.u >= 0.0) & (u_sq >= cone), (hits.u >= 0.0) | (u_sq <= cone)
    )
    can_eat = hits.any & hits.at_mouth & ~contacts.mouth & in_angle & in_window
    idx = jnp.arange(can_eat.shape[-1])
    return jnp.any(can_eat) & (idx == jnp.argmax(can_eat))


def contact_normal(hits: BodyHits, c, s, params: EnvParams):
    """Outward unit normal (nx, ny) and overlap depth [P] of each prey with the shape it touches."""
    pr = params.prey_radius
    hr = params.head_radius
    inv_m = jax.lax.rsqrt(jnp.maximum(hits.d2, 1e-12))
    dist = hits.d2 * inv_m
    dhx = hits.rx + hr * c
    dhy = hits.ry + hr * s
    dh_sq = jnp.maximum(dhx * dhx + dhy * dhy, 1e-12)
    inv_h = jax.lax.rsqrt(dh_sq)
    dh = dh_sq * inv_h
    side = jnp.where(hits.w >= 0, 1.0, -1.0)
    at_mouth, at_head = hits.at_mouth, hits.at_head
    nx = jnp.where(at_mouth, hits.rx * inv_m, jnp.where(at_head, dhx * inv_h, -s * side))
    ny = jnp.where(at_mouth, hits.ry * inv_m, jnp.where(at_head, dhy * inv_h, c * side))
    depth = jnp.where(
        at_mouth,
        params.mouth_radius + pr - dist,
        jnp.where(at_head, hr + pr - dh, hits.half_width - jnp.abs(hits.w)),
    )
    return nx, ny, depth


def push_out(px, py, pvx, pvy, fish_vx, fish_vy, pushed, nx, ny, depth):
    """Moves the ``pushed`` [P] prey out of the body and bounces them off it elastically.

    The fish is 50 times heavier than a prey and is treated as immovable: a
    prey approaching the body has its normal velocity relative to the fish
    reversed, so a prey hit by a fish swimming at v leaves at about 2 v.
    Returns the prey's (x, y, vx, vy), each [P].
    """
    depth = jnp.where(pushed, jnp.maximum(depth, 0.0), 0.0)
    px = px + depth * nx
    py = py + depth * ny
    vrel = (pvx - fish_vx) * nx + (pvy - fish_vy) * ny
    dv = jnp.where(pushed & (vrel < 0.0), -2.0 * vrel, 0.0)
    return px, py, pvx + dv * nx, pvy + dv * ny


def update_contacts(contacts: Contacts, hits: BodyHits, eaten, pushed, substep, params):
    """The contact memory after a sub-step (mouth contact lasts while within the slop).

    A prey pushed now that was not touching the body before starts a new
    contact: it makes one escape jump, in the next sub-step.
    """
    r_slop = params.mouth_radius + params.prey_radius + CONTACT_SLOP
    ate = jnp.any(eaten)
    return contacts.replace(
        mouth=hits.at_mouth | (contacts.mouth & (hits.d2 <= r_slop * r_slop)),
        near=hits.d2 <= params.sensing_distance**2,
        touched=pushed,
        jump=pushed & ~contacts.touched,
        n_eaten=contacts.n_eaten + ate.astype(jnp.int32),
        meal_substep=jnp.where(ate, jnp.asarray(substep, jnp.int32), contacts.meal_substep),
    )


def _segment_distance_sq(pu, pw, au, aw, bu, bw):
    """Squared distance from points (pu, pw) to the segment from (au, aw) to (bu, bw)."""
    du, dw = bu - au, bw - aw
    t = ((pu - au) * du + (pw - aw) * dw) / jnp.maximum(du * du + dw * dw, 1e-12)
    t = jnp.clip(t, 0.0, 1.0)
    eu, ew = pu - (au + t * du), pw - (aw + t * dw)
    return eu * eu + ew * ew


def predator_touches_fish(gx, gy, c, s, params: EnvParams):
    """Whether the predator circle, centred (gx, gy) from the mouth centre, touches the fish ([] bool).

    Any overlap with the mouth circle, the head circle or the tail triangle
    counts (SPEC 4.3); (c, s) is the fish's heading.
    """
    r = params.predator_radius
    hr = params.head_radius
    u = gx * c + gy * s
    w = jnp.abs(gy * c - gx * s)  # the body is symmetric about its axis
    mouth = gx * gx + gy * gy <= (r + params.mouth_radius) ** 2
    head = (u + hr) ** 2 + w * w <= (r + hr) ** 2
    # Tail: half-triangle (-hr, 0), (-hr, hr), (tip, 0) on the w >= 0 side.
    tip = -(hr + params.tail_length)
    slope = hr / jnp.maximum(params.tail_length, 1e-6)
    inside = (u <= -hr) & (u >= tip) & (w <= (u - tip) * slope)
    d_side = _segment_distance_sq(u, w, tip, 0.0, -hr, hr)
    d_back = _segment_distance_sq(u, w, -hr, 0.0, -hr, hr)
    tail = inside | (jnp.minimum(d_side, d_back) <= r * r)
    return mouth | head | tail
