"""Baseline servers and actors the benchmark compares ours against (never used in production)."""
