"""Helpers for tests: writers of test data and tiny fixtures other packages' tests may use."""
