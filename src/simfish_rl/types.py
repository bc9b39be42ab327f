"""Data types shared by the SimFish agent's actor, replay and learner.

Conventions (the learner relies on them; see ``simfish_r2d2_learner``):

* A ``Step`` is what a world did at one time step ``t``: the observation
  ``OAR(o_t, a_{t-1}, r_{t-1})`` the agent acted on, the action ``a_t`` it
  took, and the reward ``r_t`` and discount ``d_t`` that followed.
* Episodes are recorded back to back: ``FIRST, MID, ..., LAST, FIRST, ...``.
  A ``LAST`` observation is stored as its own step with reward 0 and discount
  0 (its action is ignored); the step after it has ``start_of_episode``.
  A time-limit ``LAST`` keeps the discount of the step *into* it at 1, so the
  learner bootstraps from the final observation.
* Sequences are windows of this stream and may cross an episode boundary; the
  learner resets the recurrent state at ``start_of_episode`` steps and never
  bootstraps or trains across a boundary.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax


class Step(NamedTuple):
    """One step of one world (leading axes ``[T, E]`` when collected by an actor).

    Attributes:
      observation: ``OAR(observation=(visual float32 [P, C, 2], internal
        float32 [I]), action=int32 previous action, reward=float32 previous
        reward)``.
      action: int32, the action taken at this step.
      reward: float32, the reward that followed the action (0 on a LAST step).
      discount: float32, the environment discount that followed (0 on a LAST
        step; 0 into a terminal observation, 1 into a time-limit one).
      start_of_episode: bool, this observation is a FIRST time step.
      core_state: ``hk.LSTMState`` (hidden, cell float32 [64]) the network
        held before this step (already reset on FIRST steps). Replay keeps it
        only at sequence starts.
    """

    observation: Any
    action: jax.Array
    reward: jax.Array
    discount: jax.Array
    start_of_episode: jax.Array
    core_state: Any


class SequenceData(NamedTuple):
    """A batch of replayed sequences, batch-major ``[B, L, ...]``.

    Attributes:
      observation: OAR with visual float32 ``[B, L, P, C, 2]``, internal
        float32 ``[B, L, I]``, previous action int32 ``[B, L]``, previous
        reward float32 ``[B, L]``.
      action: int32 ``[B, L]``.
      reward: float32 ``[B, L]``.
      discount: float32 ``[B, L]`` (environment discount, not yet times gamma).
      start_of_episode: bool ``[B, L]``.
      core_state: ``hk.LSTMState`` with ``[B, 64]`` leaves: the recurrent
        state before the first step of each sequence.
    """

    observation: Any
    action: jax.Array
    reward: jax.Array
    discount: jax.Array
    start_of_episode: jax.Array
    core_state: Any


class SampleInfo(NamedTuple):
    """Where sampled sequences came from (to send priorities back).

    Attributes:
      index: int32 ``[B]`` flat slot index (world * slots_per_world + slot).
      start: int32 ``[B]`` global step at which the sequence starts (guards
        priority updates against slots overwritten since sampling).
      probability: float32 ``[B]`` probability with which it was sampled.
    """

    index: jax.Array
    start: jax.Array
    probability: jax.Array


class ReplaySample(NamedTuple):
    """A sampled batch: ``info`` (SampleInfo) and ``data`` (SequenceData)."""

    info: SampleInfo
    data: SequenceData


__all__ = ["ReplaySample", "SampleInfo", "SequenceData", "Step"]
