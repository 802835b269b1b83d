"""Benchmarks shipped with the package (`ponder bench ...`): measured the same way on every machine."""
