"""Predator: epochs, spawning, approach, catch and avoidance rewards."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simfish.config import load_config
from simfish.io.actions import Actions
from simfish.world.params import make_params
from simfish.world.state import with_fish, with_predator

ACTIONS = Actions.default()
NULL = ACTIONS.get_action_id("Null")


@pytest.fixture(scope="module")
def quiet(small_world):
    """Small-world params without random spawning (predators placed by hand)."""
    return small_world.params.replace(p_predator=jnp.float32(0.0))


@pytest.fixture(scope="module")
def placed(small_world, quiet):
    state, _ = small_world.reset(jax.random.PRNGKey(0), quiet)
    state = with_fish(state, 300.0, 250.0, 0.0)
    return state.replace(step=jnp.int32(30))  # past the immunity period (5)


def test_predator_catches_the_fish(small_world, quiet, placed):
    state = with_predator(placed, 300.0, 340.0, 300.0, 250.0)  # 90 px away, aimed at the fish
    caught_at = None
    for i in range(5):
        state, ts = small_world.step(state, NULL, jax.random.PRNGKey(i), quiet)
        if int(state.last_events.attacks_captured):
            caught_at = i
            break
    assert caught_at is not None
    assert float(state.last_terms.predator) == float(quiet.reward_predator_caught)
    assert not bool(state.predator.present)
    assert int(state.counts.attacks_captured) == 1 and int(state.counts.attacks_avoided) == 0
    info = small_world.info(state)
    assert bool(info["event_captured_by_predator"]) and np.isnan(float(info["predator_x"]))


def test_no_catch_during_immunity(small_world, quiet, placed):
    state = with_predator(placed.replace(step=jnp.int32(0)), 300.0, 300.0, 300.0, 250.0)
    state, _ = small_world.step(state, NULL, jax.random.PRNGKey(0), quiet)
    assert int(state.last_events.attacks_captured) == 0


def test_predator_that_misses_gives_avoidance_reward(small_world, quiet, placed):
    # Aimed at a point 200 px from the fish: it arrives there and is removed.
    state = with_predator(placed, 100.0, 450.0, 100.0, 420.0)
    total = 0.0
    for i in range(4):
        state, ts = small_world.step(state, NULL, jax.random.PRNGKey(i), quiet)
        total += float(state.last_terms.predator)
        if not bool(state.predator.present):
            break
    assert not bool(state.predator.present)
    assert int(state.counts.attacks_avoided) == 1 and int(state.counts.attacks_captured) == 0
    assert total == float(quiet.reward_predator_avoidance)
    assert bool(small_world.info(state)["event_survived_predator"])


def test_predator_cruises_at_its_velocity(small_world, quiet, placed):
    state = with_predator(placed, 100.0, 450.0, 500.0, 450.0)
    xs = []
    for i in range(8):
        state, _ = small_world.step(state, NULL, jax.random.PRNGKey(i), quiet)
        xs.append(float(state.predator.x))
    assert float(state.predator.y) == pytest.approx(450.0)
    assert (xs[-1] - xs[-4]) / (3 * 0.2) == pytest.approx(float(quiet.predator_velocity), rel=1e-3)


def test_predators_spawn_during_epochs_away_from_walls(small_world):
    """Random play: predators appear only in epochs, 150 px from the fish, inside the arena."""
    params = small_world.params.replace(p_predator=jnp.float32(1.0))
    state, _ = small_world.reset(jax.random.PRNGKey(5), params)
    state = with_fish(state, 300.0, 250.0, 0.0)
    starts = np.asarray(state.predator.epoch_starts)
    assert starts.shape == (2,) and np.all(starts >= 5) and np.all(starts < 60 - 20)
    spawned = 0
    for i in range(40):
        before = bool(state.predator.present)
        in_epoch = np.any((i >= starts) & (i < starts + 20))
        fish_x, fish_y = float(state.fish.x), float(state.fish.y)
        state, _ = small_world.step(state, NULL, jax.random.PRNGKey(i), params)
        new_spawn = not before and (
            bool(state.predator.present) or int(state.last_events.attacks_captured)
        )
        if new_spawn:
            spawned += 1
            assert in_epoch
            assert float(state.predator.target_x) == pytest.approx(fish_x)
            assert float(state.predator.target_y) == pytest.approx(fish_y)
            r = float(params.predator_radius)
            assert r - 1 <= float(state.predator.x) <= 600 - r + 1
    assert spawned >= 1


def test_episodes_too_short_for_an_epoch_have_no_predator():
    cfg = load_config("normal", {"max_sim_steps_per_episode": 240})  # < 200 + 50
    _, static = make_params(cfg, ACTIONS)
    assert static.n_epochs == 0 and not static.predator_enabled
    cfg = load_config("normal")
    _, static = make_params(cfg, ACTIONS)
    assert static.n_epochs == 5
