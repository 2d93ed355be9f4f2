"""The store format as data: names, dims, attribute keys, label names, encodings.

Every other module takes its names from here, so the format is defined in one place.
See ``docs/format.md`` for the prose description.
"""

from __future__ import annotations

from typing import Any, Final, Literal

#: Version of the on-disk layout, stored in the root attrs under :data:`FORMAT_KEY`.
FORMAT_VERSION: Final = 4
FORMAT_KEY: Final = "ctspine_zarr_format"
#: Store versions this package reads (1: without the snapshot checks of version 2; 2:
#: without the OME-Zarr metadata of version 3, which an ingest rerun adds case by case;
#: 1-3: one whole slice per inner chunk, where version 4 may also hold tiles of a slice
#: (``ingest --tile``): the readers take each array's layout from its own metadata).
READABLE_FORMATS: Final = (1, 2, 3, 4)

#: Name of the group holding one sub-group per case.
CASES_GROUP: Final = "cases"
#: Attribute of ``cases/zarr.json`` that marks a ctspine store even when its root document
#: is damaged (so that a rerun repairs it instead of refusing a "foreign" location). The root
#: document's entry of the ``cases`` group is exactly ``{CASES_MARKER: true}`` too: readers
#: find where the case entries begin by it (:mod:`ctspine_zarr.io.snapshot`).
CASES_MARKER: Final = "ctspine_zarr_cases"

# Dimensions --------------------------------------------------------------------
CASE_DIM: Final = "case"
VOLUME_DIMS: Final = ("z", "y", "x")
VERTEBRA_DIM: Final = "vertebra"
#: Coordinate on :data:`VERTEBRA_DIM` naming each label (``"L3"``), indexed for ``sel``.
VERTEBRA_NAME: Final = "vertebra_name"
AXIS_DIM: Final = "axis"

# Per-case variables --------------------------------------------------------------
IMAGE: Final = "image"
LABEL: Final = "label"
SLICE_VERTEBRAE: Final = "slice_vertebrae"
IMAGE_HEADER: Final = "image_nifti_header"
LABEL_HEADER: Final = "label_nifti_header"
#: The ``(z, y, x)`` arrays of a case, sharded in whole axial slices.
VOLUME_ARRAYS: Final = (IMAGE, LABEL)
#: The small arrays of a case: the per-slice vertebrae and the two source headers.
SMALL_ARRAYS: Final = (SLICE_VERTEBRAE, IMAGE_HEADER, LABEL_HEADER)
#: Every array of a case group.
CASE_ARRAYS: Final = VOLUME_ARRAYS + SMALL_ARRAYS
#: The OME label image's level 0 (the label voxels again; :mod:`ctspine_zarr.io.ome`).
OME_LABEL: Final = "labels/vertebrae/0"

# Split names (the Hugging Face loader's names) and the split-file sections they come from.
SPLIT_SECTIONS: Final = {
    "trainset": "train",
    "test_public": "validation",
    "test_private": "test",
}
UNASSIGNED: Final = "unassigned"
SPLITS: Final = ("train", "validation", "test", UNASSIGNED)

#: The four CTSpine1K sources, as folder names of the Hugging Face copy.
SOURCES: Final = ("COLONOG", "HNSCC-3DCT-RT", "MSD-T10", "COVID-19")

# Encodings -----------------------------------------------------------------------
#: Axial slices per shard: a case is a handful of objects, a slice read one range request.
SLICES_PER_SHARD: Final = 32
#: In-plane size of the inner chunks of ``image`` and ``label`` by default: 0, one whole axial
#: slice per inner chunk (a slice is one chunk for every Zarr reader). Format 4 also allows
#: ``(1, t, t)`` tiles of a slice (``ingest --tile 128``: :data:`PATCH_TILE`), which a 3D
#: patch reads tile by tile; docs/chunk-layout.md measures both.
TILE: Final = 0
#: The tile of a store made for 3D patch training (``ingest --tile 128``).
PATCH_TILE: Final = 128
#: Attribute (case group) that says the case is complete; written last.
COMPLETE_KEY: Final = "complete"
#: Case attribute: ``{array: [CRC-32 of each encoded shard index, ...]}``, which readers check.
SHARD_CRC_KEY: Final = "shard_index_crc32"
#: Root attribute: ``{chunk key: CRC-32}`` of every catalogue chunk of this snapshot.
CATALOGUE_CRC_KEY: Final = "catalogue_chunk_crc32"
#: Root attribute: the catalogue's generation, incremented by every ingest.
GENERATION_KEY: Final = "catalogue_generation"
#: Root attribute: the raw trees the store was made from (``ctspine_zarr.write.rawtrees``).
RAW_TREES_KEY: Final = "raw_trees"
#: Chunk key encodings the catalogue arrays rotate through, one per generation, so that a
#: new catalogue never overwrites the chunks of the two before it (see docs/format.md).
CATALOGUE_KEY_ENCODINGS: Final = (
    {"name": "default", "configuration": {"separator": "/"}},
    {"name": "default", "configuration": {"separator": "."}},
    {"name": "v2", "configuration": {"separator": "."}},
)
#: The group beside the catalogue whose attributes record the findings of the label audit
#: (``ctspine-zarr audit``; see docs/format.md, "The audit record").
AUDIT_GROUP: Final = "audit"
#: The attribute of that group holding the record.
AUDIT_KEY: Final = "ctspine_audit"
#: The writer's own folder inside a store (lock, staged and replaced cases); exists only
#: while an ingest runs or after one was killed.
INTERNAL_DIR: Final = ".ctspine"


def image_encoding(codec: str = "default", *, sample: Any = None) -> dict[str, Any]:
    """Return the ``serializer`` and ``compressors`` of the ``image`` array's inner chunks.

    Parameters
    ----------
    codec
        ``"default"``: Blosc-zstd, readable by any Zarr v3 reader. With a ``sample``, the
        shuffle and level are chosen per case among :data:`BLOSC_CHOICES`: the cheapest to
        encode whose bytes are within :data:`BLOSC_TOLERANCE` of the smallest. Real CT
        keeps byte shuffle at level 5 (0.80x gzip-6 on a real 512x512 slice against 0.89x
        at level 2 and 0.87x with bit shuffle); noisier, air-poor volumes get bit shuffle
        at level 2, 1% larger than level 5 at a third of its encoding time. See
        ``docs/codecs.md``.
        ``"compact"``: lossless JPEG-LS (:class:`ctspine_zarr.io.codecs.JpegLsCodec`), 0.52x
        gzip-6 on that real slice, at about 5x the default's decoding time, readable where
        ``ctspine-zarr[compact]`` is installed. It is kept only if it is the smaller on the
        sample slices, and never for dtypes it cannot code (int32, float): those cases get
        the default.
    sample
        The case's ``[z, y, x]`` voxels: when given, the codecs are compared on three of
        its slices (at 1/4, 1/2 and 3/4 of z), about 2.5% of the time of ingesting the case.

    Returns
    -------
    dict
        ``serializer`` and ``compressors`` keyword arguments of ``zarr.create_array``.
    """
    from zarr.codecs import BytesCodec, Crc32cCodec

    if codec not in IMAGE_CODEC_CHOICES:
        raise ValueError(f"codec must be one of {IMAGE_CODEC_CHOICES}, but is {codec!r}")
    if sample is None:
        if codec == "compact":
            from .io.codecs import JpegLsCodec

            return {"serializer": JpegLsCodec(), "compressors": [Crc32cCodec()]}
        return {"serializer": BytesCodec(), "compressors": _blosc(*DEFAULT_BLOSC)}
    blosc_sizes = _blosc_sizes(sample)
    choice = _cheapest(blosc_sizes)
    if codec == "compact":
        from .io import codecs

        if codecs.supports(sample.dtype):
            jpegls = sum(len(codecs.encode(sample[z])) for z in _sample_slices(sample))
            if jpegls < blosc_sizes[choice]:
                return {"serializer": codecs.JpegLsCodec(), "compressors": [Crc32cCodec()]}
    return {"serializer": BytesCodec(), "compressors": _blosc(*choice)}


def encoding_name(encoding: dict[str, Any]) -> str:
    """A short name of an :func:`image_encoding`: ``"blosc zstd-5 shuffle"``, ...

    Recorded per case (attribute and catalogue column ``image_codec``) so that a reader
    knows, without opening the arrays, whether it needs ``ctspine-zarr[compact]``.
    """
    serializer = encoding.get("serializer")
    name = serializer.to_dict().get("name", "bytes") if serializer is not None else "bytes"
    if name != "bytes":
        return str(name)
    for codec in encoding.get("compressors", []):
        config = codec.to_dict()
        if config.get("name") == "blosc":
            c = config.get("configuration", {})
            return f"blosc {c.get('cname')}-{c.get('clevel')} {c.get('shuffle')}"
    return "bytes"


Shuffle = Literal["shuffle", "bitshuffle"]

#: Blosc-zstd configurations ``(shuffle, clevel)`` an image may get, cheapest to encode first
#: (on 512x512 slices: about 1.4, 1.6, 3.8 and 4.5 ms a slice on one core). c-blosc runs zstd
#: at level ``2 * clevel - 1``: 3 and 9.
BLOSC_CHOICES: Final[tuple[tuple[Shuffle, int], ...]] = (
    ("bitshuffle", 2),
    ("shuffle", 2),
    ("bitshuffle", 5),
    ("shuffle", 5),
)
#: The cheapest choice is kept when its sample bytes exceed the smallest by at most this.
BLOSC_TOLERANCE: Final = 0.01
#: The choice without a sample to measure.
DEFAULT_BLOSC: Final[tuple[Shuffle, int]] = ("shuffle", 5)


def _blosc(shuffle: Shuffle, clevel: int) -> list:
    from zarr.codecs import BloscCodec, Crc32cCodec

    return [BloscCodec(cname="zstd", clevel=clevel, shuffle=shuffle), Crc32cCodec()]


def _sample_slices(volume: Any) -> list[int]:
    """Three slice indices (at 1/4, 1/2 and 3/4 of z) on which codecs are compared."""
    n_z = volume.shape[0]
    return sorted({n_z // 4, n_z // 2, (3 * n_z) // 4})


def _blosc_sizes(volume: Any) -> dict[tuple[Shuffle, int], int]:
    """Bytes of three sample slices with each of :data:`BLOSC_CHOICES`."""
    import numcodecs
    import numpy as np

    modes = {"shuffle": numcodecs.Blosc.SHUFFLE, "bitshuffle": numcodecs.Blosc.BITSHUFFLE}
    picks = [np.ascontiguousarray(volume[z]) for z in _sample_slices(volume)]
    sizes = {}
    for shuffle, clevel in BLOSC_CHOICES:
        codec = numcodecs.Blosc(cname="zstd", clevel=clevel, shuffle=modes[shuffle])
        sizes[shuffle, clevel] = sum(len(codec.encode(s)) for s in picks)
    return sizes


def _cheapest(sizes: dict[tuple[Shuffle, int], int]) -> tuple[Shuffle, int]:
    """The first of :data:`BLOSC_CHOICES` within :data:`BLOSC_TOLERANCE` of the smallest."""
    bound = min(sizes.values()) * (1.0 + BLOSC_TOLERANCE)
    return next(choice for choice in BLOSC_CHOICES if sizes[choice] <= bound)


IMAGE_CODEC_CHOICES: Final = ("default", "compact")


def label_compressors() -> list:
    """Return the zarr v3 bytes-to-bytes codecs for ``label`` chunks (checksum last)."""
    from zarr.codecs import BloscCodec, Crc32cCodec

    return [BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"), Crc32cCodec()]


def volume_chunking(
    shape: tuple[int, ...], slices_per_shard: int = SLICES_PER_SHARD, tile: int = TILE
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """``(inner chunk, shard)`` shapes of a ``(z, y, x)`` volume of ``shape``.

    Inner chunks are ``(1, tile, tile)`` tiles (clipped to the plane; ``tile=0``: the whole
    slice); a shard holds ``slices_per_shard`` slices (at most the volume's) and the whole
    plane rounded up to whole tiles, so that one slice's tiles lie in one shard.
    """
    n_z, n_y, n_x = (int(n) for n in shape)
    if tile < 0:
        raise ValueError(f"tile must be 0 (whole slices) or a positive size, not {tile}")
    ty, tx = (n_y, n_x) if tile == 0 else (min(tile, n_y), min(tile, n_x))
    ty, tx = max(ty, 1), max(tx, 1)
    shard = (max(1, min(slices_per_shard, n_z)), -(-n_y // ty) * ty, -(-n_x // tx) * tx)
    return (1, ty, tx), shard
