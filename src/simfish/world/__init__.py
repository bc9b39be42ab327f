"""The world step: pure ``reset``/``step`` functions on explicit state (SPEC 4).

``params`` turns a config into the three data tiers (traced ``EnvParams``,
static ``StaticParams``, the action table); ``state`` holds the per-step
``EnvState``; ``fish``, ``prey``, ``predator``, ``contacts`` and ``energy``
are the subsystems; ``physics`` runs the sub-step loop that composes them;
``env`` is :class:`SimFishEnv`, the jit/vmap-able environment.
"""
