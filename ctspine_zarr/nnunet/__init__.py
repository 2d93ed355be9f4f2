"""nnU-Net v2: a store exported as an nnU-Net raw dataset, and its dataset fingerprint.

:func:`export_nnunet` (``ctspine-zarr export-nnunet``) writes the raw layout nnU-Net v2
plans and trains from; :func:`nnunet_fingerprint` computes, from the package's dask
statistics, the ``dataset_fingerprint.json`` nnU-Net's ``nnUNetv2_extract_fingerprint``
would compute from that folder. Neither needs nnU-Net installed; the tests run nnU-Net's own
``verify_dataset_integrity`` and fingerprint extractor on the export (``pip install
"ctspine-zarr[nnunet]"``).
"""

from .export import NnunetExport, dataset_folder_name, export_nnunet
from .fingerprint import nnunet_fingerprint

__all__ = ["NnunetExport", "dataset_folder_name", "export_nnunet", "nnunet_fingerprint"]
