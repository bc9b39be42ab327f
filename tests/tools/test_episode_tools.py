"""The episode tools (render, plot, analyse) on random-policy episodes of a small world.

One module fixture is built once: two random-policy episodes of a small world
with prey, predators and salt (``BaseEnvironment`` + the HDF5 logger). The
tools on a trained run are tested in test_run_tools.py.
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
from simfish_rl.policy import RandomActor

iio = pytest.importorskip("imageio.v3")
pytest.importorskip("imageio_ffmpeg")
pytest.importorskip("matplotlib")

STEPS = 30


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


def test_plots_write_readable_pngs(random_logs, tmp_path):
    for argv, name in (
        (["plot", "trajectories", str(random_logs)], "traj.png"),
        (["plot", "bouts", str(random_logs)], "bouts.png"),
        (["actions", "plot"], "actions.png"),
    ):
        out = tmp_path / name
        assert main([*argv, "-o", str(out)]) == 0, argv
        image = iio.imread(out)
        assert image.ndim == 3 and image.shape[0] >= 500 and image.shape[1] >= 1000, name
        assert image[..., :3].std() > 10, name  # not a blank canvas


def test_analyse_hunting_and_neurons_on_random_episodes(random_logs, tmp_path, capsys):
    out = tmp_path / "hunting.csv"
    assert main(["analyse", "hunting", str(random_logs), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Malik et al. 2025" in printed and "Lagogiannis et al. 2020" in printed
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["outcome"] in ("capture", "miss", "abort", "unfinished") for r in rows)
    assert (tmp_path / "hunting.png").is_file()

    # A random-policy log has no LSTM state: a one-line error.
    assert main(["analyse", "neurons", str(random_logs)]) == 2
    assert "no actor_state" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["render", "{missing}", "-o", "{tmp}/x.mp4"], "absent: no such episode file"),
        (["render", "{text}", "-o", "{tmp}/x.mp4"], "not a readable HDF5 file"),
        (["render", "{other}", "-o", "{tmp}/x.mp4"], "not a SimFish episode log"),
        (["render", "{episode}", "-o", "{tmp}/x.gif"], "must be an .mp4"),
        (["render", "{episode}", "-o", "{tmp}/x.mp4", "--steps", "50:60"], "no time points"),
        (["render", "{episode}", "-o", "{tmp}/x.mp4", "--steps", "a-b"], "--steps must be A:B"),
        (["plot", "trajectories", "{missing}", "-o", "{tmp}/t.png"], "absent: no such file"),
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
