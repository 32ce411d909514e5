"""Benchmarks: one folder per benchmark, each writing JSON and a section of RESULTS.md."""
