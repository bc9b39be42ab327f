"""simfish_rl: the R2D2 agent for SimFish (JAX, Haiku, optax, rlax).

Modules (names as in the users' documentation):

* ``simfish_r2d2_network``: ``retina``, ``DeepSimfishTorso``, ``OAREmbedding``,
  ``R2D2SimfishNetwork`` and ``make_r2d2_networks(env_spec)``.
* ``simfish_r2d2_learner``: ``SimfishR2D2Learner`` (regular + mirrored SGD
  step per ``step()``) and the ``reflect_*`` functions.
* ``replay``: prioritised sequence replay (``SequenceReplayBuffer``, pure;
  ``SequenceReplay``, the thread-safe owner used as the replay client).
* ``types``: ``Step``, ``SequenceData``, ``SampleInfo``, ``ReplaySample``.

Submodules are imported on use (``from simfish_rl import replay``), so that
importing the package stays cheap.
"""
