"""Benchmarks of Portcullis on the local stack: `python -m bench` (see docs/performance.md)."""
