"""Benchmarks of ctspine_zarr (run one with ``python -m benchmarks.<name>``)."""
