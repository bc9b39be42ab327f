"""SimFish: a virtual larval zebrafish in JAX.

The simulator (``simfish``) is a set of pure functions on explicit state, so
thousands of worlds run under ``jax.jit`` and ``jax.vmap``. The agent lives in
the sibling package ``simfish_rl``.
"""

from importlib import metadata as _metadata

from simfish.config import ConfigError, SimFishConfig, load_config, read_config_file
from simfish.io.actions import Actions

try:
    __version__ = _metadata.version("simfish")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"



def __getattr__(name):
    # The environment modules import JAX; load them on first use only.
    if name == "SimFishEnv":
        from simfish.world.env import SimFishEnv

        return SimFishEnv
    if name == "BaseEnvironment":
        from simfish.wrappers.base_environment import BaseEnvironment

        return BaseEnvironment
    raise AttributeError(f"module 'simfish' has no attribute {name!r}")


__all__ = [
    "Actions",
    "BaseEnvironment",
    "SimFishEnv",
    "ConfigError",
    "SimFishConfig",
    "__version__",
    "load_config",
    "read_config_file",
]
