"""The one exception type for user-facing data problems."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset could not be found, fetched, verified or read.

    The message always says what was wrong and what to do about it (which file, which
    flag), because it is shown to a user of ``cffaudit train`` as is.
    """


#: What a user can do about a missing, damaged or wrong dataset file.
REMEDY = ("Delete it and re-run with --download, or pass --data-dir pointing at a folder "
          "with the original files.")
