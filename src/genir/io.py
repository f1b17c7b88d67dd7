"""Atomic writes: a reader (or a resumed run) never sees half a file or half a folder.

Every writer in genir goes through :func:`atomic_path`: the content is written to a temporary sibling,
flushed to disk, and renamed over the target only when the writer finished without an error. Under
several processes (``torchrun``) only rank 0 writes: another rank's writer gets a scratch path outside the
run folder, removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from genir.distributed import is_main

# the siblings atomic_path writes beside a target: the new content, and a replaced folder's old one
TEMPORARY, PREVIOUS = ".tmp", ".old"


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    elif path.is_dir():
        for child in path.rglob("*"):
            if child.is_file():
                _fsync(child)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yields a temporary sibling of ``path`` (a file, or a folder when the writer makes one) that is
    renamed over ``path`` when the block ends without an error; on an error it is removed and ``path``
    keeps its previous content. The temporary name keeps the suffix (``x.tmp.npy``): numpy, faiss and
    safetensors writers see the file name they expect."""
    path = Path(path)
    if not is_main():  # several processes: rank 0 alone writes; the others' output goes nowhere
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="genir-rank"))
        try:
            yield scratch / path.name
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}{TEMPORARY}{path.suffix}")
    _remove(tmp)
    try:
        yield tmp
        _fsync(tmp)
        if tmp.is_dir() and path.exists():
            old = path.with_name(f"{path.stem}{PREVIOUS}{path.suffix}")
            _remove(old)
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | Path, obj: Any) -> None:
    """JSON with floats for numpy scalars; written atomically."""
    write_text(path, json.dumps(obj, indent=1, default=float))


def save_npy(path: str | Path, array) -> None:
    import numpy as np

    with atomic_path(path) as tmp:
        np.save(tmp, array)

