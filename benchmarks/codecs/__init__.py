"""Benchmark Zarr v3 codecs for ctspine_zarr CT images (int16 HU) and vertebra labels (uint8).

Every configuration is measured through real zarr-python 3 arrays in a ``MemoryStore``: one
axial slice per inner chunk, inside a ``sharding_indexed`` codec, with ``crc32c`` after the
compressor, so the stored bytes include the checksums and the shard index. Sizes are compared
with ``gzip.compress(raw_int16_bytes, 6)`` (the ``.nii.gz`` payload) of the same data: per
slice for the real CT slices (pydicom-data), per volume for the synthetic volumes
(``ctspine_zarr.testing.synthetic.make_volume``, or a stand-in when that module is missing).

One module per concern: ``configs`` (the codec chains compared), ``data`` (real and
synthetic slices), ``measure`` (zarr arrays in a ``MemoryStore``) and ``__main__`` (the
tables). Run from the repository root::

    python -m benchmarks.codecs [--quick | --all] [--only NAME,...]

Timings are single-threaded (``threading.max_workers=1``, codec threads 1). Encode MB/s is raw
int16 megabytes per second of writing the synthetic volumes (best of 2 writes when fast);
decode time is the median time of reading one random slice with ``array[k]`` from a freshly
opened array (zarr overhead included: see the "bytes only" row), as wall clock
(``perf_counter``) and as CPU time of this process (``process_time``, robust to other load).
"""
