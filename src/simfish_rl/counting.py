"""The one step/episode counter of the agent (acme's ``counting.Counter`` interface).

The learner counts its steps with it and the evaluation loop its episodes and
steps; anything with ``increment(**counts) -> Mapping`` (acme's own Counter)
can stand in for it.
"""

from __future__ import annotations

import threading


class Counter:
    """Cumulative, thread-safe counts, without acme's parents or timing.

    Args:
      prefix: prepended as ``<prefix>_<name>`` to the keys that ``increment``
        and ``get_counts`` return.
    """

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix
        self._counts: dict[str, int | float] = {}
        self._lock = threading.Lock()

    def increment(self, **counts: int | float) -> dict[str, int | float]:
        """Adds to the named counts; returns all counts (prefixed)."""
        with self._lock:
            for name, value in counts.items():
                self._counts[name] = self._counts.get(name, 0) + value
            return self._snapshot()

    def get_counts(self) -> dict[str, int | float]:
        """Returns a copy of all counts (prefixed)."""
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict[str, int | float]:
        if not self._prefix:
            return dict(self._counts)
        return {f"{self._prefix}_{name}": value for name, value in self._counts.items()}


__all__ = ["Counter"]
