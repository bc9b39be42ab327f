"""The tools on a tiny trained run: agent video, neuron analysis, learning curves, report.

The run is the session's ``tiny_trained_run`` (conftest: a few hundred env
steps on a tiny world, about twenty learner steps, two evaluation episodes in
logs/eval_model, so the logs hold the agent's LSTM state), copied here so that
the tools never touch the shared one.
"""

from __future__ import annotations

import csv
import warnings

import h5py
import numpy as np
import pytest

from conftest import copy_run
from simfish.tools.cli import main

iio = pytest.importorskip("imageio.v3")
imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def trained_run(tiny_trained_run, tmp_path_factory):
    """The tiny trained run, with two evaluation episodes in logs/eval_model."""
    run = copy_run(tiny_trained_run[0], tmp_path_factory, "runs")
    assert tiny_trained_run[1]["learner_steps"] > 0
    assert len(list((run / "logs" / "eval_model").glob("logs_*.hdf5"))) == 2
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
