"""Benchmarks: clients of a running server (or of the models directly, for the floor), printing
figures and writing them to files."""
