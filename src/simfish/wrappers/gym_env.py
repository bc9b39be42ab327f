"""A Gymnasium adapter for one SimFish world (optional extra: ``pip install simfish[gym]``).

Other RL libraries can train on SimFish through :class:`SimFishGymEnv`. The
observation is the agent's OAR as a ``Dict`` space::

    {"visual": float32 [139, 3, 2], "internal": float32 [3],
     "prev_action": int, "prev_reward": float32 []}

An episode that ends by starvation or by eating every prey is ``terminated``;
one that reaches ``max_sim_steps_per_episode`` is ``truncated`` (its discount
stays 1 in dm_env terms). ``info`` carries the users' per-step info and the
episode's reward-term totals (``simfish.wrappers.metrics.REWARD_TERM_NAMES``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from simfish.config import SimFishConfig
from simfish.io.actions import Actions
from simfish.wrappers.base_environment import BaseEnvironment
from simfish.wrappers.metrics import REWARD_TERM_NAMES


class SimFishGymEnv(gym.Env):
    """One SimFish world as a ``gymnasium.Env``.

    Args:
      config: a ``SimFishConfig``, a preset name or YAML path, or the users' flat dict.
      actions: an ``Actions`` or the users' list of action dicts (default set if None).
    """

    metadata = {"render_modes": []}

    def __init__(self, config: SimFishConfig | str | dict = "normal",
                 actions: Actions | list | None = None):
        self._env = BaseEnvironment(config, actions, seed=0)
        oar = self._env.observation_spec()
        visual, internal = oar.observation
        num_actions = int(self._env.action_spec().num_values)
        self.observation_space = spaces.Dict(
            {
                "visual": spaces.Box(0.0, 255.0, shape=visual.shape, dtype=np.float32),
                "internal": spaces.Box(-np.inf, np.inf, shape=internal.shape, dtype=np.float32),
                "prev_action": spaces.Discrete(num_actions),
                "prev_reward": spaces.Box(-np.inf, np.inf, shape=(), dtype=np.float32),
            }
        )
        self.action_space = spaces.Discrete(num_actions)

    @property
    def simfish_env(self) -> BaseEnvironment:
        """The underlying dm_env world (``get_info()``, reward totals, state)."""
        return self._env

    def _obs(self, timestep) -> dict[str, Any]:
        (visual, internal), action, reward = timestep.observation
        return {
            "visual": np.asarray(visual, np.float32),
            "internal": np.asarray(internal, np.float32),
            "prev_action": int(action),
            "prev_reward": np.asarray(reward, np.float32),
        }

    def _info(self) -> dict[str, Any]:
        # One value per key; NaN (no predator) becomes None so infos compare equal.
        info = {
            k: None if isinstance(v[0], float) and np.isnan(v[0]) else v[0]
            for k, v in self._env.get_info().items()
        }
        info.update({name: getattr(self._env, name) for name in REWARD_TERM_NAMES})
        return info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Starts an episode; ``seed`` re-seeds the world."""
        super().reset(seed=seed)
        if seed is not None:
            self._env.seed(seed)
        timestep = self._env.reset()
        return self._obs(timestep), self._info()

    def step(self, action):
        """One swim bout: ``(observation, reward, terminated, truncated, info)``."""
        if not self.action_space.contains(int(action)):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        timestep = self._env.step(int(action))
        last = timestep.last()
        discount = float(timestep.discount)
        return (
            self._obs(timestep),
            float(timestep.reward),
            bool(last and discount == 0.0),
            bool(last and discount != 0.0),
            self._info(),
        )
