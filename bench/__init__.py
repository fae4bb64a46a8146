"""Benchmarks: synthetic partner drops (``bench.generate``), ingest time/memory (``bench.memory``), and dropgate
against floors and peers (``bench.run``, what `make bench` runs)."""
