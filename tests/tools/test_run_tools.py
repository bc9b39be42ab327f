"""The tools on a tiny trained run: agent video, neuron analysis, learning curves, report.

One module fixture: a training run of a few hundred environment steps on a tiny
world (a few learner steps), evaluated for two episodes, so the logs hold the
agent's LSTM state.
"""

from __future__ import annotations

import csv
import warnings

import h5py
import numpy as np
import pytest

from simfish import load_config
from simfish.tools.cli import main

iio = pytest.importorskip("imageio.v3")
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
pytest.importorskip("matplotlib")

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


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny training run (120 env steps, a few learner steps) with two evaluation episodes."""
    from simfish_rl.config import TrainingConfig
    from simfish_rl.eval_simfish_agent import eval_agent
    from simfish_rl.training import train

    run = tmp_path_factory.mktemp("runs") / "tiny"
    summary = train(run, load_config("normal", TINY_ENV), TrainingConfig().replace(TINY_TRAINING),
                    num_steps=120, seed=1, progress=False, overlap=False)
    assert summary["learner_steps"] > 0
    eval_agent(None, run, num_episodes=2, log_subdir="eval_model", seed=3)
    return run


def _count_frames(path) -> int:
    """Frames of a video, counted by decoding it with imageio-ffmpeg's ffmpeg."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
        return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def test_render_whole_episode_of_a_trained_agent(trained_run, tmp_path):
    episode = trained_run / "logs" / "eval_model" / "logs_1.hdf5"
    with h5py.File(episode, "r") as f:
        steps = int(f["episode_length"][()])
        assert f["actor_state"].shape[0] == steps
    out = tmp_path / "agent.mp4"
    assert main(["render", str(episode), "-o", str(out), "--crop-px", "300", "-q",
                 "--png-every", "10"]) == 0
    assert _count_frames(out) == steps + 1  # time points 0..T
    frame = iio.imread(tmp_path / "agent_00010.png")
    assert frame.shape == (592, 1184, 3)
    # The LSTM panel (bottom right) has the three PC traces drawn in their colours.
    panel = frame[450:580, 640:1180].astype(int)
    for colour in ((255, 127, 80), (127, 219, 255), (180, 240, 110)):
        assert (np.abs(panel - colour).sum(-1) < 40).sum() > 20, colour


def test_analyse_neurons_on_agent_episodes(trained_run, tmp_path):
    out = tmp_path / "neurons.csv"
    assert main(["analyse", "neurons", str(trained_run / "logs" / "eval_model"),
                 "-o", str(out)]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 64 and "energy" in rows[0] and "bout_SCS" in rows[0]
    values = np.array([float(r["energy"]) for r in rows])
    assert np.isfinite(values).all() and np.abs(values).max() <= 1.0
    assert np.isnan([float(r["in_light"]) for r in rows]).all()  # no dark band: undefined
    assert iio.imread(tmp_path / "neurons.png").shape[0] > 400


def test_plot_training_of_several_runs(trained_run, tmp_path):
    out = tmp_path / "curves.png"
    assert main(["plot", "training", str(trained_run), str(trained_run), "-o", str(out)]) == 0
    image = iio.imread(out)
    assert image.shape[0] >= 500 and image.shape[1] >= 1000 and image[..., :3].std() > 10


def test_report_is_one_self_contained_page(trained_run, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(trained_run), "-o", str(out), "-q"]) == 0
    page = out.read_text()
    assert page.count("data:image/png;base64,") >= 3  # curves, trajectories, bouts (+ hunting)
    assert "Learning curves" in page and "Hunting" in page and "arena.width" in page
    video = tmp_path / "report_episode.mp4"
    assert f'href="{video.name}"' in page and _count_frames(video) > 1
