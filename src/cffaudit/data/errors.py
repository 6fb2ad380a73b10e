"""The one exception type for user-facing data problems."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset could not be found, fetched, verified or read.

    The message always says what was wrong and what to do about it (which file, which
    flag), because it is shown to a user of ``cffaudit train`` as is.
    """
