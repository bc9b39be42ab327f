"""Glue between the vision model and the environment's world state.

:func:`make_vision_fn` returns the ``vision(state, params, static, key)``
function that :class:`simfish.SimFishEnv` takes: it reads the fish, the live
prey and the predator from the state, adds the stimulus prey and predator of
the config's stimulus files at the current step, derives the episode's
sediment from ``state.episode_key`` and calls :meth:`Vision.observe`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from simfish.io.stimuli import Stimulus, load_stimulus, stimulus_at, stimulus_tracks
from simfish.vision.observe import Vision, make_vision
from simfish.vision.sediment import Sediment, make_sediment, square_stripes_sediment

# Folded into the episode key to draw the sediment (keeps it independent of other draws).
SEDIMENT_KEY_TAG = 0x5ED1


def episode_sediment(episode_key: jax.Array, config) -> Sediment:
    """The sediment of an episode, a pure function of its key (jit/vmap-able).

    With ``test_sensory_system`` the sediment is the users' fixed test grating
    instead: vertical stripes 10 px wide every 20 px at ``bottom_intensity``.
    """
    if config.test_sensory_system:
        return square_stripes_sediment(0.0, float(config.arena.bottom_intensity), 20.0)
    return make_sediment(jax.random.fold_in(episode_key, SEDIMENT_KEY_TAG), config.arena)


def make_vision_fn(config, vision: Vision | None = None) -> Callable:
    """The environment's vision function for ``config``.

    Args:
      config: the :class:`~simfish.config.SimFishConfig`; ``prey.stim_file``
        and ``predator.stim_file`` (resolved paths) are loaded here, once.
      vision: a prebuilt :class:`Vision` (default: ``make_vision(config)``).

    Returns:
      ``vision_fn(state, params, static, key) -> float32 [P, 3, 2]``. The
      stimulus row shown is ``state.step - 1`` (row 0 after the first step,
      as in the users' tool; nothing before the first step or after the
      file's last row). A simulated predator, when present, is the one whose
      shadow is cast; otherwise the stimulus predator's.
    """
    vision = make_vision(config) if vision is None else vision
    prey_stim = load_stimulus(config.prey.stim_file) if config.prey.stim_file else None
    pred_stim = load_stimulus(config.predator.stim_file) if config.predator.stim_file else None
    prey_loc = prey_stim.prey_loc if prey_stim is not None else None
    predator_loc = pred_stim.predator_loc if pred_stim is not None else None
    prey_tracks = stimulus_tracks(Stimulus(prey_loc=prey_loc) if prey_loc is not None else None)
    pred_tracks = stimulus_tracks(
        Stimulus(predator_loc=predator_loc) if predator_loc is not None else None
    )
    has_prey_stim = prey_tracks.prey_xy.shape[1] > 0
    has_pred_stim = bool(pred_tracks.predator_present.any())

    def vision_fn(state, params, static, key):
        del params, static
        fish_xy = jnp.stack([state.fish.x, state.fish.y])
        prey_xy = jnp.stack([state.prey.x, state.prey.y], axis=-1)
        prey_mask = state.prey.alive
        predator_xy = jnp.stack([state.predator.x, state.predator.y])
        predator_present = state.predator.present
        row = state.step - 1
        if has_prey_stim:
            stim = stimulus_at(prey_tracks, row)
            prey_xy = jnp.concatenate([prey_xy, stim.prey_xy], axis=0)
            prey_mask = jnp.concatenate([prey_mask, stim.prey_present], axis=0)
        if has_pred_stim:
            stim = stimulus_at(pred_tracks, row)
            predator_xy = jnp.where(predator_present, predator_xy, stim.predator_xy)
            predator_present = predator_present | stim.predator_present
        sediment = episode_sediment(state.episode_key, config)
        return vision.observe(
            fish_xy, state.fish.angle, prey_xy, prey_mask, predator_xy, predator_present,
            sediment, key,
        )

    return vision_fn
