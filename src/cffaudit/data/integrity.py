"""Checksums and a restricted unpickler: nothing read from disk can run code.

Two independent guards protect the readers. First, every file is checked against the
MD5 its publishers list before any byte of it is parsed (see ``sources.py``), so a
truncated download or a different file is refused whole rather than half-read. Second,
CIFAR's pickles are loaded with :class:`SafeUnpickler`, which resolves only the few
globals that numpy array reconstruction needs; a pickle that names any other global (the
way a malicious ``__reduce__`` smuggles in ``os.system``) is refused before the call
could happen. The second guard matters for files whose checksum we do not know (tests,
fixtures) and as defence in depth if a checksum table is ever wrong.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

_CHUNK = 1 << 20


def md5_of_file(path: Path) -> str:
    """Hex MD5 of a file's bytes, read in chunks so large files do not fill memory."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def md5_of_bytes(data: bytes) -> str:
    """Hex MD5 of an in-memory byte string."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _numpy_dtype(*args: Any) -> np.dtype:
    # Object arrays would let the pickle build arbitrary Python objects element by
    # element; image data never needs them.
    dt = np.dtype(*args)
    if dt.hasobject:
        raise pickle.UnpicklingError("object dtype is not allowed in a dataset pickle")
    return dt


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    # Python 3 pickles of bytes at protocol 2 go through _codecs.encode(str, "latin1");
    # any other codec (zlib, base64, ...) has no business in a dataset file.
    if codecs.lookup(encoding).name != "iso8859-1":
        raise pickle.UnpicklingError(f"codec {encoding!r} is not allowed in a dataset pickle")
    return text.encode("latin1")


def _numpy_core() -> Any:
    # numpy 2 moved numpy.core to numpy._core; the CIFAR files (written by numpy 1 under
    # Python 2) name the old path, files written today name the new one.
    return getattr(np, "_core", None) or np.core


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_core().multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_core().multiarray._reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _numpy_core().numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numpy_core().numeric._frombuffer,
    ("_codecs", "encode"): _latin1_encode,
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that admits only numpy array reconstruction and plain Python types.

    Plain containers and scalars (dict, list, tuple, str, bytes, int, float, bool, None)
    are pickle opcodes and never pass through ``find_class``; everything else does, and
    only the entries of a fixed table are resolved. The table maps names to the objects
    directly, so no module is imported on behalf of the file.
    """

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 (pickle API)
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: a dataset pickle may only hold "
                "numpy arrays and plain Python values"
            ) from None


def safe_unpickle(fh: BinaryIO) -> Any:
    """Unpickle a dataset file with :class:`SafeUnpickler`.

    ``encoding="bytes"`` keeps the Python 2 ``str`` keys of the CIFAR files as ``bytes``
    (``b"data"``), the form they were published in.
    """
    return SafeUnpickler(fh, encoding="bytes").load()


def safe_unpickle_bytes(data: bytes) -> Any:
    """:func:`safe_unpickle` of an in-memory byte string."""
    return safe_unpickle(io.BytesIO(data))
