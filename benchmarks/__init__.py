"""Benchmarks: `python -m benchmarks.input_pipeline`."""
