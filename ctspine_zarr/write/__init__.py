"""The writer: NIfTI pairs into a store (claim, lock, ingest, integrity) and its checker, verify."""
