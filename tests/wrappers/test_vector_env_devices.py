"""Worlds spread over several CPU devices: same results, nothing compiled while timed.

JAX's device count is fixed when its backend starts, so this runs in a
subprocess with ``jax_num_cpu_devices = 2`` (the test session has one device).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, sys
import jax
jax.config.update("jax_num_cpu_devices", 2)
import numpy as np
from simfish import SimFishEnv, load_config
from simfish.tools import bench
from simfish.wrappers.vector_env import VectorEnv

# A larger arena than small's 300 px: prey coast unless near the fish, so the worlds'
# interacting prey go through physics._pooled, one pool per device.
config = load_config("small", {"arena.width": 1200, "arena.height": 1200})
env = SimFishEnv(config)
assert env.static.n_near_prey < config.prey.num
spread, single = VectorEnv(env, 4), VectorEnv(env, 4, devices=jax.devices()[:1])
odd = VectorEnv(env, 3)  # 3 worlds do not split over 2 devices


def play(worlds):
    @jax.jit
    def go(carry, keys):
        def body(carry, key):
            k_act, k_env = jax.random.split(key)
            action = jax.random.randint(k_act, (worlds.num_worlds,), 0, env.num_actions)
            return worlds.step(carry[0], action, k_env), None
        return jax.lax.scan(body, carry, keys)[0]
    carry = jax.jit(worlds.reset)(jax.random.PRNGKey(0))
    return go(carry, jax.random.split(jax.random.PRNGKey(1), 60))


a, b = play(spread), play(single)
leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
same = all(
    np.array_equal(np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x),
                   np.asarray(jax.random.key_data(y) if jax.dtypes.issubdtype(y.dtype, jax.dtypes.prng_key) else y))
    for x, y in zip(leaves_a, leaves_b, strict=True))
(row,) = bench.run("sim", config, batch_sizes=[4], steps=40)
print(json.dumps({
    "devices": len(jax.devices()),
    "spread_over": sorted({len(x.sharding.device_set) for x in leaves_a}),
    "single_on": sorted({len(x.sharding.device_set) for x in leaves_b}),
    "odd_sharding": odd.sharding is None,
    "same": bool(same),
    "steps_in_episodes": int(np.asarray(a[0].step).sum()),
    "bench_devices": row["devices"],
    "timed_compiles": row["timed_compiles"],
    "steps_per_second": row["steps_per_second"],
}))
"""


@pytest.fixture(scope="module")
def two_devices():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_NUM_CPU_DEVICES", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_worlds_spread_over_two_cpu_devices_give_the_same_results(two_devices):
    assert two_devices["devices"] == 2
    assert two_devices["spread_over"] == [2] and two_devices["single_on"] == [1]
    assert two_devices["odd_sharding"]  # not a multiple of 2: left on one device
    assert two_devices["same"] and two_devices["steps_in_episodes"] > 0


def test_bench_spreads_its_worlds_and_compiles_nothing_while_timed(two_devices):
    assert two_devices["bench_devices"] == 2
    assert two_devices["timed_compiles"] == 0 and two_devices["steps_per_second"] > 0
