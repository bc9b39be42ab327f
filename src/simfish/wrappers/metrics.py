"""The one list of per-episode metrics, and how each is read from a world state.

Every place that reports an episode's totals uses this list: ``VectorEnv``
statistics (``episode_metrics``), the training ``episodes.csv``,
``simfish_rl.hdf5_logger.SimpleEnvInfoKeep``, the ``BaseEnvironment``
attributes and the gymnasium adapter's ``info``. Names are the users' (their
``SimpleEnvInfoKeep`` keys and environment attributes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax


class EpisodeMetric(NamedTuple):
    """One per-episode metric.

    Attributes:
      name: the users' name (key in CSV rows, observer metrics and env attributes).
      kind: ``float`` or ``int`` (the Python type reported on the host).
      read: ``(EnvState) -> jax.Array []`` for one world.
      env_attribute: ``BaseEnvironment`` exposes it as an attribute of that name.
      simple: reported by the users' ``SimpleEnvInfoKeep``.
      doc: one line for the attribute's docstring.
    """

    name: str
    kind: type
    read: Callable[[Any], jax.Array]
    env_attribute: bool
    simple: bool
    doc: str


def _term(name: str) -> Callable[[Any], jax.Array]:
    return lambda state: getattr(state.totals, name)


def _count(name: str) -> Callable[[Any], jax.Array]:
    return lambda state: getattr(state.counts, name)


EPISODE_METRICS: tuple[EpisodeMetric, ...] = (
    EpisodeMetric("episode_length", int, lambda s: s.step, False, False,
                  "Steps taken in the episode."),
    EpisodeMetric("episode_return", float, lambda s: s.totals.total(), False, False,
                  "Sum of the episode's rewards (all reward terms)."),
    EpisodeMetric("prey_caught", int, _count("prey_caught"), True, False,
                  "Prey eaten in this episode."),
    EpisodeMetric("energy_associated_reward", float, _term("energy"), True, True,
                  "Episode total of the energy-use reward term."),
    EpisodeMetric("consumption_associated_reward", float, _term("consumption"), True, True,
                  "Episode total of the consumption reward term."),
    EpisodeMetric("salt_associated_reward", float, _term("salt"), True, True,
                  "Episode total of the salt reward term."),
    EpisodeMetric("predator_associated_reward", float, _term("predator"), True, True,
                  "Episode total of the predator reward term (caught + avoided)."),
    EpisodeMetric("wall_associated_reward", float, _term("wall"), True, True,
                  "Episode total of the wall-touch reward term."),
    EpisodeMetric("total_attacks_avoided", int, _count("attacks_avoided"), True, True,
                  "Predator attacks survived in this episode."),
    EpisodeMetric("total_attacks_captured", int, _count("attacks_captured"), True, True,
                  "Predator attacks that caught the fish in this episode."),
    EpisodeMetric("wall_touches", int, _count("wall_touches"), True, False,
                  "Steps in which the fish touched a wall in this episode."),
)
"""All per-episode metrics, in the column order of ``episodes.csv``."""

EPISODE_METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in EPISODE_METRICS)
"""Names of ``EPISODE_METRICS``."""

REWARD_TERM_NAMES: tuple[str, ...] = tuple(
    m.name for m in EPISODE_METRICS if m.name.endswith("_associated_reward"))
"""The five reward-term totals (they sum to ``episode_return``)."""

SIMPLE_METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in EPISODE_METRICS if m.simple)
"""What the users' ``SimpleEnvInfoKeep`` reports: reward terms and predator counts."""

ENV_ATTRIBUTE_METRICS: tuple[EpisodeMetric, ...] = tuple(
    m for m in EPISODE_METRICS if m.env_attribute)
"""Metrics that ``BaseEnvironment`` exposes as attributes."""

METRIC_KINDS: dict[str, type] = {m.name: m.kind for m in EPISODE_METRICS}
"""Host type (``int`` or ``float``) of each metric."""


def episode_metrics(state: Any) -> dict[str, jax.Array]:
    """Every ``EPISODE_METRICS`` value of one world's state (valid when its episode ended).

    Pure and jit-/vmap-able: ``jax.vmap(episode_metrics)`` gives ``[E]`` arrays.
    """
    return {m.name: m.read(state) for m in EPISODE_METRICS}


def to_host_metric(name: str, value: Any) -> int | float:
    """A metric value as its host type (``int`` or ``float``)."""
    return METRIC_KINDS[name](value)


__all__ = [
    "ENV_ATTRIBUTE_METRICS",
    "EPISODE_METRICS",
    "EPISODE_METRIC_NAMES",
    "METRIC_KINDS",
    "REWARD_TERM_NAMES",
    "SIMPLE_METRIC_NAMES",
    "EpisodeMetric",
    "episode_metrics",
    "to_host_metric",
]
