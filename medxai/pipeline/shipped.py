"""The pipelines installed with medxai, by name: light enough for the CLI to list them in ``run --help`` without
loading the pipeline schema (and through it nibabel and the radiomics presets) at start-up."""
from __future__ import annotations

from importlib import resources
from pathlib import Path


def shipped_pipelines() -> dict[str, Path]:
    """The pipelines installed with medxai (``medxai/pipelines/*.yaml``), by name."""
    folder = resources.files("medxai") / "pipelines"
    if not folder.is_dir():
        return {}
    return {Path(item.name).stem: Path(str(item)) for item in folder.iterdir() if item.name.endswith(".yaml")}
