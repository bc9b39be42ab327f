"""Compare two folders of evaluation episode files dataset by dataset.

For each ``logs_<i>.hdf5`` present in both folders, every dataset is compared:
identical bytes, or the largest absolute difference and the first step (index
along the first axis) at which the two differ. Timing datasets are left out.
Useful to check that two ways of evaluating (one world vs ``--parallel``, CPU vs
GPU, two XLA settings) give the same episodes::

    python benchmarks/compare_eval_logs.py RUN/logs/one RUN/logs/par

Prints one line per differing dataset, then ``N of M datasets identical``;
exits 1 when any dataset differs.
"""

import argparse
import sys
from pathlib import Path

import h5py
import numpy as np

TIMING_KEYS = {"steps_per_second", "episode_duration_sec", "env_reset_duration_sec",
               "select_action_duration_sec", "env_step_duration_sec"}


def episode_datasets(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an episode file by its path inside the file, timings left out."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.split("/")[-1] not in TIMING_KEYS:
                out[name] = np.asarray(obj[()])
        f.visititems(visit)
    return out


def difference(a: np.ndarray, b: np.ndarray) -> str | None:
    """None when ``a`` and ``b`` hold the same bytes, else a short description."""
    if a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes():
        return None
    if a.shape != b.shape or a.dtype.kind not in "biuf" or b.dtype.kind not in "biuf":
        return f"shape {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    # NaN in both files is a match; NaN in one of them is an infinite difference.
    diff = np.where(np.isnan(diff), np.where(np.isnan(a) & np.isnan(b), 0.0, np.inf), diff)
    steps = np.flatnonzero(diff.reshape(diff.shape[0], -1).max(axis=1) > 0) if a.ndim else []
    first = int(steps[0]) if len(steps) else -1
    return f"max |diff| {np.max(diff):.3g}, first differing step {first}, " \
           f"{len(steps)} of {a.shape[0] if a.ndim else 1} steps differ"


def compare(first: Path, second: Path) -> tuple[int, int, list[str]]:
    """(identical, compared, lines) over the episode files the two folders share."""
    names = sorted({p.name for p in first.glob("logs_*.hdf5")}
                   & {p.name for p in second.glob("logs_*.hdf5")})
    if not names:
        raise SystemExit(f"no logs_*.hdf5 file is in both {first} and {second}")
    same = total = 0
    lines = []
    for name in names:
        da, db = episode_datasets(first / name), episode_datasets(second / name)
        for key in sorted(set(da) | set(db)):
            total += 1
            if key not in da or key not in db:
                lines.append(f"{name} {key}: only in {first if key in da else second}")
                continue
            what = difference(da[key], db[key])
            if what is None:
                same += 1
            else:
                lines.append(f"{name} {key}: {what}")
    return same, total, lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("first", type=Path)
    p.add_argument("second", type=Path)
    args = p.parse_args()
    same, total, lines = compare(args.first, args.second)
    for line in lines:
        print(line)
    print(f"{same} of {total} datasets identical")
    sys.exit(0 if same == total else 1)


if __name__ == "__main__":
    main()
