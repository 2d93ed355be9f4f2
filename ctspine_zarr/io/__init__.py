"""Bytes in and out: NIfTI files, store locations, the store's arrays, shards and codecs."""
