"""The Gymnasium adapter: spaces, episode ends and the env checker."""

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from simfish.wrappers.gym_env import SimFishGymEnv  # noqa: E402


@pytest.fixture(scope="module")
def env():
    return SimFishGymEnv("small")


def test_spaces_match_observations(env):
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    assert obs["visual"].shape == (139, 3, 2)
    assert env.action_space.n == 21
    assert set(info) >= {"fish_x", "prey_x", "consumption_associated_reward"}


def test_time_limit_is_truncation(env):
    env.reset(seed=2)
    for t in range(50):
        obs, reward, terminated, truncated, _ = env.step(t % 21)
        assert env.observation_space.contains(obs)
        assert np.isfinite(reward)
        if terminated or truncated:
            break
    assert truncated and not terminated and t == 49  # the small world has 50-step episodes
    with pytest.raises(ValueError, match="not in Discrete"):
        env.step(21)


def test_passes_gymnasium_env_checker(env):
    with pytest.warns(UserWarning):  # the checker warns about the unbounded internal Box
        check_env(env, skip_render_check=True)
