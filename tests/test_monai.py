"""MONAI reads the store: exactly what it reads from the source files, with its transforms."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "monai", reason="MONAI is not installed (CI's Python 3.13 job: torch has no CPU wheel)"
)

import torch  # noqa: E402
from monai.data import CacheDataset, DataLoader, Dataset, NibabelReader, PersistentDataset  # noqa: E402
from monai.transforms import (  # noqa: E402
    Compose,
    CropForegroundd,
    LoadImage,
    LoadImaged,
    Orientation,
    Orientationd,
    RandCropByPosNegLabeld,
    Spacingd,
)

import ctspine_zarr  # noqa: E402
from ctspine_zarr.errors import CaseNotFoundError  # noqa: E402
from ctspine_zarr.monai import CaseRef, CTSpineReader, RandZWindowd, datalist, reference  # noqa: E402
from ctspine_zarr.testing.synthetic import SyntheticCase  # noqa: E402

# MONAI's LoadImage builds every reader it knows; its GPU DICOM reader warns when the GPU
# codec is missing but pydicom is installed (as in the bench extra): not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader:UserWarning")

RAS = Orientation("RAS", labels=None)


def _sources(raw_tree: tuple[Path, list[SyntheticCase]]) -> list[tuple[str, str, Path]]:
    """``(case, array, source file)`` of every image and label map of the raw tree."""
    return [
        (case.case_id, array, path)
        for case in raw_tree[1]
        for array, path in (("image", case.image_path), ("label", case.label_path))
    ]


def test_every_variant_equals_nibabelreader_then_orientation(
    store: Path, raw_tree: tuple[Path, list[SyntheticCase]]
) -> None:
    """RAS, LPS, descending z, scaled uint16, float labels, LAS, sagittal: same array, affine."""
    variants = {case.variant for case in raw_tree[1]}
    assert {"ras-int16", "lps-uint16-inter", "descending-z", "sagittal"} <= variants
    ours = LoadImage(reader=CTSpineReader(), ensure_channel_first=True)
    nibabel = LoadImage(reader="NibabelReader", ensure_channel_first=True)
    for case, array, path in _sources(raw_tree):
        mine = RAS(ours(reference(store, case, array)))
        theirs = RAS(nibabel(str(path)))
        assert mine.shape == theirs.shape and mine.dtype == theirs.dtype == torch.float32
        assert torch.equal(mine.as_tensor(), theirs.as_tensor()), (case, array)
        np.testing.assert_allclose(mine.affine.numpy(), theirs.affine.numpy(), atol=1e-4)
        assert mine.meta["space"] == theirs.meta["space"] == "RAS"


def test_metadata_is_nibabelreaders_as_closest_canonical(
    store: Path, raw_tree: tuple[Path, list[SyntheticCase]]
) -> None:
    """Every key NibabelReader puts in the metadata, with its value; plus the z range."""
    ours, theirs = CTSpineReader(dtype=None), NibabelReader(as_closest_canonical=True)
    for case, array, path in _sources(raw_tree):
        data, meta = ours.get_data(ours.read(reference(store, case, array)))
        expected_data, expected = theirs.get_data(theirs.read(str(path)))
        np.testing.assert_array_equal(data, expected_data)
        assert set(meta) == set(expected) | {"z_range", "filename_or_obj"}
        for key, value in expected.items():
            if key in ("affine", "original_affine"):
                np.testing.assert_allclose(meta[key], value, atol=1e-4, err_msg=key)
            else:
                np.testing.assert_array_equal(meta[key], value, err_msg=key)
        assert meta["filename_or_obj"] == f"{store}::{case}" + (
            "::label" if array == "label" else ""
        )
        np.testing.assert_array_equal(meta["z_range"], [0, data.shape[2]])
        assert data.dtype == (np.int16 if array == "image" else np.uint8)


def test_a_z_range_reads_its_slices_with_their_affine(store: Path) -> None:
    case = ctspine_zarr.open(store).ctspine.case_ids()[0]
    load = LoadImage(reader=CTSpineReader(), ensure_channel_first=True)
    whole = load(reference(store, case, "label"))
    part = load(reference(store, case, "label", z=(5, 17)))
    assert torch.equal(part.as_tensor(), whole.as_tensor()[..., 5:17])
    np.testing.assert_allclose(part.affine.numpy()[:, 3], whole.affine.numpy() @ [0, 0, 5, 1])
    np.testing.assert_array_equal(part.meta["z_range"], [5, 17])
    np.testing.assert_array_equal(part.meta["spatial_shape"], whole.shape[1:3] + (12,))


def test_loadimaged_takes_strings_caserefs_and_says_what_to_do_with_a_dict(store: Path) -> None:
    items = datalist(store, split="train")
    cases = ctspine_zarr.open(store).ctspine.case_ids(split="train")
    assert [item["case"] for item in items] == cases
    load = LoadImaged(keys=["image", "label"], reader=CTSpineReader(), ensure_channel_first=True)
    first = load(items[0])
    case = items[0]["case"]
    as_dict = load({"image": CaseRef(store, case), "label": CaseRef(store, case, "label")})
    for key in ("image", "label"):
        assert torch.equal(first[key].as_tensor(), as_dict[key].as_tensor())
    assert first["image"].shape[0] == 1 and first["label"].max() > 0
    # a plain dict reaches LoadImage as its keys: the reader's error says what to give
    with pytest.raises(RuntimeError, match=re.escape("ctspine_zarr.monai.CaseRef(store=")):
        LoadImage(reader=CTSpineReader())({"store": str(store), "case": case})


def test_the_reader_is_registered_the_monai_way(
    store: Path, raw_tree: tuple[Path, list[SyntheticCase]]
) -> None:
    case = ctspine_zarr.open(store).ctspine.case_ids()[0]
    ref = reference(store, case)
    by_name = LoadImage(reader="CTSpineReader")(ref)
    by_class = LoadImage(reader=CTSpineReader)(ref)
    automatic = LoadImage()  # picks a reader per file name: ours for references
    assert torch.equal(automatic(ref).as_tensor(), by_name.as_tensor())
    assert torch.equal(by_class.as_tensor(), by_name.as_tensor())
    nifti = raw_tree[1][0].image_path
    assert automatic(str(nifti)).meta["filename_or_obj"] == str(nifti)  # nibabel still
    loader = LoadImage(reader=NibabelReader())
    loader.register(CTSpineReader())
    assert torch.equal(loader(ref).as_tensor(), by_name.as_tensor())
    assert not CTSpineReader().verify_suffix(str(nifti))
    assert CTSpineReader().verify_suffix([ref, reference(store, case, "label")])


def test_unknown_cases_and_mismatched_channels_are_named(store: Path) -> None:
    reader = CTSpineReader()
    with pytest.raises(CaseNotFoundError, match="no_such_case"):
        reader.read(f"{store}::no_such_case")
    cases = ctspine_zarr.open(store).ctspine.case_ids()
    two = reader.get_data(
        reader.read([reference(store, cases[0]), reference(store, cases[0], "label")])
    )
    assert two[0].shape[0] == 2 and two[1]["original_channel_dim"] == 0
    with pytest.raises(ValueError, match="only arrays of one grid stack as channels"):
        reader.get_data(reader.read([reference(store, cases[0]), reference(store, cases[1])]))


def _pipeline(store: Path) -> Compose:
    return Compose(
        [
            LoadImaged(keys=["image", "label"], reader=CTSpineReader(), ensure_channel_first=True),
            Orientationd(keys=["image", "label"], axcodes="RAS", labels=None),
            Spacingd(keys=["image", "label"], pixdim=(1.5, 1.5, 2.0), mode=("bilinear", "nearest")),
            CropForegroundd(keys=["image", "label"], source_key="label", allow_smaller=True),
        ]
    )


def test_monai_datasets_and_patch_transforms_work_unchanged(store: Path, tmp_path: Path) -> None:
    items = datalist(store, split="train")
    deterministic = _pipeline(store)
    cached = CacheDataset(items, deterministic, num_workers=0, progress=False)
    persistent = PersistentDataset(items, deterministic, cache_dir=tmp_path / "cache")
    for n in range(len(items)):
        expected = deterministic(items[n])
        got = cached[n]
        assert torch.equal(got["image"].as_tensor(), expected["image"].as_tensor())
        np.testing.assert_allclose(got["image"].affine, expected["image"].affine)
        for again in (persistent[n], persistent[n]):  # the second from the disk cache
            # (plain tensors: PersistentDataset drops the metadata unless track_meta=True)
            assert torch.equal(torch.as_tensor(again["label"]), expected["label"].as_tensor())
        # cropped to the vertebrae, on 1.5 x 1.5 x 2 mm voxels
        assert expected["label"][0, 0].max() > 0 and expected["label"][0, -1].max() > 0
        np.testing.assert_allclose(expected["image"].pixdim, [1.5, 1.5, 2.0], rtol=1e-5)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == len(items)
    crops = RandCropByPosNegLabeld(
        keys=["image", "label"],
        label_key="label",
        spatial_size=(4, 4, 4),
        pos=1,
        neg=0,
        num_samples=3,
    )
    crops.set_random_state(0)
    for patch in crops(cached[0]):
        assert patch["image"].shape == (1, 4, 4, 4) and patch["label"].max() > 0


def test_randzwindowd_reads_a_window_around_a_vertebra(store: Path) -> None:
    items = datalist(store, split="train")
    window = RandZWindowd(keys=["image", "label"], size=6, pos=1.0, neg=0.0)
    window.set_random_state(3)
    load = LoadImaged(keys=["image", "label"], reader=CTSpineReader(), ensure_channel_first=True)
    whole = LoadImaged(keys=["image", "label"], reader=CTSpineReader(), ensure_channel_first=True)
    for item in items * 3:
        narrowed = window(item)
        assert narrowed["case"] == item["case"] and "::z=" in narrowed["image"]
        got = load(narrowed)
        z0, z1 = (int(v) for v in got["image"].meta["z_range"])
        assert z1 - z0 == 6 and np.array_equal(got["label"].meta["z_range"], [z0, z1])
        assert got["label"].max() > 0  # pos=1: a vertebra in every window
        full = whole(item)
        assert torch.equal(got["image"].as_tensor(), full["image"].as_tensor()[..., z0:z1])
    with pytest.raises(ValueError, match="size must be at least 1"):
        RandZWindowd(keys=["image"], size=0)


def test_urls_with_storage_options(store: Path, s3) -> None:  # type: ignore[no-untyped-def]
    import fsspec

    bucket, options, _ = s3
    fsspec.filesystem("s3", **options).put(
        f"{store}/", f"{bucket.removeprefix('s3://')}/s.zarr/", recursive=True
    )
    url = f"{bucket}/s.zarr"
    case = ctspine_zarr.open(store).ctspine.case_ids()[1]
    remote = LoadImage(reader=CTSpineReader(storage_options=options))(reference(url, case, "label"))
    local = LoadImage(reader=CTSpineReader())(reference(store, case, "label"))
    assert torch.equal(remote.as_tensor(), local.as_tensor())
    assert remote.meta["filename_or_obj"].startswith("s3:/")  # LoadImage's own Path() of it
    items = datalist(url, split=None, storage_options=options)
    assert len(items) == len(ctspine_zarr.open(store).ctspine.case_ids())


def test_a_dataloader_with_workers(store: Path) -> None:
    items = datalist(store, split="train")
    transform = Compose(
        [
            RandZWindowd(keys=["image", "label"], size=8),
            LoadImaged(keys=["image", "label"], reader=CTSpineReader(), ensure_channel_first=True),
        ]
    )
    loader = DataLoader(Dataset(items, transform), batch_size=1, num_workers=2)
    seen = [batch["case"][0] for batch in loader]
    assert sorted(seen) == sorted(item["case"] for item in items)


def _readme_recipe() -> str:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    match = re.search(r"<!-- monai-recipe -->\n```python\n(.*?)```", readme, flags=re.S)
    assert match, "README.md lost its MONAI recipe (marked <!-- monai-recipe -->)"
    return match.group(1)


def test_the_readme_recipe_trains_a_tiny_unet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's MONAI recipe runs as written (in a fresh folder) and the loss is finite."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec(compile(_readme_recipe(), "README.md (MONAI recipe)", "exec"), namespace)  # noqa: S102
    losses = namespace["losses"]
    assert isinstance(losses, list) and len(losses) >= 3
    assert all(np.isfinite(losses))
