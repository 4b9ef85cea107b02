"""Tiny randomly initialised checkpoints of the real architectures, for tests and benches."""
