"""The default attribution method, in a module light enough for the pipeline schema and the CLI's option
help to import without loading torch or Captum. SmoothGrad: the map that localised best and passed the
repaired sanity checks on the phantom validation set (docs/verdicts.md, docs/results.md)."""

DEFAULT_METHOD = "smoothgrad"
