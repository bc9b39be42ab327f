"""Compatibility name: the episode-log reader now lives in :mod:`simfish.io.logs`."""

from simfish.io.logs import *  # noqa: F401,F403
from simfish.io.logs import __all__  # noqa: F401
