"""Benchmarks time only the work: nothing is compiled inside the timed region."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from simfish.config import load_config
from simfish.tools import bench


def test_count_compiles_sees_a_compilation():
    f = jax.jit(lambda x: x * 3.0 + 1.0)
    x = jnp.arange(7.0)
    with bench.count_compiles() as compiles:
        f(x).block_until_ready()
    assert len(compiles) >= 1
    with bench.count_compiles() as again:
        f(x).block_until_ready()  # same shapes: the cached executable runs
    assert again == []


def test_the_timed_region_of_bench_compiles_nothing():
    (row,) = bench.run("sim", load_config("small"), batch_sizes=[2], steps=60)
    assert row["timed_compiles"] == 0
    assert row["steps_per_second"] > 0
