"""Queries against a library: exact similarity, identity and analogue search, candidate ranking."""
