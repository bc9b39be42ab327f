"""The one-device training loop: learns, checkpoints, resumes; evaluate loads its run."""

import csv
import json

import jax
import numpy as np
import pytest

from conftest import TINY_ENV, TINY_TRAINING
from simfish.config import load_config
from simfish.tools.cli import main
from simfish_rl.config import TrainingConfig
from simfish_rl.device_loop import train_device_loop
from simfish_rl.training import RunDir

TINY_TRAINING = {**TINY_TRAINING, "log_every_seconds": 0.0}


@pytest.fixture(scope="module")
def device_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("device") / "run"
    training = TrainingConfig().replace(TINY_TRAINING)
    # 4 worlds x 5 steps = 20 env steps per iteration, 5 iterations per call.
    summary = train_device_loop(run_dir, load_config("normal", TINY_ENV), training,
                                num_steps=400, seed=1, progress=False, iterations_per_call=5)
    return run_dir, summary


def test_device_loop_learns_and_checkpoints(device_run):
    run_dir, summary = device_run
    assert summary["env_steps"] == 400 and summary["actor_steps"] == 100
    # Replay can sample from iteration 4 on (8 sequences of 11 steps, one every 5
    # steps per world); from then on 4 sequences in / batch 4 = one learner step per
    # iteration: iterations 4..20 inclusive -> at least 16 learner steps.
    assert 16 <= summary["learner_steps"] <= 17
    assert summary["episodes"] >= 4 * (400 // 4 // 31)  # 30-step episodes in every world
    run = RunDir(run_dir)
    record = run.progress()
    assert record["env_steps"] == 400 and record["learner_steps"] == summary["learner_steps"]
    with np.load(run.latest_learner_file()) as f:
        assert int(f[".steps"]) == 2 * summary["learner_steps"]  # two SGD steps each
    with open(run_dir / "episodes.csv") as f:
        episodes = list(csv.DictReader(f))
    assert len(episodes) == summary["episodes"]
    assert all(float(e["episode_length"]) > 0 for e in episodes)
    with open(run_dir / "metrics.csv") as f:
        metrics = list(csv.DictReader(f))
    assert np.isfinite(float(metrics[-1]["loss"]))


def test_device_loop_resumes_and_evaluate_loads_it(device_run, tmp_path):
    run_dir, summary = device_run
    resumed = train_device_loop(run_dir, num_steps=500, progress=False, iterations_per_call=5)
    assert resumed["resumed"] and resumed["env_steps"] == 500
    assert resumed["learner_steps"] > summary["learner_steps"]
    record = json.loads((run_dir / "checkpoints" / "progress.json").read_text())
    assert record["env_steps"] == 500
    # The host loop's evaluation reads the device loop's checkpoint.
    assert main(["evaluate", "--run-dir", str(run_dir), "--episodes", "1", "--quiet"]) == 0
    assert (run_dir / "logs" / "eval_model").is_dir()
    jax.clear_caches()


def test_device_loop_with_alternate_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", "--run-dir", str(tmp_path / "r"), "--device-loop", "--alternate",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--alternate applies to the host loop" in err[0]


def test_device_loop_resume_follows_the_trainers_rules(device_run, tmp_path):
    """Same rules as ``simfish train``: learning options refused by name, intervals accepted."""
    import shutil

    from simfish_rl.training import RunDirError, open_run

    run_dir, _ = device_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    changed = TrainingConfig().replace({**TINY_TRAINING, "batch_size": 8})
    with pytest.raises(RunDirError, match=r"'batch_size': recorded 4, new 8"):
        train_device_loop(copy, training=changed, num_steps=1000, progress=False)
    other_env = load_config("normal", {**TINY_ENV, "prey.num": 21})
    with pytest.raises(RunDirError, match=r"'prey_num': recorded 20, new 21"):
        train_device_loop(copy, other_env, num_steps=1000, progress=False)
    # A changed log interval does not change learning: accepted and recorded.
    slower_logs = TrainingConfig().replace({**TINY_TRAINING, "log_every_seconds": 30.0})
    _, _, training, seed, record = open_run(RunDir(copy), None, slower_logs, 0, None)
    assert training.log_every_seconds == 30.0 and seed == 1 and record is not None
    assert RunDir(copy).load()[2].log_every_seconds == 30.0
