"""PyTorch datasets: tensors, the Hugging Face fields, DataLoader workers (fork and spawn)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="torch is not installed (CI's Python 3.13 job: no CPU wheel for it here)"
)

from torch.utils.data import DataLoader  # noqa: E402

from ctspine_zarr.sampling import SliceSequence  # noqa: E402
from ctspine_zarr.torch import (  # noqa: E402
    PatchDataset,
    SliceDataset,
    VolumeDataset,
    default_context,
)

HF_FIELDS = {"image", "segmentation", "patient_id", "index", "slice_index"}


def test_slice_items_are_tensors_with_the_hugging_face_fields(store: Path) -> None:
    ds = SliceDataset(store, split=None)
    seq = SliceSequence(store, None)
    assert len(ds) == len(seq)
    item = ds[10]
    assert HF_FIELDS | {"spacing", "affine"} == set(item)
    assert item["image"].dtype == torch.float32 and item["segmentation"].dtype == torch.int64
    assert item["spacing"].dtype == torch.float64 and item["affine"].shape == (4, 4)
    assert isinstance(item["patient_id"], str) and isinstance(item["slice_index"], int)
    expected = seq[10]
    np.testing.assert_array_equal(item["image"].numpy(), expected["image"])
    np.testing.assert_array_equal(item["segmentation"].numpy(), expected["segmentation"])
    assert "SliceDataset(" in repr(ds)


def test_volume_dataset_and_transform(store: Path) -> None:
    ds = VolumeDataset(store, split="train", transform=lambda item: item["image"].shape)
    loader = DataLoader(ds, batch_size=None)
    shapes = list(loader)
    assert len(shapes) == len(ds.case_ids) and all(len(s) == 3 for s in shapes)


def _epochs(loader: DataLoader, n: int, check: dict | None = None) -> list[Counter]:
    """Count the (case, slice) pairs of each epoch; compare the item ``check`` when met."""
    seen = []
    for _ in range(n):
        counter: Counter = Counter()
        for batch in loader:
            assert batch["image"].dtype == torch.float32 and batch["image"].ndim == 3
            assert batch["segmentation"].dtype == torch.int64
            keys = list(zip(batch["patient_id"], batch["slice_index"].tolist(), strict=True))
            counter.update(keys)
            if check is not None and check["key"] in keys:
                k = keys.index(check["key"])
                assert torch.equal(batch["image"][k], check["image"])
                assert torch.equal(batch["segmentation"][k], check["segmentation"])
        seen.append(counter)
    return seen


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_two_worker_dataloader_with_persistent_workers(store: Path, context: str) -> None:
    ds = SliceDataset(store, split="train")
    direct = ds[3]  # the parent read first: zarr's event loop and the store are open here
    check = {**direct, "key": (direct["patient_id"], direct["slice_index"])}
    loader = DataLoader(
        ds,
        batch_size=8,
        num_workers=2,
        shuffle=True,
        multiprocessing_context=context,
        persistent_workers=True,
    )
    everything = Counter(
        (ds.case_ids[c], int(z)) for c, z in zip(ds.item_case, ds.item_z, strict=True)
    )
    for counter in _epochs(loader, 2, check):
        assert counter == everything  # every slice once per epoch


def test_dataloader_on_an_fsspec_url(store: Path) -> None:
    ds = SliceDataset(f"local://{store}", split="validation", foreground_only=True)
    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="fork")
    (counter,) = _epochs(loader, 1)
    assert sum(counter.values()) == len(ds)


def test_patch_workers_follow_set_epoch(store: Path) -> None:
    ds = PatchDataset(store, split=None, patch_size=(8, 16, 16), samples_per_epoch=12, seed=5)
    expected = {}
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        expected[epoch] = torch.stack([ds[i]["image"] for i in range(len(ds))])
    loader = DataLoader(
        ds, batch_size=12, num_workers=2, multiprocessing_context="spawn", persistent_workers=True
    )
    for epoch in (0, 1, 0):
        ds.set_epoch(epoch)
        (batch,) = list(loader)
        assert torch.equal(batch["image"], expected[epoch])
        assert int(batch["foreground"].sum()) == round(0.33 * 12)


def test_default_context_is_a_start_method() -> None:
    import multiprocessing

    assert default_context() in multiprocessing.get_all_start_methods()


def test_dataloader_on_s3_each_worker_opens_its_own_store(s3, raw_tree, store: Path) -> None:
    pytest.importorskip("s3fs")
    bucket, options, log = s3
    url = f"{bucket}/s.zarr"
    import ctspine_zarr

    report = ctspine_zarr.ingest(
        raw_tree[0], url, workers=2, scheduler="threads", storage_options=options, progress=False
    )
    assert report.ok, report.summary()
    ds = SliceDataset(url, split="validation", storage_options=options)
    local = SliceDataset(store, split="validation")
    assert len(ds) == len(local)
    ds[0]  # the parent opened the store (and its event loop) before the fork
    loader = DataLoader(ds, batch_size=8, num_workers=2, multiprocessing_context="fork")
    images = torch.cat([batch["image"] for batch in loader])
    expected = torch.stack([local[i]["image"] for i in range(len(local))])
    assert torch.equal(images, expected)
    # one ranged GET per array for a slice whose shard index is known
    log.requests.clear()
    ds[1]
    gets = [r for r in log.requests if r[0] == "GET"]
    assert len(gets) == 2 and all(r[2] is not None and r[2].startswith("bytes=") for r in gets)
