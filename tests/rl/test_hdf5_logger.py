"""Tests for simfish_rl.hdf5_logger: observers, file layout, atomicity, numbering, rate limit."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import dm_env
import h5py
import numpy as np
import pytest
from dm_env import specs

import simfish_rl.hdf5_logger as hdf5_logger
from simfish.world.types import OAR
from simfish_rl.hdf5_logger import EnvInfoKeep, HDF5Logger, SimpleEnvInfoKeep

NUM_POSITIONS, NUM_CHANNELS = 139, 3
PREY_COUNTS = (3, 0, 2, 1, 3, 2, 0)  # live prey after reset and after each of 6 steps
# The fake env's sediment image: a ramp 0..30 over 4 x 6 px (row = y).
SEDIMENT_IMAGE = np.linspace(0.0, 30.0, 24, dtype=np.float32).reshape(4, 6)


class FakeFishEnv(dm_env.Environment):
    """A deterministic stand-in for BaseEnvironment: no JAX, tiny, known values."""

    def __init__(self, num_steps: int = 6, with_vision: bool = True) -> None:
        self.num_steps = num_steps
        self.with_vision = with_vision
        self.t = 0
        self.salt_location = np.array([12.5, 40.0])
        self.sediment_record = {"key": np.array([7, 11], np.uint32), "sigma": 5.0}
        self.env_variables = {
            "prey_num": 3,
            "fish_init_x": None,
            "eyes_viewing_elevations": [50.0, 75.0],
        }
        self.energy_associated_reward = -0.25
        self.consumption_associated_reward = 3.0
        self.salt_associated_reward = -0.5
        self.predator_associated_reward = 2.0
        self.wall_associated_reward = 0.0
        self.total_attacks_avoided = 1
        self.total_attacks_captured = 0

    def _observation(self, action: int, reward: float) -> OAR:
        internal = np.array([1.0, 1.0 - 0.01 * self.t, 0.1 * self.t], np.float32)
        if not self.with_vision:
            return OAR((internal,), np.int32(action), np.float32(reward))
        visual = np.full((NUM_POSITIONS, NUM_CHANNELS, 2), self.t, np.float32)
        return OAR((visual, internal), np.int32(action), np.float32(reward))

    def reset(self) -> dm_env.TimeStep:
        self.t = 0
        return dm_env.restart(self._observation(20, 0.0))

    def step(self, action) -> dm_env.TimeStep:
        self.t += 1
        reward = 0.5 * self.t - 0.25 * int(action)
        obs = self._observation(int(action), reward)
        if self.t >= self.num_steps:
            return dm_env.truncation(reward, obs)
        return dm_env.transition(reward, obs)

    def sediment_image(self) -> np.ndarray:
        return SEDIMENT_IMAGE.copy()

    def get_info(self) -> dict:
        n = PREY_COUNTS[self.t % len(PREY_COUNTS)]
        return {
            "fish_x": [100.0 + self.t],
            "fish_y": [200.0 - self.t],
            "fish_angle": [np.float32(0.1 * self.t)],
            "prey_x": [[10.0 * self.t + i for i in range(n)]],
            "prey_y": [np.arange(n, dtype=np.float32) - self.t],
            "predator_x": [None if self.t < 3 else 50.0 + self.t],
            "predator_y": [None if self.t < 3 else 60.0],
            "event_consumed_prey": [self.t == 2],
            "event_survived_predator": [False],
            "event_captured_by_predator": [self.t == 5],
        }

    def observation_spec(self):
        return (
            specs.Array((NUM_POSITIONS, NUM_CHANNELS, 2), np.float32),
            specs.Array((3,), np.float32),
        )

    def action_spec(self):
        return specs.DiscreteArray(21)


def run_observed_episode(observer, env: FakeFishEnv, with_state: bool = True):
    """Drives an observer through one episode as StateEnvLoop does; returns the actions."""
    timestep = env.reset()
    observer.observe_first(env, timestep)
    actions = []
    while not timestep.last():
        action = (len(actions) * 5) % 21
        state = np.full(64, len(actions) + 1, np.float32) if with_state else None
        timestep = env.step(action)
        observer.observe(env, timestep, np.int32(action), actor_state=state)
        actions.append(action)
    return actions


@pytest.fixture
def episode() -> dict:
    """Metrics of one 6-step fake episode, plus a loop-like summary."""
    env = FakeFishEnv()
    keep = EnvInfoKeep()
    run_observed_episode(keep, env)
    metrics = keep.get_metrics()
    metrics.update(
        episode_length=6, episode_return=float(np.sum(metrics["reward"])), steps_per_second=123.0
    )
    return metrics


# --------------------------------------------------------------------------
# EnvInfoKeep


def test_env_info_keep_arrays_have_documented_shapes_and_dtypes():
    env = FakeFishEnv(num_steps=6)
    keep = EnvInfoKeep()
    actions = run_observed_episode(keep, env)
    m = keep.get_metrics()
    rows = 7  # reset + 6 steps
    for key in ("fish_x", "fish_y", "fish_angle", "predator_x", "predator_y"):
        assert m[key].shape == (rows,) and m[key].dtype == np.float64, key
    for key in ("event_consumed_prey", "event_survived_predator", "event_captured_by_predator"):
        assert m[key].shape == (rows,) and m[key].dtype == np.bool_, key
    np.testing.assert_array_equal(m["fish_x"], 100.0 + np.arange(rows))
    np.testing.assert_array_equal(m["event_consumed_prey"], np.arange(rows) == 2)
    assert m["action"].dtype == np.int64
    np.testing.assert_array_equal(
        m["action"], [20, *actions]
    )  # row 0: the observation's previous action
    assert m["reward"].dtype == np.float64
    expected_rewards = [0.0] + [
        0.5 * t - 0.25 * a for t, a in zip(range(1, rows), actions, strict=True)
    ]
    np.testing.assert_array_equal(m["reward"], expected_rewards)
    assert m["vis_observation"].shape == (rows, NUM_POSITIONS, NUM_CHANNELS, 2)
    assert m["vis_observation"].dtype == np.float32
    np.testing.assert_array_equal(m["vis_observation"][:, 0, 0, 0], np.arange(rows))
    assert m["internal_state"].shape == (rows, 3) and m["internal_state"].dtype == np.float32
    assert m["actor_state"].shape == (rows - 1, 64) and m["actor_state"].dtype == np.float32
    np.testing.assert_array_equal(m["actor_state"][:, 0], np.arange(1, rows))
    np.testing.assert_array_equal(m["salt_location"], [[12.5, 40.0]])
    sediment = m["sediment"]
    assert isinstance(sediment, hdf5_logger.LoggedDataset)
    assert sediment.data.shape == (1, 4, 6) and sediment.data.dtype == np.uint8
    np.testing.assert_array_equal(sediment.attrs["key"], [7, 11])
    assert sediment.attrs["stored"] == "image"
    assert m["env_variables"] == env.env_variables


def test_env_info_keep_pads_prey_with_nan_and_marks_absent_predator():
    keep = EnvInfoKeep()
    run_observed_episode(keep, FakeFishEnv(num_steps=6))
    m = keep.get_metrics()
    assert m["prey_x"].shape == (7, max(PREY_COUNTS))
    assert m["prey_y"].shape == (7, max(PREY_COUNTS))
    for t, n in enumerate(PREY_COUNTS):
        np.testing.assert_array_equal(m["prey_x"][t, :n], 10.0 * t + np.arange(n))
        assert np.isnan(m["prey_x"][t, n:]).all() and np.isnan(m["prey_y"][t, n:]).all()
    # As in the users' files: an absent predator is 0, and predator_present says so.
    np.testing.assert_array_equal(m["predator_x"][:3], 0.0)
    np.testing.assert_array_equal(m["predator_y"][:3], 0.0)
    np.testing.assert_array_equal(m["predator_x"][3:], 50.0 + np.arange(3, 7))
    assert m["predator_present"].dtype == np.bool_
    np.testing.assert_array_equal(m["predator_present"], np.arange(7) >= 3)


def test_env_info_keep_restarts_each_episode():
    env = FakeFishEnv(num_steps=4)
    keep = EnvInfoKeep()
    run_observed_episode(keep, env)
    run_observed_episode(keep, env)
    assert keep.get_metrics()["fish_x"].shape == (5,)


def test_env_info_keep_without_vision_or_actor_state():
    keep = EnvInfoKeep()
    run_observed_episode(keep, FakeFishEnv(num_steps=3, with_vision=False), with_state=False)
    m = keep.get_metrics()
    assert "vis_observation" not in m and "actor_state" not in m
    assert m["internal_state"].shape == (4, 3)


def test_env_info_keep_rejects_info_not_wrapped_in_a_list():
    env = FakeFishEnv()
    env.get_info = lambda: {"fish_x": 1203.5}
    with pytest.raises(ValueError, match=r"fish_x.*one-element list"):
        EnvInfoKeep().observe_first(env, env.reset())


def test_env_info_keep_rejects_changing_info_keys():
    env = FakeFishEnv()
    keep = EnvInfoKeep()
    keep.observe_first(env, env.reset())
    env.get_info = lambda: {"fish_x": [1.0]}
    with pytest.raises(ValueError, match=r"keys changed at step 1.*missing \['event_captured"):
        keep.observe(env, env.step(0), 0, actor_state=np.zeros(64))


def test_env_info_keep_rejects_reserved_info_key_and_early_calls():
    env = FakeFishEnv()
    env.get_info = lambda: {"action": [3]}
    with pytest.raises(ValueError, match="reserved key 'action'"):
        EnvInfoKeep().observe_first(env, env.reset())
    with pytest.raises(RuntimeError, match="before observe_first"):
        EnvInfoKeep().observe(env, env.reset(), 0)
    with pytest.raises(RuntimeError, match="before observe_first"):
        EnvInfoKeep().get_metrics()


def test_env_info_keep_rejects_actor_state_that_disappears():
    env = FakeFishEnv()
    keep = EnvInfoKeep()
    keep.observe_first(env, env.reset())
    keep.observe(env, env.step(0), 0, actor_state=np.zeros(64))
    with pytest.raises(ValueError, match="actor_state is None at step 2"):
        keep.observe(env, env.step(0), 0, actor_state=None)


def _raw_info_steps(num_steps: int, rng: np.random.Generator) -> dict:
    """SimFishEnv.info-style arrays for rows 0..num_steps: dead prey and an absent predator NaN."""
    rows = num_steps + 1
    prey_x = rng.normal(size=(rows, 5)).astype(np.float32) * 100
    prey_x[rng.random((rows, 5)) < 0.4] = np.nan
    present = rng.random(rows) < 0.5
    return {
        "fish_x": rng.normal(size=rows).astype(np.float32),
        "prey_x": prey_x,
        "prey_y": np.where(np.isnan(prey_x), np.nan, prey_x + 1).astype(np.float32),
        "predator_x": np.where(present, 50.0, np.nan).astype(np.float32),
        "predator_y": np.where(present, rng.normal(size=rows), np.nan).astype(np.float32),
        "predator_present": present,
        "event_consumed_prey": rng.integers(0, 3, rows).astype(np.int32),
        "event_captured_by_predator": rng.random(rows) < 0.2,
    }


def test_env_info_keep_observe_steps_matches_step_by_step_observation():
    from simfish.wrappers.base_environment import info_lists

    rng = np.random.default_rng(3)
    steps = 7
    infos = _raw_info_steps(steps, rng)
    visual = rng.random((steps + 1, NUM_POSITIONS, NUM_CHANNELS, 2)).astype(np.float32)
    internal = rng.random((steps + 1, 3)).astype(np.float32)
    rewards = rng.normal(size=steps + 1).astype(np.float32)
    actions = rng.integers(0, 21, steps + 1).astype(np.int32)
    hidden = rng.normal(size=(steps, 64)).astype(np.float32)
    step_type = np.full(steps + 1, int(dm_env.StepType.MID), np.int32)
    step_type[-1] = int(dm_env.StepType.LAST)

    class InfoEnv:
        row = 0
        env_variables = {"prey_num": 5}

        def get_info(self):
            return info_lists({k: v[self.row] for k, v in infos.items()})

    def timestep(t):
        obs = OAR((visual[t], internal[t]), actions[t], rewards[t])
        return dm_env.TimeStep(dm_env.StepType(int(step_type[t])), rewards[t], np.float32(1), obs)

    env = InfoEnv()
    one = EnvInfoKeep()
    first = dm_env.restart(OAR((visual[0], internal[0]), np.int32(20), np.float32(0)))
    one.observe_first(env, first)
    for t in range(1, steps + 1):
        env.row = t
        one.observe(env, timestep(t), actions[t], actor_state=hidden[t - 1])
    env.row = 0
    bulk = EnvInfoKeep()
    bulk.observe_first(env, first)
    later = slice(1, None)
    bulk.observe_steps(
        {k: v[later] for k, v in infos.items()},
        dm_env.TimeStep(step_type[later], rewards[later], np.ones(steps, np.float32),
                        OAR((visual[later], internal[later]), actions[later], rewards[later])),
        actions[later], hidden)
    a, b = one.get_metrics(), bulk.get_metrics()
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            assert a[key] == b[key], key
            continue
        x, y = np.asarray(a[key]), np.asarray(b[key])
        assert x.dtype == y.dtype and x.shape == y.shape, key
        assert x.tobytes() == y.tobytes(), f"{key} differs"
    assert np.isnan(a["prey_x"]).any() and (a["predator_x"] == 0).any()
    with pytest.raises(ValueError, match="info keys changed"):
        bulk.observe_steps({"fish_x": infos["fish_x"][later]}, first, actions[later], hidden)


def test_env_info_keep_accepts_a_typed_config():
    from simfish import load_config

    config = load_config("normal")
    env = FakeFishEnv()
    env.env_variables = config
    keep = EnvInfoKeep()
    keep.observe_first(env, env.reset())
    assert keep.get_metrics()["env_variables"] == config.to_flat_dict()


# --------------------------------------------------------------------------
# SimpleEnvInfoKeep


def test_simple_env_info_keep_reports_episode_totals():
    env = FakeFishEnv(num_steps=3)
    keep = SimpleEnvInfoKeep()
    run_observed_episode(keep, env)
    env.consumption_associated_reward = 99.0  # changes after the episode end are not seen
    metrics = keep.get_metrics()
    assert metrics == {
        "energy_associated_reward": -0.25,
        "consumption_associated_reward": 3.0,
        "salt_associated_reward": -0.5,
        "predator_associated_reward": 2.0,
        "wall_associated_reward": 0.0,
        "total_attacks_avoided": 1,
        "total_attacks_captured": 0,
    }
    assert isinstance(metrics["total_attacks_avoided"], int)


def test_simple_env_info_keep_names_a_missing_attribute():
    env = FakeFishEnv(num_steps=2)
    del env.wall_associated_reward
    keep = SimpleEnvInfoKeep()
    with pytest.raises(AttributeError, match="wall_associated_reward"):
        run_observed_episode(keep, env)


# --------------------------------------------------------------------------
# HDF5Logger: layout


def test_logger_writes_one_file_with_documented_datasets(tmp_path, episode):
    logger = HDF5Logger(tmp_path, label="eval", add_uid=False, wait_min=0)
    logger.write(episode)
    path = tmp_path / "logs" / "eval" / "logs_1.hdf5"
    assert logger.written == [path]
    with h5py.File(path, "r") as f:
        for key in (
            "fish_x", "fish_y", "fish_angle", "prey_x", "prey_y", "predator_x", "predator_y",
            "event_consumed_prey", "event_survived_predator", "event_captured_by_predator",
            "action", "reward", "vis_observation", "internal_state", "actor_state",
            "salt_location", "episode_length", "episode_return", "steps_per_second",
        ):  # fmt: skip
            assert key in f, key
            np.testing.assert_array_equal(f[key][()], episode[key])
            assert f[key].dtype == np.asarray(episode[key]).dtype, key
        assert f["vis_observation"].shape == (7, 139, 3, 2)
        assert f["actor_state"].shape == (6, 64)
        assert f["prey_x"].shape == (7, 3) and np.isnan(f["prey_x"][1]).all()
        assert f["episode_length"].shape == ()
        assert f["episode_return"][()] == pytest.approx(np.sum(f["reward"][()]))
        assert isinstance(f["sediment"], h5py.Dataset)
        assert f["sediment"].shape == (1, 4, 6) and f["sediment"].dtype == np.uint8
        np.testing.assert_array_equal(f["sediment"].attrs["key"], [7, 11])
        np.testing.assert_array_equal(f["predator_present"][()], episode["predator_present"])
        attrs = f["env_variables"].attrs
        assert attrs["prey_num"] == 3
        np.testing.assert_array_equal(attrs["eyes_viewing_elevations"], [50.0, 75.0])
        assert "fish_init_x" not in attrs  # unset values are absent, not empty
        assert f.attrs["format_version"] == hdf5_logger.FORMAT_VERSION


def test_logger_pads_ragged_prey_lists_given_directly(tmp_path):
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=0)
    logger.write({"prey_x": [[1.0, 2.0], [], [3.0]], "episode_length": 2})
    with h5py.File(tmp_path / "logs" / "logs_1.hdf5", "r") as f:
        np.testing.assert_array_equal(f["prey_x"][()], [[1, 2], [np.nan, np.nan], [3, np.nan]])


def test_logger_paths_for_label_and_uid(tmp_path):
    plain = HDF5Logger(tmp_path / "a", add_uid=False, wait_min=0)
    assert plain.directory == tmp_path / "a" / "logs"
    uid = HDF5Logger(tmp_path / "b", label="evaluator", add_uid=True, wait_min=0)
    (uid_folder,) = list((tmp_path / "b").iterdir())
    assert uid.directory == uid_folder / "logs" / "evaluator"
    assert uid.directory.is_dir()


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        ([1, 2], TypeError, "expected a mapping"),
        ({"a/b": 1.0}, ValueError, "'a/b' is not a valid name"),
        ({"": 1.0}, ValueError, "is not a valid name"),
        ({"fish_x": np.array(["a", "b"])}, ValueError, r"\['fish_x'\].*dtype <U1"),
        ({"fish_x": [object(), object()]}, ValueError, r"\['fish_x'\]"),
        ({"fish_x": [[1.0, [2.0]], [3.0]]}, ValueError, r"\['fish_x'\]"),
        ({"env_variables": {"prey_num": object()}}, ValueError, r"env_variables.*prey_num"),
        ({"env_variables": 3}, TypeError, "env_variables"),
    ],
)
def test_logger_rejects_bad_data_with_a_clear_error(tmp_path, data, error, match):
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=0)
    with pytest.raises(error, match=match):
        logger.write(data)
    assert logger.num_pending == 0 and logger.written == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"wait_min": -1}, "wait_min"),
        ({"wait_min": float("nan")}, "wait_min"),
        ({"max_pending": 0}, "max_pending"),
        ({"label": "../escape"}, "label"),
    ],
)
def test_logger_rejects_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        HDF5Logger(tmp_path, add_uid=False, **kwargs)


def test_logger_needs_a_directory_not_a_file_object(tmp_path):
    with open(tmp_path / "x.txt", "w") as fh, pytest.raises(TypeError, match="directory path"):
        HDF5Logger(fh)


# --------------------------------------------------------------------------
# HDF5Logger: numbering


def test_numbering_continues_after_existing_files(tmp_path):
    folder = tmp_path / "logs" / "eval"
    folder.mkdir(parents=True)
    for name in ("logs_1.hdf5", "logs_7.hdf5", "logs_x.hdf5", ".logs_9.hdf5.tmp", "notes_12.hdf5"):
        (folder / name).write_bytes(b"old " + name.encode())
    first = HDF5Logger(tmp_path, label="eval", add_uid=False, wait_min=0)
    first.write({"episode_length": 1})
    first.write({"episode_length": 2})
    second = HDF5Logger(tmp_path, label="eval", add_uid=False, wait_min=0)
    second.write({"episode_length": 3})
    assert [p.name for p in first.written] == ["logs_8.hdf5", "logs_9.hdf5"]
    assert [p.name for p in second.written] == ["logs_10.hdf5"]
    assert (folder / "logs_7.hdf5").read_bytes() == b"old logs_7.hdf5"  # never overwritten
    for k, length in ((8, 1), (9, 2), (10, 3)):
        with h5py.File(folder / f"logs_{k}.hdf5", "r") as f:
            assert f["episode_length"][()] == length


def test_numbering_skips_a_name_taken_by_another_writer(tmp_path, monkeypatch):
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=0)
    # Another process creates logs_1.hdf5 after our scan of the folder but before we publish.
    real_scan = hdf5_logger.existing_log_indices

    def racing_scan(directory):
        indices = real_scan(directory)
        (Path(directory) / "logs_1.hdf5").write_bytes(b"theirs")
        return indices

    monkeypatch.setattr(hdf5_logger, "existing_log_indices", racing_scan)
    logger.write({"episode_length": 5})
    assert [p.name for p in logger.written] == ["logs_2.hdf5"]
    assert (tmp_path / "logs" / "logs_1.hdf5").read_bytes() == b"theirs"


# --------------------------------------------------------------------------
# HDF5Logger: atomic writes


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_failed_write_leaves_no_file_and_keeps_the_episode(tmp_path, monkeypatch, episode):
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=0)
    real_create = h5py.Group.create_dataset
    calls = {"n": 0}

    def failing_create(self, name, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full (simulated)")
        return real_create(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing_create)
    with pytest.raises(OSError, match="simulated"):
        logger.write(episode)
    assert calls["n"] == 5
    assert _files(logger.directory) == []  # neither a final file nor a temp file
    assert logger.num_pending == 1
    monkeypatch.setattr(h5py.Group, "create_dataset", real_create)
    logger.close()  # the kept episode is written once the disk works again
    assert _files(logger.directory) == ["logs_1.hdf5"]
    with h5py.File(logger.directory / "logs_1.hdf5", "r") as f:
        np.testing.assert_array_equal(f["fish_x"][()], episode["fish_x"])


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import h5py, numpy as np
    from simfish_rl.hdf5_logger import HDF5Logger

    logger = HDF5Logger(sys.argv[1], label="eval", add_uid=False, wait_min=0)
    episode = {"fish_x": np.arange(1001.0), "vis_observation": np.ones((1001, 139, 3, 2), np.float32),
               "episode_length": 1000}
    logger.write(episode)  # a complete first file
    real_create = h5py.Group.create_dataset
    def create_then_die(self, name, *args, **kwargs):
        out = real_create(self, name, *args, **kwargs)
        if name == "vis_observation":
            self.file.flush()
            os.kill(os.getpid(), signal.SIGKILL)  # a hard crash in the middle of the file
        return out
    h5py.Group.create_dataset = create_then_die
    logger.write(episode)
    """
)


def _run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    """Runs a Python snippet in a fresh interpreter that can import simfish_rl."""
    src = Path(hdf5_logger.__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, timeout=120
    )


def test_killed_writer_leaves_no_partial_episode_file(tmp_path):
    proc = _run_python(_KILLED_WRITER, str(tmp_path))
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    folder = tmp_path / "logs" / "eval"
    finals = [n for n in _files(folder) if hdf5_logger.LOG_FILE_PATTERN.match(n)]
    assert finals == ["logs_1.hdf5"]  # the complete first episode only
    leftovers = [n for n in _files(folder) if n not in finals]
    assert (
        len(leftovers) == 1 and leftovers[0].startswith(".logs_") and leftovers[0].endswith(".tmp")
    )
    with h5py.File(folder / "logs_1.hdf5", "r") as f:
        assert f["vis_observation"].shape == (1001, 139, 3, 2)
        assert f["episode_length"][()] == 1000
    # A new writer continues numbering after the complete file and ignores the leftover.
    logger = HDF5Logger(tmp_path, label="eval", add_uid=False, wait_min=0)
    logger.write({"episode_length": 1})
    assert logger.written[0].name == "logs_2.hdf5"


# --------------------------------------------------------------------------
# HDF5Logger: rate limit without sleeping


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def no_sleep(monkeypatch):
    def forbidden(seconds):
        raise AssertionError(f"time.sleep({seconds}) called")

    monkeypatch.setattr(hdf5_logger.time, "sleep", forbidden)


def test_wait_min_queues_without_sleeping_and_loses_nothing(tmp_path, no_sleep):
    clock = FakeClock()
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=10, clock=clock)
    logger.write({"episode_length": 1})  # first write goes straight to disk
    assert [p.name for p in logger.written] == ["logs_1.hdf5"]
    for length, now in ((2, 1060.0), (3, 1300.0)):
        clock.now = now
        logger.write({"episode_length": length})  # within 10 min of the last flush: queued
    assert logger.num_pending == 2 and len(logger.written) == 1
    clock.now = 1000.0 + 600.0  # 10 minutes later
    logger.write({"episode_length": 4})
    assert logger.num_pending == 0
    clock.now = 1700.0
    logger.write({"episode_length": 5})
    assert logger.num_pending == 1
    logger.close()  # close flushes the rest
    lengths = []
    for path in logger.written:
        with h5py.File(path, "r") as f:
            lengths.append(int(f["episode_length"][()]))
    assert [p.name for p in logger.written] == [f"logs_{k}.hdf5" for k in range(1, 6)]
    assert lengths == [1, 2, 3, 4, 5]


def test_wait_min_zero_writes_every_episode_immediately(tmp_path, no_sleep):
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=0, clock=FakeClock())
    for length in range(3):
        logger.write({"episode_length": length})
        assert logger.num_pending == 0
    assert len(logger.written) == 3


def test_max_pending_bounds_the_queue(tmp_path, no_sleep):
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=60, max_pending=3, clock=FakeClock())
    for length in range(7):
        logger.write({"episode_length": length})
    # 1 written at once, then 3 more each time the queue reaches 3.
    assert len(logger.written) == 7 and logger.num_pending == 0


def test_queued_data_is_a_copy(tmp_path, no_sleep):
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=60, clock=FakeClock())
    logger.write({"x": np.zeros(3)})
    data = np.zeros(3)
    logger.write({"x": data})
    data[:] = 9.0  # the caller reuses its buffer before the flush
    logger.close()
    with h5py.File(logger.written[1], "r") as f:
        np.testing.assert_array_equal(f["x"][()], np.zeros(3))


def test_closed_logger_refuses_writes(tmp_path):
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=0)
    logger.close()
    logger.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        logger.write({"episode_length": 1})


def test_queue_is_flushed_when_the_logger_is_dropped(tmp_path, no_sleep):
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=60, clock=FakeClock())
    logger.write({"episode_length": 1})
    logger.write({"episode_length": 2})
    folder = logger.directory
    del logger
    gc.collect()
    assert _files(folder) == ["logs_1.hdf5", "logs_2.hdf5"]


def test_queue_is_flushed_at_interpreter_exit(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        from simfish_rl.hdf5_logger import HDF5Logger
        logger = HDF5Logger(sys.argv[1], add_uid=False, wait_min=60)
        for length in range(3):
            logger.write({"episode_length": length})
        assert logger.num_pending == 2
        """
    )
    proc = _run_python(code, str(tmp_path))
    assert proc.returncode == 0, proc.stderr.decode()
    assert _files(tmp_path / "logs") == ["logs_1.hdf5", "logs_2.hdf5", "logs_3.hdf5"]


def test_context_manager_closes(tmp_path, no_sleep):
    with HDF5Logger(tmp_path, add_uid=False, wait_min=60, clock=FakeClock()) as logger:
        logger.write({"episode_length": 1})
        logger.write({"episode_length": 2})
        assert logger.num_pending == 1
    assert logger.num_pending == 0 and len(logger.written) == 2


def test_jax_values_and_typed_keys_are_stored_as_numbers(tmp_path):
    import jax
    import jax.numpy as jnp

    env = FakeFishEnv(num_steps=1)
    env.sediment_record = {"episode_key": jax.random.key(42)}
    keep = EnvInfoKeep()
    run_observed_episode(keep, env)
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=0)
    logger.write({**keep.get_metrics(), "key": jax.random.key(1), "x": jnp.arange(3.0)})
    with h5py.File(logger.written[0], "r") as f:
        np.testing.assert_array_equal(
            f["sediment"].attrs["episode_key"], jax.random.key_data(jax.random.key(42))
        )
        np.testing.assert_array_equal(f["key"][()], jax.random.key_data(jax.random.key(1)))
        np.testing.assert_array_equal(f["x"][()], [0.0, 1.0, 2.0])


def test_env_info_keep_snapshots_buffers_the_env_reuses():
    env = FakeFishEnv(num_steps=3)
    prey = [0.0]
    fish = np.zeros(1)

    def reused_buffers():
        prey[0] = float(env.t)
        fish[0] = env.t
        return {"prey_x": [prey], "fish_x": [fish]}

    env.get_info = reused_buffers
    keep = EnvInfoKeep()
    run_observed_episode(keep, env)
    metrics = keep.get_metrics()
    np.testing.assert_array_equal(metrics["prey_x"], [[0.0], [1.0], [2.0], [3.0]])
    np.testing.assert_array_equal(metrics["fish_x"], [[0.0], [1.0], [2.0], [3.0]])


def test_env_variables_are_flattened_by_the_config_only():
    from simfish.config import load_config
    from simfish_rl.hdf5_logger import flat_env_variables

    config = load_config("normal")
    flat = flat_env_variables(config)
    assert flat == config.to_flat_dict()
    assert flat["arena_width"] == config.arena.width
    assert flat_env_variables({"prey_num": 3}) == {"prey_num": 3}
    with pytest.raises(TypeError, match="key 3 is not a string"):
        flat_env_variables({3: 1})
    with pytest.raises(TypeError, match=r"env_variables\['arena'\] is a nested section"):
        flat_env_variables({"arena": {"width": 1500}})


# --------------------------------------------------------------------------
# Format 2: the users' log conventions (sediment image, predator 0, absent options)


def test_sediment_is_an_image_dataset_with_its_record_as_attributes(tmp_path, episode):
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=0)
    logger.write(episode)
    with h5py.File(logger.written[0], "r") as f:
        dataset = f["sediment"]
        assert dataset.shape == (1, 4, 6) and dataset.dtype == np.uint8
        assert dataset.chunks is not None and dataset.compression == "gzip"
        pixels = f["sediment"][0]  # as the users' scripts read it
        attrs = dict(dataset.attrs)
    assert attrs["stored"] == "image"
    np.testing.assert_array_equal(attrs["key"], [7, 11])
    assert attrs["sigma"] == 5.0
    decoded = attrs["pixel_offset"] + attrs["pixel_scale"] * pixels.astype(np.float64)
    np.testing.assert_allclose(decoded, SEDIMENT_IMAGE, atol=attrs["pixel_scale"] / 2 + 1e-9)
    assert pixels.min() == 0 and pixels.max() == 255


def test_sediment_record_only_from_the_logger_or_the_observer(tmp_path, episode):
    logger = HDF5Logger(tmp_path / "a", add_uid=False, wait_min=0, sediment="record")
    logger.write(episode)
    env = FakeFishEnv()
    calls = []
    env.sediment_image = lambda: calls.append(1) or SEDIMENT_IMAGE
    keep = EnvInfoKeep(sediment="record")
    run_observed_episode(keep, env)
    assert calls == []  # the image is not even drawn
    second = HDF5Logger(tmp_path / "b", add_uid=False, wait_min=0)
    second.write({"episode_length": 6, **keep.get_metrics()})
    for path in (logger.written[0], second.written[0]):
        with h5py.File(path, "r") as f:
            assert f["sediment"].shape is None  # no data: h5py.Empty
            attrs = dict(f["sediment"].attrs)
        assert attrs["stored"] == "record" and "pixel_scale" not in attrs
        np.testing.assert_array_equal(attrs["key"], [7, 11])
    assert episode["sediment"].data.shape == (1, 4, 6)  # the caller's data is untouched
    with pytest.raises(ValueError, match="sediment must be one of image, record"):
        HDF5Logger(tmp_path, add_uid=False, sediment="png")
    with pytest.raises(ValueError, match="sediment must be one of image, record"):
        EnvInfoKeep(sediment="none")


def test_predator_present_from_get_info_is_used(tmp_path):
    class WithFlag(FakeFishEnv):
        def get_info(self):
            info = super().get_info()
            # The predator is reported at a position but flagged absent at step 4.
            info["predator_x"] = [50.0 + self.t]
            info["predator_present"] = [self.t >= 3 and self.t != 4]
            return info

    keep = EnvInfoKeep()
    run_observed_episode(keep, WithFlag())
    m = keep.get_metrics()
    expected = (np.arange(7) >= 3) & (np.arange(7) != 4)
    np.testing.assert_array_equal(m["predator_present"], expected)
    np.testing.assert_array_equal(m["predator_x"], np.where(expected, 50.0 + np.arange(7), 0.0))


def test_unset_env_variables_are_absent_not_empty(tmp_path):
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=0)
    logger.write({"episode_length": 0,
                  "env_variables": {"prey_stim_file": None, "fish_init_x": None, "prey_num": 3}})
    with h5py.File(logger.written[0], "r") as f:
        attrs = f["env_variables"].attrs
        assert "prey_stim_file" not in attrs and "fish_init_x" not in attrs
        assert attrs["prey_num"] == 3


def test_writer_and_reader_share_one_file_naming():
    import simfish.io.logs as logs

    assert hdf5_logger.LOG_FILE_PATTERN is logs.LOG_FILE_PATTERN
    assert logs.episode_file_name(12) == "logs_12.hdf5"
    assert logs.episode_index(logs.episode_file_name(12)) == 12
    assert logs.LOG_FILE_PATTERN.match(".logs_.0a1b2c.hdf5.tmp") is None
    with pytest.raises(ValueError, match="episode index must be an int >= 1"):
        logs.episode_file_name(0)
