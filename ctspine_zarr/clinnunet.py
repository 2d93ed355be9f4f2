"""The ``ctspine-zarr export-nnunet`` command: the store as an nnU-Net v2 raw dataset.

:mod:`ctspine_zarr.cli` adds it; ``export`` (cases back to NIfTI) is in
:mod:`ctspine_zarr.clicases`."""

from __future__ import annotations

import argparse
from typing import Any

from . import cliargs

__all__ = ["add_export_nnunet"]


def _cmd_export_nnunet(args: argparse.Namespace) -> int:
    from .nnunet import export_nnunet

    result = export_nnunet(
        args.store,
        args.out,
        dataset_id=args.dataset_id,
        name=args.name,
        splits=args.split or ("train", "validation", "test"),
        storage_options=cliargs.storage_options(args.storage_options),
        scheduler=args.scheduler,
        workers=args.workers,
        overwrite=args.overwrite,
        fingerprint=args.fingerprint,
        progress=not args.quiet,
    )
    print(result.summary())
    return 0


def add_export_nnunet(sub: Any) -> None:
    """Add ``export-nnunet STORE OUT --dataset-id N`` to the subparsers ``sub``."""
    from .schema import SPLITS

    p = sub.add_parser(
        "export-nnunet",
        help="write the store as an nnU-Net v2 raw dataset (imagesTr, labelsTr, dataset.json)",
        description="Write OUT/DatasetNNN_NAME/ as nnU-Net v2 plans and trains from it: the "
        "train and validation cases in imagesTr/labelsTr (splits_final.json keeps the "
        "validation cases apart: fold 0 validates on them), the test cases in imagesTs, "
        "dataset.json with the VerSe labels. Files are written in parallel, each atomically; "
        "a rerun writes only what is missing or changed.",
    )
    p.add_argument("store", help="path or fsspec URL of the store")
    p.add_argument("out", help="local folder to write the dataset folder into (nnUNet_raw)")
    p.add_argument(
        "--dataset-id",
        required=True,
        type=cliargs.dataset_id,
        metavar="N",
        help="nnU-Net's dataset id, 1-999 (the folder is DatasetNNN_NAME); required, no default",
    )
    p.add_argument("--name", default="CTSpine1K", help="the dataset name")
    p.add_argument(
        "--split",
        action="append",
        choices=SPLITS,
        help="export this split (repeatable; default: train, validation and test; "
        "unassigned cases become training data when asked for)",
    )
    p.add_argument(
        "--fingerprint",
        action="store_true",
        help="also write dataset_fingerprint.json, nnU-Net's fingerprint computed from the "
        "store's statistics",
    )
    p.add_argument("--overwrite", action="store_true", help="rewrite every file")
    cliargs.add_workers(p, "files written at a time (default: the CPUs)")
    p.add_argument(
        "--scheduler",
        default="threads",
        type=cliargs.scheduler,
        help="threads, processes, sync, distributed, or a dask.distributed scheduler address",
    )
    cliargs.add_location_options(p, quiet=True)
    p.set_defaults(func=_cmd_export_nnunet)
