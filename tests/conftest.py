"""Shared, session-scoped simulator fixtures.

JAX compilation dominates test time, so each distinct environment (static
shape / structure) is built and jitted once per session and shared. Traced
settings (wall_bounce, paralyze, init_*, energy, ...) are varied by passing a
modified ``params`` pytree to the same jitted functions instead of
recompiling. Programs compiled again anyway (fresh jitted functions of the
same shapes) load from the session's compilation cache (``pytest_configure``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest

from simfish.config import load_config
from simfish.io.actions import Actions
from simfish.world.env import SimFishEnv

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
#: The steering folder ``shared/`` beside the checkout (absent in a bare clone).
SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
#: The repository root.
REPO_ROOT = Path(__file__).resolve().parents[1]

#: ``SIMFISH_TEST_COMPILE_CACHE=off`` runs the tests without the session's compilation cache.
TEST_COMPILE_CACHE_ENV = "SIMFISH_TEST_COMPILE_CACHE"
_SESSION_CACHE = pytest.StashKey[Path]()


def pytest_configure(config):
    """One JAX persistent compilation cache for this test session, in a new temporary folder.

    Each ``train``, ``eval_agent`` or environment wrapper makes fresh jitted
    functions, so the same program (same HLO, shapes and options) is compiled
    again and again across tests. With the cache, a repeat loads the
    executable XLA already built in this session (the path `simfish train`
    and `evaluate` take by default). It starts empty every session and is
    removed at its end, so nothing leaks between runs. Set before anything
    compiles (JAX decides once per process whether the cache is used);
    subprocesses and Ray workers are not affected. A cache folder already
    chosen (``JAX_COMPILATION_CACHE_DIR``) is left as it is.
    """
    if os.environ.get(TEST_COMPILE_CACHE_ENV, "").strip().lower() in {"off", "0", "no", "false"}:
        return
    if jax.config.jax_compilation_cache_dir:
        return
    folder = Path(tempfile.mkdtemp(prefix="simfish-test-jax-cache-"))
    config.stash[_SESSION_CACHE] = folder
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Every program is stored: many small ones (replay, reset, evaluation steps) repeat too.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def pytest_unconfigure(config):
    folder = config.stash.get(_SESSION_CACHE, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True, scope="session")
def _no_compile_cache_in_home():
    """`simfish` commands run by tests (in-process or as subprocesses) keep out of ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SIMFISH_COMPILE_CACHE", "off")
        # `simfish bench`/`simulate` run in-process keep the session's single CPU device
        # (tests that spread worlds over several start a subprocess).
        patch.setenv("JAX_NUM_CPU_DEVICES", "1")
        yield


#: The golden dynamics setting (golden/README.md): deterministic bouts, no dark
#: band, no salt, static prey; predators off.
GOLDEN_OVERRIDES = {
    "fish.deterministic_action": True,
    "arena.dark_fraction": 0.0,
    "salt.enabled": False,
    "prey.num": 2,
    "prey.reproduction_mode": False,
    "prey.p_slow": 0.0,
    "prey.p_fast": 0.0,
    "prey.max_turning_angle": 0.0,
    "prey.p_large_turn": 0.0,
    "prey.p_escape": 0.0,
    "predator.probability_per_epoch_step": 0.0,
}

#: A small world with everything on: prey, predators early and often, salt.
SMALL_OVERRIDES = {
    "arena.width": 600,
    "arena.height": 500,
    "prey.num": 10,
    "max_sim_steps_per_episode": 60,
    "predator.immunity_steps": 5,
    "predator.epoch_num": 2,
    "predator.epoch_duration": 20,
    "predator.probability_per_epoch_step": 0.5,
    "predator.distance_from_fish": 150,
}

#: A 400 x 400 world with 20 prey and 30-step episodes: the RL tests' tiny world.
TINY_ENV = {
    "arena.width": 400,
    "arena.height": 400,
    "arena.dark_fraction": 0.0,
    "prey.num": 20,
    "prey.reproduction_mode": False,
    "predator.probability_per_epoch_step": 0.0,
    "salt.enabled": False,
    "max_sim_steps_per_episode": 30,
}
#: Training options small enough to learn within seconds on tiny worlds.
TINY_TRAINING = {
    "num_envs": 4,
    "burn_in_length": 2,
    "trace_length": 8,
    "sequence_period": 5,
    "bootstrap_n": 2,
    "batch_size": 4,
    "min_replay_size": 8,
    "max_replay_size": 64,
    "variable_update_period": 10,
    "target_update_period": 10,
}


@dataclasses.dataclass(frozen=True)
class Jitted:
    """An environment with jitted reset(key, params) / step(state, action, key, params).

    ``vreset(keys [B], params)`` and ``vstep(states, actions [B], keys [B], params)``
    are the jitted vmapped versions (params shared by all worlds).
    """

    env: SimFishEnv
    reset: callable
    step: callable
    info: callable
    vreset: callable
    vstep: callable

    @property
    def params(self):
        return self.env.params

    def rollout(self, key, actions, params=None):
        """Runs ``actions`` from a reset; returns (states, timesteps) lists (reset first)."""
        params = self.params if params is None else params
        k_reset, k_steps = jax.random.split(key)
        state, ts = self.reset(k_reset, params)
        states, steps = [state], [ts]
        for i, a in enumerate(actions):
            state, ts = self.step(state, a, jax.random.fold_in(k_steps, i), params)
            states.append(state)
            steps.append(ts)
        return states, steps


def _jitted(config) -> Jitted:
    env = SimFishEnv(config, Actions.default(), vision=None)

    def reset(key, params):
        return env.reset(key, params)

    def step(state, action, key, params):
        return env.step(state, action, key, params)

    return Jitted(
        env=env,
        reset=jax.jit(reset),
        step=jax.jit(step),
        info=jax.jit(env.info),
        vreset=jax.jit(jax.vmap(reset, in_axes=(0, None))),
        vstep=jax.jit(jax.vmap(step, in_axes=(0, 0, 0, None))),
    )


@pytest.fixture(scope="session")
def golden_world() -> Jitted:
    """The golden-case world (normal arena, static prey, deterministic bouts)."""
    return _jitted(load_config("normal", GOLDEN_OVERRIDES))


@pytest.fixture(scope="session")
def small_config():
    """Config of the small everything-on world."""
    return load_config("normal", SMALL_OVERRIDES)


@pytest.fixture(scope="session")
def small_world(small_config) -> Jitted:
    """A small world with prey, predators and salt (random bouts)."""
    return _jitted(small_config)


@pytest.fixture(scope="session")
def cloud_world() -> Jitted:
    """Prey in clouds with reproduction (fast births and deaths)."""
    return _jitted(
        load_config(
            "sparse",
            {
                "prey.reproduction_mode": True,
                "prey.birth_rate": 0.05,
                "prey.p_death": 0.2,
                "prey.safe_duration": 2,
                "max_sim_steps_per_episode": 200,
            },
        )
    )


#: The shared tiny run: ``TINY_ENV`` trained with ``TINY_TRAINING`` for this many env steps.
TINY_RUN_STEPS = 400
TINY_RUN_SEED = 3


@pytest.fixture(scope="session")
def tiny_trained_run(tmp_path_factory):
    """One tiny training run for the session, with two evaluation episodes in logs/eval_model.

    ``TINY_ENV`` trained with ``TINY_TRAINING`` for ``TINY_RUN_STEPS`` env steps
    (seed ``TINY_RUN_SEED``, about twenty learner steps), then evaluated for two
    episodes (seed 3), so the logs hold the agent's LSTM state. Returns
    ``(run_dir, summary)``, ``summary`` as ``train`` returned it. Never modify it:
    a test module takes its own copy with :func:`copy_run`.
    """
    from simfish_rl.config import TrainingConfig
    from simfish_rl.eval_simfish_agent import eval_agent
    from simfish_rl.training import train

    run_dir = tmp_path_factory.mktemp("tiny_run") / "tiny"
    summary = train(run_dir, load_config("normal", TINY_ENV), TrainingConfig().replace(TINY_TRAINING),
                    num_steps=TINY_RUN_STEPS, seed=TINY_RUN_SEED, progress=False, overlap=False)
    eval_agent(None, run_dir, num_episodes=2, log_subdir="eval_model", seed=3)
    return run_dir, dict(summary)


def copy_run(run_dir: Path, tmp_path_factory, name: str) -> Path:
    """A copy of the run directory ``run_dir`` in a new temporary folder ``name``."""
    copy = tmp_path_factory.mktemp(name) / run_dir.name
    shutil.copytree(run_dir, copy)
    return copy
