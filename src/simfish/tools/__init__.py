"""The ``simfish`` command line and what it runs: benchmarks, rollouts, pictures."""
