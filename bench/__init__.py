"""Benchmarks. ``python -m bench [NAME ...]`` runs every ``bench_*.py`` here (or those named)."""
