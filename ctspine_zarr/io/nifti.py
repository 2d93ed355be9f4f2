"""The only nibabel user: read a NIfTI pair exactly, reorient it, capture its header.

Voxels leave this module in closest-canonical RAS+ orientation (as
``nibabel.as_closest_canonical``) and indexed ``[z, y, x]``, so that
``stored[z, y, x] == canonical[x, y, z]``.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import stat
import zlib
from dataclasses import dataclass, field
from typing import Any, cast

import fsspec
import nibabel as nib
import numpy as np
from fsspec.implementations.local import LocalFileSystem
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

from ..errors import InvalidCaseError

__all__ = [
    "MAX_VOLUME_BYTES_ENV",
    "CanonicalVolume",
    "FileFingerprint",
    "default_max_voxel_bytes",
    "read_pair",
    "read_volume",
    "smallest_exact_dtype",
]

#: Integer types tried in order for integral voxel values: the first that holds them wins.
_INT_CANDIDATES = tuple(
    np.dtype(t) for t in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")
)
_UNIT_TO_MM = {"mm": 1.0, "unknown": 1.0, "meter": 1000.0, "micron": 0.001}
_AFFINE_ATOL_MM = 1e-3


@dataclass(frozen=True)
class FileFingerprint:
    """What identifies a source file: its path, size, modification time and SHA-256."""

    path: str
    size: int
    mtime: float | None
    sha256: str

    def to_json(self) -> dict[str, Any]:
        """Return the fingerprint as a JSON-able dict."""
        return {"path": self.path, "size": self.size, "mtime": self.mtime, "sha256": self.sha256}


@dataclass
class CanonicalVolume:
    """One NIfTI file read in full and reoriented to closest-canonical RAS+, ``[z, y, x]``."""

    #: ``[z, y, x]`` voxels; may be a read-only, non-contiguous view of the file's bytes
    data: np.ndarray
    affine: np.ndarray
    source_affine: np.ndarray
    ornt: np.ndarray
    source_shape: tuple[int, ...]
    header_bytes: bytes
    fingerprint: FileFingerprint
    warnings: list[str] = field(default_factory=list)

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Voxel size in mm along ``(z, y, x)``."""
        sx, sy, sz = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        return float(sz), float(sy), float(sx)

    @property
    def has_nonfinite(self) -> bool:
        """Whether a float image holds NaN or Inf (kept exactly, flagged in the catalogue)."""
        return self.data.dtype.kind == "f" and not bool(np.isfinite(self.data).all())


def smallest_exact_dtype(values: np.ndarray) -> np.dtype:
    """Return the smallest dtype that holds every value of ``values`` exactly.

    Integral values get the first of int8, uint8, int16, uint16, int32, uint32, int64,
    uint64 that holds their range; other values float32 when that is exact, else float64.

    Parameters
    ----------
    values
        Scaled voxel values, of any real dtype.

    Returns
    -------
    numpy.dtype
    """
    if values.size == 0:
        return np.dtype("int16")
    if values.dtype == np.bool_:
        return np.dtype("uint8")
    if values.dtype.kind in "iu":
        low, high = int(values.min()), int(values.max())
    elif values.dtype.kind == "f":
        finite = bool(np.isfinite(values).all())
        if not finite or not np.array_equal(np.trunc(values), values):
            if values.dtype.itemsize <= 4:
                return np.dtype("float32")
            as32 = values.astype(np.float32)
            exact = np.array_equal(as32.astype(values.dtype), values, equal_nan=True)
            return np.dtype("float32") if exact else np.dtype("float64")
        low, high = int(values.min()), int(values.max())
    else:
        raise TypeError(f"voxel values must be real numbers, but the dtype is {values.dtype}")
    for candidate in _INT_CANDIDATES:
        info = np.iinfo(candidate)
        if info.min <= low and high <= info.max:
            return candidate
    return np.dtype("float64")


def _read_bytes(
    path: str, fs: fsspec.AbstractFileSystem, case_id: str, cap: int
) -> tuple[bytes, dict[str, Any]]:
    """Read a regular file of at most ``cap`` bytes; refuse anything else before opening it."""
    if isinstance(fs, LocalFileSystem):
        return _read_local(path, case_id, cap)
    try:
        info = fs.info(path)
    except FileNotFoundError as err:
        raise InvalidCaseError(case_id, path, "file not found", "check the raw tree") from err
    if info.get("type", "file") != "file":
        raise InvalidCaseError(
            case_id,
            path,
            f"not a regular file (a {info.get('type')})",
            "remove it from the raw tree",
        )
    _check_file_size(int(info.get("size") or 0), path, case_id, cap)
    try:
        data = fs.cat_file(path)
    except FileNotFoundError as err:
        raise InvalidCaseError(case_id, path, "file not found", "check the raw tree") from err
    return data, info


def _read_local(path: str, case_id: str, cap: int) -> tuple[bytes, dict[str, Any]]:
    """Read a local regular file (symlinks followed); FIFOs, sockets, devices are refused.

    The file is checked with ``stat`` before it is opened, and opened non-blocking and
    checked again, so a FIFO swapped in between cannot hang the read.
    """
    try:
        _check_regular(os.stat(path).st_mode, path, case_id)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError as err:
        raise InvalidCaseError(case_id, path, "file not found", "check the raw tree") from err
    with open(fd, "rb", closefd=True) as handle:
        stat_result = os.fstat(fd)
        _check_regular(stat_result.st_mode, path, case_id)
        _check_file_size(stat_result.st_size, path, case_id, cap)
        data = handle.read()
    info = {"size": len(data), "mtime": stat_result.st_mtime, "type": "file"}
    return data, info


_NOT_REGULAR = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _check_regular(mode: int, path: str, case_id: str) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _NOT_REGULAR if test(mode)), "not a regular file")
    raise InvalidCaseError(
        case_id, path, f"not a regular file but {kind}", "remove it from the raw tree"
    )


def _check_file_size(size: int, path: str, case_id: str, cap: int) -> None:
    if size > cap:
        raise InvalidCaseError(
            case_id,
            path,
            f"the file is {_bytes(size)}, more than the {_bytes(cap)} memory cap per volume",
            _RAISE_CAP,
        )


_zlib: Any
try:  # ISA-L's inflate is about twice as fast as zlib's; both check every member's CRC
    from isal import isal_zlib as _zlib

    _INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, cast(type, _zlib.error), OSError)
except ImportError:  # pragma: no cover - isal is a dependency; keep working without it
    _zlib = zlib
    _INFLATE_ERRORS = (zlib.error, OSError)

_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_WBITS = 31
#: A deflate stream expands at most 1032:1 (258 bytes per 2 bits of the last code).
DEFLATE_MAX_RATIO = 1032


#: Output block of the counting pass past the kept bytes (decompressed, then discarded).
_COUNT_BLOCK = 1 << 24
#: Input fed per call in the counting pass (zlib copies the unconsumed input each call).
_COUNT_INPUT = 1 << 20


def _inflate(data: bytes, keep: int, limit: int, path: str, case_id: str) -> bytes:
    """Decompress every gzip member, keep the first ``keep`` bytes, count the rest.

    Every member's CRC and length are checked. Past ``keep`` bytes (the header's claim),
    the stream is decompressed in blocks that are counted and discarded, and refused as
    soon as it passes ``limit`` bytes: at most ``keep`` + one block is ever held.
    """
    parts: list[bytes] = []
    kept = total = pos = 0
    view = memoryview(data)
    while True:
        inflater = _zlib.decompressobj(wbits=_GZIP_WBITS)
        while not inflater.eof:
            keeping = kept < keep
            # keeping: the whole input in one call, so the kept bytes are one buffer
            piece = view[pos:] if keeping else view[pos : pos + _COUNT_INPUT]
            budget = min(keep - kept if keeping else _COUNT_BLOCK, limit - total + 1)
            chunk = inflater.decompress(piece, budget)
            pos += len(piece) - len(inflater.unconsumed_tail) - len(inflater.unused_data)
            total += len(chunk)
            if keeping:
                parts.append(chunk)
                kept += len(chunk)
            if total > limit:
                raise InvalidCaseError(
                    case_id,
                    path,
                    f"decompresses to more than the {_bytes(limit)} memory cap per volume",
                    _RAISE_CAP,
                )
            if not chunk and pos >= len(view):
                break
        if not inflater.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
        rest = view[pos:]
        if not rest or not any(rest):  # trailing zeros: padding, as gzip.decompress allows
            break
        if bytes(rest[:2]) != _GZIP_MAGIC:
            raise zlib.error(f"{len(rest)} bytes of trailing garbage after the last member")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _gunzip(data: bytes, path: str, case_id: str, keep: int, limit: int) -> bytes:
    """The first ``keep`` decompressed bytes of a file of at most ``limit`` (plain: as is)."""
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return _inflate(data, keep, limit, path, case_id)
    except EOFError as err:
        raise InvalidCaseError(
            case_id,
            path,
            f"truncated gzip stream ({len(data)} bytes on disk): {err}",
            "download the file again",
        ) from err
    except _INFLATE_ERRORS as err:
        raise InvalidCaseError(
            case_id, path, f"corrupt gzip stream: {err}", "download the file again"
        ) from err


def _head(data: bytes, size: int) -> bytes:
    """The first ``size`` decompressed bytes of a gzip file (``data`` itself if plain)."""
    if data[:2] != _GZIP_MAGIC:
        return data[:size]
    out = b""
    pos = 0
    view = memoryview(data)
    try:
        while len(out) < size and bytes(view[pos : pos + 2]) == _GZIP_MAGIC:
            inflater = _zlib.decompressobj(wbits=_GZIP_WBITS)
            step = 1 << 12
            while len(out) < size and not inflater.eof and pos < len(view):
                piece = view[pos : pos + step]  # a little input: the header is at the start
                out += inflater.decompress(piece, size - len(out))
                pos += len(piece) - len(inflater.unconsumed_tail) - len(inflater.unused_data)
                step *= 2
            if not inflater.eof:
                break
    except _INFLATE_ERRORS:
        pass  # the full decompression names the damage
    return out


#: Environment variable that sets the default memory cap per volume, in bytes.
MAX_VOLUME_BYTES_ENV = "CTSPINE_MAX_VOLUME_BYTES"
_RAISE_CAP = (
    f"raise max_voxel_bytes or the environment variable {MAX_VOLUME_BYTES_ENV} if it is genuine"
)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def default_max_voxel_bytes() -> int:
    """The memory cap per volume: ``$CTSPINE_MAX_VOLUME_BYTES``, else min(16 GiB, RAM / 4).

    The cap bounds the decompressed size of one NIfTI file (header and voxels), and so
    the memory one read may allocate. The variable takes a byte count, optionally with a
    binary unit: ``8589934592``, ``8G``, ``8GiB``, ``512MiB``.

    Raises
    ------
    ValueError
        When the variable is set to something else.
    """
    text = os.environ.get(MAX_VOLUME_BYTES_ENV, "").strip()
    if text:
        match = re.fullmatch(r"(\d+)\s*([KMGT]?)(?:i?B)?", text, flags=re.IGNORECASE)
        if match is None or int(match.group(1)) <= 0:
            raise ValueError(
                f"{MAX_VOLUME_BYTES_ENV}={text!r} is not a positive byte count "
                "such as 8589934592, 8G or 512MiB"
            )
        return int(match.group(1)) * _UNITS[match.group(2).upper()]
    return min(16 << 30, _physical_memory() // 4)


def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return 64 << 30


def _bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


@dataclass(frozen=True)
class _Claim:
    """What a header says the file holds: shape, voxel type and where the voxels start."""

    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int

    @property
    def voxel_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def describe(self) -> str:
        shape = "x".join(str(n) for n in self.shape)
        return f"{shape} {self.dtype.name} = {_bytes(self.voxel_bytes)} of voxels"


def _header_claim(head: bytes, path: str, case_id: str) -> _Claim:
    """Parse the header's dims, voxel type and offset, refusing impossible ones by name."""
    if len(head) < 348:
        raise InvalidCaseError(
            case_id,
            path,
            f"only {len(head)} bytes, shorter than a NIfTI header",
            "download the file again",
        )
    klass = _header_class(head, path, case_id)
    try:
        header = klass.from_fileobj(io.BytesIO(head), check=False)
    except Exception as err:  # nibabel raises many kinds for a bad header
        raise InvalidCaseError(case_id, path, f"unreadable NIfTI header: {err}") from err
    dim = [int(v) for v in header["dim"]]
    if not 1 <= dim[0] <= 7:
        raise InvalidCaseError(
            case_id, path, f"dim[0] = {dim[0]}: the number of axes must be 1..7", "fix the header"
        )
    for axis in range(1, dim[0] + 1):
        if dim[axis] < 1:
            raise InvalidCaseError(
                case_id,
                path,
                f"dim[{axis}] = {dim[axis]}: every axis needs at least one voxel",
                "fix the header",
            )
    try:
        dtype = header.get_data_dtype()
    except Exception as err:
        raise InvalidCaseError(
            case_id, path, f"unknown voxel type (datatype code {int(header['datatype'])})"
        ) from err
    offset = max(int(header.get_data_offset()), header.sizeof_hdr)
    return _Claim(tuple(dim[1 : dim[0] + 1]), dtype, offset)


def _header_class(head: bytes, path: str, case_id: str) -> type[nib.Nifti1Header]:
    sizes = {int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")}
    if 348 in sizes:
        return nib.Nifti1Header
    if 540 in sizes:
        return nib.Nifti2Header
    raise InvalidCaseError(
        case_id,
        path,
        "not a NIfTI-1 or NIfTI-2 file (sizeof_hdr is neither 348 nor 540)",
        "convert it to NIfTI",
    )


def _check_claim(claim: _Claim, data: bytes, path: str, case_id: str, cap: int) -> None:
    """Refuse a header whose voxels pass the cap or cannot fit in the file, before reading."""
    need = claim.offset + claim.voxel_bytes
    if need > cap:
        raise InvalidCaseError(
            case_id,
            path,
            f"the header claims {claim.describe()}, more than the {_bytes(cap)} memory cap "
            "per volume",
            _RAISE_CAP,
        )
    gzipped = data[:2] == _GZIP_MAGIC
    most = len(data) * DEFLATE_MAX_RATIO if gzipped else len(data)
    if need > most:
        what = f"{_bytes(len(data))} of gzip can hold at most" if gzipped else "the file holds"
        raise InvalidCaseError(
            case_id,
            path,
            f"the header claims {claim.describe()} from byte {claim.offset}, but "
            f"{what} {_bytes(most)}",
            "the header is wrong or the file is truncated; download it again",
        )


def _check_length(claim: _Claim, raw: bytes, path: str, case_id: str) -> None:
    need = claim.offset + claim.voxel_bytes
    if len(raw) < need:
        raise InvalidCaseError(
            case_id,
            path,
            f"the header claims {claim.describe()} from byte {claim.offset}, but the "
            f"decompressed file holds only {len(raw)} bytes ({need - len(raw)} missing)",
            "the header is wrong or the file is truncated; download it again",
        )


def _image_from_bytes(raw: bytes, path: str, case_id: str) -> nib.Nifti1Image:
    if len(raw) < 348:
        raise InvalidCaseError(
            case_id,
            path,
            f"only {len(raw)} bytes, shorter than a NIfTI header",
            "download the file again",
        )
    klass: type[nib.Nifti1Image] = (
        nib.Nifti2Image
        if _header_class(raw, path, case_id) is nib.Nifti2Header
        else nib.Nifti1Image
    )
    try:
        img = klass.from_bytes(raw)
    except Exception as err:  # nibabel raises many kinds for a bad header
        raise InvalidCaseError(case_id, path, f"unreadable NIfTI header: {err}") from err
    return img


def _voxel_values(img: nib.Nifti1Image, raw: bytes, path: str, case_id: str) -> np.ndarray:
    shape = img.shape
    if len(shape) > 3 and any(n != 1 for n in shape[3:]):
        raise InvalidCaseError(
            case_id,
            path,
            f"a {len(shape)}D series of shape {shape}, not a single volume",
            "split the series and ingest one volume per case",
        )
    if len(shape) < 3:
        raise InvalidCaseError(case_id, path, f"{len(shape)}D data of shape {shape}, not 3D")
    dtype = img.get_data_dtype()
    if dtype.kind not in "iufb" or dtype.names is not None:
        raise InvalidCaseError(
            case_id, path, f"voxel type {dtype} is not a real scalar", "store one real channel"
        )
    try:
        values = _integral_scaled(img, raw)
        if values is None:
            values = np.asanyarray(img.dataobj)
    except Exception as err:
        raise InvalidCaseError(
            case_id, path, f"voxel data unreadable: {err}", "download the file again"
        ) from err
    return values.reshape(shape[:3])


def _integral_scaled(img: nib.Nifti1Image, raw: bytes) -> np.ndarray | None:
    """Return ``raw * slope + inter`` in integers when that equals nibabel's float result.

    For 8- and 16-bit raw voxels with integral slope and intercept, nibabel's float
    scaling is exact, so integer arithmetic gives the same values without a float copy
    of the volume and without the float passes of :func:`smallest_exact_dtype`. Without
    scaling the result is a read-only view of ``raw`` (no copy). Returns None for every
    other case (nibabel then scales).
    """
    proxy = cast(Any, img.dataobj)
    slope, inter = float(proxy.slope), float(proxy.inter)
    raw_dtype = img.get_data_dtype()
    if raw_dtype.kind not in "iu" or raw_dtype.itemsize > 2:
        return None
    if not (slope.is_integer() and inter.is_integer()) or slope == 0:
        return None
    unscaled = _unscaled_view(img, raw)
    if unscaled is None:
        return None
    if slope == 1 and inter == 0:
        return unscaled
    lowest, highest = int(unscaled.min()), int(unscaled.max())
    low, high = sorted((lowest * int(slope) + int(inter), highest * int(slope) + int(inter)))
    # a dtype that holds the result, the stored values, and the slope and intercept
    work = smallest_exact_dtype(np.array([low, high, lowest, highest, int(slope), int(inter)]))
    values = unscaled.astype(work)
    if slope != 1:
        values *= work.type(int(slope))
    values += work.type(int(inter))
    return values


def _unscaled_view(img: nib.Nifti1Image, raw: bytes) -> np.ndarray | None:
    """The file's stored voxels as a read-only view of ``raw`` (None: let nibabel read)."""
    proxy = cast(Any, img.dataobj)
    shape = tuple(int(n) for n in img.shape)
    dtype = img.get_data_dtype()
    offset, count = int(proxy.offset), int(np.prod(shape))
    if getattr(proxy, "order", "F") != "F" or offset + count * dtype.itemsize > len(raw):
        return None  # nibabel's own read then raises its message for a short file
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape, order="F")


def _check_geometry(img: nib.Nifti1Image, raw: bytes, path: str, case_id: str) -> list[str]:
    header = img.header
    notes: list[str] = []
    # the file's own pixdim: nibabel silently replaces a zero voxel size by 1 when it loads
    size = header.sizeof_hdr
    on_disk = type(header)(raw[:size], endianness=header.endianness, check=False)
    zooms = np.asarray(on_disk["pixdim"][1:4], dtype=float)
    if not (np.isfinite(zooms).all() and (zooms > 0).all()):
        raise InvalidCaseError(
            case_id,
            path,
            f"voxel sizes must be positive and finite, but pixdim is {zooms.tolist()}",
            "fix pixdim[1:4] in the header",
        )
    qcode, scode = int(header["qform_code"]), int(header["sform_code"])
    if qcode > 0 and scode > 0:
        qform, sform = header.get_qform(), header.get_sform()
        if not np.allclose(qform, sform, atol=1e-2, rtol=1e-4):
            raise InvalidCaseError(
                case_id,
                path,
                f"qform and sform disagree (largest difference "
                f"{np.abs(qform - sform).max():.4g} mm)",
                "set qform_code or sform_code to 0 for the one that is wrong",
            )
    if qcode == 0 and scode == 0:
        notes.append("no geometry: qform_code and sform_code are both 0")
    affine = img.affine
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InvalidCaseError(case_id, path, "the affine is singular or not finite")
    return notes


def read_volume(
    path: str,
    *,
    case_id: str,
    fs: fsspec.AbstractFileSystem | None = None,
    label: bool = False,
    max_voxel_bytes: int | None = None,
) -> CanonicalVolume:
    """Read one NIfTI file in full, check it, and reorient it to canonical ``[z, y, x]``.

    Parameters
    ----------
    path
        Path of the ``.nii`` or ``.nii.gz`` file in ``fs`` (local by default).
    case_id
        The case the file belongs to, for error messages.
    fs
        fsspec filesystem to read from.
    label
        Whether the file is a label map (stored as uint8) rather than an image.
    max_voxel_bytes
        Memory cap: the most bytes the file may hold once decompressed (header included).
        Default: :func:`default_max_voxel_bytes` (``$CTSPINE_MAX_VOLUME_BYTES``, else
        min(16 GiB, RAM / 4)).

    Returns
    -------
    CanonicalVolume

    Raises
    ------
    InvalidCaseError
        When the file is not a regular file, unreadable, corrupt, 4D, larger than the cap,
        its header claims more voxels than it holds, or its values cannot be stored exactly.
        Size claims are checked before any voxel is allocated.
    """
    fs = fs or fsspec.filesystem("file")
    cap = default_max_voxel_bytes() if max_voxel_bytes is None else int(max_voxel_bytes)
    data, info = _read_bytes(path, fs, case_id, cap)
    claim = _header_claim(_head(data, 540), path, case_id)
    _check_claim(claim, data, path, case_id, cap)
    fingerprint = FileFingerprint(
        path=path,
        size=len(data),
        mtime=_mtime(info),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    raw = _gunzip(data, path, case_id, claim.offset + claim.voxel_bytes, cap)
    del data
    _check_length(claim, raw, path, case_id)
    img = _image_from_bytes(raw, path, case_id)
    notes = _check_geometry(img, raw, path, case_id)
    values = _voxel_values(img, raw, path, case_id)
    # the file's own bytes before the voxels (header and extensions); nibabel resets
    # vox_offset and scl_slope/scl_inter in the header of a loaded image
    header_bytes = raw[: int(cast(Any, img.dataobj).offset)]
    del raw
    if label:
        values = _label_values(values, path, case_id)
        target = np.dtype("uint8")
    else:
        target = smallest_exact_dtype(values)

    unit = img.header.get_xyzt_units()[0]
    scale = _UNIT_TO_MM.get(unit, 1.0)
    source_affine = img.affine.copy()
    source_affine[:3, :] *= scale
    ornt = io_orientation(source_affine)
    canonical = apply_orientation(values, ornt)
    affine = source_affine @ inv_ornt_aff(ornt, values.shape)
    zyx = canonical.transpose(2, 1, 0)
    if zyx.dtype == target:
        # no narrowing: a view of the file's voxels (read-only). A flip or an axis swap
        # costs nothing here; each slice is copied once, when it is encoded
        out = zyx
    else:
        out = np.empty(zyx.shape, dtype=target)
        np.copyto(out, zyx, casting="unsafe")
    return CanonicalVolume(
        data=out,
        affine=affine,
        source_affine=source_affine,
        ornt=ornt,
        source_shape=tuple(int(n) for n in img.shape),
        header_bytes=bytes(header_bytes),
        fingerprint=fingerprint,
        warnings=notes,
    )


def _mtime(info: dict[str, Any]) -> float | None:
    for key in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    return None


def _label_values(values: np.ndarray, path: str, case_id: str) -> np.ndarray:
    """Return the label map, every value an integer 0..255, or raise naming what is wrong.

    Integer and boolean maps come back as they are, after a range check (the caller narrows
    them to uint8 in the copy that reorients them); float maps as uint8.
    """
    if values.dtype == np.uint8:
        return values
    if values.dtype.kind != "f":
        if values.size and (int(values.min()) < 0 or int(values.max()) > 255):
            raise _labels_out_of_range(values, path, case_id)
        return values
    # the usual float map (integers in range): one cast and one comparison
    with np.errstate(invalid="ignore"):  # NaN, inf and wrapped values: found just below
        as_uint8 = values.astype(np.uint8)
    if np.array_equal(as_uint8, values):
        return as_uint8
    if np.isnan(values).any():
        raise InvalidCaseError(
            case_id, path, "the label map holds NaN", "label voxels must be integers 0..255"
        )
    if not np.array_equal(np.trunc(values), values):
        bad = values[np.trunc(values) != values][:5]
        raise InvalidCaseError(
            case_id,
            path,
            f"label values must be integral, but found {bad.tolist()}",
            "round the label map or re-export it as an integer type",
        )
    raise _labels_out_of_range(values, path, case_id)


def _labels_out_of_range(values: np.ndarray, path: str, case_id: str) -> InvalidCaseError:
    return InvalidCaseError(
        case_id,
        path,
        f"label values must lie in 0..255, but range from {values.min()} to {values.max()}",
        "relabel with VerSe numbers (1-28)",
    )


def read_pair(
    image_path: str,
    label_path: str,
    *,
    case_id: str,
    fs: fsspec.AbstractFileSystem | None = None,
    max_voxel_bytes: int | None = None,
) -> tuple[CanonicalVolume, CanonicalVolume]:
    """Read and validate an image and its label map.

    Parameters
    ----------
    image_path, label_path
        Paths of the two files in ``fs``.
    case_id
        The case, for error messages.
    fs
        fsspec filesystem to read from (local by default).
    max_voxel_bytes
        Memory cap per file, as in :func:`read_volume`.

    Returns
    -------
    tuple of CanonicalVolume
        ``(image, label)``, both in canonical ``[z, y, x]`` orientation.

    Raises
    ------
    InvalidCaseError
        When either file is bad or the two do not match in shape or affine.
    """
    image = read_volume(image_path, case_id=case_id, fs=fs, max_voxel_bytes=max_voxel_bytes)
    label = read_volume(
        label_path, case_id=case_id, fs=fs, label=True, max_voxel_bytes=max_voxel_bytes
    )
    if image.source_shape[:3] != label.source_shape[:3]:
        raise InvalidCaseError(
            case_id,
            label_path,
            f"label shape {label.source_shape} must equal image shape {image.source_shape}",
            "resample the label map onto the image grid",
        )
    if not np.allclose(image.source_affine, label.source_affine, atol=_AFFINE_ATOL_MM, rtol=1e-5):
        diff = np.abs(image.source_affine - label.source_affine).max()
        raise InvalidCaseError(
            case_id,
            label_path,
            f"label affine differs from the image affine by up to {diff:.4g} mm",
            "give both files the same geometry",
        )
    return image, label
