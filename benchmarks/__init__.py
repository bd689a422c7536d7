"""Benchmarks and campaigns: commands of their own, not part of the tests (see the README)."""
