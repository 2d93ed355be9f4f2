"""The comparative study of ctspine_zarr against its anchors: ``python -m benchmarks``.

One run generates a synthetic CTSpine1K-like raw tree once (512x512 in-plane; full: 6 cases
of 100-300 slices, ``--quick``: 3 cases of 60-100 slices) and measures, on the same files, our
store against three anchors built from them (``anchors``):

* **nibabel** on the ``.nii.gz`` files (indexed_gzip installed, files kept open);
* a **Hugging Face datasets Arrow** table built as the CTSpine1K loading script builds it, in
  its ``2d`` (one row per slice) and ``3d`` (one row per volume) configurations, read back
  memory-mapped;
* an uncompressed **.npy memmap** per case (int16 image, uint8 label, canonical ``[z, y, x]``):
  the physical limit for reads.

One module per section (``--only`` takes a comma-separated subset; what a section needs is
built untimed when the ``conversion`` section does not run): ``bytes``, ``conversion``,
``slices``, ``loader``, ``volume``, ``patch``, ``stats``, ``realct``, ``scale``. Each fills a
:class:`~benchmarks.study.results.Section` with its tables, its numbers and its headline
ratios; ``run`` writes the report, with the targets of ``benchmarks/targets.toml`` beside the
ratios. The study measures; docs/performance.md reports (``python -m benchmarks.report``).
Timings on the shared 2-core machine are noisy: medians, interleaved contenders, and the load
average at the start of every section are reported.
"""
