"""Building the agent's pieces, outside any training loop (acme's ``builder`` shape).

``R2D2Builder`` makes each piece from the environment spec and the training
options: ``make_networks``, ``make_replay``, ``make_optimizer``,
``make_learner`` and ``make_actor``. ``make_agent`` wires them together
for one run; the single-process trainer (``simfish_rl.training``) and other
drivers (e.g. distributed ones) call the same functions. Shapes come from the
environment's specs (``environment_spec_from_env``), never from constants.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
import optax

from simfish.config import SimFishConfig
from simfish.io.actions import Actions
from simfish.wrappers.metrics import episode_metrics
from simfish_rl.actor import BatchedActor, apex_epsilons
from simfish_rl.config import TrainingConfig
from simfish_rl.replay import SequenceReplay, SequenceReplayBuffer, example_step_from_spec
from simfish_rl.simfish_r2d2_learner import SimfishR2D2Learner
from simfish_rl.simfish_r2d2_network import (
    EnvironmentSpec,
    R2D2Networks,
    environment_spec_from_env,
    make_r2d2_networks,
)


def make_env(config: SimFishConfig, actions: Actions):
    """The SimFish environment with vision, as the agent sees it."""
    from simfish.world.env import SimFishEnv

    return SimFishEnv(config, actions, vision=True)


@dataclasses.dataclass(frozen=True)
class R2D2Builder:
    """Makes the R2D2 agent's pieces for one environment spec and training config.

    Args:
      training: the training options.
      actions: the action set (its mirror pairs drive the mirrored SGD step).
    """

    training: TrainingConfig
    actions: Actions

    def make_networks(self, env_spec: EnvironmentSpec) -> R2D2Networks:
        """The network functions (init / apply / unroll / initial_state)."""
        return make_r2d2_networks(env_spec)

    def replay_layout(self) -> tuple[int, int]:
        """``(num_worlds, steps_per_world)`` of the replay ring buffer."""
        t = self.training
        period = t.sequence_period
        per_world = max(t.max_replay_size // t.num_envs, 1)
        steps_per_world = max(per_world * period, t.sequence_length + period)
        return t.num_envs, -(-steps_per_world // period) * period

    def make_replay(self, env_spec: EnvironmentSpec, key: jax.Array) -> SequenceReplay:
        """Prioritised sequence replay sized from the training options."""
        t = self.training
        num_worlds, steps_per_world = self.replay_layout()
        buffer = SequenceReplayBuffer(
            num_worlds=num_worlds,
            steps_per_world=steps_per_world,
            sequence_length=t.sequence_length,
            sequence_period=t.sequence_period,
            priority_exponent=t.priority_exponent,
            min_size=t.min_replay_size,
        )
        return SequenceReplay(buffer, example_step_from_spec(env_spec), key)

    def make_optimizer(self) -> optax.GradientTransformation:
        """Adam with the run's learning rate and epsilon."""
        return optax.adam(self.training.learning_rate, eps=self.training.adam_eps)

    def make_learner(self, networks: R2D2Networks, replay: SequenceReplay,
                     key: jax.Array) -> SimfishR2D2Learner:
        """The mirrored R2D2 learner sampling from ``replay``."""
        t = self.training
        return SimfishR2D2Learner(
            networks=networks,
            batch_size=t.batch_size,
            random_key=key,
            burn_in_length=t.burn_in_length,
            discount=t.discount,
            importance_sampling_exponent=t.importance_sampling_exponent,
            max_priority_weight=t.max_priority_weight,
            target_update_period=t.target_update_period,
            iterator=replay.iterator(t.batch_size),
            optimizer=self.make_optimizer(),
            actions_mirror=self.actions.get_opposing_dict(),
            bootstrap_n=t.bootstrap_n,
            clip_rewards=t.clip_rewards,
            max_abs_reward=t.max_abs_reward,
            prefetch_size=0,
            replay_client=replay,
        )

    def make_actor(self, env: Any, networks: R2D2Networks,
                   epsilons: np.ndarray | None = None) -> BatchedActor:
        """The batched epsilon-greedy actor (Ape-X epsilons by default)."""
        t = self.training
        if epsilons is None:
            epsilons = apex_epsilons(t.num_envs, t.epsilon_base, t.epsilon_alpha)
        return BatchedActor(
            env,
            apply_fn=networks.apply,
            initial_state_fn=networks.initial_state,
            epsilons=epsilons,
            episode_stats_fn=episode_metrics,
        )


@dataclasses.dataclass
class Agent:
    """Networks, replay, learner and actor wired together for one run."""

    env: Any
    networks: Any
    replay: SequenceReplay
    learner: SimfishR2D2Learner
    actor: BatchedActor
    training: TrainingConfig


def make_agent(env_config: SimFishConfig, actions: Actions, training: TrainingConfig,
               seed: int) -> Agent:
    """Builds every piece of the agent for ``env_config`` (nothing trained yet)."""
    builder = R2D2Builder(training, actions)
    env = make_env(env_config, actions)
    env_spec = environment_spec_from_env(env)
    networks = builder.make_networks(env_spec)
    k_replay, k_learner = jax.random.split(jax.random.PRNGKey(seed))
    replay = builder.make_replay(env_spec, k_replay)
    learner = builder.make_learner(networks, replay, k_learner)
    actor = builder.make_actor(env, networks)
    return Agent(env, networks, replay, learner, actor, training)


__all__ = ["Agent", "R2D2Builder", "make_agent", "make_env"]
