"""The compact lossless image codec: JPEG-LS (CharLS through imagecodecs) as a zarr v3 codec.

``ingest(..., codec="compact")`` (``--codec compact``) stores image chunks with
:class:`JpegLsCodec`, an array-to-bytes codec named ``ctspine_zarr.jpegls``, followed by
``crc32c``. Each chunk (one axial slice) is one lossless JPEG-LS image (``NEAR=0``): 0.52x
gzip-6 on a real 512x512 CT slice against 0.80x for the portable default, at about 5x its
decoding time (``docs/codecs.md``). JPEG-LS is not smaller on every image (small or very
noisy slices), so ``compact`` keeps it for a case only when three sample slices of the case
are smaller with it than with the default Blosc (:func:`ctspine_zarr.schema.image_encoding`).

JPEG-LS codes unsigned samples of 2 to 16 bits. A signed chunk is offset by half its range
(int16 ``v`` is coded as the uint16 ``v + 32768``, which is ``v XOR 0x8000`` read unsigned),
so every value round-trips exactly; uint8 and uint16 are coded as they are. Other dtypes
(int32, float) cannot be coded and keep the default codec (:func:`supports`).

Reading such a store needs this package and imagecodecs (``pip install
"ctspine-zarr[compact]"``) in every reader: the codec is found by zarr through the
``zarr.codecs`` entry point this package declares, so plain ``zarr.open_array`` and
``xr.open_zarr`` work without importing anything. Without imagecodecs a read raises an
``ImportError`` that says what to install; no other Zarr implementation reads it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from zarr.abc.codec import ArrayBytesCodec

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer
    from zarr.core.chunk_grids import ChunkGrid
    from zarr.core.dtype.wrapper import TBaseDType, TBaseScalar, ZDType

__all__ = ["JPEGLS_NAME", "JpegLsCodec", "decode", "encode", "supports"]

#: The codec's name in the array metadata (and its ``zarr.codecs`` entry point).
JPEGLS_NAME: Final = "ctspine_zarr.jpegls"
#: dtypes JPEG-LS codes losslessly (through the sign offset for the signed ones).
_SUPPORTED: Final = {np.dtype(t) for t in ("int8", "uint8", "int16", "uint16")}


def supports(dtype: Any) -> bool:
    """Whether :class:`JpegLsCodec` codes arrays of ``dtype`` (8- and 16-bit integers)."""
    return np.dtype(dtype).newbyteorder("=") in _SUPPORTED


def _imagecodecs() -> Any:
    try:
        import imagecodecs
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"this store's images use the compact codec {JPEGLS_NAME!r}, which needs "
            "imagecodecs: pip install 'ctspine-zarr[compact]'"
        ) from error
    return imagecodecs


def _unsigned(dtype: np.dtype[Any]) -> tuple[np.dtype[Any], int]:
    """The unsigned dtype JPEG-LS codes for ``dtype``, and the sign bit to flip (0: none)."""
    unsigned = np.dtype(f"u{dtype.itemsize}")
    return unsigned, (1 << (8 * dtype.itemsize - 1)) if dtype.kind == "i" else 0


def encode(values: np.ndarray) -> bytes:
    """Return the lossless JPEG-LS image of ``values`` (its rows: all axes but the last).

    Parameters
    ----------
    values
        An int8, uint8, int16 or uint16 array of any byte order, e.g. a ``(1, Y, X)`` slice.
    """
    dtype = values.dtype.newbyteorder("=")
    if not supports(dtype):
        raise ValueError(f"{JPEGLS_NAME} codes int8, uint8, int16 and uint16 data, not {dtype}")
    unsigned, sign = _unsigned(dtype)
    width = values.shape[-1] if values.ndim else 1
    plane = np.ascontiguousarray(values, dtype=dtype).view(unsigned).reshape(-1, width)
    if sign:
        plane = np.bitwise_xor(plane, sign)
    return bytes(_imagecodecs().jpegls_encode(plane, level=0))


def decode(data: Any, dtype: np.dtype[Any], shape: tuple[int, ...]) -> np.ndarray:
    """Return the values of ``dtype`` and ``shape`` that :func:`encode` coded as ``data``.

    Raises ValueError when the image does not hold that many samples of that width.
    """
    dtype = np.dtype(dtype)
    unsigned, sign = _unsigned(dtype)
    plane = np.asarray(_imagecodecs().jpegls_decode(np.frombuffer(data, dtype=np.uint8)))
    if plane.dtype != unsigned or plane.size != int(np.prod(shape)):
        raise ValueError(
            f"a {JPEGLS_NAME} chunk decoded to {plane.dtype} {plane.shape}, but the array "
            f"holds {dtype} chunks of shape {tuple(shape)}"
        )
    if sign:
        np.bitwise_xor(plane, sign, out=plane)
    native = dtype.newbyteorder("=")
    values = plane.view(native).reshape(shape)
    if native != dtype:
        values = values.astype(dtype)  # an array of a non-native dtype
    return values


@dataclass(frozen=True)
class JpegLsCodec(ArrayBytesCodec):
    """Lossless JPEG-LS of each chunk's last two axes (a ``(1, Y, X)`` slice: one image)."""

    is_fixed_size = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Make the codec from its metadata (no configuration)."""
        if not isinstance(data, dict) or data.get("name") != JPEGLS_NAME:
            raise ValueError(f"expected the codec {JPEGLS_NAME!r}, got {data!r}")
        if data.get("configuration"):
            raise ValueError(f"{JPEGLS_NAME} takes no configuration, got {data!r}")
        return cls()

    def to_dict(self) -> dict[str, Any]:
        """The codec's metadata."""
        return {"name": JPEGLS_NAME}

    def validate(
        self,
        *,
        shape: tuple[int, ...],
        dtype: ZDType[TBaseDType, TBaseScalar],
        chunk_grid: ChunkGrid,
    ) -> None:
        """Refuse dtypes JPEG-LS cannot code losslessly."""
        native = dtype.to_native_dtype()
        if not supports(native):
            raise ValueError(
                f"{JPEGLS_NAME} codes int8, uint8, int16 and uint16 arrays, not {native}"
            )

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        dtype = np.dtype(chunk_spec.dtype.to_native_dtype())
        values = decode(chunk_bytes.as_numpy_array(), dtype, tuple(chunk_spec.shape))
        return chunk_spec.prototype.nd_buffer.from_numpy_array(values)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        encoded = encode(np.asarray(chunk_array.as_numpy_array()))
        return chunk_spec.prototype.buffer.from_bytes(encoded)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        return await asyncio.to_thread(self._encode_sync, chunk_array, chunk_spec)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        """Not known before encoding (a variable-size codec)."""
        raise NotImplementedError
