"""Adapters around the pure world: dm_env (one world), gymnasium, vectorised worlds."""
