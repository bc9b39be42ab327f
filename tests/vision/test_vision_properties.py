"""Behavioural properties of the eyes (issue 3), noise off unless stated."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simfish.config import load_config
from simfish.vision import (
    constant_sediment,
    make_sediment,
    make_vision,
    render_sediment,
    sediment_value,
    stripes_sediment,
)
from simfish.vision.observe import poisson

NUM_PREY = 8  # prey slots: one static shape for every test here
CENTRE = (1250.0, 1250.0)


@pytest.fixture(scope="module")
def config():
    return load_config("normal", {"eyes.shot_noise": False, "salt.enabled": False})


@pytest.fixture(scope="module")
def vision(config):
    return make_vision(config)


@pytest.fixture(scope="module")
def observe(vision):
    return jax.jit(vision.observe)


@pytest.fixture(scope="module")
def receptors(vision):
    return jax.jit(vision.receptors)


def world(fish=CENTRE, angle=0.0, prey=(), predator=None, sediment=None):
    """Arguments of Vision.observe / receptors for a hand-placed scene."""
    prey_xy = np.zeros((NUM_PREY, 2), np.float32)
    mask = np.zeros(NUM_PREY, bool)
    for i, p in enumerate(prey):
        prey_xy[i] = p
        mask[i] = True
    present = predator is not None
    return (
        jnp.asarray(fish, jnp.float32),
        jnp.asarray(angle, jnp.float32),
        jnp.asarray(prey_xy),
        jnp.asarray(mask),
        jnp.asarray(predator if present else (0.0, 0.0), jnp.float32),
        jnp.asarray(present),
        constant_sediment(30.0) if sediment is None else sediment,
    )


def rel(distance, angle, fish=CENTRE, heading=0.0):
    """A point ``distance`` px from the fish at ``angle`` rad relative to its heading."""
    return (fish[0] + distance * math.cos(heading + angle), fish[1] + distance * math.sin(heading + angle))


def test_observation_shape_dtype_and_values(observe):
    obs = observe(*world(prey=[rel(40, 0.3)]))
    assert obs.shape == (139, 3, 2)
    assert obs.dtype == jnp.float32
    o = np.asarray(obs)
    assert np.all(o == np.floor(o)) and o.min() >= 0 and o.max() <= 255


def test_jit_and_vmap_agree(vision, observe):
    scenes = [world(prey=[rel(40, 0.3)]), world(angle=1.0, predator=rel(100, 1.5)),
              world(fish=(300.0, 900.0), angle=-2.0)]
    batched = jax.tree.map(lambda *xs: jnp.stack(xs), *scenes)
    got = jax.jit(jax.vmap(vision.observe))(*batched)
    assert got.shape == (3, 139, 3, 2)
    for i, scene in enumerate(scenes):
        np.testing.assert_array_equal(np.asarray(got[i]), np.asarray(observe(*scene)))


def bump(obs, base):
    """UV photons above the empty scene, per position and eye."""
    return np.asarray(obs)[:, 0, :] - np.asarray(base)[:, 0, :]


def test_prey_ahead_seen_frontally_by_both_eyes_only(vision, observe):
    base = observe(*world())
    extra = bump(observe(*world(prey=[rel(30, 0.0)])), base)
    for eye in (0, 1):
        raised = np.flatnonzero(extra[:, eye] >= 2)
        assert raised.size > 0, f"eye {eye} does not see the prey ahead"
        # Every raised position looks within 0.35 rad of straight ahead.
        assert np.all(np.abs(vision.layout.obs_angles[eye, raised]) < 0.35)
    assert np.all(np.abs(extra[:, 0][vision.layout.obs_angles[0] < -0.5]) <= 1)
    assert np.all(np.abs(extra[:, 1][vision.layout.obs_angles[1] > 0.5]) <= 1)
    # Left eye: the high-index end; right eye: the low-index end.
    assert np.argmax(extra[:, 0]) > 100 and np.argmax(extra[:, 1]) < 39


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_side_prey_seen_by_that_eye_only(observe, side):
    base = observe(*world())
    extra = bump(observe(*world(prey=[rel(40, side * 1.0)])), base)
    seeing, blind = (1, 0) if side > 0 else (0, 1)
    assert extra[:, seeing].max() >= 5
    assert np.abs(extra[:, blind]).max() <= 1


def test_nearer_prey_gives_larger_and_brighter_image(observe):
    base = observe(*world())
    near = bump(observe(*world(prey=[rel(25, 0.0)])), base)[:, 1]
    far = bump(observe(*world(prey=[rel(60, 0.0)])), base)[:, 1]
    assert near.max() > far.max()
    assert (near >= 2).sum() > (far >= 2).sum()
    assert near.sum() > far.sum()


def test_wall_close_on_one_side_lowers_scatter_that_side(observe):
    # Heading +y: the right eye faces -x, towards the wall at x = 0.
    open_water = np.asarray(observe(*world(angle=math.pi / 2)))
    near_wall = np.asarray(observe(*world(fish=(30.0, 1250.0), angle=math.pi / 2)))
    uv_right, uv_left = near_wall[:, 0, 1], near_wall[:, 0, 0]
    assert uv_right.mean() < 0.7 * open_water[:, 0, 1].mean()
    assert uv_right.mean() < uv_left.mean() - 2
    assert abs(uv_left.mean() - open_water[:, 0, 0].mean()) < 1.5


def test_dark_band_lowers_scatter_and_red(observe):
    lit = np.asarray(observe(*world(fish=(1250.0, 1800.0))))
    dark = np.asarray(observe(*world(fish=(1250.0, 300.0))))
    for channel in range(3):
        for eye in range(2):
            assert dark[:, channel, eye].mean() < 0.5 * lit[:, channel, eye].mean()


def test_predator_shadow_zeroes_covered_red_arc(vision, receptors):
    predator = rel(100, math.pi / 2)  # right side, nearest edge 36 px away (< both circle radii)
    clear = receptors(*world())
    shaded = receptors(*world(predator=predator))
    half = math.atan2(64, 100)
    rf = vision.red_rf_size
    offset = np.abs(vision.layout.red_angles - math.pi / 2)  # heading 0: relative = absolute
    inside = offset < half - rf / 2
    outside = offset > half + rf / 2
    red_clear, red_shaded = np.asarray(clear.red), np.asarray(shaded.red)
    assert inside[1].sum() >= 10 and not inside[0].any()
    for v in range(red_clear.shape[1]):
        assert np.all(red_shaded[:, v][inside] == 0.0)
        np.testing.assert_allclose(red_shaded[:, v][outside], red_clear[:, v][outside], rtol=1e-6)
        assert np.all(red_clear[:, v][inside] > 3)  # lit sediment there without the predator
    # UV is not shaded.
    np.testing.assert_allclose(np.asarray(shaded.uv), np.asarray(clear.uv), rtol=1e-6)


def test_far_predator_casts_no_shadow(receptors):
    clear = receptors(*world())
    far = receptors(*world(predator=rel(300, math.pi / 2)))  # edge 236 px > 187 px
    np.testing.assert_allclose(np.asarray(far.red), np.asarray(clear.red), rtol=1e-6)


def test_deterministic_without_noise(observe):
    scene = world(angle=0.4, prey=[rel(35, 0.2), rel(80, -0.7)], predator=rel(110, 1.0))
    a = np.asarray(observe(*scene, jax.random.key(0)))
    b = np.asarray(observe(*scene, jax.random.key(1)))
    np.testing.assert_array_equal(a, b)


def mirror_scene(prey, predator, heading_up=True):
    """A scene whose body axis is the arena's vertical mid-line, and its mirror image."""
    axis_x = 1249.5  # centre of the lit area [-0.5, 2499.5]
    fish = (axis_x, 900.0)
    angle = -math.pi / 2 if heading_up else math.pi / 2
    flip = lambda p: (2 * axis_x - p[0], p[1])  # noqa: E731
    sediment = stripes_sediment("y", 30.0, 20.0, 70.0)  # symmetric under x -> -x
    a = world(fish=fish, angle=angle, prey=prey, predator=predator, sediment=sediment)
    b = world(fish=fish, angle=angle, prey=[flip(p) for p in prey],
              predator=None if predator is None else flip(predator), sediment=sediment)
    return a, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mirror_symmetry(observe, seed):
    rng = np.random.default_rng(seed)
    fish = (1249.5, 900.0)
    prey = [(fish[0] + dx, fish[1] + dy) for dx, dy in rng.uniform(-120, 120, (NUM_PREY, 2))]
    predator = (fish[0] + rng.uniform(-90, 90), fish[1] + rng.uniform(-90, 90))
    a, b = mirror_scene(prey, predator, heading_up=seed != 1)
    obs = np.asarray(observe(*a))
    mirrored = np.asarray(observe(*b))
    expected = obs[::-1, :, ::-1]  # eyes swapped, positions reversed
    diff = np.abs(mirrored - expected)
    assert diff.max() <= 1.0
    assert (diff > 0).mean() < 0.02


def test_poisson_statistics():
    key = jax.random.key(0)
    for i, lam in enumerate([0.7, 4.0, 11.0, 16.0, 40.0]):
        x = np.asarray(poisson(jax.random.fold_in(key, i), jnp.full((40000,), lam)))
        assert np.all(x == np.floor(x)) and x.min() >= 0
        se = math.sqrt(lam / x.size)
        assert abs(x.mean() - lam) < 5 * se
        assert abs(x.var() / lam - 1.0) < 0.05
    # Small means: exact probabilities.
    x = np.asarray(poisson(jax.random.key(3), jnp.full((100000,), 2.0)))
    assert abs((x == 0).mean() - math.exp(-2.0)) < 0.005
    assert abs((x == 2).mean() - 2.0 * math.exp(-2.0)) < 0.005


def test_shot_noise_in_observation(vision):
    noisy = dataclasses.replace(vision, shot_noise=True)
    scene = world(prey=[rel(30, 0.0)])
    keys = jax.random.split(jax.random.key(5), 400)
    obs = np.asarray(jax.jit(jax.vmap(noisy.observe, in_axes=(None,) * 7 + (0,)))(*scene, keys))
    clean = np.asarray(vision.observe(*scene))
    assert obs.shape == (400, 139, 3, 2)
    # Same key, same observation; noise averages to the clean signal (minus flooring).
    np.testing.assert_array_equal(obs[0], np.asarray(noisy.observe(*scene, keys[0])))
    assert obs.std(axis=0).mean() > 1.0
    assert abs((obs.mean(axis=0) - clean).mean()) < 0.6
    with pytest.raises(ValueError, match="key"):
        noisy.observe(*scene)


def test_in_light_helper(vision):
    assert float(vision.in_light(jnp.array([100.0, 300.0]))) == 0.0
    assert float(vision.in_light(jnp.array([100.0, 1300.0]))) == 1.0


def test_sediment_reproducible_bounded_and_small(config):
    a = make_sediment(jax.random.key(7), config.arena)
    b = make_sediment(jax.random.key(7), config.arena)
    c = make_sediment(jax.random.key(8), config.arena)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(np.asarray(a.phases), np.asarray(c.phases))
    nbytes = sum(np.asarray(x).nbytes for x in a)
    assert nbytes < 5_000  # independent of the arena size
    image = render_sediment(a, 0.0, 0.0, 300, 200)
    assert image.shape == (200, 300)
    assert image.min() >= 0.0 and image.max() <= config.arena.bottom_intensity
    assert 20 < image.mean() < 40 and image.std() > 3
    # Smooth on the sediment_sigma scale: neighbours correlate, distant pixels much less.
    z = image - image.mean()
    near = (z[:, :-1] * z[:, 1:]).mean() / z.var()
    far = (z[:, :-25] * z[:, 25:]).mean() / z.var()
    assert near > 0.9 and abs(far) < 0.3
    # The rendering is the texture itself.
    xy = jnp.array([[10.0, 20.0], [299.0, 199.0]])
    np.testing.assert_allclose(np.asarray(sediment_value(a, xy)), [image[20, 10], image[199, 299]], rtol=1e-5)


def test_sediment_vmaps_over_keys(config):
    sediments = jax.vmap(lambda k: make_sediment(k, config.arena))(jax.random.split(jax.random.key(0), 4))
    assert sediments.wavevectors.shape == (4, 64, 2)


def test_receptor_values_by_hand(vision, receptors):
    """Open water, no dark band at the fish: scatter, prey image and red by hand."""
    k = 0.01
    sig = receptors(*world(fish=(1250.0, 1500.0), prey=[rel(30, 0.0, fish=(1250.0, 1500.0))]))
    # Right eye, frontal receptor 0 (angle -30 deg): ray direction u, eye offset (0, 2.5).
    a = vision.layout.uv_angles[1, 0]
    u = np.array([math.cos(a), math.sin(a)])
    density = abs(u[0]) + abs(u[1]) - 0.5 * abs(u[0] * u[1])
    scatter = 0.1 * (1 - 0.001) / k * density * math.exp(-k * (u @ np.array([0.0, 2.5])))
    assert float(sig.uv_scatter[1, 0]) == pytest.approx(scatter, rel=1e-4)
    # The prey 30 px ahead, seen from the right eye at (0, 2.5): a receptor well inside
    # the prey's interval shares all its bins with it.
    rho = math.hypot(30.0, 2.5)
    theta = math.atan2(-2.5, 30.0)
    half = math.atan(2.0 / (2 * rho))
    angles = vision.layout.uv_angles[1]
    j = int(np.argmin(np.abs(angles - theta)))
    assert abs(angles[j] - theta) + 0.0133 / 2 < half
    bins = np.round((angles[j] + 0.0133 / 2) / 0.001) - np.round((angles[j] - 0.0133 / 2) / 0.001) + 1
    prey = 1.2 * math.exp(-k * rho) * bins
    assert float(sig.uv[1, j] - sig.uv_scatter[1, j]) == pytest.approx(prey, rel=1e-4)
    # Red at 50 deg: 30 * exp(-k d), d = distance of the circle point from the body origin.
    b = vision.layout.red_angles[0, 20]
    eye = np.array([0.0, -2.5])
    point = eye + 50 * math.tan(math.radians(50)) * np.array([math.cos(b), math.sin(b)])
    assert float(sig.red[0, 0, 20]) == pytest.approx(30 * math.exp(-k * np.hypot(*point)), rel=1e-4)


def test_non_square_arena_walls():
    config = load_config("normal", {"eyes.shot_noise": False, "arena.width": 3000,
                                    "arena.height": 1200, "arena.dark_fraction": 0.0})
    observe = jax.jit(make_vision(config).observe)
    centre = np.asarray(observe(*world(fish=(1500.0, 600.0), angle=math.pi / 2)))
    # Heading +y: the left eye faces +x, towards the wall at x = 3000.
    east = np.asarray(observe(*world(fish=(2980.0, 600.0), angle=math.pi / 2)))
    assert east[:, 0, 0].mean() < 0.7 * centre[:, 0, 0].mean()
    assert abs(east[:, 0, 1].mean() - centre[:, 0, 1].mean()) < 1.5
    # Heading +x: the right eye faces +y, towards the wall at y = 1200.
    south = np.asarray(observe(*world(fish=(1500.0, 1180.0), angle=0.0)))
    ahead = np.asarray(observe(*world(fish=(1500.0, 600.0), angle=0.0)))
    assert south[:, 0, 1].mean() < 0.7 * ahead[:, 0, 1].mean()
    assert south[:, 1, 1].min() == 0.0 and ahead[:, 1, 1].min() > 10  # red circle crosses the wall
