"""Tests for simfish.io.logs: loading episode files and finding them in a run directory."""

from __future__ import annotations

from pathlib import Path

import dm_env
import h5py
import jax
import numpy as np
import pytest

from conftest import REPO_ROOT
from simfish import load_config
from simfish.io.logs import (
    EpisodeLogError,
    episode_index,
    list_episodes,
    list_labels,
    load_episode,
    sediment_from_episode,
    sediment_image,
)
from simfish.world.types import OAR
from simfish_rl.hdf5_logger import EnvInfoKeep, HDF5Logger

SHARED_ACTIONS = (
    REPO_ROOT
    / "src"
    / "simfish"
    / "data"
    / "actions_all_bouts_with_null.h5"
)


def make_episode(steps: int = 5, seed: int = 0) -> dict:
    """A synthetic episode in the layout EnvInfoKeep + StateEnvLoop produce."""
    rng = np.random.default_rng(seed)
    rows = steps + 1
    prey_x = np.full((rows, 4), np.nan)
    prey_x[:, :2] = rng.uniform(0, 100, (rows, 2))
    prey_x[2, :4] = rng.uniform(0, 100, 4)
    reward = np.concatenate([[0.0], rng.normal(size=steps)])
    return {
        "fish_x": rng.uniform(0, 100, rows),
        "fish_y": rng.uniform(0, 100, rows),
        "fish_angle": rng.uniform(-3, 3, rows),
        "prey_x": prey_x,
        "prey_y": prey_x + 1.0,
        "predator_x": np.where(np.arange(rows) > 2, 40.0, np.nan),
        "predator_y": np.where(np.arange(rows) > 2, 45.0, np.nan),
        "event_consumed_prey": np.arange(rows) == 3,
        "event_survived_predator": np.zeros(rows, bool),
        "event_captured_by_predator": np.zeros(rows, bool),
        "action": rng.integers(0, 21, rows),
        "reward": reward,
        "vis_observation": rng.uniform(0, 255, (rows, 139, 3, 2)).astype(np.float32),
        "internal_state": rng.uniform(0, 1, (rows, 3)).astype(np.float32),
        "actor_state": rng.normal(size=(steps, 64)).astype(np.float32),
        "salt_location": np.array([[10.0, 20.0]]),
        "sediment": {"key": np.array([1, 2], np.uint32)},
        "episode_length": steps,
        "episode_return": float(reward.sum()),
        "steps_per_second": 500.0,
        "env_variables": {"prey_num": 4, "fish_init_x": None, "eyes_viewing_elevations": (50.0, 75.0),
                          "salt_enabled": True, "prey_stim_file": "/x/prey.h5"},
    }  # fmt: skip


@pytest.fixture
def written(tmp_path) -> tuple[Path, dict]:
    episode = make_episode()
    logger = HDF5Logger(tmp_path, label="eval_model", add_uid=False, wait_min=0)
    logger.write(episode)
    return logger.written[0], episode


def test_load_episode_round_trips_every_array(written):
    path, episode = written
    loaded = load_episode(path)
    for key, value in episode.items():
        if key in ("env_variables", "sediment") or np.ndim(value) == 0:
            continue
        assert isinstance(loaded[key], np.ndarray), key
        assert loaded[key].dtype == np.asarray(value).dtype, key
        np.testing.assert_array_equal(loaded[key], value)  # NaN padding included
    assert loaded["vis_observation"].shape == (6, 139, 3, 2)
    assert loaded["actor_state"].shape == (5, 64)
    np.testing.assert_array_equal(loaded["sediment"]["key"], [1, 2])


def test_load_episode_scalars_and_env_variables_are_plain_python(written):
    path, episode = written
    loaded = load_episode(path)
    assert loaded["episode_length"] == 5 and type(loaded["episode_length"]) is int
    assert type(loaded["episode_return"]) is float
    assert loaded["episode_return"] == pytest.approx(float(np.sum(loaded["reward"])))
    assert loaded["env_variables"] == {  # fish_init_x is None: not stored (format 2)
        "prey_num": 4,
        "eyes_viewing_elevations": [50.0, 75.0],
        "salt_enabled": True,
        "prey_stim_file": "/x/prey.h5",
    }


def test_load_episode_round_trips_a_preset_config(tmp_path):
    config = load_config("tethered_prey_pred")
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=0)
    logger.write({"episode_length": 0, "env_variables": config})
    assert load_episode(logger.written[0])["env_variables"] == config.to_flat_dict()


def test_load_episode_subset_of_keys(written):
    path, episode = written
    loaded = load_episode(path, keys=["fish_x", "episode_length"])
    assert set(loaded) == {"fish_x", "episode_length"}
    with pytest.raises(EpisodeLogError, match="no vis_obs in this episode log"):
        load_episode(path, keys=["vis_obs"])


def test_load_episode_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="logs_3.hdf5: no such episode file"):
        load_episode(tmp_path / "logs_3.hdf5")
    text = tmp_path / "logs_1.hdf5"
    text.write_text("not hdf5")
    with pytest.raises(EpisodeLogError, match="logs_1.hdf5: not a readable HDF5 file"):
        load_episode(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("mean", data=[1.0, 2.0])
    with pytest.raises(EpisodeLogError, match="not a SimFish episode log"):
        load_episode(other)


@pytest.mark.skipif(not SHARED_ACTIONS.exists(), reason="actions file not shipped in this checkout")
def test_actions_file_is_not_taken_for_an_episode():
    with pytest.raises(EpisodeLogError, match="not a SimFish episode log"):
        load_episode(SHARED_ACTIONS)


def _touch_episodes(folder: Path, indices) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k in indices:
        with h5py.File(folder / f"logs_{k}.hdf5", "w") as f:
            f.create_dataset("episode_length", data=k)


def test_list_episodes_sorts_by_number_and_ignores_other_files(tmp_path):
    folder = tmp_path / "logs" / "eval"
    _touch_episodes(folder, [10, 2, 1])
    (folder / ".logs_3.hdf5.tmp").write_bytes(b"")
    (folder / "logs_x.hdf5").write_bytes(b"")
    expected = [folder / f"logs_{k}.hdf5" for k in (1, 2, 10)]
    assert list_episodes(tmp_path, label="eval") == expected
    assert list_episodes(tmp_path / "logs", label="eval") == expected
    assert list_episodes(folder) == expected
    assert list_episodes(tmp_path) == expected  # the only label
    assert [episode_index(p) for p in expected] == [1, 2, 10]
    assert [load_episode(p)["episode_length"] for p in expected] == [1, 2, 10]


def test_list_episodes_with_several_labels(tmp_path):
    _touch_episodes(tmp_path / "logs" / "eval_a", [1])
    _touch_episodes(tmp_path / "logs" / "eval_b", [1, 2])
    (tmp_path / "logs" / "empty").mkdir()
    assert list_labels(tmp_path) == ["eval_a", "eval_b"]
    assert len(list_episodes(tmp_path, label="eval_b")) == 2
    with pytest.raises(
        ValueError, match="several labels hold episodes .*eval_a, eval_b.*pass label="
    ):
        list_episodes(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no logs for label 'eval_c'.*'eval_a', 'eval_b'"):
        list_episodes(tmp_path, label="eval_c")
    assert list_episodes(tmp_path, label="empty") == []


def test_list_episodes_in_unlabelled_logs_folder(tmp_path):
    _touch_episodes(tmp_path / "logs", [1, 2])
    assert [p.name for p in list_episodes(tmp_path)] == ["logs_1.hdf5", "logs_2.hdf5"]


def test_list_episodes_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory"):
        list_episodes(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no such directory"):
        list_labels(tmp_path / "missing")
    assert list_episodes(tmp_path) == []
    with pytest.raises(ValueError, match="not an episode file name"):
        episode_index("logs_a.hdf5")


def test_sediment_texture_is_regenerated_from_the_log(tmp_path):
    from simfish.vision.sediment import make_sediment, render_sediment

    config = load_config("normal")
    sediment = make_sediment(jax.random.key(3), config.arena)
    env = type("Env", (), {"sediment_record": sediment, "salt_location": None})()
    keep = EnvInfoKeep()
    keep.observe_first(env, dm_env.restart(OAR((np.ones(3, np.float32),), 0, 0.0)))
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=0)
    logger.write({"episode_length": 0, **keep.get_metrics()})
    episode = load_episode(logger.written[0])
    assert episode["sediment"] is None  # this env offers no image: the record only
    assert set(episode["sediment_record"]) == {*sediment._fields, "stored"}
    assert np.isnan(episode["salt_location"]).all()
    rebuilt = sediment_from_episode(logger.written[0])
    original = render_sediment(sediment, 100.0, 200.0, 16, 8)
    np.testing.assert_array_equal(render_sediment(rebuilt, 100.0, 200.0, 16, 8), original)
    assert original.std() > 0  # a real texture, not a constant


def test_sediment_from_episode_without_a_texture(written):
    path, _ = written
    with pytest.raises(EpisodeLogError, match="not a texture record"):
        sediment_from_episode(path)


# ---------------------------------------------------------------------------
# Old (format 1) and new (format 2) files, and the users' previous tool's files.


def _texture_env(config, with_image: bool):
    """A minimal env exposing an episode's sediment record (and image) like BaseEnvironment."""
    from simfish.vision.sediment import make_sediment, render_sediment

    sediment = make_sediment(jax.random.key(7), config.arena)
    attrs = {"sediment_record": sediment, "salt_location": None,
             "env_variables": config.to_flat_dict()}  # fmt: skip
    if with_image:
        width, height = config.arena.width, config.arena.height
        attrs["sediment_image"] = lambda self: render_sediment(sediment, 0.0, 0.0, width, height)
    return type("Env", (), attrs)(), sediment


def _write_with(env, tmp_path, **logger_kwargs):
    keep = EnvInfoKeep()
    keep.observe_first(env, dm_env.restart(OAR((np.ones(3, np.float32),), 0, 0.0)))
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=0, **logger_kwargs)
    logger.write({"episode_length": 0, **keep.get_metrics()})
    return logger.written[0]


def test_new_file_holds_the_sediment_image_and_its_record(tmp_path):
    from simfish.vision.sediment import render_sediment

    config = load_config("normal", {"arena.width": 120, "arena.height": 90})
    env, sediment = _texture_env(config, with_image=True)
    path = _write_with(env, tmp_path)
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 2
        assert f["sediment"].shape == (1, 90, 120) and f["sediment"].dtype == np.uint8
        assert "fish_init_x" not in f["env_variables"].attrs  # unset: absent
    episode = load_episode(path)
    assert episode["sediment"].shape == (1, 90, 120)
    assert episode["sediment_record"]["stored"] == "image"
    truth = render_sediment(sediment, 0.0, 0.0, 120, 90)
    image = sediment_image(path)
    assert image.shape == (90, 120) and image.dtype == np.float32
    step = episode["sediment_record"]["pixel_scale"]
    np.testing.assert_allclose(image, truth, atol=step / 2 + 1e-4)
    assert truth.std() > 1.0  # a real texture
    # The record alone rebuilds the exact texture.
    rebuilt = sediment_from_episode(path)
    np.testing.assert_array_equal(render_sediment(rebuilt, 5.0, 7.0, 16, 8),
                                  render_sediment(sediment, 5.0, 7.0, 16, 8))
    only_record = load_episode(path, keys=["sediment_record"])
    assert set(only_record) == {"sediment", "sediment_record"}


def test_record_only_file_redraws_its_sediment(tmp_path):
    from simfish.vision.sediment import render_sediment

    config = load_config("normal", {"arena.width": 100, "arena.height": 100})
    env, sediment = _texture_env(config, with_image=True)
    path = _write_with(env, tmp_path, sediment="record")
    episode = load_episode(path)
    assert episode["sediment"] is None and episode["sediment_record"]["stored"] == "record"
    np.testing.assert_array_equal(sediment_image(path), render_sediment(sediment, 0, 0, 100, 100))


def test_format_1_file_is_read(tmp_path):
    """A file as our previous writer made it: sediment group, empty attributes, NaN predator."""
    from simfish.vision.sediment import make_sediment, render_sediment

    config = load_config("normal", {"arena.width": 100, "arena.height": 96})
    sediment = make_sediment(jax.random.key(2), config.arena)
    path = tmp_path / "logs" / "eval" / "logs_1.hdf5"
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as f:
        f.attrs["format_version"] = 1
        f["episode_length"] = 2
        f["fish_x"] = np.arange(3.0)
        f["predator_x"] = np.array([np.nan, 10.0, np.nan])
        group = f.create_group("sediment")
        for name, value in sediment._asdict().items():
            group[name] = np.asarray(value)
        env = f.create_group("env_variables")
        env.attrs["prey_num"] = 120
        env.attrs["fish_init_x"] = h5py.Empty("f4")
        env.attrs["arena_width"], env.attrs["arena_height"] = 100, 96
    assert list_episodes(tmp_path, label="eval") == [path]
    episode = load_episode(path)
    assert episode["env_variables"]["fish_init_x"] is None
    assert np.isnan(episode["predator_x"][0]) and episode["predator_x"][1] == 10.0
    assert set(episode["sediment"]) == set(sediment._fields)
    rebuilt = sediment_from_episode(episode)
    np.testing.assert_array_equal(render_sediment(rebuilt, 0, 0, 8, 8),
                                  render_sediment(sediment, 0, 0, 8, 8))
    np.testing.assert_array_equal(sediment_image(path), render_sediment(sediment, 0, 0, 100, 96))


def test_previous_tool_file_with_a_bare_sediment_image(tmp_path):
    path = tmp_path / "logs_1.hdf5"
    picture = np.random.default_rng(0).uniform(0, 1, (1, 30, 40))
    with h5py.File(path, "w") as f:
        f["episode_length"] = 1
        f["sediment"] = picture
    np.testing.assert_array_equal(sediment_image(path), picture[0].astype(np.float32))
    assert "sediment_record" not in load_episode(path)
    with pytest.raises(EpisodeLogError, match="not a texture record"):
        sediment_from_episode(path)
