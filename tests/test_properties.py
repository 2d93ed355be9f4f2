"""Hypothesis round trips: random NIfTI files through ingest and export, voxel for voxel."""

from __future__ import annotations

import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nibabel.orientations import inv_ornt_aff

import ctspine_zarr
from ctspine_zarr.io.export import to_nifti

DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "float32", "float64")


@st.composite
def nifti_cases(draw: st.DrawFn) -> dict:
    shape = tuple(draw(st.integers(2, 7)) for _ in range(3))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    order = draw(st.permutations([0, 1, 2]))
    flips = [draw(st.sampled_from([-1, 1])) for _ in range(3)]
    zooms = [draw(st.sampled_from([0.5, 0.8, 1.0, 2.5, 5.0])) for _ in range(3)]
    scaling = draw(st.sampled_from([None, (1.0, -1024.0), (2.5, -10.0), (0.5, 0.0)]))
    return {
        "shape": shape,
        "dtype": dtype,
        "ornt": np.array([[order[i], flips[i]] for i in range(3)], dtype=float),
        "zooms": zooms,
        "scaling": scaling,
        "big_endian": draw(st.booleans()),
        "nifti2": draw(st.booleans()),
        "gz": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


def _write(case: dict, root: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(case["seed"])
    dtype: np.dtype = case["dtype"]
    if dtype.kind == "f":
        raw = rng.normal(0, 300, case["shape"]).astype(dtype)
    else:
        info = np.iinfo(dtype)
        raw = rng.integers(info.min, int(info.max) + 1, case["shape"], dtype=np.int64).astype(dtype)
    label = rng.integers(0, 29, case["shape"]).astype(np.uint8)
    base = np.diag([*case["zooms"], 1.0]) @ np.array(
        [[1, 0, 0, -10], [0, 1, 0, 20], [0, 0, 1, 5], [0, 0, 0, 1.0]]
    )
    affine = base @ inv_ornt_aff(case["ornt"], case["shape"])
    klass = nib.Nifti2Image if case["nifti2"] else nib.Nifti1Image
    header_class = nib.Nifti2Header if case["nifti2"] else nib.Nifti1Header
    ext = ".nii.gz" if case["gz"] else ".nii"
    paths = []
    for kind, data in (("volumes", raw), ("labels", label)):
        header = header_class(endianness=">" if case["big_endian"] else "<")
        img = klass(data, affine, header=header)
        if kind == "volumes" and case["scaling"] is not None:
            img.header.set_slope_inter(*case["scaling"])
        folder = root / "rawdata" / kind / "SRC"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (f"case.1{ext}" if kind == "volumes" else f"case.1_seg{ext}")
        nib.save(img, path)
        paths.append(path)
    return paths[0], paths[1]


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=nifti_cases())
def test_ingest_then_export_is_exact(case: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        image_path, label_path = _write(case, root / "raw")
        store = root / "s.zarr"
        report = ctspine_zarr.ingest(root / "raw", store, workers=1, progress=False)
        assert report.ok, report.summary()
        ds = ctspine_zarr.open(store)
        source = nib.load(image_path)
        canonical = nib.as_closest_canonical(source)
        stored = ds.ctspine.image("case.1").values
        np.testing.assert_array_equal(stored, np.asanyarray(canonical.dataobj).transpose(2, 1, 0))
        np.testing.assert_allclose(ds.ctspine.volume("case.1").attrs["affine"], canonical.affine)
        for path, label in ((image_path, False), (label_path, True)):
            out = to_nifti(store, "case.1", root / f"out{''.join(path.suffixes)}", label=label)
            back, original = nib.load(out), nib.load(path)
            assert back.header.binaryblock == original.header.binaryblock
            np.testing.assert_array_equal(
                np.asanyarray(back.dataobj.get_unscaled()),
                np.asanyarray(original.dataobj.get_unscaled()),
            )
            np.testing.assert_array_equal(
                np.asanyarray(back.dataobj), np.asanyarray(original.dataobj)
            )
        ctspine_zarr.io.store.forget(store)
