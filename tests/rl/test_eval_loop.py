"""Tests for simfish_rl.eval_simfish_agent.StateEnvLoop with a fake env and a fake actor."""

from __future__ import annotations

from typing import NamedTuple

import dm_env
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from dm_env import specs

from simfish.io.logs import list_episodes, load_episode
from simfish.world.types import OAR
from simfish_rl.eval_simfish_agent import (
    SUMMARY_KEYS,
    Actor,
    Counter,
    RecurrentQActor,
    StateEnvLoop,
)
from simfish_rl.hdf5_logger import EnvInfoKeep, EnvLoopObserver, HDF5Logger, SimpleEnvInfoKeep

HIDDEN = 64


class FakeFishEnv(dm_env.Environment):
    """One tiny deterministic world: the fish walks right; rewards depend on the action."""

    def __init__(self, num_steps: int = 5, seed: int = 0) -> None:
        self.num_steps = num_steps
        self.rng = np.random.default_rng(seed)
        self.t = 0
        self.salt_location = np.zeros(2)
        self.env_variables = {"prey_num": 2, "max_sim_steps_per_episode": num_steps}
        self.sediment_record = {"key": np.zeros(2, np.uint32)}
        self.energy_associated_reward = self.consumption_associated_reward = 0.0
        self.salt_associated_reward = self.predator_associated_reward = 0.0
        self.wall_associated_reward = 0.0
        self.total_attacks_avoided = self.total_attacks_captured = 0

    def _observation(self, action: int, reward: float) -> OAR:
        visual = np.full((139, 3, 2), self.t, np.float32)
        internal = np.array([1.0, 1.0, self.t], np.float32)
        return OAR((visual, internal), np.int32(action), np.float32(reward))

    def reset(self) -> dm_env.TimeStep:
        self.t = 0
        self.salt_location = self.rng.uniform(0, 100, 2)
        self.sediment_record = {"key": self.rng.integers(0, 2**32, 2, dtype=np.uint32)}
        self.energy_associated_reward = 0.0
        return dm_env.restart(self._observation(0, 0.0))

    def step(self, action) -> dm_env.TimeStep:
        self.t += 1
        reward = float(self.rng.normal()) + 0.1 * int(action)
        self.energy_associated_reward += reward
        obs = self._observation(int(action), reward)
        if self.t >= self.num_steps:
            return dm_env.termination(reward, obs)
        return dm_env.transition(reward, obs)

    def get_info(self) -> dict:
        return {
            "fish_x": [float(self.t)],
            "prey_x": [list(self.rng.uniform(0, 100, self.t % 3))],
            "event_consumed_prey": [False],
        }

    def observation_spec(self):
        return (specs.Array((139, 3, 2), np.float32), specs.Array((3,), np.float32))

    def action_spec(self):
        return specs.DiscreteArray(21)


class FakeRecurrentActor:
    """An acme-like actor whose hidden state counts the observations it consumed."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.hidden = np.zeros(HIDDEN, np.float32)
        self.log: list[str] = []
        self.updates = 0

    def observe_first(self, timestep: dm_env.TimeStep) -> None:
        assert timestep.first()
        self.hidden = np.zeros(HIDDEN, np.float32)
        self.log.append("observe_first")

    def select_action(self, observation: OAR) -> np.ndarray:
        seen = observation.observation[0][0, 0, 0]  # the fake env writes t into the visual array
        self.hidden = np.full(HIDDEN, seen + 1.0, np.float32)
        self.log.append("select_action")
        return np.int32(self.rng.integers(0, 21))

    def observe(self, action, next_timestep: dm_env.TimeStep) -> None:
        self.log.append("observe")

    def update(self, wait: bool = False) -> None:
        self.updates += 1

    def get_recurrent_state(self) -> np.ndarray:
        return self.hidden  # the loop must copy: this buffer is replaced, not mutated, here


class RecordingObserver(EnvLoopObserver):
    """Keeps what the loop hands to observers."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def observe_first(self, env, timestep) -> None:
        self.calls = [("first", timestep.step_type)]

    def observe(self, env, timestep, action, actor_state=None) -> None:
        self.calls.append(
            ("step", int(action), None if actor_state is None else actor_state.copy())
        )

    def get_metrics(self) -> dict:
        return {"observed_steps": len(self.calls) - 1}


def test_fake_actor_satisfies_the_protocol():
    assert isinstance(FakeRecurrentActor(), Actor)


def test_run_episode_summary():
    env, actor = FakeFishEnv(num_steps=5), FakeRecurrentActor()
    rewards = []
    real_step = env.step

    def recording_step(action):
        timestep = real_step(action)
        rewards.append(timestep.reward)
        return timestep

    env.step = recording_step
    loop = StateEnvLoop(env, actor, observers=[RecordingObserver()])
    result = loop.run_episode()
    assert set(SUMMARY_KEYS) <= set(result)
    assert result["episode_length"] == 5
    assert result["episode_return"] == pytest.approx(sum(rewards), abs=0.0, rel=1e-12)
    assert result["steps_per_second"] > 0
    assert result["episodes"] == 1 and result["steps"] == 5
    assert result["observed_steps"] == 5
    assert actor.log == ["observe_first"] + ["select_action", "observe"] * 5
    assert actor.updates == 5
    result = loop.run_episode()
    assert result["episodes"] == 2 and result["steps"] == 10


def test_observers_get_the_hidden_state_that_chose_each_action():
    env, actor = FakeFishEnv(num_steps=4), FakeRecurrentActor(seed=3)
    observer = RecordingObserver()
    StateEnvLoop(env, actor, should_update=False, observers=[observer]).run_episode()
    assert observer.calls[0] == ("first", dm_env.StepType.FIRST)
    steps = observer.calls[1:]
    assert len(steps) == 4
    for t, (_, _, state) in enumerate(steps):
        # Chosen after consuming the observation of time t (which carries t).
        np.testing.assert_array_equal(state, np.full(HIDDEN, t + 1.0, np.float32))
    assert actor.updates == 0


def test_actor_without_state_gives_none_and_bad_actor_is_rejected():
    class Stateless(FakeRecurrentActor):
        get_recurrent_state = None

    observer = RecordingObserver()
    StateEnvLoop(FakeFishEnv(num_steps=2), Stateless(), observers=[observer]).run_episode()
    assert all(call[2] is None for call in observer.calls[1:])

    class NoSelect:
        def observe_first(self, timestep): ...

    with pytest.raises(TypeError, match="no select_action"):
        StateEnvLoop(FakeFishEnv(), NoSelect())


def test_counter_prefix():
    counter = Counter(prefix="evaluator")
    loop = StateEnvLoop(FakeFishEnv(num_steps=3), FakeRecurrentActor(), counter=counter)
    result = loop.run_episode()
    assert result["evaluator_episodes"] == 1 and result["evaluator_steps"] == 3


def test_run_limits_and_validation(tmp_path):
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=0)
    loop = StateEnvLoop(FakeFishEnv(num_steps=3), FakeRecurrentActor(), logger=logger)
    assert loop.run(num_steps=7) == 9  # stops after the episode that reaches 7 steps
    assert len(logger.written) == 3
    assert loop.run(num_episodes=0) == 0
    with pytest.raises(ValueError, match="not both"):
        loop.run(num_episodes=1, num_steps=1)
    with pytest.raises(ValueError, match="num_episodes must be >= 0"):
        loop.run(num_episodes=-1)


def evaluate(directory, seed: int, num_episodes: int, num_steps: int = 6) -> list:
    """What eval_agent does once it has an env and an actor: loop + EnvInfoKeep + HDF5Logger."""
    logger = HDF5Logger(directory, label="eval_model", add_uid=False, wait_min=0)
    loop = StateEnvLoop(
        FakeFishEnv(num_steps=num_steps, seed=seed),
        FakeRecurrentActor(seed=seed),
        logger=logger,
        should_update=False,
        observers=[EnvInfoKeep(), SimpleEnvInfoKeep()],
    )
    loop.run(num_episodes=num_episodes)
    logger.close()
    return logger.written


def test_evaluation_writes_one_documented_file_per_episode(tmp_path):
    written = evaluate(tmp_path, seed=1, num_episodes=3, num_steps=6)
    assert written == list_episodes(tmp_path, label="eval_model")
    assert [p.name for p in written] == ["logs_1.hdf5", "logs_2.hdf5", "logs_3.hdf5"]
    for path in written:
        ep = load_episode(path)
        assert ep["episode_length"] == 6
        assert ep["fish_x"].shape == (7,)
        np.testing.assert_array_equal(ep["fish_x"], np.arange(7.0))
        assert ep["prey_x"].shape == (7, 2)
        assert ep["vis_observation"].shape == (7, 139, 3, 2)
        assert ep["actor_state"].shape == (6, HIDDEN)
        # actor_state[t] is the response to vis_observation[t].
        np.testing.assert_array_equal(
            ep["actor_state"][:, 0], ep["vis_observation"][:-1, 0, 0, 0] + 1
        )
        assert ep["episode_return"] == pytest.approx(float(np.sum(ep["reward"])), rel=1e-12)
        assert ep["energy_associated_reward"] == pytest.approx(ep["episode_return"], rel=1e-12)
        assert ep["reward"][0] == 0.0
        assert ep["env_variables"] == {"prey_num": 2, "max_sim_steps_per_episode": 6}
        assert ep["salt_location"].shape == (1, 2)
    # A second evaluation into the same label continues the numbering.
    more = evaluate(tmp_path, seed=2, num_episodes=2)
    assert [p.name for p in more] == ["logs_4.hdf5", "logs_5.hdf5"]


def test_same_seed_gives_identical_episode_data(tmp_path):
    first = evaluate(tmp_path / "a", seed=5, num_episodes=2)
    second = evaluate(tmp_path / "b", seed=5, num_episodes=2)
    other = evaluate(tmp_path / "c", seed=6, num_episodes=2)
    timing = {"steps_per_second", "episode_duration_sec", "env_reset_duration_sec",
              "select_action_duration_sec", "env_step_duration_sec"}  # fmt: skip
    for a, b, c in zip(first, second, other, strict=True):
        ep_a, ep_b, ep_c = load_episode(a), load_episode(b), load_episode(c)
        assert set(ep_a) == set(ep_b)
        for key in set(ep_a) - timing:
            values_a, values_b = ep_a[key], ep_b[key]
            if not isinstance(values_a, dict):
                values_a, values_b = {key: values_a}, {key: values_b}
            assert set(values_a) == set(values_b), key
            for name in values_a:
                np.testing.assert_array_equal(
                    values_a[name], values_b[name], err_msg=f"{key}/{name}"
                )
        assert not np.array_equal(ep_a["reward"], ep_c["reward"])


# --------------------------------------------------------------------------
# RecurrentQActor, with a tiny stand-in for R2D2Networks.apply (no network compile).


class CoreState(NamedTuple):
    hidden: jax.Array
    cell: jax.Array


def fake_initial_state(batch_size):
    return CoreState(jnp.zeros((batch_size, HIDDEN)), jnp.zeros((batch_size, HIDDEN)))


def fake_apply(params, key, inputs: OAR, state: CoreState):
    """q = internal @ W (batched [1, A]); the hidden state accumulates the internal state's sum."""
    visual, internal = inputs.observation
    assert visual.shape == (1, 139, 3, 2) and inputs.action.shape == (1,)
    q = internal @ params
    hidden = state.hidden + jnp.sum(internal, axis=-1, keepdims=True)
    return q, CoreState(hidden, state.cell)


PARAMS = jnp.zeros((3, 21)).at[2, 7].set(1.0)  # argmax is action 7 once internal[2] > 0


def test_recurrent_q_actor_is_greedy_and_exposes_its_hidden_state():
    env = FakeFishEnv(num_steps=4)
    actor = RecurrentQActor(fake_apply, fake_initial_state, PARAMS, jax.random.key(0), epsilon=0.0)
    assert isinstance(actor, Actor)
    timestep = env.reset()
    actor.observe_first(timestep)
    expected_hidden = 0.0
    for _ in range(3):
        timestep = env.step(actor.select_action(timestep.observation))
        expected_hidden += 2.0 + (env.t - 1)  # internal = [1, 1, t-1] of the observation consumed
        state = actor.get_recurrent_state()
        assert state.shape == (HIDDEN,) and state.dtype == np.float32
        np.testing.assert_allclose(state, expected_hidden)
    assert int(timestep.observation.action) == 7  # greedy once internal[2] > 0
    actor.observe_first(env.reset())
    np.testing.assert_array_equal(actor.get_recurrent_state(), np.zeros(HIDDEN))


def test_recurrent_q_actor_exploration_is_seeded():
    obs = FakeFishEnv().reset().observation

    def actions(seed, epsilon):
        actor = RecurrentQActor(
            fake_apply, fake_initial_state, PARAMS, jax.random.key(seed), epsilon
        )
        actor.observe_first(None)
        return [int(actor.select_action(obs)) for _ in range(40)]

    assert actions(1, 1.0) == actions(1, 1.0)
    assert actions(1, 1.0) != actions(2, 1.0)
    assert len(set(actions(1, 1.0))) > 10  # uniform over 21 actions
    with pytest.raises(ValueError, match="epsilon must be in"):
        RecurrentQActor(fake_apply, fake_initial_state, PARAMS, jax.random.key(0), epsilon=1.5)


def test_recurrent_q_actor_update_pulls_parameters():
    new_params = jnp.zeros((3, 21)).at[0, 4].set(1.0)
    actor = RecurrentQActor(
        fake_apply,
        fake_initial_state,
        PARAMS,
        jax.random.key(0),
        0.0,
        variable_source=lambda: new_params,
    )
    obs = FakeFishEnv().reset().observation
    actor.observe_first(None)
    actor.update()
    assert int(actor.select_action(obs)) == 4


def test_evaluation_with_recurrent_q_actor_logs_its_hidden_state(tmp_path):
    logger = HDF5Logger(tmp_path, label="eval_model", add_uid=False, wait_min=0)
    actor = RecurrentQActor(fake_apply, fake_initial_state, PARAMS, jax.random.key(0), epsilon=0.0)
    loop = StateEnvLoop(FakeFishEnv(num_steps=5), actor, logger=logger, observers=[EnvInfoKeep()])
    loop.run(num_episodes=1)
    ep = load_episode(logger.written[0])
    # hidden after consuming observation t = sum over s <= t of internal_state[s].sum()
    expected = np.cumsum(ep["internal_state"].sum(axis=1))[:-1]
    np.testing.assert_allclose(
        ep["actor_state"], np.repeat(expected[:, None], HIDDEN, axis=1), rtol=1e-6
    )
    np.testing.assert_array_equal(ep["action"][2:], 7)


# --------------------------------------------------------------------------
# A real world (vision-less, to keep the compile short) logged end to end.


class RandomActor:
    """Uniformly random bouts; no recurrent state."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def observe_first(self, timestep) -> None:
        pass

    def select_action(self, observation) -> np.int32:
        return np.int32(self.rng.integers(0, 21))

    def observe(self, action, next_timestep) -> None:
        pass

    def update(self, wait: bool = False) -> None:
        pass


def test_base_environment_episode_follows_the_users_log_conventions(tmp_path):
    import h5py

    from simfish.config import load_config
    from simfish.wrappers.base_environment import BaseEnvironment

    config = load_config("normal", {
        "arena.width": 600, "arena.height": 500, "prey.num": 30, "prey.p_death": 0.0,
        "max_sim_steps_per_episode": 40, "predator.immunity_steps": 2,
        "predator.epoch_num": 2, "predator.epoch_duration": 10,
        "predator.probability_per_epoch_step": 1.0, "predator.distance_from_fish": 150,
    })  # fmt: skip
    env = BaseEnvironment(config, seed=4, vision=False)
    logger = HDF5Logger(tmp_path, label="eval_model", add_uid=False, wait_min=0)
    loop = StateEnvLoop(env, RandomActor(4), logger=logger, should_update=False,
                        observers=[EnvInfoKeep()])
    loop.run(num_episodes=1)
    logger.close()
    (path,) = logger.written
    with h5py.File(path, "r") as f:
        assert f["sediment"].shape == (1, 500, 600) and f["sediment"].dtype == np.uint8
        first_row = f["sediment"][0, :, :]  # the users' indexing
        assert first_row.std() > 0
        present = f["predator_present"][()]
        px, py = f["predator_x"][()], f["predator_y"][()]
        assert present.dtype == np.bool_ and present.any() and not present.all()
        np.testing.assert_array_equal(px[~present], 0.0)
        np.testing.assert_array_equal(py[~present], 0.0)
        assert (px[present] != 0).all() and np.isfinite(px).all()
        env_vars = f["env_variables"].attrs
        for unset in ("prey_stim_file", "predator_stim_file", "fish_init_x"):
            assert unset not in env_vars
        assert env_vars["prey_num"] == 30
    ep = load_episode(path)
    rows = ep["episode_length"] + 1
    assert ep["prey_x"].shape[0] == rows and ep["prey_x"].shape[1] <= 30
    eaten = np.isnan(ep["prey_x"]).sum(axis=1)  # dead (eaten) prey: NaN
    np.testing.assert_array_equal(eaten[1:] - eaten[:-1] >= 0, True)
    record = ep["sediment_record"]
    assert record["stored"] == "image" and record["pixel_scale"] > 0
    assert {"wavevectors", "phases", "amplitudes"} <= set(record)
