"""The store format as data: names, dims, attribute keys, label names, encodings.

Every other module takes its names from here, so the format is defined in one place.
See ``docs/format.md`` for the prose description.
"""

from __future__ import annotations

from typing import Any, Final, Literal

#: Version of the on-disk layout, stored in the root attrs under :data:`FORMAT_KEY`.
FORMAT_VERSION: Final = 1
FORMAT_KEY: Final = "ctspine_zarr_format"

#: Name of the group holding one sub-group per case.
CASES_GROUP: Final = "cases"

# Dimensions --------------------------------------------------------------------
CASE_DIM: Final = "case"
VOLUME_DIMS: Final = ("z", "y", "x")
VERTEBRA_DIM: Final = "vertebra"
AXIS_DIM: Final = "axis"

# Per-case variables --------------------------------------------------------------
IMAGE: Final = "image"
LABEL: Final = "label"
SLICE_VERTEBRAE: Final = "slice_vertebrae"
IMAGE_HEADER: Final = "image_nifti_header"
LABEL_HEADER: Final = "label_nifti_header"

# Split names (the Hugging Face loader's names) and the split-file sections they come from.
SPLIT_SECTIONS: Final = {
    "trainset": "train",
    "test_public": "validation",
    "test_private": "test",
}
UNASSIGNED: Final = "unassigned"
SPLITS: Final = ("train", "validation", "test", UNASSIGNED)

#: VerSe label values and their names (0 is background).
VERTEBRA_NAMES: Final[dict[int, str]] = {
    **{i: f"C{i}" for i in range(1, 8)},
    **{i + 7: f"T{i}" for i in range(1, 13)},
    **{i + 19: f"L{i}" for i in range(1, 7)},
    26: "sacrum",
    27: "coccyx",
    28: "T13",
}
VERTEBRA_LABELS: Final = tuple(VERTEBRA_NAMES)
MAX_LABEL: Final = max(VERTEBRA_LABELS)
L6_LABEL: Final = 25
T13_LABEL: Final = 28
#: Every VerSe label in cranio-caudal order: T13 between T12 and L1, L6 after L5.
ANATOMICAL_ORDER: Final[tuple[int, ...]] = (*range(1, 20), T13_LABEL, *range(20, 28))

#: The four CTSpine1K sources, as folder names of the Hugging Face copy.
SOURCES: Final = ("COLONOG", "HNSCC-3DCT-RT", "MSD-T10", "COVID-19")

# Encodings -----------------------------------------------------------------------
#: Axial slices per shard: a case is a handful of objects, a slice read one range request.
SLICES_PER_SHARD: Final = 32
#: Attribute (case group) that says the case is complete; written last.
COMPLETE_KEY: Final = "complete"


def image_compressors(codec: str = "default", *, sample: Any = None) -> list:
    """Return the zarr v3 bytes-to-bytes codecs for ``image`` chunks (checksum last).

    Parameters
    ----------
    codec
        ``"default"``: Blosc-zstd level 5, readable by any Zarr v3 reader. Byte shuffle
        suits real CT best (0.80x gzip-6 on a real 512x512 slice against 0.87x with bit
        shuffle), bit shuffle suits smooth, air-poor volumes; see ``docs/codecs.md``.
    sample
        The case's ``[z, y, x]`` voxels: when given, the shuffle is chosen per case by
        compressing three slices both ways (about 1% of the work of writing the case).

    Returns
    -------
    list of zarr codecs
    """
    from zarr.codecs import BloscCodec, Crc32cCodec

    if codec != "default":
        raise ValueError(f"codec must be one of {IMAGE_CODEC_CHOICES}, but is {codec!r}")
    shuffle: Literal["shuffle", "bitshuffle"] = (
        "shuffle" if sample is None else _smaller_shuffle(sample)
    )
    return [BloscCodec(cname="zstd", clevel=5, shuffle=shuffle), Crc32cCodec()]


def _smaller_shuffle(volume: Any) -> Literal["shuffle", "bitshuffle"]:
    """Return the Blosc shuffle (byte or bit) that compresses three sample slices smaller."""
    import numcodecs
    import numpy as np

    n_z = volume.shape[0]
    picks = sorted({n_z // 4, n_z // 2, (3 * n_z) // 4})
    sizes = {}
    modes = {"shuffle": numcodecs.Blosc.SHUFFLE, "bitshuffle": numcodecs.Blosc.BITSHUFFLE}
    for name, mode in modes.items():
        codec = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=mode)
        sizes[name] = sum(len(codec.encode(np.ascontiguousarray(volume[z]))) for z in picks)
    return "shuffle" if sizes["shuffle"] <= sizes["bitshuffle"] else "bitshuffle"


IMAGE_CODEC_CHOICES: Final = ("default",)


def label_compressors() -> list:
    """Return the zarr v3 bytes-to-bytes codecs for ``label`` chunks (checksum last)."""
    from zarr.codecs import BloscCodec, Crc32cCodec

    return [BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"), Crc32cCodec()]
