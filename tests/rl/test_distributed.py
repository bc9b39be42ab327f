"""Distributed training on a local Ray: step count, a killed actor, resume, evaluation.

One Ray instance (num_cpus=2, no dashboard, small object store) serves the
module. One run with two actor processes of two tiny worlds each is shared:
an actor process is killed by its pid in the middle of it. The JAX
compilation cache is shared by the workers, so the restarted actor and the
resumed run load their programs instead of compiling them again.
"""

import json
import os
import signal

import h5py
import pytest
import ray

from conftest import TINY_TRAINING
from simfish.config import load_config
from simfish.tools.cli import main
from simfish_rl.config import TrainingConfig
from simfish_rl.distributed import DistributedError, RayOptions, train_distributed
from simfish_rl.eval_simfish_agent import eval_agent
from simfish_rl.training import RunDir

#: No ``num_envs``: each test sets its actors and worlds.
TINY_TRAINING = {k: v for k, v in TINY_TRAINING.items() if k != "num_envs"} | {
    "log_every_seconds": 0.0
}
NUM_STEPS = 300  # 2 actors x 2 worlds x 5 steps = 20 env steps a round
KILL_AT = 100


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("jax_cache"))


@pytest.fixture(scope="module")
def ray_local(jax_cache):
    # Every worker of this Ray (the evaluation tasks too) shares the compilation cache.
    env_vars = {"JAX_COMPILATION_CACHE_DIR": jax_cache,
                "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2,
             _node_ip_address="127.0.0.1", log_to_driver=False,
             runtime_env={"env_vars": env_vars})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def options(jax_cache):
    return RayOptions(num_actors=2, envs_per_actor=2, actor_cpus=0.5, learner_cpus=0.5,
                      jax_cache_dir=jax_cache)


@pytest.fixture(scope="module")
def env_config():
    return load_config("small", {"max_sim_steps_per_episode": 30})


@pytest.fixture(scope="module")
def killed_run(ray_local, tmp_path_factory, env_config, options):
    """A run of NUM_STEPS env steps during which actor 0's process is SIGKILLed."""
    run_dir = tmp_path_factory.mktemp("dist") / "run"
    seen = []
    killed = {}

    def on_round(info):
        seen.append(info)
        if not killed and info["env_steps"] >= KILL_AT:
            killed["pid"] = info["actor_pids"][0]
            killed["at"] = info["env_steps"]
            os.kill(killed["pid"], signal.SIGKILL)

    summary = train_distributed(run_dir, env_config, TrainingConfig().replace(TINY_TRAINING),
                                num_steps=NUM_STEPS, seed=1, options=options, progress=False,
                                on_round=on_round)
    return run_dir, summary, seen, killed


def test_killed_actor_is_restarted_and_the_run_reaches_its_steps(killed_run):
    run_dir, summary, seen, killed = killed_run
    assert killed, "the run ended before an actor could be killed"
    assert summary["env_steps"] >= NUM_STEPS
    assert summary["actor_restarts"] >= 1
    # Rounds went on after the kill, with a new process in actor 0's place.
    after = [s for s in seen if s["env_steps"] > killed["at"]]
    assert after and after[-1]["env_steps"] >= NUM_STEPS
    assert after[-1]["actor_pids"][0] != killed["pid"]
    assert after[-1]["actor_pids"][1] == seen[0]["actor_pids"][1]
    assert summary["learner_steps"] > 0
    # The checkpoint records where the run stopped.
    record = RunDir(run_dir).progress()
    assert record["env_steps"] == summary["env_steps"]
    assert record["learner_steps"] == summary["learner_steps"]
    # Same metrics as the single-machine trainer, plus the per-actor rates.
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("env_steps", "learner_steps", "env_steps_per_second", "replay_size", "loss",
                 "actor_0_env_steps_per_second", "actor_1_env_steps_per_second",
                 "actor_restarts", "actor_bytes_per_second"):
        assert name in header
    episodes = (run_dir / "episodes.csv").read_text().splitlines()
    assert len(episodes) - 1 == summary["episodes"] > 0
    worlds = {int(line.split(",")[1]) for line in episodes[1:]}
    assert worlds <= {0, 1, 2, 3} and len(worlds) > 2


def test_single_machine_evaluate_loads_the_distributed_checkpoint(killed_run):
    run_dir, *_ = killed_run
    summaries = eval_agent(None, run_dir, num_episodes=1, log_subdir="single", seed=0)
    assert len(summaries) == 1
    assert (run_dir / "logs" / "single" / "logs_1.hdf5").is_file()


def test_evaluate_distributed_spreads_episodes_and_writes_the_same_files(killed_run, capsys):
    run_dir, *_ = killed_run
    rc = main(["evaluate", "--run-dir", str(run_dir), "--distributed", "--actors", "2",
               "--episodes", "3", "--label", "spread", "-q"])
    assert rc == 0, capsys.readouterr().err
    files = sorted((run_dir / "logs" / "spread").glob("logs_*.hdf5"))
    assert [f.name for f in files] == ["logs_1.hdf5", "logs_2.hdf5", "logs_3.hdf5"]
    single = run_dir / "logs" / "single" / "logs_1.hdf5"  # written by the test above
    with h5py.File(single) as a, h5py.File(files[0]) as b:
        assert sorted(a.keys()) == sorted(b.keys())


def test_resume_continues_from_the_checkpoint(killed_run, options):
    run_dir, summary, *_ = killed_run
    start = RunDir(run_dir).progress()
    seen = []
    resumed = train_distributed(run_dir, num_steps=start["env_steps"] + 100, options=options,
                                progress=False, on_round=seen.append)
    assert resumed["resumed"]
    assert seen[0]["env_steps"] == start["env_steps"] + 20  # first round after the checkpoint
    assert resumed["env_steps"] >= start["env_steps"] + 100
    assert resumed["learner_steps"] >= start["learner_steps"]
    record = json.loads((run_dir / "checkpoints" / "progress.json").read_text())
    assert record["env_steps"] == resumed["env_steps"]


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    with pytest.raises(DistributedError, match="--actors"):
        RayOptions(num_actors=0)
    rc = main(["train", "--run-dir", str(tmp_path / "r"), "--actors", "3"])
    assert rc == 2
    assert "--actors need --distributed" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
