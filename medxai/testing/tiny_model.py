"""A seeded, untrained tiny classifier saved as a medxai model directory: for tests of the batch machinery,
outputs and geometry, where what matters is that the model is deterministic, not that it is accurate."""
from __future__ import annotations

from pathlib import Path


def save_tiny_classifier(folder: str | Path, *, size: int = 16, seed: int = 0,
                         classes: tuple[str, ...] = ("lesion", "normal")) -> Path:
    """Write ``folder`` (the ``tiny`` CNN on a ``size``^3 grid, weights from ``torch.manual_seed(seed)``)."""
    import torch

    from medxai.models.model_dir import save_model_dir
    from medxai.models.preprocessing import PreprocessingConfig
    from medxai.models.registry import build_network

    torch.manual_seed(seed)
    network = build_network("tiny", in_channels=1, num_classes=len(classes), spatial_size=(size,) * 3)
    save_model_dir(folder, network=network, arch="tiny", classes=list(classes), task="classification",
                   preprocessing=PreprocessingConfig(spatial_size=(size,) * 3), training={"seeded": seed}, metrics={})
    return Path(folder)
