"""Harnesses shared by the tests and the benches: plain functions, no fixtures."""
