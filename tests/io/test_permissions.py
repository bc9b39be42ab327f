"""Every file the project writes gets mode 0o666 minus the umask (0644 under umask 022)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from simfish.config import load_config
from simfish.io.actions import Actions
from simfish.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from simfish.io.stimuli import write_default_stimuli
from simfish.tools.eyes_picture import write_png
from simfish_rl.config import TrainingConfig
from simfish_rl.hdf5_logger import HDF5Logger
from simfish_rl.simfish_r2d2_learner import save_training_state
from simfish_rl.training import RunDir


@pytest.fixture
def umask():
    """Sets a umask for the test and restores the previous one."""
    previous = os.umask(0o022)
    try:
        yield lambda mask: os.umask(mask)
    finally:
        os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def write_everything(folder) -> list:
    """Writes one file of every kind the project produces; returns their paths."""
    paths = [
        atomic_write_text(folder / "a.txt", "text"),
        atomic_write_bytes(folder / "b.bin", b"\x00\x01"),
        write_png(folder / "picture.png", np.zeros((2, 3, 3), np.uint8)),
    ]
    with atomic_path(folder / "c.dat") as tmp:
        tmp.write_bytes(b"c")
    paths.append(folder / "c.dat")
    actions = Actions()
    actions.to_json(folder / "actions.json")
    actions.to_hdf5(folder / "actions.h5")
    paths += [folder / "actions.json", folder / "actions.h5"]
    paths += list(write_default_stimuli(folder / "stimuli"))
    save_training_state(folder / "learner.npz", {"w": np.zeros(3, np.float32)})
    paths.append(folder / "learner.npz")
    run = RunDir(folder / "run")
    run.create(load_config("small"), actions, TrainingConfig(), seed=0)
    paths += [p for p in run.path.iterdir() if p.is_file()]
    with HDF5Logger(folder / "evals", label="eval", add_uid=False, wait_min=0) as logger:
        logger.write({"episode_length": 1, "fish_x": np.zeros(2)})
    paths += logger.written
    return paths


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    paths = write_everything(tmp_path)
    assert len(paths) >= 12
    modes = {str(p.relative_to(tmp_path)): oct(mode(p)) for p in paths}
    assert set(modes.values()) == {oct(expected)}, modes
    leftovers = [p.name for p in tmp_path.rglob(".*") if p.is_file()]
    assert leftovers == []  # no temporary file is left behind
