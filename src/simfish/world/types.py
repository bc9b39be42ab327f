"""Small shared types: the observation tuple and the pytree dataclass decorator."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, TypeVar

import jax

T = TypeVar("T")


class OAR(NamedTuple):
    """What the agent sees each step: observation, the last action and reward.

    Attributes:
      observation: ``(visual, internal)``; visual float32 [139, 3, 2]
        (positions, channels [UV, red@elev1, red@elev2], eyes [left, right]),
        internal float32 [3] = [in_light, energy, salt_concentration]. Until
        vision is wired in, the observation is ``(internal,)``.
      action: int32 [] the action that led to this observation (the Null
        action, or 0, on the first step of an episode).
      reward: float32 [] the reward received with this observation.
    """

    observation: Any
    action: Any
    reward: Any


def pytree_dataclass(cls: type[T]) -> type[T]:
    """Makes ``cls`` a frozen dataclass registered as a JAX pytree.

    Every field is a pytree child (traced), except fields declared with
    ``dataclasses.field(metadata={"static": True})``. Instances gain a
    ``replace(**changes)`` method.
    """
    cls = dataclasses.dataclass(frozen=True, eq=False)(cls)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    cls.replace = replace
    data = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("static", False)]
    meta = [f.name for f in dataclasses.fields(cls) if f.metadata.get("static", False)]
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)
