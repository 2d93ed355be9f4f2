"""Test tooling users can run: the synthetic CTSpine1K-like raw tree and a moto S3 server."""
