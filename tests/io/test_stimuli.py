"""Stimulus files (SPEC 9): read, write, describe, index by step."""

import math

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simfish.config import preset_path
from simfish.io.stimuli import (
    Stimulus,
    StimulusError,
    load_stimulus,
    predator_loom,
    predator_pass,
    prey_sweep,
    stimulus_at,
    stimulus_from_description,
    stimulus_tracks,
    write_default_stimuli,
    write_stimulus,
)


def test_default_stimuli_reproduce_the_shipped_files(tmp_path):
    prey_file, predator_file = write_default_stimuli(tmp_path)
    for made, name in ((prey_file, "stim_prey.h5"), (predator_file, "stim_predator.h5")):
        shipped = load_stimulus(preset_path("normal").parent / name)
        ours = load_stimulus(made)
        for a, b in ((ours.prey_loc, shipped.prey_loc), (ours.predator_loc, shipped.predator_loc)):
            assert (a is None) == (b is None)
            if a is not None:
                np.testing.assert_allclose(a, b, atol=1e-9)


def test_round_trip_and_atomic_write(tmp_path):
    prey = np.stack([prey_sweep(num_steps=30), prey_sweep(num_steps=30, distance_px=80)])
    pred = predator_loom(num_steps=30, start_step=5)
    path = write_stimulus(tmp_path / "sub" / "s.h5", prey_loc=prey, predator_loc=pred,
                          description={"why": "test"})
    assert [p.name for p in path.parent.iterdir()] == ["s.h5"]  # no temporary left behind
    stim = load_stimulus(path)
    np.testing.assert_array_equal(stim.prey_loc, prey)
    np.testing.assert_array_equal(stim.predator_loc, pred[None])
    assert stim.num_steps == 30 and stim.num_prey == 2
    with h5py.File(path) as f:
        assert f.attrs["why"] == "test"


def test_sweep_geometry_by_hand():
    # Fish at the origin facing +x: the right side is +y.
    track = prey_sweep(num_steps=9, fish_xy=(0.0, 0.0), fish_angle=0.0, distance_px=40,
                       lateral_from_px=4, lateral_to_px=-4, speed_px_per_step=2, start_step=1)
    expected_y = [0, 4, 2, 0, -2, -4, -2, 0, 2]
    np.testing.assert_allclose(track[1:, 0], 40.0)
    np.testing.assert_allclose(track[1:, 1], expected_y[1:], atol=1e-12)
    np.testing.assert_array_equal(track[0], [0.0, 0.0])  # absent before start_step


def test_pass_and_loom_geometry():
    track = predator_pass(num_steps=20, fish_xy=(100.0, 100.0), fish_angle=math.pi / 2,
                          distance_px=50, lateral_from_px=30, speed_px_per_step=1.0,
                          start_step=2, end_step=10)
    assert np.all(track[:2] == 0) and np.all(track[10:] == 0)
    np.testing.assert_allclose(track[2], [100.0 - 30.0, 150.0], atol=1e-9)
    np.testing.assert_allclose(track[9], [100.0 - 23.0, 150.0], atol=1e-9)
    loom = predator_loom(num_steps=50, fish_xy=(0.0, 0.0), fish_angle=0.0, bearing=math.pi / 2,
                         from_distance_px=100, to_distance_px=70, speed_px_per_step=10, start_step=0)
    dist = np.hypot(loom[:, 0], loom[:, 1])
    np.testing.assert_allclose(dist[:5], [100, 90, 80, 70, 70])
    np.testing.assert_allclose(loom[10], [0.0, 70.0], atol=1e-9)  # on the right (+y)
    with pytest.raises(StimulusError, match="comes closer"):
        predator_loom(from_distance_px=50, to_distance_px=70)


def test_description(tmp_path):
    stim = stimulus_from_description({
        "num_steps": 40,
        "fish": {"x": 1000, "y": 1000, "angle": 0.0},
        "prey": [{"kind": "sweep", "distance_px": 30}, {"kind": "sweep", "distance_px": 60}],
        "predator": {"kind": "pass", "start_step": 0, "end_step": 40},
    })
    assert stim.prey_loc.shape == (2, 40, 2) and stim.predator_loc.shape == (1, 40, 2)
    np.testing.assert_allclose(stim.prey_loc[1, :, 0], 1060.0)
    with pytest.raises(StimulusError, match="kind"):
        stimulus_from_description({"prey": [{"kind": "zigzag"}]})
    with pytest.raises(StimulusError, match="sweep"):
        stimulus_from_description({"prey": [{"kind": "sweep", "colour": "red"}]})
    with pytest.raises(StimulusError, match="at least one"):
        stimulus_from_description({"num_steps": 5})


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(StimulusError, match="no such stimulus file"):
        load_stimulus(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(StimulusError, match="not a readable HDF5"):
        load_stimulus(tmp_path / "text.h5")
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f.create_dataset("other", data=np.zeros(3))
    with pytest.raises(StimulusError, match="neither 'prey_loc' nor 'predator_loc'"):
        load_stimulus(tmp_path / "empty.h5")
    with h5py.File(tmp_path / "shape.h5", "w") as f:
        f.create_dataset("prey_loc", data=np.zeros((10, 2)))
    with pytest.raises(StimulusError, match=r"prey_loc must have shape \(n, steps, 2\)"):
        load_stimulus(tmp_path / "shape.h5")
    with h5py.File(tmp_path / "two_pred.h5", "w") as f:
        f.create_dataset("predator_loc", data=np.ones((2, 10, 2)))
    with pytest.raises(StimulusError, match=r"\(1, steps, 2\)"):
        load_stimulus(tmp_path / "two_pred.h5")
    with pytest.raises(StimulusError, match="NaN"):
        write_stimulus(tmp_path / "nan.h5", prey_loc=np.full((1, 3, 2), np.nan))
    with pytest.raises(StimulusError, match="give prey_loc"):
        write_stimulus(tmp_path / "none.h5")
    assert not (tmp_path / "nan.h5").exists()


def test_tracks_and_stepping():
    prey = np.zeros((2, 4, 2))
    prey[0] = [[1, 1], [2, 2], [0, 0], [4, 4]]
    prey[1, 3] = [9, 9]
    stim = Stimulus(prey_loc=prey, predator_loc=np.array([[[0, 0], [5, 5], [6, 6], [7, 7]]], float))
    tracks = stimulus_tracks(stim, num_prey=3)
    assert tracks.prey_xy.shape == (4, 3, 2)
    np.testing.assert_array_equal(tracks.prey_present[:, 0], [True, True, False, True])
    np.testing.assert_array_equal(tracks.prey_present[:, 2], False)
    np.testing.assert_array_equal(tracks.predator_present, [False, True, True, True])
    at = jax.jit(stimulus_at)
    now = at(tracks, jnp.asarray(1))
    np.testing.assert_array_equal(np.asarray(now.prey_xy[0]), [2, 2])
    assert bool(now.predator_present)
    for outside in (-1, 4, 100):
        gone = at(tracks, jnp.asarray(outside))
        assert not bool(gone.predator_present) and not np.asarray(gone.prey_present).any()
    empty = stimulus_tracks(None, num_prey=2)
    assert empty.prey_xy.shape == (1, 2, 2) and not empty.predator_present.any()
    with pytest.raises(StimulusError, match="slots"):
        stimulus_tracks(stim, num_prey=1)
