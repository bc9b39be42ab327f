"""The episode tools (render, plot, analyse, report) on generated episodes and a tiny trained run.

Two module fixtures are built once: two random-policy episodes of a small world
with prey, predators and salt (``BaseEnvironment`` + the HDF5 logger), and a
tiny training run evaluated for two episodes (agent episodes with LSTM state).
"""

from __future__ import annotations

import csv
import re
import warnings

import h5py
import numpy as np
import pytest

from conftest import SMALL_OVERRIDES
from simfish import load_config
from simfish.tools.cli import main
from simfish.wrappers.base_environment import BaseEnvironment
from simfish_rl.eval_simfish_agent import StateEnvLoop
from simfish_rl.hdf5_logger import EnvInfoKeep, HDF5Logger

iio = pytest.importorskip("imageio.v3")
pytest.importorskip("imageio_ffmpeg")
pytest.importorskip("matplotlib")

STEPS = 30
TINY_ENV = {
    "arena.width": 400, "arena.height": 400, "arena.dark_fraction": 0.0, "prey.num": 20,
    "prey.reproduction_mode": False, "predator.probability_per_epoch_step": 0.0,
    "salt.enabled": False, "max_sim_steps_per_episode": 20,
}  # fmt: skip
TINY_TRAINING = {
    "num_envs": 2, "burn_in_length": 2, "trace_length": 8, "sequence_period": 5,
    "bootstrap_n": 2, "batch_size": 4, "min_replay_size": 4, "max_replay_size": 32,
    "variable_update_period": 10, "target_update_period": 10,
}  # fmt: skip


class RandomActor:
    """Uniformly random bouts from a numpy Generator (no recurrent state)."""

    def __init__(self, num_actions: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.num_actions = num_actions

    def observe_first(self, timestep) -> None:
        """Nothing to remember."""

    def select_action(self, observation) -> np.int32:
        """A uniformly random action id."""
        return np.int32(self.rng.integers(self.num_actions))

    def observe(self, action, next_timestep) -> None:
        """Nothing to learn."""

    def update(self) -> None:
        """Nothing to update."""


@pytest.fixture(scope="module")
def random_logs(tmp_path_factory):
    """RUN/logs/random/logs_{1,2}.hdf5: two random episodes of a small everything-on world."""
    run = tmp_path_factory.mktemp("random_run")
    config = load_config("normal", {**SMALL_OVERRIDES, "max_sim_steps_per_episode": STEPS})
    env = BaseEnvironment(config, seed=2)
    keep = EnvInfoKeep()
    logger = HDF5Logger(run, label="random", add_uid=False, wait_min=0)
    loop = StateEnvLoop(env, RandomActor(env.actions.num_actions, 0), observers=[keep],
                        should_update=False, logger=logger)
    for _ in range(2):
        logger.write(loop.run_episode())
    return run / "logs" / "random"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny training run (a few hundred steps) with two evaluation episodes in eval_model."""
    from simfish_rl.config import TrainingConfig
    from simfish_rl.eval_simfish_agent import eval_agent
    from simfish_rl.training import train

    run = tmp_path_factory.mktemp("runs") / "tiny"
    train(run, load_config("normal", TINY_ENV), TrainingConfig().replace(TINY_TRAINING),
          num_steps=200, seed=1, progress=False, overlap=False)
    eval_agent(None, run, num_episodes=2, log_subdir="eval_model", seed=3)
    return run


def _frames(path, size=(1184, 592)) -> list[np.ndarray]:
    """Decodes every frame of a video with the ffmpeg of imageio-ffmpeg ([H, W, 3] uint8 each).

    Checks that the decoded bytes are a whole number of frames of `size` (width, height)
    and that ffmpeg counts as many frames.
    """
    import subprocess

    import imageio_ffmpeg

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
        counted, _seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
        raw = subprocess.run(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "rawvideo",
             "-pix_fmt", "rgb24", "-"], capture_output=True, check=True, timeout=120).stdout
    width, height = size
    assert len(raw) == counted * width * height * 3
    return list(np.frombuffer(raw, np.uint8).reshape(counted, height, width, 3))


def test_render_writes_one_frame_per_step_of_the_range(random_logs, tmp_path, capsys):
    episode = random_logs / "logs_1.hdf5"
    out = tmp_path / "ep.mp4"
    assert main(["render", str(episode), "-o", str(out), "--steps", "5:17", "--png-every", "5",
                 "--fps", "10", "-q"]) == 0
    assert re.search(r"12 frames of 1184x592", capsys.readouterr().out)
    frames = _frames(out)
    assert len(frames) == 12 and frames[0].shape == (592, 1184, 3)
    pngs = sorted(tmp_path.glob("ep_*.png"))
    assert [p.name for p in pngs] == ["ep_00005.png", "ep_00010.png", "ep_00015.png"]
    still = iio.imread(pngs[1])
    assert still.shape == (592, 1184, 3)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind
    # The video shows the episode: frames differ from step to step, and the fish is drawn.
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1.0
    fish = np.array([255, 236, 120])
    assert (np.abs(still[:, :600].astype(int) - fish).sum(-1) < 30).sum() > 20


def test_render_whole_episode_of_a_trained_agent(trained_run, tmp_path):
    episode = trained_run / "logs" / "eval_model" / "logs_1.hdf5"
    with h5py.File(episode, "r") as f:
        steps = int(f["episode_length"][()])
        assert f["actor_state"].shape[0] == steps
    out = tmp_path / "agent.mp4"
    assert main(["render", str(episode), "-o", str(out), "--crop-px", "300", "-q"]) == 0
    assert len(_frames(out)) == steps + 1  # time points 0..T


def test_plots_write_readable_pngs(random_logs, trained_run, tmp_path):
    for argv, name in (
        (["plot", "trajectories", str(random_logs)], "traj.png"),
        (["plot", "bouts", str(random_logs)], "bouts.png"),
        (["plot", "training", str(trained_run), str(trained_run)], "curves.png"),
        (["actions", "plot"], "actions.png"),
    ):
        out = tmp_path / name
        assert main([*argv, "-o", str(out)]) == 0, argv
        image = iio.imread(out)
        assert image.ndim == 3 and image.shape[0] >= 500 and image.shape[1] >= 1000, name
        assert image[..., :3].std() > 10, name  # not a blank canvas


def test_analyse_hunting_and_neurons(random_logs, trained_run, tmp_path, capsys):
    out = tmp_path / "hunting.csv"
    assert main(["analyse", "hunting", str(random_logs), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Malik et al. 2025" in printed and "Lagogiannis et al. 2020" in printed
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["outcome"] in ("capture", "miss", "abort", "unfinished") for r in rows)
    assert (tmp_path / "hunting.png").is_file()

    out = tmp_path / "neurons.csv"
    assert main(["analyse", "neurons", str(trained_run / "logs" / "eval_model"),
                 "-o", str(out)]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 64 and "energy" in rows[0] and "bout_SCS" in rows[0]
    values = np.array([float(r["energy"]) for r in rows])
    assert np.isfinite(values).all() and np.abs(values).max() <= 1.0
    assert iio.imread(tmp_path / "neurons.png").shape[0] > 400
    # A random-policy log has no LSTM state: a one-line error.
    assert main(["analyse", "neurons", str(random_logs)]) == 2
    assert "no actor_state" in capsys.readouterr().err


def test_report_is_one_self_contained_page(trained_run, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(trained_run), "-o", str(out), "-q"]) == 0
    page = out.read_text()
    assert page.count("data:image/png;base64,") >= 4  # curves, trajectories, bouts, hunting
    assert "Learning curves" in page and "Hunting" in page and "arena.width" in page
    video = tmp_path / "report_episode.mp4"
    assert f'href="{video.name}"' in page and len(_frames(video)) > 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["render", "{missing}", "-o", "{tmp}/x.mp4"], "no such file"),
        (["render", "{text}", "-o", "{tmp}/x.mp4"], "not a readable HDF5 file"),
        (["render", "{other}", "-o", "{tmp}/x.mp4"], "not a SimFish episode log"),
        (["render", "{episode}", "-o", "{tmp}/x.gif"], "must be an .mp4"),
        (["render", "{episode}", "-o", "{tmp}/x.mp4", "--steps", "50:60"], "no time points"),
        (["render", "{episode}", "-o", "{tmp}/x.mp4", "--steps", "a-b"], "--steps must be A:B"),
        (["plot", "trajectories", "{missing}", "-o", "{tmp}/t.png"], "no such file"),
        (["plot", "trajectories", "{tmp}", "-o", "{tmp}/t.png"], "no episode files"),
        (["plot", "training", "{tmp}", "-o", "{tmp}/t.png"], "no episodes.csv"),
        (["analyse", "hunting", "{other}"], "not a SimFish episode log"),
        (["report", "{missing}"], "no such run directory"),
    ],
)
def test_bad_input_is_a_one_line_error(random_logs, tmp_path, capsys, argv, message):
    (tmp_path / "logs_1.hdf5").write_text("not hdf5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("mean", data=[1.0])
    names = {"missing": tmp_path / "absent", "text": tmp_path / "logs_1.hdf5",
             "other": tmp_path / "other.h5", "episode": random_logs / "logs_1.hdf5",
             "tmp": tmp_path / "empty"}
    (tmp_path / "empty").mkdir()
    argv = [a.format(**{k: str(v) for k, v in names.items()}) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("simfish: error:") and message in err and "\n" not in err
    assert not list((tmp_path / "empty").glob("*.mp4"))


def test_missing_video_extra_is_a_one_line_error(random_logs, tmp_path, monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if not installed
    assert main(["render", str(random_logs / "logs_1.hdf5"), "-o", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("simfish: error: this command needs the optional package 'imageio_ffmpeg': "
                   "pip install 'simfish[video]'")
