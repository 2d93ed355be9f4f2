"""TorchIO subjects from the store: lazy, equal to TorchIO's reading of the source files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tio = pytest.importorskip(
    "torchio", reason="TorchIO is not installed (CI's Python 3.13 job: torch has no CPU wheel)"
)

import torch  # noqa: E402

import ctspine_zarr  # noqa: E402
from ctspine_zarr.errors import CaseNotFoundError  # noqa: E402
from ctspine_zarr.testing.synthetic import SyntheticCase  # noqa: E402
from ctspine_zarr.torchio import StoreReader, subject, subjects_dataset  # noqa: E402


def test_every_variant_equals_torchio_reading_the_source_after_tocanonical(
    store: Path, raw_tree: tuple[Path, list[SyntheticCase]]
) -> None:
    canonical = tio.ToCanonical()
    for case in raw_tree[1]:
        ours = subject(store, case.case_id)
        source = canonical(
            tio.Subject(image=tio.ScalarImage(case.image_path), label=tio.LabelMap(case.label_path))
        )
        for key in ("image", "label"):
            mine, theirs = ours[key], source[key]
            assert type(mine).__mro__[1] is type(theirs)  # a ScalarImage, a LabelMap
            assert mine.shape == theirs.shape
            np.testing.assert_array_equal(
                mine.data.numpy(), theirs.data.numpy(), err_msg=case.variant
            )
            np.testing.assert_allclose(mine.affine, theirs.affine, atol=1e-4)
        # already canonical: ToCanonical leaves it as it is
        again = canonical(ours)
        assert torch.equal(again["image"].data, ours["image"].data)
        assert (ours["case"], ours["split"], ours["source"]) == (
            case.case_id,
            {"trainset": "train", "test_public": "validation", "test_private": "test"}.get(
                case.split, "unassigned"
            ),
            case.source,
        )


def test_subjects_are_lazy_and_stored_types_by_default(store: Path) -> None:
    case = ctspine_zarr.open(store).ctspine.case_ids()[0]
    one = subject(store, case)
    assert not one["image"]._loaded and not one["label"]._loaded
    assert one["label"].data.dtype == torch.uint8 and one["label"]._loaded
    assert not one["image"]._loaded  # each image is read when it is used
    assert one["image"].data.dtype == torch.int16
    as_float = subject(store, case, dtype=np.float32)
    assert as_float["image"].data.dtype == torch.float32
    assert torch.equal(as_float["image"].data, one["image"].data.float())
    with pytest.raises(CaseNotFoundError, match="no_such_case"):
        subject(store, "no_such_case")
    tensor, affine = StoreReader()(f"{store}::{case}::label::z=2:5")
    assert tensor.shape[-1] == 3 and affine.shape == (4, 4)


def test_subjects_dataset_selects_by_split_and_queues_label_patches(store: Path) -> None:
    ds = ctspine_zarr.open(store)
    train = subjects_dataset(store, split="train", transform=tio.RandomFlip(axes=(0,)))
    assert [s["case"] for s in train._subjects] == ds.ctspine.case_ids(split="train")
    assert len(subjects_dataset(store, split=None)) == len(ds.ctspine.case_ids())
    queue = tio.Queue(
        train,
        max_length=12,
        samples_per_volume=4,
        sampler=tio.LabelSampler(patch_size=(8, 8, 4), label_name="label"),
        num_workers=2,
        shuffle_subjects=False,
        shuffle_patches=False,
    )
    batches = list(torch.utils.data.DataLoader(queue, batch_size=4, num_workers=0))
    patches = torch.cat([b["label"][tio.DATA] for b in batches])
    assert patches.shape == (4 * len(train), 1, 8, 8, 4)
    # LabelSampler centres each patch on a labelled voxel
    assert all(p.max() > 0 for p in patches)
    assert {c for b in batches for c in b["case"]} == set(ds.ctspine.case_ids(split="train"))


def test_a_url_store_with_storage_options(store: Path, s3) -> None:  # type: ignore[no-untyped-def]
    import fsspec

    bucket, options, _ = s3
    target = f"{bucket.removeprefix('s3://')}/s.zarr/"
    fsspec.filesystem("s3", **options).put(f"{store}/", target, recursive=True)
    case = ctspine_zarr.open(store).ctspine.case_ids()[2]
    remote = subject(f"{bucket}/s.zarr", case, storage_options=options)
    assert str(remote["label"].path).startswith("s3:/")  # TorchIO keeps it as a Path
    local = subject(store, case)
    assert torch.equal(remote["label"].data, local["label"].data)
    np.testing.assert_array_equal(remote["image"].affine, local["image"].affine)
