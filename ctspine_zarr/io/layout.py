"""Find image/label pairs and their splits in a CTSpine1K raw tree (local or fsspec URL).

The Hugging Face copy lays the files out as::

    RAW/rawdata/volumes/<source>/<case>.nii.gz
    RAW/rawdata/labels/<source>/<case>_seg.nii.gz
    RAW/metadata/data_split.txt
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ..schema import SPLIT_SECTIONS, UNASSIGNED
from .remote import url_to_fs

__all__ = [
    "RawCase",
    "RawTree",
    "case_id_from_name",
    "case_id_problem",
    "find_cases",
    "normalisation_collisions",
    "official_split_file",
    "parse_split_file",
]

VOLUMES_DIR = "rawdata/volumes"
LABELS_DIR = "rawdata/labels"
SPLIT_FILE = "metadata/data_split.txt"
LABEL_SUFFIX = "_seg"
_EXTENSIONS = (".nii.gz", ".nii")
#: Ids that are not a case folder's name in a Zarr hierarchy.
_RESERVED_IDS = {"": "an empty id", ".": "'.'", "..": "'..'", "zarr.json": "'zarr.json'"}


@dataclass(frozen=True)
class RawCase:
    """One case of a raw tree: its id, source folder, files and split."""

    case_id: str
    source: str
    image: str | None
    label: str | None
    split: str = UNASSIGNED
    #: Size of the image file as listed (0: unknown); the ingest starts the largest first.
    image_bytes: int = 0


@dataclass
class RawTree:
    """What :func:`find_cases` found: pairs, problems and split entries without files."""

    root: str
    cases: list[RawCase]
    problems: list[tuple[RawCase, str]] = field(default_factory=list)
    split_without_files: list[str] = field(default_factory=list)
    has_split_file: bool = False
    #: SHA-256 (hex) and size of the split file's bytes (None: no split file)
    split_sha256: str | None = None
    split_size: int | None = None


def case_id_from_name(name: str) -> str | None:
    """Return the case id of a file name (``<case>.nii.gz`` or ``<case>.nii``), else None.

    Dots inside the id are kept: ``1.3.6.1.4.1.9328.50.4.0001.nii.gz`` gives
    ``1.3.6.1.4.1.9328.50.4.0001``.
    """
    for ext in _EXTENSIONS:
        if name.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return None


def official_split_file() -> bytes:
    """The official CTSpine1K ``data_split.txt``, shipped with the package (CRLF kept).

    See ``ctspine_zarr/data/README.md`` for its provenance.
    """
    from importlib.resources import files

    return (files("ctspine_zarr") / "data" / "data_split.txt").read_bytes()


def parse_split_file(text: str) -> dict[str, str]:
    """Parse ``data_split.txt`` (LF or CRLF) into ``{case_id: split}``.

    Sections ``trainset:``, ``test_public:`` and ``test_private:`` become ``train``,
    ``validation`` and ``test``. A name listed in two sections keeps the first.

    Raises
    ------
    ValueError
        When a file name stands before the first section header, or a header is unknown.
    """
    splits: dict[str, str] = {}
    section: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry:
            continue
        if entry.endswith(":"):
            key = entry[:-1].strip()
            if key not in SPLIT_SECTIONS:
                raise ValueError(
                    f"line {number}: unknown section {entry!r}; "
                    f"expected one of {', '.join(s + ':' for s in SPLIT_SECTIONS)}"
                )
            section = SPLIT_SECTIONS[key]
            continue
        if section is None:
            raise ValueError(f"line {number}: {entry!r} stands before any section header")
        case_id = case_id_from_name(entry) or entry
        splits.setdefault(case_id, section)
    return splits


def case_id_problem(case_id: str) -> str | None:
    """Why ``case_id`` cannot be a portable path segment of a store, or None when it can.

    Refused: the empty id, ``.``, ``..``, ``zarr.json``, and ids holding ``/``, ``\\``,
    NUL or another control character (newline, tab, ...) or a line separator.
    """
    if case_id in _RESERVED_IDS:
        return f"{_RESERVED_IDS[case_id]} cannot name a case folder in a store"
    for char in case_id:
        if char in "/\\":
            return f"the case id holds {char!r}, a path separator"
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            return (
                f"the case id holds the control character U+{ord(char):04X} "
                f"({unicodedata.name(char, repr(char))})"
            )
    return None


def normalisation_collisions(case_ids: list[str]) -> dict[str, list[str]]:
    """Map each id that differs from another only in Unicode normalisation to the others.

    Ids equal under NFKC (which covers NFC) would name the same folder on file systems
    that normalise names (macOS) and look identical to users, so all of them are refused.
    """
    groups: defaultdict[str, set[str]] = defaultdict(set)
    for case_id in case_ids:
        groups[unicodedata.normalize("NFKC", case_id)].add(case_id)
    return {
        case_id: sorted(group - {case_id})
        for group in groups.values()
        if len(group) > 1
        for case_id in group
    }


def _file_kind(fs: fsspec.AbstractFileSystem, path: str, entry: dict[str, Any]) -> str:
    """``file`` for a regular file (or a symlink to one), else what it is, e.g. ``a FIFO``."""
    if not isinstance(fs, LocalFileSystem):
        kind = str(entry.get("type", "file"))
        return kind if kind == "file" else f"a {kind}"
    try:
        mode = os.stat(path).st_mode  # follows symlinks
    except OSError as err:
        return f"unreadable ({err.strerror or err})"
    for test, kind in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def _ids_under(fs: fsspec.AbstractFileSystem, folder: str, *, strip: str = "") -> dict:
    """``{(source, case_id): (path, size, kind)}`` of the NIfTI names two levels below."""
    found: dict[tuple[str, str], tuple[str, int, str]] = {}
    if not fs.isdir(folder):
        return found
    listing = fs.find(folder, detail=True, withdirs=True)
    for path in sorted(listing):
        rel = posixpath.relpath(path, folder)
        parts = rel.split("/")
        if len(parts) != 2:
            continue
        source, name = parts
        case_id = case_id_from_name(name)
        if case_id is None:
            continue
        if strip:
            if not case_id.endswith(strip):
                continue
            case_id = case_id[: -len(strip)]
        key = (source, case_id)
        kind = _file_kind(fs, path, listing[path])
        # prefer .nii.gz over .nii when both exist
        if key not in found or path.endswith(".nii.gz"):
            found[key] = (path, int(listing[path].get("size") or 0), kind)
    return found


def _pair_problem(
    images: dict,
    labels: dict,
    key: tuple[str, str],
    collisions: dict[str, list[str]],
) -> str | None:
    """What is wrong with the case ``key`` before its files are read, or None."""
    source, case_id = key
    problem = case_id_problem(case_id)
    if problem is not None:
        return f"{problem}; rename the files"
    if case_id in collisions:
        return (
            f"the case id differs from {collisions[case_id]} only in Unicode normalisation; "
            "rename the files so that every id is distinct after NFKC normalisation"
        )
    for found, role in ((images, "image"), (labels, "label")):
        if key in found and found[key][2] != "file":
            return f"the {role} {found[key][0]} is not a regular file but {found[key][2]}"
    return None


def find_cases(raw: str, *, storage_options: dict[str, Any] | None = None) -> RawTree:
    """Find every case of a raw tree.

    Parameters
    ----------
    raw
        Local folder or fsspec URL of the tree's root (the folder holding ``rawdata/``).
    storage_options
        fsspec options for a URL (default timeouts: :mod:`ctspine_zarr.io.remote`).

    Returns
    -------
    RawTree
        Complete pairs in ``cases``; in ``problems``: a label without image, an image
        without label, duplicate case ids across sources, ids that cannot be a portable
        path segment (:func:`case_id_problem`) or differ from another only in Unicode
        normalisation, and files that are not regular files (FIFOs, sockets, devices,
        directories; symlinks to regular files are fine), which are never opened;
        split entries that name no file in ``split_without_files``.

    Raises
    ------
    FileNotFoundError
        When ``raw`` holds no ``rawdata/volumes`` folder.
    """
    fs, root = url_to_fs(str(raw), storage_options)
    root = root.rstrip("/")
    volumes = posixpath.join(root, VOLUMES_DIR)
    if not fs.isdir(volumes):
        raise FileNotFoundError(
            f"{raw}: no {VOLUMES_DIR}/ folder; RAW must be the folder that holds rawdata/ "
            "(the layout of the Hugging Face copy of CTSpine1K)"
        )
    images = _ids_under(fs, volumes)
    labels = _ids_under(fs, posixpath.join(root, LABELS_DIR), strip=LABEL_SUFFIX)

    split_path = posixpath.join(root, SPLIT_FILE)
    has_split = fs.isfile(split_path)
    split_bytes = fs.cat_file(split_path) if has_split else None
    splits = parse_split_file(split_bytes.decode("utf-8-sig")) if split_bytes is not None else {}

    tree = RawTree(root=str(raw), cases=[], has_split_file=has_split)
    if split_bytes is not None:
        tree.split_sha256 = hashlib.sha256(split_bytes).hexdigest()
        tree.split_size = len(split_bytes)
    per_id = Counter(case_id for _, case_id in images)
    collisions = normalisation_collisions(sorted({c for _, c in images} | {c for _, c in labels}))
    for key in sorted(set(images) | set(labels), key=lambda k: (k[1], k[0])):
        source, case_id = key
        case = RawCase(
            case_id=case_id,
            source=source,
            image=fs.unstrip_protocol(images[key][0]) if key in images else None,
            label=fs.unstrip_protocol(labels[key][0]) if key in labels else None,
            split=splits.get(case_id, UNASSIGNED),
            image_bytes=images[key][1] if key in images else 0,
        )
        problem = _pair_problem(images, labels, key, collisions)
        if problem is not None:
            tree.problems.append((case, problem))
        elif case.image is None:
            tree.problems.append((case, "label file without an image file"))
        elif case.label is None:
            tree.problems.append(
                (
                    case,
                    "image file without a label file (expected "
                    f"{LABELS_DIR}/{source}/{case_id}{LABEL_SUFFIX}.nii.gz)",
                )
            )
        elif per_id[case_id] > 1:
            others = sorted(s for s, c in images if c == case_id)
            tree.problems.append((case, f"case id found in several sources: {others}"))
        else:
            tree.cases.append(case)
    present = {case_id for _, case_id in images}
    tree.split_without_files = sorted(c for c in splits if c not in present)
    return tree
