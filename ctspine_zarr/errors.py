"""One base exception and the few specific ones the package raises."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def printable(text: str) -> str:
    """``text`` as is, or with control characters escaped (``\\n``), to keep messages one line."""
    return text if text.isprintable() else repr(text)[1:-1]


class CTSpineError(Exception):
    """Base class of every error ``ctspine_zarr`` raises on purpose."""


class InvalidCaseError(CTSpineError, ValueError):
    """A raw case (image/label pair) that cannot be ingested exactly.

    Parameters
    ----------
    case_id
        The case the problem belongs to.
    path
        The file at fault (or the pair's image when the problem is the pair).
    problem
        What is wrong, with the values found.
    fix
        How the user can fix it.
    """

    def __init__(self, case_id: str, path: str, problem: str, fix: str = "") -> None:
        self.case_id = case_id
        self.path = path
        self.problem = problem
        self.fix = fix
        message = f"case {case_id!r}: {printable(path)}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


class VertebraNotFoundError(CTSpineError, KeyError):
    """A vertebra that a ``vertebra`` or ``vertebra_name`` selection does not find."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class StoreError(CTSpineError):
    """A store that is missing, of another kind, or of an unsupported format version."""


class CaseNotFoundError(CTSpineError, KeyError):
    """A case id that the store does not hold; the message names the closest ids."""

    def __init__(self, case_id: str, known: Iterable[str]) -> None:
        self.case_id = case_id
        close = difflib.get_close_matches(case_id, list(known), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        self.message = f"no case {case_id!r} in the store{hint}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class StoreChangedError(StoreError):
    """The store changed since this reader opened it: reopen it to read the new state.

    Raised instead of serving values of a snapshot the reader no longer holds (a case or
    the catalogue replaced by a later ingest). The process's caches of the store are
    dropped before it is raised, so reopening (``ctspine_zarr.open``, ``ds.ctspine.volume``)
    reads the current state.
    """


class StoreLockedError(StoreError):
    """Another ingest holds the store's writer lock; nothing was touched."""


class DamagedStoreError(StoreError):
    """Part of the store is missing or corrupt (a missing chunk or shard, garbage metadata).

    The message names the case, the array and the slice; ``ctspine-zarr ingest`` (with
    ``--repair`` for a full check) rewrites what is damaged.
    """
