"""Learning smoke test: a short training run eats clearly more prey than random play.

World: the ``small`` preset (300 x 300 px, 60 still prey, 50-step episodes).
Measured here with 64 worlds x 4 episodes: a uniformly random policy eats
0.17 prey per episode and always doing the capture swim SCS eats 0.55. The
threshold of 1.5 prey per greedy episode is out of reach of random play: over
64 episodes its mean would have to be about nine times its expected value.

The ``quick`` profile samples 8 sequences per inserted one, so 24,000 env
steps give 600 learner steps. Trained so (December 2026), seeds 0-7 ate 3.7
to 5.3 prey per greedy episode, and 1.9 to 5.9 with the sediment's Fourier
sum computed as a product and sum (seed 0: 4.94 and 5.34). With the
profile's earlier single sample per insert, 40,000 env steps (125 learner
steps) gave 2.94, 1.17 and 0.00 for seeds 0-2: the test then passed on one
lucky seed, and a change to the step's numbers in the last bits could fail
it (docs/training_speed.md, "Learning in the smoke test").
"""

import jax
import numpy as np
import pytest

from simfish.config import load_config
from simfish.io.actions import Actions
from simfish_rl.builder import R2D2Builder
from simfish_rl.config import training_profile
from simfish_rl.eval_simfish_agent import load_policy
from simfish_rl.training import make_env, train

THRESHOLD = 1.5
NUM_WORLDS = 32
NUM_STEPS = 24_000  # the README's first command trains as long


def prey_per_episode(actor, params, epsilon, key, chunk, episodes_per_world=2):
    """Mean prey eaten per finished episode with a fixed epsilon in every world.

    The actor steps ``chunk`` steps a call (the trainer's ``sequence_period``, so
    that its program is the one training compiled) until every world has ended
    ``episodes_per_world`` episodes.
    """
    state = actor.init(key)
    state = state.replace(epsilons=np.full(NUM_WORLDS, epsilon, np.float32))
    steps = episodes_per_world * 51  # 50 steps and the reset after each LAST
    calls = -(-steps // chunk)  # 11 calls of 10: 110 steps, too few for one more episode
    ended, prey = [], []
    for i in range(calls):
        k = jax.random.fold_in(jax.random.fold_in(key, 1), i)
        state, (_, chunk_ended, stats) = actor.collect(params, state, k, chunk)
        ended.append(np.asarray(chunk_ended))
        prey.append(np.asarray(stats["prey_caught"]))
    ended = np.concatenate(ended)
    prey = np.concatenate(prey)[ended]
    assert len(prey) == NUM_WORLDS * episodes_per_world
    return float(prey.mean())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("learning") / "run"
    config = load_config("small")
    training = training_profile("quick", {"num_envs": NUM_WORLDS})
    train(run_dir, config, training, num_steps=NUM_STEPS, seed=0, progress=False, overlap=False)
    env = make_env(config, Actions.default())
    networks, params, _ = load_policy(run_dir, env)
    # The trainer's actor (its episode statistics hold prey_caught); epsilons set per call.
    actor = R2D2Builder(training, Actions.default()).make_actor(env, networks)
    return actor, params, training.sequence_period


def test_trained_agent_eats_clearly_more_prey_than_random_play(trained):
    actor, params, chunk = trained
    key = jax.random.PRNGKey(123)
    random_play = prey_per_episode(actor, params, 1.0, key, chunk)
    greedy = prey_per_episode(actor, params, 0.0, key, chunk)
    print(f"prey per episode: random {random_play:.2f}, trained (greedy) {greedy:.2f}")
    assert random_play < THRESHOLD / 3
    assert greedy >= THRESHOLD, f"trained agent ate {greedy:.2f} prey/episode (random {random_play:.2f})"
