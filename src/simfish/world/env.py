"""SimFishEnv: the pure, jit- and vmap-able environment, and the dynamics benchmark.

``reset(key) -> (state, timestep)`` and ``step(state, action, key) -> (state,
timestep)`` are pure functions of explicit state. Time steps are
``dm_env.TimeStep`` pytrees with jnp leaves whose observation is
``OAR(observation, action, reward)``. Calling ``step`` on a state whose last
time step was LAST starts a new episode and returns its FIRST time step (the
action is ignored), so vectorised worlds never need a host-side reset.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import dm_env
import jax
import jax.numpy as jnp
import numpy as np
from dm_env import specs

from simfish.config import SimFishConfig, load_config
from simfish.io.actions import Actions, as_actions
from simfish.vision.light import in_light
from simfish.world import energy as energy_lib
from simfish.world import fish as fish_lib
from simfish.world import predator as predator_lib
from simfish.world import prey as prey_lib
from simfish.world.params import EnvParams, StaticParams, make_params
from simfish.world.physics import Bout, integrate_step
from simfish.world.state import ArenaState, EnvState, Events, RewardTerms
from simfish.world.types import OAR

logger = logging.getLogger(__name__)

FIRST = int(dm_env.StepType.FIRST)
MID = int(dm_env.StepType.MID)
LAST = int(dm_env.StepType.LAST)

#: Length of the internal observation: [in_light, energy, salt_concentration].
INTERNAL_SIZE = 3

#: ``vision(state, params, static, key) -> visual float32 [139, 3, 2]``.
VisionFn = Callable[[EnvState, EnvParams, StaticParams, jax.Array], jax.Array]


class SimFishEnv:
    """A virtual larval zebrafish world (one world; vmap for many).

    The object holds only static settings: the config, the action set, the
    traced parameters (``params``) and the static ones (``static``).

    Args:
      config: a ``SimFishConfig`` or a preset name / YAML path.
      actions: an ``Actions``, the users' list of action dicts, or None (default set).
      vision: True (default) for the eyes of ``simfish.vision`` built from the
        config; a function computing the visual observation (see
        ``VisionFn``); or None / False for a vision-less world whose
        observation is ``(internal,)`` (dynamics benchmarks and tests).
    """

    def __init__(
        self,
        config: SimFishConfig | str,
        actions: Actions | Sequence[dict] | None = None,
        vision: VisionFn | bool | None = True,
    ):
        if not isinstance(config, SimFishConfig):
            config = load_config(config)
        self.config = config
        self.actions = as_actions(actions)
        self.params, self.static = make_params(config, self.actions)
        if vision is True:
            from simfish.vision.bind import make_vision_fn

            vision = make_vision_fn(config, vision=self.static.vision)
        self._vision = vision or None

    # ------------------------------------------------------------------ API

    @property
    def num_actions(self) -> int:
        """Number of discrete actions."""
        return self.static.num_actions

    @property
    def has_vision(self) -> bool:
        """Whether observations include the visual array."""
        return self._vision is not None

    def reset(
        self, key: jax.Array, params: EnvParams | None = None
    ) -> tuple[EnvState, dm_env.TimeStep]:
        """Starts an episode: (state, FIRST time step)."""
        params = self.params if params is None else params
        k_state, k_obs = jax.random.split(key)
        state = self._reset_state(k_state, params)
        timestep = dm_env.TimeStep(
            step_type=jnp.asarray(FIRST, jnp.int32),
            reward=jnp.zeros((), jnp.float32),
            discount=jnp.ones((), jnp.float32),
            observation=self._oar(
                state,
                jnp.asarray(self.static.null_action, jnp.int32),
                jnp.zeros((), jnp.float32),
                k_obs,
                params,
            ),
        )
        return state, timestep

    def step(
        self, state: EnvState, action, key: jax.Array, params: EnvParams | None = None
    ) -> tuple[EnvState, dm_env.TimeStep]:
        """Advances one step (or starts a new episode after a LAST step)."""
        params = self.params if params is None else params
        action = jnp.asarray(action, jnp.int32)
        k_reset, k_step, k_obs = jax.random.split(key, 3)

        def restart(_):
            fresh = self._reset_state(k_reset, params)
            return fresh, jnp.zeros((), jnp.float32), jnp.ones((), jnp.float32), jnp.asarray(FIRST)

        def advance(_):
            return self._step_state(state, action, k_step, params)

        new_state, reward, discount, step_type = jax.lax.cond(state.done, restart, advance, None)
        shown_action = jnp.where(state.done, jnp.int32(self.static.null_action), action)
        timestep = dm_env.TimeStep(
            step_type=step_type.astype(jnp.int32),
            reward=reward,
            discount=discount,
            observation=self._oar(new_state, shown_action, reward, k_obs, params),
        )
        return new_state, timestep

    def info(self, state: EnvState) -> dict[str, jax.Array]:
        """Per-step info: positions and events.

        Dead prey and an absent predator are NaN; ``predator_present`` says
        whether a predator is there (the logs write an absent one as 0).
        """
        nan = jnp.float32(jnp.nan)
        present = state.predator.present
        return {
            "fish_x": state.fish.x,
            "fish_y": state.fish.y,
            "fish_angle": state.fish.angle,
            "prey_x": jnp.where(state.prey.alive, state.prey.x, nan),
            "prey_y": jnp.where(state.prey.alive, state.prey.y, nan),
            "predator_x": jnp.where(present, state.predator.x, nan),
            "predator_y": jnp.where(present, state.predator.y, nan),
            "predator_present": present,
            "event_consumed_prey": state.last_events.prey_caught,
            "event_survived_predator": state.last_events.attacks_avoided > 0,
            "event_captured_by_predator": state.last_events.attacks_captured > 0,
            "energy_level": state.fish.energy,
            "salt_concentration": state.salt_concentration,
        }

    def observation_spec(self) -> OAR:
        """dm_env specs of the OAR observation."""
        internal = specs.Array((INTERNAL_SIZE,), np.float32, name="internal")
        if self.has_vision:
            visual = specs.Array(self._visual_shape(), np.float32, name="visual")
            obs = (visual, internal)
        else:
            obs = (internal,)
        return OAR(
            observation=obs,
            action=specs.DiscreteArray(self.num_actions, np.int32, name="action"),
            reward=specs.Array((), np.float32, name="reward"),
        )

    def action_spec(self) -> specs.DiscreteArray:
        """One discrete action id per step."""
        return specs.DiscreteArray(self.num_actions, np.int32, name="action")

    def reward_spec(self) -> specs.Array:
        """Scalar float32 reward."""
        return specs.Array((), np.float32, name="reward")

    def discount_spec(self) -> specs.BoundedArray:
        """Scalar float32 discount in [0, 1]."""
        return specs.BoundedArray((), np.float32, 0.0, 1.0, name="discount")

    # ------------------------------------------------------------ internals

    def _visual_shape(self) -> tuple[int, ...]:
        """Shape of the visual observation (traced abstractly, nothing computed)."""

        def observe(key):
            return self._observe(self._reset_state(key, self.params), key, self.params)

        return tuple(jax.eval_shape(observe, jax.random.PRNGKey(0)).shape)

    def _observe(self, state: EnvState, key: jax.Array, params: EnvParams):
        """The visual observation, or None while no vision function is set."""
        if self._vision is None:
            return None
        return self._vision(state, params, self.static, key)

    def _internal(self, state: EnvState, params: EnvParams) -> jax.Array:
        """[in_light, energy, salt_concentration] float32 [3]."""
        return jnp.stack(
            [
                in_light(state.fish.y, params.dark_y),
                state.fish.energy.astype(jnp.float32),
                state.salt_concentration.astype(jnp.float32),
            ]
        )

    def _oar(self, state, action, reward, key, params) -> OAR:
        visual = self._observe(state, key, params)
        internal = self._internal(state, params)
        obs = (internal,) if visual is None else (visual, internal)
        return OAR(observation=obs, action=action, reward=reward)

    def _reset_state(self, key: jax.Array, params: EnvParams) -> EnvState:
        """A fresh world: fish, clouds and prey, epochs, salt source."""
        static = self.static
        k_episode, k_fish, k_clouds, k_prey, k_pred, k_salt = jax.random.split(key, 6)
        fish = fish_lib.reset_fish(k_fish, params, static)
        cloud_x, cloud_y = prey_lib.reset_clouds(k_clouds, params, static)
        salt_x, salt_y = energy_lib.reset_salt(k_salt, params)
        arena = ArenaState(salt_x=salt_x, salt_y=salt_y, cloud_x=cloud_x, cloud_y=cloud_y)
        prey = prey_lib.reset_prey(k_prey, arena, params, static)
        predator = predator_lib.reset_predator(k_pred, params, static)
        salt = energy_lib.salt_concentration(fish.x, fish.y, salt_x, salt_y, params, static)
        return EnvState(
            fish=fish,
            prey=prey,
            predator=predator,
            arena=arena,
            step=jnp.zeros((), jnp.int32),
            done=jnp.zeros((), bool),
            salt_concentration=salt,
            last_terms=RewardTerms.zeros(),
            last_events=Events.zeros(),
            totals=RewardTerms.zeros(),
            counts=Events.zeros(),
            episode_key=k_episode,
        )

    def _step_state(self, state: EnvState, action, key: jax.Array, params: EnvParams):
        """One step of the world: (state, reward, discount, step_type)."""
        static = self.static
        k_bout, k_prey, k_pred, k_pop = jax.random.split(key, 4)

        # Fish bout: draw (distance, angle), turn, then the impulse.
        distance, angle = fish_lib.sample_bout(k_bout, action, params, static)
        capture_bout = params.action_is_capture[action]
        fish = fish_lib.start_bout(state.fish, distance, angle, params)
        bout = Bout(cos=jnp.cos(fish.angle), sin=jnp.sin(fish.angle), capture=capture_bout)

        # Prey decisions for this step: gaits, turns, escape times, walls.
        prey, prey_plan = prey_lib.plan_prey_step(k_prey, state.prey, state.arena, params, static)

        # Predator: maybe appear during an attack epoch.
        predator = predator_lib.maybe_spawn(
            k_pred, state.predator, fish, state.step, params, static
        )

        # Physics: the damped sub-steps with walls, contacts, capture and catch.
        can_catch = (state.step >= params.immunity_steps) | static.test_sensory_system
        fish, prey, predator, contacts = integrate_step(
            fish, prey, predator, prey_plan, bout, can_catch, params, static
        )

        # Prey population: ageing, deaths and births (the sensory test's prey stay fixed).
        prey = prey_lib.population_step(k_pop, prey, fish.x, fish.y, state.arena, params, static)
        if static.test_sensory_system:
            prey = state.prey

        # Energy (the sensory test's rotation is free), salt, rewards and the episode's end.
        if static.test_sensory_system:
            angle = jnp.zeros_like(angle)
        use = energy_lib.energy_use(distance, angle, capture_bout, params)
        return self._finish_step(state, fish, prey, predator, contacts, use, params)

    def _finish_step(self, state: EnvState, fish, prey, predator, contacts, use, params):
        """Energy, salt, rewards, events and termination: (state, reward, discount, step_type)."""
        salt = energy_lib.salt_concentration(
            fish.x, fish.y, state.arena.salt_x, state.arena.salt_y, params, self.static
        )
        energy, starved = energy_lib.update_energy(fish.energy, use, contacts.n_eaten > 0, params)
        fish = fish.replace(energy=energy)
        # A bouncing wall counts as a touch (an event) but is not penalised.
        penalised = contacts.wall & ~params.wall_bounce
        terms = energy_lib.reward_terms(
            use, contacts.n_eaten, contacts.caught, contacts.avoided, penalised, salt, params
        )
        events = Events(
            prey_caught=contacts.n_eaten,
            attacks_avoided=contacts.avoided.astype(jnp.int32),
            attacks_captured=contacts.caught.astype(jnp.int32),
            wall_touches=contacts.wall.astype(jnp.int32),
        )
        # Starvation or all prey eaten end the episode (terminal); so does the time limit.
        step = state.step + 1
        all_eaten = (params.prey_num > 0) & (prey_lib.alive_count(prey) == 0)
        terminal = starved | all_eaten
        done = terminal | (step >= params.max_steps)
        new_state = state.replace(
            fish=fish,
            prey=prey,
            predator=predator,
            step=step,
            done=done,
            salt_concentration=salt,
            last_terms=terms,
            last_events=events,
            totals=jax.tree_util.tree_map(jnp.add, state.totals, terms),
            counts=state.counts + events,
        )
        discount = jnp.where(terminal, 0.0, 1.0).astype(jnp.float32)
        return new_state, terms.total(), discount, jnp.where(done, LAST, MID)
