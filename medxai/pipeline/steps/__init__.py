"""One module per pipeline stage: ``run(context)`` per case, and optional ``check``/``finish`` hooks."""
