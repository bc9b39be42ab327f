"""Batched actor, training loop, run directory, resume and evaluation end to end.

One tiny training run (the session's ``tiny_trained_run``, copied here because
the tests resume it) is shared by the tests: a small arena with a few worlds,
short sequences and a small batch, so that compiling the vision, the network
and the learner happens once.
"""

import json

import dm_env
import h5py
import jax
import numpy as np
import pytest

from conftest import TINY_ENV, TINY_RUN_SEED, TINY_RUN_STEPS, TINY_TRAINING, copy_run
from simfish.config import load_config
from simfish.io.actions import Actions
from simfish.tools.cli import main
from simfish_rl.actor import BatchedActor, apex_epsilons
from simfish_rl.config import TrainingConfig, TrainingConfigError
from simfish_rl.eval_simfish_agent import eval_agent
from simfish_rl.training import RunDir, RunDirError, make_env, train


@pytest.fixture(scope="module")
def tiny_env_config():
    return load_config("normal", TINY_ENV)


@pytest.fixture(scope="module")
def tiny_training():
    return TrainingConfig().replace(TINY_TRAINING)


@pytest.fixture(scope="module")
def trained_run(tiny_trained_run, tmp_path_factory):
    """This module's copy of the session's tiny run (400 env steps, seed 3): tests resume it."""
    source, summary = tiny_trained_run
    return copy_run(source, tmp_path_factory, "runs"), dict(summary)


def test_apex_epsilons_follow_the_schedule():
    eps = apex_epsilons(8)
    assert eps[0] == pytest.approx(0.4)
    assert eps[-1] == pytest.approx(0.4**8)
    assert np.all(np.diff(eps) < 0)
    assert apex_epsilons(1).tolist() == [pytest.approx(0.4)]
    with pytest.raises(ValueError):
        apex_epsilons(0)


def test_training_config_checks_values():
    with pytest.raises(TrainingConfigError, match="unknown training option 'batchsize'"):
        TrainingConfig().replace({"batchsize": 3})
    with pytest.raises(TrainingConfigError, match="'batch_size': expected int"):
        TrainingConfig().replace({"batch_size": 2.5})
    with pytest.raises(TrainingConfigError, match="'sequence_period' = 100 must be <="):
        TrainingConfig(sequence_period=100)
    with pytest.raises(TrainingConfigError, match="'discount' = 1.5 must be in"):
        TrainingConfig(discount=1.5)
    assert TrainingConfig().sequence_length == 84


def test_batched_actor_records_episode_boundaries(tiny_env_config, tiny_training):
    """The batched actor, built and called as the trainer does (the tiny run's program).

    ``TINY_TRAINING``: 4 worlds with Ape-X epsilons and the episode metrics,
    ``sequence_period`` (5) steps per call; 7 calls make 35 steps, so the
    episode boundary (the LAST timestep at t = 30, the new FIRST at t = 31) falls
    inside one call (t = 30..34), and the state carries across calls.
    """
    from simfish_rl.builder import R2D2Builder
    from simfish_rl.simfish_r2d2_network import environment_spec_from_env

    env = make_env(tiny_env_config, Actions.default())
    builder = R2D2Builder(tiny_training, Actions.default())
    networks = builder.make_networks(environment_spec_from_env(env))
    params = networks.init(jax.random.PRNGKey(0))
    actor = builder.make_actor(env, networks)
    assert actor.num_worlds == 4
    state = actor.init(jax.random.PRNGKey(1))
    period = tiny_training.sequence_period
    assert period == 5
    chunks = []
    for i in range(35 // period):
        state, chunk = actor.collect(params, state, jax.random.fold_in(jax.random.PRNGKey(2), i),
                                     period)
        chunks.append(jax.device_get(chunk))
    steps, ended, _ = jax.tree.map(lambda *parts: np.concatenate(parts), *chunks)
    first = np.asarray(steps.start_of_episode)
    assert first.shape == (35, 4)
    assert first[0].all()  # every world starts an episode
    # Episodes of 30 steps: LAST at t = 30, a new FIRST at t = 31.
    assert np.asarray(ended)[29].all() and first[31].all()
    assert first.sum() == 8
    discount = np.asarray(steps.discount)
    assert np.all(discount[30] == 0)  # nothing bootstraps across the boundary
    assert np.all(np.asarray(steps.reward)[30] == 0)
    hidden = np.asarray(steps.core_state.hidden)
    assert np.all(hidden[first] == 0)  # the recurrent state restarts with the episode
    assert np.any(hidden[1] != 0)
    visual = np.asarray(steps.observation.observation[0])
    assert visual.shape == (35, 4, 139, 3, 2)
    assert steps.action.dtype == np.int32
    assert int(state.steps) == 35
    # Without an episode_stats_fn (the default) the same steps come out, and no statistics
    # (traced only: its program is not compiled here).
    plain = BatchedActor(env, networks.apply, networks.initial_state, apex_epsilons(4))
    _, (plain_steps, plain_ended, plain_stats) = plain.collect.trace(
        params, state, jax.random.PRNGKey(3), period).out_info
    assert plain_stats == {}
    assert jax.tree.structure(plain_steps) == jax.tree.structure(steps)
    assert [(x.shape, x.dtype) for x in jax.tree.leaves(plain_steps)] == [
        ((period, *x.shape[1:]), x.dtype) for x in jax.tree.leaves(steps)]
    assert plain_ended.shape == (period, 4) and plain_ended.dtype == np.bool_


def test_run_directory_records_everything(trained_run, tiny_env_config, tiny_training):
    run_dir, summary = trained_run
    assert summary["env_steps"] >= TINY_RUN_STEPS == 400 and not summary["resumed"]
    # samples per insert 1: one learner step per batch_size inserted sequences.
    inserted = summary["env_steps"] // tiny_training.sequence_period
    assert summary["learner_steps"] == pytest.approx(
        inserted / tiny_training.batch_size, abs=inserted * 0 + 3
    )
    env_config, actions, training, meta = RunDir(run_dir).load()
    assert env_config == tiny_env_config
    assert actions == Actions.default()
    assert training == tiny_training
    assert meta["seed"] == TINY_RUN_SEED == 3 and "simfish_version" in meta
    progress = json.loads((run_dir / "checkpoints" / "progress.json").read_text())
    assert progress["env_steps"] == summary["env_steps"]
    assert (run_dir / "checkpoints" / progress["learner_file"]).is_file()
    episodes = (run_dir / "episodes.csv").read_text().splitlines()
    assert episodes[0].startswith("env_steps,world,epsilon,episode_length,episode_return")
    assert len(episodes) - 1 == summary["episodes"] > 0
    row = dict(zip(episodes[0].split(","), episodes[1].split(","), strict=True))
    terms = [float(row[k]) for k in row if k.endswith("_associated_reward")]
    assert float(row["episode_return"]) == pytest.approx(sum(terms), abs=1e-3)
    assert not list(run_dir.rglob("*.tmp"))


def test_training_resumes_from_its_checkpoint(trained_run, capsys):
    run_dir, first = trained_run
    rc = main(["train", "--run-dir", str(run_dir), "--steps", str(first["env_steps"] + 80), "-q"])
    assert rc == 0
    out = capsys.readouterr().out
    assert f"resuming {run_dir} from env step {first['env_steps']}" in out
    progress = json.loads((run_dir / "checkpoints" / "progress.json").read_text())
    assert progress["env_steps"] == first["env_steps"] + 80
    assert progress["learner_steps"] > first["learner_steps"]


def test_resume_with_another_config_is_an_error(trained_run):
    run_dir, _ = trained_run
    with pytest.raises(RunDirError, match="different environment config"):
        train(run_dir, load_config("normal", {**TINY_ENV, "prey.num": 5}), num_steps=10)
    assert main(["train", "--run-dir", str(run_dir / "absent"), "--steps", "10",
                 "--train", "batch_size=0"]) == 2


def test_evaluation_writes_documented_logs(trained_run, tmp_path):
    run_dir, _ = trained_run
    summaries = eval_agent(None, run_dir, num_episodes=2, log_subdir="check", seed=5)
    files = sorted((run_dir / "logs" / "check").glob("logs_*.hdf5"))
    assert len(files) == 2
    with h5py.File(files[0]) as f:
        steps = int(f["episode_length"][()])
        assert steps == summaries[0]["episode_length"] == 30
        assert f["fish_x"].shape == (steps + 1,)
        assert f["vis_observation"].shape == (steps + 1, 139, 3, 2)
        assert f["vis_observation"].dtype == np.float32
        assert f["actor_state"].shape == (steps, 64)
        assert f["prey_x"].shape[0] == steps + 1
        assert float(f["episode_return"][()]) == pytest.approx(float(np.sum(f["reward"][()])))
        assert f["env_variables"].attrs["prey_num"] == 20
        assert "sediment" in f  # what regenerates the episode's texture
        # The users' conventions (issue 9 B): the texture as an image, the checkpoint's steps.
        assert f["sediment"].shape == (1, 400, 400) and f["sediment"].dtype == np.uint8
        progress = json.loads((run_dir / "checkpoints" / "progress.json").read_text())
        assert f["actor_steps"].shape == () and int(f["actor_steps"][()]) == progress["env_steps"]
        assert summaries[0]["actor_steps"] == progress["env_steps"]
        assert f["predator_present"].shape == (steps + 1,)
        assert "prey_stim_file" not in f["env_variables"].attrs
    # A second evaluation into the same label continues the numbering (record-only sediment).
    eval_agent(None, run_dir, num_episodes=1, log_subdir="check", seed=5, sediment="record")
    again = sorted((run_dir / "logs" / "check").glob("logs_*.hdf5"))
    assert len(again) == 3 and set(files) < set(again)
    (new,) = set(again) - set(files)
    with h5py.File(new) as f:
        assert f["sediment"].shape is None and f["sediment"].attrs["stored"] == "record"


def test_same_seed_gives_identical_episode_data(trained_run):
    run_dir, _ = trained_run
    eval_agent(None, run_dir, num_episodes=1, log_subdir="seed_a", seed=11)
    eval_agent(None, run_dir, num_episodes=1, log_subdir="seed_b", seed=11)
    (a,) = (run_dir / "logs" / "seed_a").glob("logs_*.hdf5")
    (b,) = (run_dir / "logs" / "seed_b").glob("logs_*.hdf5")
    with h5py.File(a) as fa, h5py.File(b) as fb:
        for name in ("fish_x", "fish_y", "action", "reward", "vis_observation", "actor_state"):
            np.testing.assert_array_equal(fa[name][()], fb[name][()])


def test_evaluation_errors_are_one_line(trained_run, tmp_path, capsys):
    run_dir, _ = trained_run
    assert main(["evaluate", "--run-dir", str(tmp_path / "nope"), "--episodes", "1"]) == 2
    assert "no such run directory" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["evaluate", "--run-dir", str(empty), "--episodes", "1"]) == 2
    assert "not a SimFish run directory" in capsys.readouterr().err
    # Other eyes give another number of retina positions than the network was trained on.
    assert main(["evaluate", "--run-dir", str(run_dir), "--episodes", "1",
                 "--set", "eyes.visual_field=120"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the trained network takes a visual observation" in err[0]


def test_untrained_run_has_no_checkpoint(tmp_path, tiny_env_config):
    run = RunDir(tmp_path / "fresh")
    run.create(tiny_env_config, Actions.default(), TrainingConfig(), seed=0)
    with pytest.raises(RunDirError, match="has no checkpoint yet"):
        eval_agent(None, run.path, num_episodes=1)


def test_dm_env_steps_match(tiny_env_config):
    assert int(dm_env.StepType.LAST) == 2  # the actor's stream relies on dm_env's values


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path, tiny_env_config, tiny_training,
                                                     monkeypatch):
    from simfish_rl import training as training_mod

    calls = {"n": 0}
    original = training_mod._TrainingLoop._learn

    def learn_then_interrupt(self, n):
        original(self, n)
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt

    monkeypatch.setattr(training_mod._TrainingLoop, "_learn", learn_then_interrupt)
    summary = train(tmp_path / "run", tiny_env_config, tiny_training, num_steps=10**6,
                    progress=False, overlap=False)
    assert summary["interrupted"]
    progress = json.loads((tmp_path / "run" / "checkpoints" / "progress.json").read_text())
    assert progress["env_steps"] == summary["env_steps"] < 10**6
    assert (tmp_path / "run" / "checkpoints" / progress["learner_file"]).is_file()


def test_resume_takes_new_intervals_and_names_a_refused_option(trained_run, capsys):
    run_dir, _ = trained_run
    before = json.loads((run_dir / "checkpoints" / "progress.json").read_text())
    rc = main(["train", "--run-dir", str(run_dir), "--steps", str(before["env_steps"] + 20),
               "-q", "--train", "checkpoint_every_minutes=7", "--train", "log_every_seconds=3",
               "--max-minutes", "30"])
    assert rc == 0
    recorded = json.loads((run_dir / "training_config.json").read_text())
    assert recorded["checkpoint_every_minutes"] == 7.0 and recorded["log_every_seconds"] == 3.0
    assert recorded["batch_size"] == TINY_TRAINING["batch_size"]  # the rest as recorded
    after = json.loads((run_dir / "checkpoints" / "progress.json").read_text())
    assert after["env_steps"] == before["env_steps"] + 20
    capsys.readouterr()
    assert main(["train", "--run-dir", str(run_dir), "--steps", "10", "-q",
                 "--train", "batch_size=8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'batch_size': recorded 4, new 8" in err[0], err
    training = TrainingConfig.from_json_file(run_dir / "training_config.json")
    with pytest.raises(RunDirError, match=r"'learning_rate': recorded 0.0001, new 0.001"):
        train(run_dir, training=training.replace({"learning_rate": 1e-3}), num_steps=10)
    with pytest.raises(RunDirError, match=r"'prey_num': recorded 20, new 5"):
        train(run_dir, load_config("normal", {**TINY_ENV, "prey.num": 5}), num_steps=10)


def test_a_non_finite_learner_is_never_checkpointed(trained_run):
    from simfish_rl.checkpoint import NonFiniteError
    from simfish_rl.simfish_r2d2_learner import TrainingState

    run = RunDir(trained_run[0])
    before = run.progress()
    nan = np.full((2,), np.nan, np.float32)

    class Diverged:
        steps = 10**6

        def save(self, path=None):
            assert path is None, "a non-finite state must not be written"
            return TrainingState(params={"w": nan}, target_params={"w": nan}, opt_state=(),
                                 steps=np.int32(10**6), random_key=np.zeros(2, np.uint32))

    with pytest.raises(NonFiniteError, match=r"learner step 77: non-finite values in \.params"):
        run.save_checkpoint(Diverged(), {"learner_steps": 77})
    assert run.progress() == before


def test_first_checkpoint_comes_with_learning_and_nan_stops_the_run(
        tmp_path, tiny_env_config, tiny_training, monkeypatch):
    from simfish_rl.checkpoint import NonFiniteError
    from simfish_rl.simfish_r2d2_learner import SimfishR2D2Learner

    original = SimfishR2D2Learner.step
    run_dir = tmp_path / "run"
    calls = {"n": 0, "checkpointed_at": None, "diverged_at": None}

    def step_then_diverge(self):
        results = original(self)
        calls["n"] += 1
        if calls["checkpointed_at"] is None and (run_dir / "checkpoints" / "progress.json").exists():
            calls["checkpointed_at"] = calls["n"] - 1
        if calls["checkpointed_at"] is not None and calls["n"] == calls["checkpointed_at"] + 2:
            # The second learner step after the first checkpoint blows up.
            calls["diverged_at"] = calls["n"]
            self._state = self._state._replace(
                params=jax.tree.map(lambda x: x * np.nan, self._state.params))
            results["loss"] = float("nan")
        return results

    monkeypatch.setattr(SimfishR2D2Learner, "step", step_then_diverge)
    training = tiny_training.replace({"checkpoint_every_minutes": 60.0})
    with pytest.raises(NonFiniteError) as err:
        train(run_dir, tiny_env_config, training, num_steps=10**6, progress=False,
              overlap=False)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"learner step {calls['diverged_at']}: non-finite loss = nan")
    # The first checkpoint came with the first learning (not after the
    # 60-minute interval), and the NaN state never replaced it.
    progress = json.loads((run_dir / "checkpoints" / "progress.json").read_text())
    assert progress["learner_steps"] == calls["checkpointed_at"] >= 1
    with np.load(run_dir / "checkpoints" / progress["learner_file"]) as f:
        floats = [f[k] for k in f.files if f[k].dtype.kind == "f"]
    assert floats and all(np.isfinite(a).all() for a in floats)
    assert len(list((run_dir / "checkpoints").glob("learner_*.npz"))) == 1


def test_tensorboard_rows_leave_out_time_and_missing_values():
    import math

    from simfish_rl.training import _add_scalars

    class Recorder:
        def __init__(self):
            self.calls = []

        def add_scalar(self, tag, value, step):
            self.calls.append((tag, value, step))

    tb = Recorder()
    row = {"time": 12.5, "env_steps": 640, "loss": math.nan, "recent_return": -1.5,
           "actor_0_steps": math.inf}
    _add_scalars(tb, "train", row, 640)
    assert tb.calls == [("train/env_steps", 640, 640), ("train/recent_return", -1.5, 640)]
    tb.calls.clear()
    _add_scalars(tb, lambda n: "actors" if n.startswith("actor_") else "train",
                 {"actor_1_steps": 3.0, "loss": 0.25}, 7)
    assert tb.calls == [("actors/actor_1_steps", 3.0, 7), ("train/loss", 0.25, 7)]
    _add_scalars(None, "train", row, 1)  # no tensorboardX: nothing to do
