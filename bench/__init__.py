"""Benchmarks: each measures alternatives side by side in one run and prints their ratio."""
