"""Writing one case: its arrays beside the current version, its attrs last, then the switch.

:func:`ingest_case` reads, checks and writes one case and never raises for a bad one: it
returns a :class:`CaseOutcome`. A case group holds
:data:`~ctspine_zarr.schema.CASE_ARRAYS`: the two ``(z, y, x)`` volumes
(:data:`~ctspine_zarr.schema.VOLUME_ARRAYS`, sharded in whole axial slices) and three small
arrays (:data:`~ctspine_zarr.schema.SMALL_ARRAYS`); its attrs, written last with its
consolidated metadata, make it complete.
"""

from __future__ import annotations

import functools
import json
import os
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store

from ..errors import InvalidCaseError
from ..io.catalogue import consolidate
from ..io.labelindex import LabelIndex, index_labels
from ..io.layout import RawCase
from ..io.location import Location
from ..io.nifti import CanonicalVolume, read_case
from ..io.ome import (
    LABEL_IMAGE,
    LABEL_LEVEL0,
    LABELS_GROUP,
    OBLIQUE_KEY,
    image_attrs,
    label_image_attrs,
    labels_group_attrs,
    oblique_note,
)
from ..io.shardwriter import write_array
from ..schema import (
    CASES_GROUP,
    COMPLETE_KEY,
    IMAGE,
    IMAGE_HEADER,
    LABEL,
    LABEL_HEADER,
    OME_LABEL,
    SHARD_CRC_KEY,
    SLICE_VERTEBRAE,
    SLICES_PER_SHARD,
    TILE,
    VERTEBRA_DIM,
    VOLUME_DIMS,
    encoding_name,
    image_encoding,
    label_compressors,
    volume_chunking,
)
from .claim import STAGING, TRASH
from .stopping import CaseStopped, mark_written, running

__all__ = [
    "CaseOutcome",
    "geometry_attrs",
    "ingest_case",
]


@dataclass
class CaseOutcome:
    """What happened to one case.

    ``status`` is ``ingested``, ``skipped`` (unchanged source), ``refused`` or ``failed``.
    """

    case_id: str
    source: str
    status: str
    file: str = ""
    problem: str = ""
    n_slices: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    #: the traceback of an unexpected failure (in the JSON report, not the summary)
    detail: str = ""


def ingest_case(
    case: RawCase,
    store: str | os.PathLike | Store,
    *,
    storage_options: dict[str, Any] | None = None,
    raw_storage_options: dict[str, Any] | None = None,
    codec: str = "default",
    slices_per_shard: int = SLICES_PER_SHARD,
    tile: int = TILE,
    encode_threads: int = 1,
    run: str = "",
) -> CaseOutcome:
    """Read, check and write one case; never raises for a bad case.

    Parameters
    ----------
    case
        The pair to ingest.
    store
        The (already initialised) ctspine store.
    storage_options, raw_storage_options
        fsspec options for a URL store and for URL source files.
    codec
        Image codec name (see :func:`ctspine_zarr.schema.image_encoding`).
    slices_per_shard
        Axial slices per shard.
    tile
        In-plane size of an inner chunk (``(1, tile, tile)`` tiles of a slice); 0 (the
        default) stores one whole slice per inner chunk.
    encode_threads
        Size of the process's shared encoding pool (1: encode in the calling thread).
    run
        The ingest's token: :func:`~ctspine_zarr.write.stopping.stop` stops its cases.

    Returns
    -------
    CaseOutcome
        ``ingested``, or ``refused`` (bad input, named) or ``failed`` (unexpected error).
    """
    start = time.perf_counter()
    outcome = CaseOutcome(case_id=case.case_id, source=case.source, status="ingested")
    try:
        with running(run) as checkpoint:
            image, label = read_case(case, raw_storage_options)
            loc = Location.resolve(store, storage_options=storage_options)
            outcome.bytes_out = _write_case(
                loc,
                case,
                image,
                label,
                codec=codec,
                slices_per_shard=slices_per_shard,
                tile=tile,
                encode_threads=encode_threads,
                checkpoint=checkpoint,
            )
            mark_written(run)
        outcome.n_slices = int(image.data.shape[0])
        outcome.bytes_in = image.fingerprint.size + label.fingerprint.size
    except CaseStopped as err:
        outcome.status, outcome.problem = "failed", str(err)
    except InvalidCaseError as err:
        outcome.status, outcome.file, outcome.problem = "refused", err.path, str(err)
    except Exception as err:  # a bug or an I/O error must not cost the other cases
        outcome.status, outcome.file = "failed", case.image or ""
        outcome.problem = f"{type(err).__name__}: {err}"
        outcome.detail = traceback.format_exc(limit=3)
    outcome.seconds = time.perf_counter() - start
    return outcome


def _write_case(
    loc: Location,
    case: RawCase,
    image: CanonicalVolume,
    label: CanonicalVolume,
    *,
    codec: str,
    slices_per_shard: int,
    tile: int,
    encode_threads: int,
    checkpoint: Callable[[], None],
) -> int:
    """Write one case beside its current version, then switch to it. Returns the bytes stored.

    Locally the new version is written to ``.ctspine/staging/<token>`` and exchanged with
    ``cases/<id>`` in one atomic rename. On object stores a case seen for the first time is
    written in place (readers find it only once its ``zarr.json`` exists); a new version of
    an existing case is staged first, then copied over the old one, its ``zarr.json`` last;
    readers holding the old version's metadata notice the replaced shards by their index
    checksums. ``checkpoint`` is called before each shard and before the switch (it raises
    to stop the case).
    """
    final = f"{CASES_GROUP}/{case.case_id}"
    token = uuid.uuid4().hex
    if loc.local_root is None and not loc.exists(f"{final}/zarr.json"):
        loc.delete_prefix(final)  # leftovers of an unfinished write of ours, never readable
        target = final
    else:
        target = f"{STAGING}/{token}"
    index = index_labels(label.data)
    group = zarr.create_group(loc.store, path=target, attributes={COMPLETE_KEY: False})
    encoding = image_encoding(codec, sample=image.data)
    arrays, checksums = _write_volumes(
        group,
        image,
        label,
        encoding,
        slices_per_shard=slices_per_shard,
        tile=tile,
        encode_threads=encode_threads,
        checkpoint=checkpoint,
    )
    arrays += _write_small_arrays(group, index, image, label)
    attrs = _case_attrs(case, image, label, index, encoding_name(encoding), checksums)
    stored = sum(int(a.nbytes_stored()) for a in arrays)
    # one write makes the case complete and its consolidated metadata visible together
    checkpoint()
    consolidate(group, attributes=attrs)
    if target != final:
        _switch(loc, target, final, token)
    return stored


def _write_volumes(
    group: zarr.Group,
    image: CanonicalVolume,
    label: CanonicalVolume,
    encoding: dict[str, Any],
    *,
    slices_per_shard: int,
    tile: int,
    encode_threads: int,
    checkpoint: Callable[[], None],
) -> tuple[list[zarr.Array], dict[str, list[int]]]:
    """Create and write ``image`` and ``label``; return them and their shard index CRCs."""
    chunks, shards = volume_chunking(image.data.shape, slices_per_shard, tile)
    common: dict[str, Any] = dict(
        chunks=chunks,
        shards=shards,
        dimension_names=VOLUME_DIMS,
        config={"write_empty_chunks": True},
    )
    arrays = [
        group.create_array(
            IMAGE,
            shape=image.data.shape,
            dtype=image.data.dtype,
            **encoding,
            fill_value=0,
            attributes={"units": "HU", "long_name": "CT intensity (scaled voxel values)"},
            **common,
        ),
    ]
    labels: dict[str, Any] = dict(
        shape=label.data.shape,
        dtype=np.uint8,
        compressors=label_compressors(),
        fill_value=0,
        attributes={"long_name": "vertebra label (VerSe numbering)"},
        **common,
    )
    arrays.append(group.create_array(LABEL, **labels))
    # the OME label image (its own group, so the label voxels a second time: ome.py)
    ome = group.create_group(LABELS_GROUP, attributes={"ome": labels_group_attrs()})
    label_image = ome.create_group(LABEL_IMAGE, attributes={"ome": label_image_attrs(image.affine)})
    arrays.append(label_image.create_array(LABEL_LEVEL0, **labels))
    # the bytes zarr writes, without its per-chunk overhead
    write = functools.partial(write_array, threads=encode_threads, before_shard=checkpoint)
    checksums = {IMAGE: write(arrays[0], image.data), LABEL: write(arrays[1], label.data)}
    checksums[OME_LABEL] = write(arrays[2], label.data)
    return arrays, checksums


def _write_small_arrays(
    group: zarr.Group, index: LabelIndex, image: CanonicalVolume, label: CanonicalVolume
) -> list[zarr.Array]:
    """Create and write the small arrays: the per-slice vertebrae and both headers."""
    small = {
        SLICE_VERTEBRAE: (index.slice_vertebrae, ("z", VERTEBRA_DIM)),
        IMAGE_HEADER: (np.frombuffer(image.header_bytes, dtype=np.uint8), ("byte",)),
        LABEL_HEADER: (np.frombuffer(label.header_bytes, dtype=np.uint8), ("byte",)),
    }
    return [
        group.create_array(name, data=data, dimension_names=dims)
        for name, (data, dims) in small.items()
    ]


def _case_attrs(
    case: RawCase,
    image: CanonicalVolume,
    label: CanonicalVolume,
    index: LabelIndex,
    codec_name: str,
    checksums: dict[str, list[int]],
) -> dict[str, Any]:
    """The attrs of a complete case: its source, geometry, vertebrae, files and shard CRCs."""
    return {
        "case_id": case.case_id,
        "source": case.source,
        "split": case.split,
        "shape_zyx": list(image.data.shape),
        "spacing_zyx": list(image.spacing_zyx),
        **geometry_attrs(image),
        "image_dtype": str(image.data.dtype),
        "image_codec": codec_name,
        "has_nonfinite": image.has_nonfinite,
        "geometry_notes": image.warnings,
        "ome": image_attrs(case.case_id, IMAGE, image.affine),
        **({OBLIQUE_KEY: note} if (note := oblique_note(image.affine)) else {}),
        "vertebrae": index.to_attrs(),
        "other_label_values": {str(k): v for k, v in index.other_values.items()},
        "files": {"image": image.fingerprint.to_json(), "label": label.fingerprint.to_json()},
        SHARD_CRC_KEY: {name: crcs for name, crcs in checksums.items() if crcs},
        COMPLETE_KEY: True,
    }


def update_split(loc: Location, case_id: str, split: str) -> None:
    """Set a complete case's ``split`` attribute, in one atomic write of its ``zarr.json``.

    Nothing else changes: not its arrays, not its other attributes or its consolidated
    metadata (a split file edited since the case was ingested moves it to another split).
    """
    key = f"{CASES_GROUP}/{case_id}/zarr.json"
    raw = loc.read(key)
    if raw is None:
        return
    document = json.loads(raw)
    attrs = document.get("attributes") or {}
    if attrs.get(COMPLETE_KEY) is not True or attrs.get("split") == split:
        return
    document["attributes"] = {**attrs, "split": split}
    loc.put(key, json.dumps(document, separators=(",", ":"), allow_nan=False).encode())


def geometry_attrs(image: CanonicalVolume) -> dict[str, Any]:
    """The attrs of a case that record its image's geometry (affines, orientation, shape)."""
    return {
        "affine": image.affine.tolist(),
        "source_affine": image.source_affine.tolist(),
        "source_orientation": image.ornt.tolist(),
        "source_shape": list(image.source_shape),
    }


def _switch(loc: Location, staged: str, final: str, token: str) -> None:
    """Put the complete version at ``staged`` in place of ``final``; the old goes to trash."""
    trash = f"{TRASH}/{token}"
    if loc.local_root is not None:
        if not (loc.local_root / final).exists():
            loc.move(staged, final)
        elif loc.exchange(staged, final):
            loc.move(staged, trash)  # the exchange left the old version there
        else:  # no atomic exchange here: readers may briefly find no case (an error)
            loc.move(final, trash)
            loc.move(staged, final)
        return
    src = staged + "/"
    new = {key[len(src) :] for key in loc.keys(src)}
    for rel in sorted(new - {"zarr.json"}):
        data = loc.read(src + rel)
        assert data is not None
        loc.put(f"{final}/{rel}", data)
    for key in loc.keys(final + "/"):
        rel = key[len(final) + 1 :]
        if rel not in new:
            loc.delete(key)
    document = loc.read(src + "zarr.json")
    assert document is not None
    loc.put(f"{final}/zarr.json", document)
    loc.delete_prefix(staged)
