"""Energy, salt and the reward terms (SPEC 4.5, 4.6)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simfish.io.actions import Actions
from simfish.world.state import with_fish, with_prey

ACTIONS = Actions.default()


def _random_play(world, params, key, worlds=8, steps=80):
    reset, step = world.vreset, world.vstep
    state, ts = reset(jax.random.split(key, worlds), params)
    for i in range(steps):
        k_a, k_s = jax.random.split(jax.random.fold_in(key, i))
        actions = jax.random.randint(k_a, (worlds,), 0, ACTIONS.num_actions)
        state, ts = step(state, actions, jax.random.split(k_s, worlds), params)
        yield state, ts


def test_energy_never_exceeds_one_and_reward_is_the_sum_of_terms(small_world):
    for state, ts in _random_play(small_world, small_world.params, jax.random.PRNGKey(0)):
        assert np.all(np.asarray(state.fish.energy) <= 1.0)
        terms = state.last_terms
        total = sum(
            np.asarray(getattr(terms, n))
            for n in ("energy", "consumption", "salt", "predator", "wall")
        )
        mid_or_last = np.asarray(ts.step_type) != 0
        np.testing.assert_allclose(
            np.asarray(ts.reward)[mid_or_last], total[mid_or_last], rtol=1e-6, atol=1e-7
        )


def test_episode_totals_are_sums_of_step_terms(small_world):
    key = jax.random.PRNGKey(1)
    params = small_world.params
    state, _ = small_world.reset(key, params)
    sums = dict.fromkeys(("energy", "consumption", "salt", "predator", "wall"), 0.0)
    ret = 0.0
    for i in range(40):
        state, ts = small_world.step(state, i % 21, jax.random.fold_in(key, i), params)
        for n in sums:
            sums[n] += float(getattr(state.last_terms, n))
        ret += float(ts.reward)
    for n, v in sums.items():
        assert float(getattr(state.totals, n)) == pytest.approx(v, rel=1e-5, abs=1e-6)
    assert float(state.totals.total()) == pytest.approx(ret, rel=1e-5, abs=1e-6)


def test_energy_use_of_a_deterministic_bout(golden_world):
    """Hand-computed: use = (0.00023 |d| + 0.0001 |a| + 0.00002) (x5 for captures)."""
    state, _ = golden_world.reset(jax.random.PRNGKey(0), golden_world.params)
    state = with_prey(with_fish(state, 1250.0, 1250.0, 0.0, energy=0.5), [[100.0, 100.0]])
    for name in ("SCS", "O-bend_R", "Null"):
        a = ACTIONS.get_action_id(name)
        d, ang = ACTIONS.means[a]
        use = 0.00023 * abs(d) + 0.0001 * abs(ang) + 0.00002
        use *= 5.0 if ACTIONS.is_capture[a] else 1.0
        new, ts = golden_world.step(state, a, jax.random.PRNGKey(1), golden_world.params)
        assert float(new.fish.energy) == pytest.approx(0.5 - use, abs=1e-6)
        assert float(new.last_terms.energy) == pytest.approx(-10.0 * use, rel=1e-5)
        assert float(ts.reward) == pytest.approx(-10.0 * use, rel=1e-5)


def test_eating_refills_energy_capped_at_one(golden_world):
    state, _ = golden_world.reset(jax.random.PRNGKey(0), golden_world.params)
    state = with_prey(
        with_fish(state, 1250.0, 1250.0, 0.0, energy=0.3), [[1258.0, 1250.0], [100.0, 100.0]]
    )
    state, ts = golden_world.step(
        state, ACTIONS.get_action_id("SCS"), jax.random.PRNGKey(1), golden_world.params
    )
    assert int(state.last_events.prey_caught) == 1
    assert float(state.fish.energy) == 1.0
    assert float(state.last_terms.consumption) == 3.0


def test_starvation_ends_the_episode_with_discount_zero(small_world):
    params = small_world.params.replace(init_energy=jnp.float32(0.0005))
    state, _ = small_world.reset(jax.random.PRNGKey(2), params)
    bs = ACTIONS.get_action_id("BS")
    state, ts = small_world.step(state, bs, jax.random.PRNGKey(3), params)
    assert int(ts.step_type) == 2 and float(ts.discount) == 0.0
    assert float(state.fish.energy) < 0.0
    # The next step starts a new episode.
    state, ts = small_world.step(state, bs, jax.random.PRNGKey(4), params)
    assert int(ts.step_type) == 0 and int(state.step) == 0
    assert float(state.fish.energy) == pytest.approx(0.0005)


def test_fixed_energy_level_holds(small_world):
    params = small_world.params.replace(
        fixed_energy=jnp.asarray(True),
        fixed_energy_level=jnp.float32(0.7),
        init_energy=jnp.float32(0.7),
    )
    for state, ts in _random_play(small_world, params, jax.random.PRNGKey(5), steps=20):
        np.testing.assert_array_equal(np.asarray(state.fish.energy), np.float32(0.7))
        assert np.all(np.asarray(ts.discount) == 1.0)


def test_salt_reward_follows_the_gradient(small_world):
    params = small_world.params
    state, _ = small_world.reset(jax.random.PRNGKey(6), params)
    sx, sy = float(state.arena.salt_x), float(state.arena.salt_y)
    assert 0.0 <= sx <= 600.0 and 0.0 <= sy <= 500.0
    state = with_fish(state, 100.0, 100.0, 0.0)
    state, _ = small_world.step(state, ACTIONS.get_action_id("Null"), jax.random.PRNGKey(7), params)
    conc = np.exp(-0.002 * np.hypot(100.0 - sx, 100.0 - sy))
    assert float(state.salt_concentration) == pytest.approx(conc, rel=1e-5)
    assert float(state.last_terms.salt) == pytest.approx(-0.05 * conc, rel=1e-5)
