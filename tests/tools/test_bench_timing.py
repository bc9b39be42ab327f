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


def test_train_report_says_whether_huge_pages_were_on():
    report = {
        "backend": "cpu", "huge_pages": True, "mode": "host", "num_envs": 4, "batch_size": 2,
        "seconds": 3.0, "env_steps_per_second": 100.0, "learner_steps_per_second": 1.0,
        "acting_only_env_steps_per_second": 200.0, "learner_only_steps_per_second": 2.0,
        "fraction_acting": 0.5, "fraction_learning": 0.5, "fraction_waiting": 0.0,
        "compile_seconds": {"acting": 1.0, "device_loop": 2.0, "learner_step": 3.0},
    }
    assert "malloc huge pages on" in bench.format_train_report(report).splitlines()[0]
    report["huge_pages"] = False
    assert "malloc huge pages off" in bench.format_train_report(report).splitlines()[0]
