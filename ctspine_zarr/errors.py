"""One base exception and the few specific ones the package raises."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

#: Whether messages name options as command-line flags (set by ``ctspine-zarr`` while it runs).
_COMMAND_LINE = False


def use_command_line_names(on: bool) -> bool:
    """Name options in messages as flags (``--force-clear``) or keywords; return the old value.

    The command line turns it on while a command runs, so that its errors name the flags the
    user can type; the library names its keyword arguments.
    """
    global _COMMAND_LINE
    old, _COMMAND_LINE = _COMMAND_LINE, on
    return old


def option(name: str, value: Any = True) -> str:
    """How a user passes option ``name``: ``--force-clear`` or ``force_clear=True``.

    Parameters
    ----------
    name
        The keyword argument (``force_clear``); its flag is the same with dashes.
    value
        The value to show in the keyword form; ``None`` shows the name alone.
    """
    if _COMMAND_LINE:
        return "--" + name.replace("_", "-")
    return name if value is None else f"{name}={value!r}"


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


class SelectionError(CTSpineError, ValueError):
    """A split, source or vertebra that no case can have; the message names the valid ones.

    Parameters
    ----------
    kind
        ``"split"``, ``"source"`` or ``"vertebra"``.
    unknown
        The values given that are not valid.
    valid
        Every valid value.
    present
        The values the store's cases have, named too when given and not all of ``valid``.
    also
        Said after the valid values (``"or their labels 1-28"``).
    """

    _PLURAL = {"vertebra": "vertebrae"}

    def __init__(
        self,
        kind: str,
        unknown: Iterable[Any],
        valid: Iterable[str],
        present: Iterable[str] | None = None,
        also: str = "",
    ) -> None:
        self.kind = kind
        self.unknown = list(unknown)
        self.valid = list(valid)
        self.present = None if present is None else list(present)
        plural = self._PLURAL.get(kind, kind + "s")
        shown = ", ".join(repr(printable(u) if isinstance(u, str) else u) for u in self.unknown)
        message = f"unknown {plural if len(self.unknown) > 1 else kind} {shown}; the {plural} "
        message += f"are {', '.join(self.valid)}{f' {also}' if also else ''}"
        if self.present is not None and set(self.present) != set(self.valid):
            message += f" (the store holds {', '.join(self.present) or 'none'})"
        folded = {v.lower(): v for v in self.valid}
        close = [
            folded[match]
            for u in self.unknown
            for match in difflib.get_close_matches(str(u).lower(), list(folded), n=1, cutoff=0.6)
        ]
        if close:
            message += f"; did you mean {', '.join(map(repr, dict.fromkeys(close)))}?"
        super().__init__(message)


class StoreError(CTSpineError):
    """A store that is missing, of another kind, or of an unsupported format version."""


class TreeMismatchError(StoreError):
    """An ingest of a raw tree into a store made from another tree, without ``add``.

    Nothing was written. ``hint`` says how to add the tree's cases anyway.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        self.hint = hint
        super().__init__(message)


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


class IngestInterrupted(KeyboardInterrupt):
    """Ctrl-C during an ingest: the cases it finished are kept, and a rerun resumes.

    A :class:`KeyboardInterrupt` (so it stops whatever runs the ingest), with what was saved.

    Parameters
    ----------
    store
        The store being written.
    written
        Cases written and kept before the interruption.
    total
        Cases this ingest had to write.
    """

    def __init__(self, store: str, written: int, total: int) -> None:
        self.store = store
        self.written = written
        self.total = total
        super().__init__(
            f"interrupted: {written} of {total} case(s) were written to {store} and are kept; "
            "a rerun skips them"
        )
