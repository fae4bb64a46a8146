"""Benchmarks: synthetic partner drops (``bench.generate``) and ingest time/memory (``bench.memory``)."""
