"""Choose the inner chunk layout by measurement (issue #18), side by side with nnU-Net.

``python -m benchmarks.chunk_layout [--quick] [--workdir DIR] [--repeats N] [--json OUT]``

One run synthesises CTSpine1K-like 512 x 512 cases (4 cases of 120-220 slices; ``--quick``:
2 tiny cases) and, when pydicom-data is installed, takes its two real CT slices; ingests
them with the package (today's layout: shards of ``(32, Y, X)``, inner chunks ``(1, Y, X)``;
default and ``--codec compact``), and rewrites the same voxels, with each array's own
codecs, into every candidate inner chunk inside ``(32, Y, X)`` shards, the chunks of a shard
in C order so that a slice's tiles are one byte range (:mod:`.lean`). For every candidate it
measures, the contenders taking turns call by call (:mod:`.timing`):

* bytes with the default codec and with ``--codec compact``;
* a random slice pair (image + label), a random 64x128x128 and 128x128x128 patch and a
  whole volume, read by zarr-python's default pipeline, the zarrs pipeline and the lean
  prototype (shard index cached, coalesced ranges, Blosc decoded on a thread pool into
  preallocated arrays), each checked against the voxels written;
* the write of every case (lean tile writer, zarr, zarrs);
* requests per array per slice and per patch over S3 (a moto server on 127.0.0.1);
* nnU-Net's own ``nnUNetDatasetBlosc2.save_case`` / ``load_case`` with its chunk and block
  choice for the patch size, on the same cases (float32 normalised, int16 seg), the same
  boxes (:mod:`.reference`); today's ``PatchSequence``; 2-worker DataLoaders over
  ``PatchDataset``, nnU-Net's reads and the lean prototype.

It prints markdown tables (:mod:`.report`). It deletes only what it wrote: the raw trees
and the folders of candidate and nnU-Net files carry the benchmarks' marker
(``benchmarks.common.fresh_tree``), the ingested stores are ctspine stores
(``benchmarks.common.remove_store``); without ``--workdir`` all lives in a temporary folder.
"""
