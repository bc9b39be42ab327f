"""Evaluation in parallel: the same seed gives byte-identical episode datasets for any E.

A run directory with an untrained learner checkpoint is enough (the policy is
a fixed random network); a small arena keeps compilation short.
"""

import h5py
import numpy as np
import pytest

from simfish.config import load_config
from simfish.io.actions import Actions
from simfish_rl.builder import make_agent
from simfish_rl.checkpoint import RunDir
from simfish_rl.config import TrainingConfig
from simfish_rl.eval_simfish_agent import eval_agent

SMALL_ENV = {
    "arena.width": 400,
    "arena.height": 400,
    "prey.num": 15,
    "predator.probability_per_epoch_step": 0.0,
    "max_sim_steps_per_episode": 20,
}
TIMING_KEYS = {"steps_per_second", "episode_duration_sec", "env_reset_duration_sec",
               "select_action_duration_sec", "env_step_duration_sec"}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("parallel") / "run"
    config = load_config("normal", SMALL_ENV)
    training = TrainingConfig().replace({"num_envs": 2, "min_replay_size": 32,
                                         "max_replay_size": 64})
    run = RunDir(path)
    run.create(config, Actions.default(), training, seed=0)
    agent = make_agent(config, Actions.default(), training, seed=0)
    run.save_checkpoint(agent.learner, {"env_steps": 0, "learner_steps": 0, "episodes": 0,
                                        "actor_steps": 0})
    return path


def attr_bytes(value):
    """An attribute's value as bytes (numbers, strings) or its repr (None and other objects)."""
    arr = np.asarray(value)
    return arr.tobytes() if arr.dtype.kind in "biufSU" else repr(value)


def datasets(path):
    """Every dataset (bytes) and attribute of an episode file, timings left out."""
    out = {}
    with h5py.File(path) as f:
        def visit(name, obj):
            if name.split("/")[-1] in TIMING_KEYS:
                return
            if isinstance(obj, h5py.Dataset):
                value = obj[()]
                out[name] = (obj.dtype.str, np.shape(value), np.asarray(value).tobytes())
            out[name + "@attrs"] = {k: attr_bytes(v) for k, v in obj.attrs.items()}
        f.visititems(visit)
    return out


def files(run, label):
    return sorted((run / "logs" / label).glob("logs_*.hdf5"),
                  key=lambda p: int(p.stem.split("_")[1]))


def test_parallel_episodes_are_byte_identical_to_one_world(run_dir):
    one = eval_agent(None, run_dir, num_episodes=4, log_subdir="one", seed=7, epsilon=0.3)
    par = eval_agent(None, run_dir, num_episodes=4, log_subdir="par", seed=7, epsilon=0.3,
                     num_parallel=3)  # 3 slots for 4 episodes: one slot starts a second
    assert [s["episode_length"] for s in one] == [s["episode_length"] for s in par]
    a, b = files(run_dir, "one"), files(run_dir, "par")
    assert len(a) == len(b) == 4
    for fa, fb in zip(a, b, strict=True):
        da, db = datasets(fa), datasets(fb)
        assert set(da) == set(db)
        assert {"vis_observation", "actor_state", "fish_x", "action", "sediment"} <= {
            k.split("/")[0] for k in da}
        for name in da:
            assert da[name] == db[name], f"{fb.name}: {name} differs from the one-world file"
    # Episodes differ from each other, and another seed gives other episodes.
    assert datasets(a[0])["fish_x"] != datasets(a[1])["fish_x"]
    other = eval_agent(None, run_dir, num_episodes=1, log_subdir="other", seed=8, epsilon=0.3,
                       num_parallel=3)
    assert datasets(files(run_dir, "other")[0])["fish_x"] != datasets(a[0])["fish_x"]
    assert other[0]["episode_length"] == 20


def test_num_parallel_must_be_positive(run_dir):
    with pytest.raises(ValueError, match="num_parallel must be >= 1"):
        eval_agent(None, run_dir, num_episodes=1, num_parallel=0)
