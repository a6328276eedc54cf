"""Readers and writers. Use :func:`medxai.io.readers.read_volume` for any supported scan."""
