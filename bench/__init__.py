"""Benchmarks that print figures (see bench/README.md); run as ``python -m bench.<name>``."""
