"""Fetching dataset files: checksum-verified, with a progress bar, written atomically.

A download streams into a temporary file next to its destination, hashing as it goes
(`cffaudit.atomic`); only a file whose MD5 matches is renamed into place, with the
permissions a plain write would give it (``os.replace`` is atomic on one filesystem), so an interrupted or tampered download never leaves a file that a later run
could mistake for a good one.
"""

from __future__ import annotations

import hashlib
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from cffaudit.atomic import atomic_write_stream
from cffaudit.data.errors import DatasetError

_CHUNK = 1 << 16
_TIMEOUT_S = 60


def _atomic_write_stream(src: BinaryIO, dest: Path, *, expected_md5: str | None, total: int | None,
                         desc: str, progress: bool) -> None:
    """Copy ``src`` into ``dest`` via a temp file; keep it only if the MD5 matches."""
    from tqdm.auto import tqdm  # lazily: only downloads need it

    def copy_and_check(out: BinaryIO) -> None:
        digest = hashlib.md5(usedforsecurity=False)
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress,
                  leave=False) as bar:
            for block in iter(lambda: src.read(_CHUNK), b""):
                out.write(block)
                digest.update(block)
                bar.update(len(block))
        actual = digest.hexdigest()
        if expected_md5 is not None and actual != expected_md5:
            raise DatasetError(
                f"checksum mismatch for {desc}: MD5 {actual}, expected {expected_md5}; the download "
                f"was corrupted or the source changed, so nothing was written to {dest}. Try again "
                "later, or fetch the file by hand and pass its folder with --data-dir."
            )

    atomic_write_stream(dest, copy_and_check)


def fetch(urls: tuple[str, ...], dest: Path, *, md5: str, progress: bool = True) -> None:
    """Download the first URL of ``urls`` that answers into ``dest``, verifying its MD5.

    Args:
        urls: mirrors, tried in order until one succeeds.
        dest: where the verified file is placed.
        md5: the published hex MD5 of the file.
        progress: show a tqdm progress bar.

    Raises:
        DatasetError: every mirror failed or the checksum did not match.
    """
    failures = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:
                length = response.headers.get("Content-Length")
                _atomic_write_stream(response, dest, expected_md5=md5,
                                     total=int(length) if length and length.isdigit() else None,
                                     desc=dest.name, progress=progress)
            return
        except DatasetError as exc:  # checksum mismatch: another mirror may hold the right file
            failures.append(f"{url}: {exc}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            failures.append(f"{url}: {type(exc).__name__}: {exc}")
    raise DatasetError(
        f"could not download {dest.name}; tried:\n  " + "\n  ".join(failures)
        + f"\nCheck the network connection and try again, or download the file by hand into {dest.parent} "
        "(or a folder passed with --data-dir)."
    )


def extract_members(archive: Path, members: tuple[str, ...], root: Path, *, progress: bool = True) -> None:
    """Extract exactly the named regular files of a tar archive under ``root``.

    Only the listed members are read, each checked to be a regular file and written
    atomically to ``root / member``; nothing else in the archive is touched, which rules
    out path traversal and links regardless of the Python version's tarfile filters.
    """
    try:
        with tarfile.open(archive, "r:*") as tar:
            for name in members:
                try:
                    info = tar.getmember(name)
                except KeyError:
                    raise DatasetError(f"{archive}: has no member {name}; it is not the expected archive") from None
                if not info.isfile():
                    raise DatasetError(f"{archive}: member {name} is not a regular file")
                src = tar.extractfile(info)
                assert src is not None  # regular files always have a stream
                _atomic_write_stream(src, root / name, expected_md5=None, total=info.size,
                                     desc=name, progress=progress)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DatasetError(f"{archive}: could not be extracted ({exc}); delete it and re-run with --download") from exc
