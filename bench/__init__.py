"""Benchmarks: ``bench/api.py`` measures POST /v1/payments against a minimal Django INSERT (``make bench-api``).

This package is also a Django app, installed only by ``bench.settings``: it holds the ceiling endpoint's model.
"""
