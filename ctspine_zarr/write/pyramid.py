"""``ctspine-zarr pyramid``: 2x and 4x downsampled levels of every case, for browsing.

:func:`add_levels` writes, for every complete case that lacks them, the levels laid out in
:mod:`ctspine_zarr.io.levels` (the image by block mean, the labels by block mode, see
:mod:`ctspine_zarr.write.downsample`), each array in 64 x 64 x 64 chunks inside one shard.
A case's levels become visible in one atomic write of the case's ``zarr.json``
(:func:`register_levels`: its consolidated metadata lists the new nodes, its attribute
``levels`` the factors, and an OME ``multiscales`` block, when the case has one, the new
datasets). Until then nothing refers to the new arrays, so a run killed half-way leaves the
case as it was, and the next run writes its levels again; a case that has them is skipped.

Readers of a case are not disturbed: the arrays they read and their shard indexes are not
touched, and a reader that opened the case before keeps its metadata (without the levels).
An ingest that rewrites a case drops its levels with the old version; run ``pyramid`` again.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import dask
import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.buffer import default_buffer_prototype

from ..errors import CaseNotFoundError, DamagedStoreError, StoreError
from ..io.catalogue import case_members, scan_cases
from ..io.levels import (
    LABEL_IMAGE_GROUP,
    LEVEL_FACTORS,
    LEVELS_GROUP,
    LEVELS_KEY,
    level_paths,
)
from ..io.location import TMP_DIR, Location
from ..io.store import check_format, forget
from ..parallel import check_workers, progress_bar, run_tasks
from ..schema import CASES_GROUP, IMAGE, LABEL, VOLUME_DIMS, image_encoding, label_compressors
from .claim import remove_internal_dir
from .downsample import build_levels
from .lock import LOCK_KEY, WriterLock

__all__ = ["LEVEL_CHUNK", "PyramidOutcome", "PyramidReport", "add_levels", "register_levels"]

#: Edge of the 3D chunks of the levels (one shard holds a whole level array).
LEVEL_CHUNK: Final = 64


@dataclass
class PyramidOutcome:
    """What happened to one case: ``added``, ``present`` (had its levels) or ``failed``."""

    case_id: str
    status: str
    problem: str = ""
    #: stored bytes of the case's full-resolution image and label
    case_bytes: int = 0
    #: stored bytes of the levels written
    level_bytes: int = 0
    seconds: float = 0.0


@dataclass
class PyramidReport:
    """The outcome of :func:`add_levels`: one :class:`PyramidOutcome` per case looked at."""

    store: str
    outcomes: list[PyramidOutcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        """Number of cases with the given status."""
        return sum(o.status == status for o in self.outcomes)

    @property
    def ok(self) -> bool:
        """Whether every case looked at has its levels now."""
        return all(o.status in ("added", "present") for o in self.outcomes)

    def summary(self) -> str:
        """A few lines a person reads at the end of the command."""
        added = [o for o in self.outcomes if o.status == "added"]
        level_bytes = sum(o.level_bytes for o in added)
        case_bytes = sum(o.case_bytes for o in added)
        share = f" ({100 * level_bytes / case_bytes:.1f}% of their cases)" if case_bytes else ""
        lines = [
            f"store      {self.store}",
            f"cases      {self.count('added')} given levels {list(LEVEL_FACTORS)}, "
            f"{self.count('present')} had them, {self.count('failed')} failed",
            f"bytes      {level_bytes / 2**20:.1f} MiB of levels written{share}",
            f"time       {self.seconds:.1f} s",
        ]
        lines += [f"failed     {o.case_id}: {o.problem}" for o in self.outcomes if o.problem]
        return "\n".join(lines)


def add_levels(
    store: str | os.PathLike[str] | Store,
    *,
    cases: Sequence[str] | None = None,
    workers: int | None = None,
    storage_options: dict[str, Any] | None = None,
    progress: bool = False,
) -> PyramidReport:
    """Write the 2x and 4x levels of every complete case that lacks them.

    Rerunning is cheap and safe: cases that have their levels are skipped, cases a killed
    run left half-done are written again. The writer lock is held throughout, so this never
    runs beside an ingest.

    Parameters
    ----------
    store
        Path or fsspec URL of the ctspine store (or a zarr store).
    cases
        Only these case ids (default: every complete case).
    workers
        Cases at a time (threads; default: the number of CPUs).
    storage_options
        fsspec options for a URL store.
    progress
        Show a progress bar on stderr.

    Returns
    -------
    PyramidReport

    Raises
    ------
    StoreError
        When ``store`` is not a ctspine store, or another writer holds its lock.
    CaseNotFoundError
        When ``cases`` names a case that is not a complete case of the store.
    """
    started = time.perf_counter()
    workers = check_workers(workers)
    loc = Location.resolve(store, storage_options=storage_options)
    _check_store(loc)
    report = PyramidReport(store=loc.text)
    lock = _locked(loc)
    try:
        scan = scan_cases(loc)
        chosen = sorted(scan.complete) if cases is None else list(dict.fromkeys(cases))
        for case_id in chosen:
            if case_id not in scan.complete:
                raise CaseNotFoundError(case_id, sorted(scan.complete))
        todo = [c for c in chosen if not has_levels(scan.documents[c])]
        report.outcomes = [PyramidOutcome(c, "present") for c in chosen if c not in todo]
        bar = progress_bar(len(todo), desc="pyramid", enabled=progress)
        write = dask.delayed(_add_case, pure=False)
        tasks = [
            write(loc, c, scan.documents[c], dask_key_name=f"pyramid-{len(todo) - i:07d}-{c}")
            for i, c in enumerate(todo)
        ]
        try:
            results = run_tasks(tasks, scheduler="threads", workers=workers, on_done=bar.update)
        finally:
            bar.close()
        documents = {}
        for outcome, document in results:
            report.outcomes.append(outcome)
            if document is not None:
                documents[outcome.case_id] = document
        _refresh_root(loc, documents)
        loc.delete_prefix(TMP_DIR)  # the scratch folder of the atomic writes (empty by now)
    finally:
        lock.release()
    remove_internal_dir(loc)  # the writer's folder, when no other writer took it since
    forget(store if isinstance(store, Store) else os.fspath(store))
    report.outcomes.sort(key=lambda o: o.case_id)
    report.seconds = time.perf_counter() - started
    return report


def _locked(loc: Location) -> WriterLock:
    """The store's writer lock, taken (release it); a store that cannot be written is a
    one-line StoreError."""
    lock = WriterLock(loc)
    try:
        lock.acquire()
    except StoreError:
        raise
    except Exception as err:  # e.g. an HTTP server answers PUT with 501
        raise StoreError(
            f"{loc.text}: cannot write to this store (taking the writer lock "
            f"{LOCK_KEY} failed: {type(err).__name__}: {' '.join(str(err).split())})"
        ) from err
    return lock


def _check_store(loc: Location) -> None:
    """Raise a one-line StoreError unless ``loc`` holds a ctspine store this package reads."""
    raw = loc.read("zarr.json")
    if raw is None:
        raise StoreError(f"{loc.text}: no Zarr v3 store there")
    try:
        document = json.loads(raw)
        attrs = document.get("attributes") or {}
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        raise DamagedStoreError(
            f"{loc.text}/zarr.json: not valid JSON; the store is damaged "
            "(run `ctspine-zarr ingest RAW STORE` again to repair it)"
        ) from None
    check_format(attrs, loc.text)


def has_levels(document: Mapping[str, Any]) -> bool:
    """Whether a case's ``zarr.json`` registers every level of :data:`LEVEL_FACTORS`."""
    attrs = document.get("attributes") or {}
    members = (document.get("consolidated_metadata") or {}).get("metadata") or {}
    if attrs.get(LEVELS_KEY) != list(LEVEL_FACTORS):
        return False
    label_image = LABEL_IMAGE_GROUP in members
    return all(p in members for f in LEVEL_FACTORS for p in level_paths(f, label_image=label_image))


# --------------------------------------------------------------------------------------------
# One case
# --------------------------------------------------------------------------------------------


def _add_case(
    loc: Location, case_id: str, document: dict[str, Any]
) -> tuple[PyramidOutcome, dict[str, Any] | None]:
    """Write and register one case's levels; never raises (a failure is its outcome)."""
    start = time.perf_counter()
    outcome = PyramidOutcome(case_id, "added")
    try:
        new_document = _write_case_levels(loc, case_id, document, outcome)
    except Exception as err:  # one bad case must not cost the others
        outcome.status, outcome.problem = "failed", f"{type(err).__name__}: {err}"
        new_document = None
    outcome.seconds = time.perf_counter() - start
    return outcome, new_document


def _write_case_levels(
    loc: Location, case_id: str, document: dict[str, Any], outcome: PyramidOutcome
) -> dict[str, Any]:
    prefix = f"{CASES_GROUP}/{case_id}"
    group = zarr.open_group(loc.store, path=prefix, mode="r", use_consolidated=True)
    image, label = group[IMAGE], group[LABEL]
    assert isinstance(image, zarr.Array) and isinstance(label, zarr.Array)
    attrs = document.get("attributes") or {}
    shape = tuple(int(n) for n in image.shape)
    boxes = {int(k): v.get("box") for k, v in (attrs.get("vertebrae") or {}).items()}
    images, labels = build_levels(
        (shape[0], shape[1], shape[2]),
        image.dtype,
        lambda z0, z1: (np.asarray(image[z0:z1]), np.asarray(label[z0:z1])),
        shards=int((image.shards or image.chunks)[0]),
        factors=LEVEL_FACTORS,
        boxes=boxes,
    )
    label_image = loc.exists(f"{prefix}/{LABEL_IMAGE_GROUP}/zarr.json")
    # leftovers of a killed run: never referred to by the case's zarr.json
    loc.delete_prefix(f"{prefix}/{LEVELS_GROUP}")
    written: dict[str, zarr.Array] = {}
    for f in LEVEL_FACTORS:
        image_path, label_path = level_paths(f, label_image=label_image)
        if label_image:
            loc.delete_prefix(f"{prefix}/{label_path}")
        written[image_path] = _write_array(loc, f"{prefix}/{image_path}", images[f], f, IMAGE)
        written[label_path] = _write_array(loc, f"{prefix}/{label_path}", labels[f], f, LABEL)
    outcome.case_bytes = int(image.nbytes_stored()) + int(label.nbytes_stored())
    outcome.level_bytes = sum(int(a.nbytes_stored()) for a in written.values())
    spacing = [float(v) for v in attrs.get("spacing_zyx") or (1.0, 1.0, 1.0)]
    new_members = _write_groups(loc, prefix, written, spacing)
    if label_image:
        new_members.update(_register_label_image(loc, prefix, document, written))
    paths = {f: level_paths(f, label_image=label_image)[0] for f in LEVEL_FACTORS}
    new_document = register_levels(document, new_members, paths)
    # the switch: one atomic write makes the levels visible to the case's readers
    loc.put(f"{prefix}/zarr.json", _dump(new_document))
    return new_document


def _chunking(shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Chunks of at most :data:`LEVEL_CHUNK` a side, and one shard covering the array."""
    chunks = tuple(max(1, min(LEVEL_CHUNK, n)) for n in shape)
    shards = tuple(-(-n // c) * c for n, c in zip(shape, chunks, strict=True))
    return chunks, shards


def _write_array(loc: Location, path: str, data: np.ndarray, factor: int, kind: str) -> zarr.Array:
    """Create one level array (Blosc zstd as the main arrays) and write ``data`` into it."""
    chunks, shards = _chunking(data.shape)
    if kind == IMAGE:
        encoding = image_encoding("default")
        what = f"CT intensity, mean of {factor}x{factor}x{factor} blocks"
        attributes: dict[str, Any] = {"downsample": factor, "units": "HU", "long_name": what}
    else:
        encoding = {"compressors": label_compressors()}
        what = f"vertebra label, mode of the non-zero labels of {factor}x{factor}x{factor} blocks"
        attributes = {"downsample": factor, "long_name": what}
    array = zarr.create_array(
        loc.store,
        name=path,
        shape=data.shape,
        dtype=data.dtype,
        chunks=chunks,
        shards=shards,
        fill_value=0,
        dimension_names=VOLUME_DIMS,
        attributes=attributes,
        config={"write_empty_chunks": True},
        zarr_format=3,
        overwrite=True,
        **encoding,
    )
    array[...] = data
    return array


def _array_document(array: zarr.Array) -> dict[str, Any]:
    prototype = default_buffer_prototype()
    return dict(json.loads(array.metadata.to_buffer_dict(prototype)["zarr.json"].to_bytes()))


def _group_document(
    attributes: Mapping[str, Any], members: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": dict(attributes),
    }
    if members is not None:
        document["consolidated_metadata"] = {
            "kind": "inline",
            "must_understand": False,
            "metadata": dict(members),
        }
    return document


def _entry(document: Mapping[str, Any]) -> dict[str, Any]:
    """A node's entry in a parent's consolidated metadata: its document without its own."""
    return {k: v for k, v in document.items() if k != "consolidated_metadata"}


def _write_groups(
    loc: Location, prefix: str, written: Mapping[str, zarr.Array], spacing: Sequence[float]
) -> dict[str, Any]:
    """Write ``levels`` and ``levels/<f>`` (each consolidating what is below it).

    Returns their entries and their arrays', flattened, for the case's consolidated metadata.
    """
    flat: dict[str, Any] = {}
    for f in LEVEL_FACTORS:
        here = f"{LEVELS_GROUP}/{f}"
        arrays = {
            path[len(here) + 1 :]: _array_document(array)
            for path, array in written.items()
            if path.startswith(here + "/")
        }
        attributes = {"downsample": f, "spacing_zyx": [f * s for s in spacing]}
        level = _group_document(attributes, arrays)
        loc.put(f"{prefix}/{here}/zarr.json", _dump(level))
        flat[here] = _entry(level)
        flat.update({f"{here}/{name}": doc for name, doc in arrays.items()})
    below = {k[len(LEVELS_GROUP) + 1 :]: v for k, v in flat.items()}
    top = _group_document({}, below)
    loc.put(f"{prefix}/{LEVELS_GROUP}/zarr.json", _dump(top))
    return {LEVELS_GROUP: _entry(top), **flat}


def _register_label_image(
    loc: Location, prefix: str, case: Mapping[str, Any], written: Mapping[str, zarr.Array]
) -> dict[str, Any]:
    """Register the label levels in the OME label image group; return the case's entries."""
    key = f"{prefix}/{LABEL_IMAGE_GROUP}/zarr.json"
    raw = loc.read(key)
    if raw is None:
        raise DamagedStoreError(f"{key} vanished while the levels were written")
    document = json.loads(raw)
    own = {
        path[len(LABEL_IMAGE_GROUP) + 1 :]: _array_document(array)
        for path, array in written.items()
        if path.startswith(LABEL_IMAGE_GROUP + "/")
    }
    paths = {f: level_paths(f, label_image=True)[1] for f in LEVEL_FACTORS}
    relative = {f: p[len(LABEL_IMAGE_GROUP) + 1 :] for f, p in paths.items()}
    updated = register_levels(document, own, relative, record=False)
    loc.put(key, _dump(updated))
    listed = (case.get("consolidated_metadata") or {}).get("metadata") or {}
    entries: dict[str, Any] = {}
    parent = LABEL_IMAGE_GROUP.split("/")[0]
    if parent not in listed:  # the case must list every node on the way to the levels
        parent_raw = loc.read(f"{prefix}/{parent}/zarr.json")
        if parent_raw is not None:
            entries[parent] = _entry(json.loads(parent_raw))
    entries[LABEL_IMAGE_GROUP] = _entry(updated)
    entries.update({paths[f]: own[relative[f]] for f in LEVEL_FACTORS})
    return entries


def register_levels(
    document: Mapping[str, Any],
    members: Mapping[str, Any],
    paths: Mapping[int, str],
    *,
    record: bool = True,
) -> dict[str, Any]:
    """Return a group's ``zarr.json`` with its levels registered (the input is not changed).

    Parameters
    ----------
    document
        The group's ``zarr.json``, parsed: a case group, or an OME label image group.
    members
        ``{path relative to the group: zarr.json of the node}`` to add to (or replace in)
        the group's consolidated metadata, flattened as zarr writes it (``levels``,
        ``levels/2``, ``levels/2/image``, ...). Ignored when the group has none.
    paths
        ``{factor: path of the level's dataset, relative to the group}``, e.g.
        ``{2: "levels/2/image", 4: "levels/4/image"}``.
    record
        Also set the attribute ``levels`` to the factors (``[2, 4]``).

    Returns
    -------
    dict
        The new document. When its attributes hold an OME image
        (``attributes["ome"]["multiscales"][0]["datasets"]``), one dataset per factor is
        added (an earlier one of the same path is replaced) with the scale of the first
        dataset times the factor and the translation of the centre of a block:
        ``t + (factor - 1) * s / 2`` for its scale ``s`` and translation ``t``.
    """
    out = copy.deepcopy(dict(document))
    consolidated = out.pop("consolidated_metadata", None)
    attrs = dict(out.get("attributes") or {})
    if record:
        attrs[LEVELS_KEY] = sorted(paths)
    multiscales = (
        (attrs.get("ome") or {}).get("multiscales") if isinstance(attrs.get("ome"), dict) else None
    )
    if isinstance(multiscales, list) and multiscales and multiscales[0].get("datasets"):
        first = multiscales[0]
        kept = [d for d in first["datasets"] if d.get("path") not in set(paths.values())]
        scale, translation = _transforms(kept[0] if kept else first["datasets"][0])
        for factor in sorted(paths):
            kept.append(
                {
                    "path": paths[factor],
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [s * factor for s in scale]},
                        {
                            "type": "translation",
                            "translation": [
                                t + (factor - 1) * s / 2
                                for s, t in zip(scale, translation, strict=True)
                            ],
                        },
                    ],
                }
            )
        first["datasets"] = kept
    out["attributes"] = attrs
    if consolidated is not None:
        metadata = dict(consolidated.get("metadata") or {})
        metadata.update(copy.deepcopy(dict(members)))
        out["consolidated_metadata"] = {**consolidated, "metadata": _in_order(metadata)}
    return out


def _in_order(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Flattened consolidated metadata as zarr reads it right: the group's own children in
    their order, then the deeper nodes sorted by path.

    zarr (3.1 to 3.4) nests the flattened entries by grouping *consecutive* keys of equal
    depth by parent: ``labels/vertebrae/0``, ``levels/2/image``, ``labels/vertebrae/1`` in
    that order lose ``labels/vertebrae/0``. Sorted, the children of a parent are adjacent.
    """
    top = {k: v for k, v in metadata.items() if "/" not in k}
    return {**top, **{k: metadata[k] for k in sorted(metadata) if "/" in k}}


def _transforms(dataset: Mapping[str, Any]) -> tuple[list[float], list[float]]:
    """The scale and translation of an OME dataset (1 and 0 where it gives none)."""
    scale: list[float] | None = None
    translation: list[float] | None = None
    for transform in dataset.get("coordinateTransformations") or []:
        if transform.get("type") == "scale":
            scale = [float(v) for v in transform["scale"]]
        elif transform.get("type") == "translation":
            translation = [float(v) for v in transform["translation"]]
    n = len(scale or translation or (0, 0, 0))
    return scale or [1.0] * n, translation or [0.0] * n


def _dump(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode()


# --------------------------------------------------------------------------------------------
# The root's entries of the cases
# --------------------------------------------------------------------------------------------


def _refresh_root(loc: Location, documents: Mapping[str, Mapping[str, Any]]) -> None:
    """Bring the root's entries of the updated cases up to date (one atomic write, if any).

    The root repeats a few attributes and the volumes of each case for generic readers
    (:func:`ctspine_zarr.io.catalogue.case_members`); whatever of a case it repeats must
    stay what the case's own ``zarr.json`` says. A case the root does not list is left out.
    """
    raw = loc.read("zarr.json")
    if not documents or raw is None:
        return
    root = json.loads(raw)
    consolidated = root.get("consolidated_metadata") or {}
    members: dict[str, Any] = consolidated.get("metadata") or {}
    fresh = case_members(documents)
    owners = {f"{CASES_GROUP}/{c}" for c in documents}
    updated: dict[str, Any] = {}
    for key, node in members.items():
        owner = "/".join(key.split("/")[:2])
        if owner not in owners:
            updated[key] = node
        elif key == owner:
            updated.update({k: v for k, v in fresh.items() if "/".join(k.split("/")[:2]) == owner})
    if updated == members and list(updated) == list(members):
        return
    root["consolidated_metadata"] = {**consolidated, "metadata": updated}
    loc.put("zarr.json", _dump(root))
