"""benchmarks/compare_eval_logs.py: finds where two folders of episode files part."""

import importlib.util
from pathlib import Path

import h5py
import numpy as np

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "compare_eval_logs.py"
spec = importlib.util.spec_from_file_location("compare_eval_logs", SCRIPT)
compare_eval_logs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_eval_logs)


def write(folder: Path, hidden: np.ndarray, seconds: float) -> None:
    folder.mkdir(parents=True)
    with h5py.File(folder / "logs_1.hdf5", "w") as f:
        f["action"] = np.arange(5, dtype=np.int32)
        f["actor_state"] = hidden
        f["summary/episode_duration_sec"] = seconds  # a timing: never compared


def test_reports_the_first_differing_step_and_ignores_timings(tmp_path):
    hidden = np.linspace(0, 1, 20, dtype=np.float32).reshape(5, 4)
    write(tmp_path / "a", hidden, 1.0)
    write(tmp_path / "b", hidden, 2.0)
    assert compare_eval_logs.compare(tmp_path / "a", tmp_path / "b") == (2, 2, [])
    other = hidden.copy()
    other[3, 1] = np.nextafter(other[3, 1], np.float32(2))
    write(tmp_path / "c", other, 1.0)
    same, total, lines = compare_eval_logs.compare(tmp_path / "a", tmp_path / "c")
    assert (same, total) == (1, 2)
    assert lines == [f"logs_1.hdf5 actor_state: max |diff| {abs(other[3, 1] - hidden[3, 1]):.3g}, "
                     "first differing step 3, 1 of 5 steps differ"]


def test_nan_in_one_file_only_is_a_difference(tmp_path):
    hidden = np.zeros((5, 4), np.float32)
    hidden[0, 0] = np.nan  # in both files: a match
    write(tmp_path / "a", hidden, 1.0)
    other = hidden.copy()
    other[2, 3] = np.nan
    write(tmp_path / "b", other, 1.0)
    assert compare_eval_logs.compare(tmp_path / "a", tmp_path / "a") == (2, 2, [])
    _, _, lines = compare_eval_logs.compare(tmp_path / "a", tmp_path / "b")
    assert lines == ["logs_1.hdf5 actor_state: max |diff| inf, first differing step 2, "
                     "1 of 5 steps differ"]
