"""Benchmarks of the receiver and the pipeline against baselines (`python -m bench`).

Not part of the product: nothing outside bench/ imports it.
"""
