"""The eyes picture and the PNG writer."""

import struct
import zlib

import numpy as np

from simfish.config import load_config
from simfish.tools.eyes_picture import eyes_picture, write_png
from simfish.vision import constant_sediment, make_vision


def _read_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    w, h = size
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    assert np.all(raw[:, 0] == 0)
    return raw[:, 1:].reshape(h, w, 3)


def test_picture_and_png_round_trip(tmp_path):
    vision = make_vision(load_config("normal"))  # shot noise on: the picture uses a clean copy
    img = eyes_picture(vision, (1250.0, 1250.0), 0.3, np.array([[1280.0, 1260.0]]), np.array([True]),
                       np.array([1150.0, 1250.0]), True, constant_sediment(30.0), half_width=60)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.shape[1] == 139 * 3  # retina strips are wider than the 121-px window
    assert (img == [20, 20, 20]).all(axis=-1).any()  # the predator is drawn
    path = write_png(tmp_path / "eyes.png", img)
    np.testing.assert_array_equal(_read_png(path), img)
    assert [p.name for p in tmp_path.iterdir()] == ["eyes.png"]
