"""Atomic file writes: a reader never sees a half-written file under its final name.

Temporary files are created with mode 0o666 filtered by the process umask, so
a published file gets the usual permissions (0644 under the default umask 022),
not the 0600 of :func:`tempfile.mkstemp`: lab clusters share result folders.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

#: Mode requested for new files; the kernel removes the umask's bits from it.
FILE_MODE = 0o666
_TEMP_TRIES = 100


def create_temp_beside(dest: str | os.PathLike, suffix: str = ".tmp") -> Path:
    """Creates an empty hidden file ``.<name>.<random><suffix>`` next to ``dest``; returns it.

    The file is created exclusively (never reusing an existing name) with mode
    ``FILE_MODE`` minus the umask, in the same folder so that a rename onto
    ``dest`` is atomic. Missing parent folders are created.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_TEMP_TRIES):
        tmp = dest.parent / f".{dest.name}.{secrets.token_hex(6)}{suffix}"
        try:
            fd = os.open(tmp, flags, FILE_MODE)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"{dest.parent}: could not create a temporary file for {dest.name}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path`` to write; renames it over ``path`` on success.

    The temporary file (``.<name>.<random>.tmp`` in the same folder, so the
    rename is atomic) is removed if the block raises. Missing parent folders
    are created. The final file has mode 0o666 minus the umask.
    """
    dest = Path(path)
    tmp = create_temp_beside(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, sync: bool = False) -> Path:
    """Writes ``data`` to ``path`` atomically (``sync``: fsync before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))
