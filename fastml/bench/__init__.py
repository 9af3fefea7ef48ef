"""Benchmark cases and timing shared by ``fastml bench`` and the ``bench/`` pytest suites."""
