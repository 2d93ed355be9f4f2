"""The writer: NIfTI pairs into a store (claim, lock, ingest, integrity), the downsampled levels
(pyramid), and its checker, verify."""
