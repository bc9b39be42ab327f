"""Evaluation's file writing: background HDF5 writes, gzip level, sediment grey levels."""

import threading
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest

from simfish_rl import hdf5_logger
from simfish_rl.hdf5_logger import HDF5Logger, sediment_dataset


def _record(index: int) -> dict:
    """A small episode-like record: compressible arrays, a sediment image, env variables."""
    rng = np.random.default_rng(index)
    image = np.cumsum(rng.normal(size=(300, 280)), axis=1).astype(np.float32)
    return {
        "fish_x": np.linspace(0.0, 100.0, 1501) + index,
        "vis_observation": rng.random((40, 139, 3, 2), dtype=np.float32),
        "action": rng.integers(0, 10, 1501),
        "episode_length": 1500 + index,
        "sediment": sediment_dataset({"offset": np.float32(30.0)}, image),
        "env_variables": {"arena_width": 280, "prey_num": 3},
    }


def _contents(path) -> dict:
    """Every dataset's values and every attribute of a file, by name."""
    out = {}
    with h5py.File(path, "r") as f:
        out["/"] = dict(f.attrs)

        def visit(name, obj):
            out[name + ".attrs"] = dict(obj.attrs)
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]

        f.visititems(visit)
    return out


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            assert a[key].keys() == b[key].keys(), key
            for name in a[key]:
                np.testing.assert_array_equal(a[key][name], b[key][name], err_msg=f"{key} {name}")
        else:
            assert np.asarray(a[key]).dtype == np.asarray(b[key]).dtype, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_background_writer_gives_the_same_files_in_the_same_order(tmp_path):
    plain = HDF5Logger(tmp_path / "a", add_uid=False, wait_min=0)
    background = HDF5Logger(tmp_path / "b", add_uid=False, wait_min=0, background=True,
                            max_pending=2)
    for i in range(5):
        plain.write(_record(i))
        background.write(_record(i))
    plain.close()
    background.close()
    assert background.num_pending == 0
    names = [p.name for p in plain.written]
    assert [p.name for p in background.written] == names == [f"logs_{k}.hdf5" for k in range(1, 6)]
    for name in names:
        a, b = _contents(tmp_path / "a" / "logs" / name), _contents(tmp_path / "b" / "logs" / name)
        _assert_same(a, b)
        assert b["episode_length"] == 1500 + names.index(name)


def test_background_writes_run_in_another_thread_and_flush_waits(tmp_path, monkeypatch):
    threads, release = [], threading.Event()
    original = hdf5_logger._EpisodeFileWriter._write_one

    def slow_write(self, record):
        threads.append(threading.current_thread())
        release.wait(timeout=10)
        return original(self, record)

    monkeypatch.setattr(hdf5_logger._EpisodeFileWriter, "_write_one", slow_write)
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=0, background=True)
    logger.write(_record(0))  # returns while the file is still being written
    assert logger.written == [] and logger.num_pending == 1
    release.set()
    assert [p.name for p in logger.flush()] == ["logs_1.hdf5"]
    assert threads and threads[0] is not threading.main_thread()
    logger.close()


def test_failed_background_write_raises_at_the_next_call(tmp_path, monkeypatch):
    original = hdf5_logger._EpisodeFileWriter._write_one

    def failing_write(self, record):
        if record["episode_length"][()] == 1501:
            raise OSError("disk full")
        return original(self, record)

    monkeypatch.setattr(hdf5_logger._EpisodeFileWriter, "_write_one", failing_write)
    logger = HDF5Logger(tmp_path, add_uid=False, wait_min=0, background=True)
    for i in range(3):
        logger.write(_record(i))
    with pytest.raises(OSError, match="disk full"):
        logger.close()
    logger.close()  # the other episodes were written; nothing is left to raise
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["logs_1.hdf5", "logs_2.hdf5"]
    assert _contents(tmp_path / "logs" / "logs_2.hdf5")["episode_length"] == 1502


def test_gzip_level_changes_the_encoding_not_the_data(tmp_path):
    default = HDF5Logger(tmp_path / "a", add_uid=False, wait_min=0)
    fast = HDF5Logger(tmp_path / "b", add_uid=False, wait_min=0, compression_level=1)
    default.write(_record(3))
    fast.write(_record(3))
    default.close()
    fast.close()
    a, b = tmp_path / "a" / "logs" / "logs_1.hdf5", tmp_path / "b" / "logs" / "logs_1.hdf5"
    _assert_same(_contents(a), _contents(b))
    with h5py.File(a) as fa, h5py.File(b) as fb:
        for name in ("sediment", "vis_observation", "fish_x"):
            assert fa[name].compression == fb[name].compression == "gzip", name
            assert (fa[name].compression_opts, fb[name].compression_opts) == (4, 1), name
        assert fb["vis_observation"].shuffle and fb["sediment"].chunks == (1, 256, 256)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"compression_level": 10}, "compression_level"),
    ({"compression_level": 1, "compression": None}, "compression_level"),
    ({"compression_level": True}, "compression_level"),
    ({"background": True, "wait_min": 1}, "background writing needs wait_min=0"),
])
def test_logger_rejects_bad_writing_options(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        HDF5Logger(tmp_path, add_uid=False, **{"wait_min": 0, **kwargs})


def _grey_levels_reference(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The grey-level mapping as first written (isfinite check, then one expression)."""
    low, high = float(values.min()), float(values.max())
    scale = (high - low) / 255.0
    return np.rint((values - low) / scale).clip(0, 255).astype(np.uint8), low, scale


def test_sediment_grey_levels_are_those_of_the_reference_mapping():
    rng = np.random.default_rng(5)
    values = (rng.random((257, 301), dtype=np.float32) * 59.7 + 0.2).astype(np.float32)
    entry = sediment_dataset(None, values)
    pixels, low, scale = _grey_levels_reference(values)
    np.testing.assert_array_equal(entry.data[0], pixels)
    assert entry.attrs["pixel_offset"] == low and entry.attrs["pixel_scale"] == scale
    assert entry.data[0].min() == 0 and entry.data[0].max() == 255
    flat = sediment_dataset(None, np.full((4, 5), 7.0, np.float32))
    assert not flat.data.any() and flat.attrs["pixel_offset"] == 7.0
    for bad in (np.nan, np.inf, -np.inf):
        broken = values.copy()
        broken[100, 7] = bad
        with pytest.raises(ValueError, match="non-finite"):
            sediment_dataset(None, broken)


@pytest.mark.parametrize("level", [None, 1])
def test_sediment_chunks_deflated_in_threads_read_as_h5py_writes_them(tmp_path, level):
    record = hdf5_logger._prepare(_record(4), "test")
    paths = [tmp_path / "threads.hdf5", tmp_path / "h5py.hdf5"]
    with ThreadPoolExecutor(2) as pool:
        for path, threads in zip(paths, (pool, None), strict=True):
            with h5py.File(path, "w") as f:
                hdf5_logger._write_group(f, record, "gzip", level, threads)
    _assert_same(_contents(paths[0]), _contents(paths[1]))
    with h5py.File(paths[0]) as a, h5py.File(paths[1]) as b:
        assert a["sediment"].shape == (1, 300, 280)  # edge chunks are partial
        for key in ("chunks", "compression", "compression_opts", "shuffle"):
            assert getattr(a["sediment"], key) == getattr(b["sediment"], key), key
        assert a["sediment"].compression_opts == (4 if level is None else level)
        assert a["sediment"].id.get_storage_size() == b["sediment"].id.get_storage_size()


def _raw_chunks(dataset) -> list[tuple[tuple[int, ...], int, bytes]]:
    """Every stored chunk of a dataset: (offset, filter mask, compressed bytes)."""
    out = []
    for i in range(dataset.id.get_num_chunks()):
        offset = dataset.id.get_chunk_info(i).chunk_offset
        mask, payload = dataset.id.read_direct_chunk(offset)
        out.append((offset, mask, payload))
    return out


ARRAYS = {
    "float32_4d": np.random.default_rng(0).random((333, 139, 3, 2), dtype=np.float32),
    "float64_1d": np.cumsum(np.random.default_rng(1).normal(size=40_001)),
    "int64_2d": np.random.default_rng(2).integers(-5, 900, (1001, 7)),
    "int32_3d": np.random.default_rng(3).integers(0, 2**20, (17, 61, 29), dtype=np.int32),
    "uint8_2d": np.random.default_rng(4).integers(0, 256, (2003, 31), dtype=np.uint8),
    "bool_1d": np.random.default_rng(5).random(5000) < 0.3,
}


@pytest.mark.parametrize("level", [None, 1])
def test_large_arrays_deflated_in_threads_store_h5py_own_chunks(tmp_path, level):
    # Every numeric array of >= 1024 elements goes through zlib threads and
    # write_direct_chunk; the stored chunks must be byte for byte h5py's.
    paths = [tmp_path / "threads.hdf5", tmp_path / "h5py.hdf5"]
    with ThreadPoolExecutor(2) as pool:
        for path, threads in zip(paths, (pool, None), strict=True):
            with h5py.File(path, "w") as f:
                hdf5_logger._write_group(f, dict(ARRAYS), "gzip", level, threads)
    with h5py.File(paths[0]) as a, h5py.File(paths[1]) as b:
        for name, value in ARRAYS.items():
            da, db = a[name], b[name]
            assert da.chunks == db.chunks and da.shuffle and da.compression == "gzip", name
            assert da.compression_opts == db.compression_opts == (4 if level is None else level)
            assert any(n % c for n, c in zip(da.shape, da.chunks, strict=True)) or \
                name == "bool_1d", f"{name}: no edge chunk"
            np.testing.assert_array_equal(da[()], value, err_msg=name)
            assert _raw_chunks(da) == _raw_chunks(db), f"{name}: stored chunks differ"


def test_shuffled_chunk_bytes_are_what_hdf5_expects(tmp_path):
    # Without the byte regrouping the chunks would still deflate, but HDF5
    # would read other numbers back: the check above is able to fail.
    value = ARRAYS["float64_1d"]
    with h5py.File(tmp_path / "wrong.hdf5", "w") as f, ThreadPoolExecutor(1) as pool:
        dataset = f.create_dataset("x", shape=value.shape, dtype=value.dtype, chunks=True,
                                   compression="gzip", shuffle=True)
        hdf5_logger._write_gzip_chunks(dataset, value, None, pool, shuffle=False)
    with h5py.File(tmp_path / "wrong.hdf5") as f:
        assert not np.array_equal(f["x"][()], value)


LAYOUTS = {
    "float16_2d": np.random.default_rng(6).normal(size=(1500, 5)).astype(np.float16),
    "uint16_1d": np.random.default_rng(7).integers(0, 60_000, 3001, dtype=np.uint16),
    "big_endian_f8": np.cumsum(np.random.default_rng(8).normal(size=(700, 9)), 0).astype(">f8"),
    "fortran_order": np.asfortranarray(np.random.default_rng(9).random((400, 33))),
    "strided_view": np.random.default_rng(10).random((900, 40), dtype=np.float32)[::2, 1::3],
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_other_dtypes_and_memory_layouts_store_h5py_own_chunks(tmp_path, name):
    value = LAYOUTS[name]
    paths = [tmp_path / "threads.hdf5", tmp_path / "h5py.hdf5"]
    with ThreadPoolExecutor(2) as pool:
        for path, threads in zip(paths, (pool, None), strict=True):
            with h5py.File(path, "w") as f:
                hdf5_logger._write_group(f, {name: value}, "gzip", 1, threads)
    with h5py.File(paths[0]) as a, h5py.File(paths[1]) as b:
        assert a[name].dtype == b[name].dtype == value.dtype
        assert a[name].chunks == b[name].chunks
        np.testing.assert_array_equal(a[name][()], value)
        assert _raw_chunks(a[name]) == _raw_chunks(b[name])


def _episode_metrics(steps: int = 1200) -> dict:
    """An evaluation-like record: the per-step arrays `EnvInfoKeep` logs, scalars, config."""
    rng = np.random.default_rng(11)
    rows = steps + 1
    prey = rng.random((rows, 120)) * 1500.0
    prey[:, 90:] = np.nan  # eaten prey are NaN-padded
    return {
        "fish_x": np.cumsum(rng.normal(size=rows)),
        "fish_angle": rng.random(rows) * 6.28,
        "prey_x": prey,
        "prey_y": prey[::-1].copy(),
        "predator_present": rng.random(rows) < 0.1,
        "event_consumed_prey": rng.integers(0, 2, rows),
        "action": rng.integers(0, 10, rows),
        "reward": rng.normal(size=rows),
        "vis_observation": rng.random((rows, 139, 3, 2), dtype=np.float32),
        "internal_state": rng.random((rows, 3), dtype=np.float32),
        "actor_state": rng.normal(size=(steps, 64)).astype(np.float32),
        "complex_values": np.exp(1j * np.linspace(0, 7, 2000)),  # kept on h5py's own path
        "short_array": np.arange(1023.0),  # under the compression threshold
        "episode_length": steps,
        "label": "normal",
        "sediment": sediment_dataset({"gain": np.float32(2.0)},
                                     np.cumsum(rng.normal(size=(520, 300)), 1)),
        "env_variables": {"arena_width": 1500, "prey_num": 120},
    }


def test_whole_episode_takes_the_threaded_path_and_matches_h5py(tmp_path, monkeypatch):
    # Every large numeric dataset of a logged episode goes through the zlib
    # threads; the file has the same datasets and stored chunks as h5py's path.
    threaded: list[str] = []
    original = hdf5_logger._write_gzip_chunks

    def spy(dataset, data, level, pool, shuffle=False):
        threaded.append(dataset.name.lstrip("/"))
        original(dataset, data, level, pool, shuffle)

    monkeypatch.setattr(hdf5_logger, "_write_gzip_chunks", spy)
    logger = HDF5Logger(tmp_path / "run", add_uid=False, wait_min=0, compression_level=1)
    logger.write(_episode_metrics())
    logger.close()
    expected = {"fish_x", "fish_angle", "prey_x", "prey_y", "predator_present",
                "event_consumed_prey", "action", "reward", "vis_observation", "internal_state",
                "actor_state", "sediment"}
    assert sorted(threaded) == sorted(expected)

    threads_path = tmp_path / "run" / "logs" / "logs_1.hdf5"
    h5py_path = tmp_path / "h5py.hdf5"
    record = hdf5_logger._prepare(_episode_metrics(), "HDF5Logger.write")
    with h5py.File(h5py_path, "w") as f:
        hdf5_logger._write_group(f, record, "gzip", 1, None)
    a_contents, b_contents = _contents(threads_path), _contents(h5py_path)
    del a_contents["/"]  # the logger adds format_version and simfish_version
    del b_contents["/"]
    _assert_same(a_contents, b_contents)
    with h5py.File(threads_path) as a, h5py.File(h5py_path) as b:
        for name in expected:
            assert a[name].compression == "gzip" and a[name].compression_opts == 1, name
            assert _raw_chunks(a[name]) == _raw_chunks(b[name]), f"{name}: stored chunks differ"
        assert a["complex_values"].compression == "gzip" and a["short_array"].compression is None
