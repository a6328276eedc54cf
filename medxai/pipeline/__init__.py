"""Batch pipelines: YAML schema, input discovery, per-case isolated runs, resume, local workers and Dask."""
