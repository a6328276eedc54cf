"""Radiomics stage: PyRadiomics features of the lesion and its peritumoral shells, per case.

The lesion is the input's mask (``radiomics.mask: input``) or the weakly-supervised mask of the segment
stage (``segment``). Regions and extraction are :mod:`medxai.radiomics` (shells in mm by exact Euclidean
distance transform; Tushar et al. 2024 for peritumoral expansion). A case without a lesion (no mask
listed, or a segmentation predicted lesion-free) has no lesion to measure and gets no ``features.csv``.
Writes ``OUT/<case_id>/features.csv`` and, at the end, ``OUT/features.csv`` over every done case.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence, TYPE_CHECKING

from medxai.errors import ConfigError
from medxai.io.atomic import atomic_path
from medxai.pipeline.inputs import Case
from medxai.pipeline.schema import Pipeline
from medxai.pipeline.stages import CaseContext
from medxai.pipeline.tables import merge_case_tables

if TYPE_CHECKING:
    from medxai.models.loaded import LoadedModel

FEATURES = "features.csv"


def check(pipeline: Pipeline, model: LoadedModel | None, cases: Sequence[Case]) -> None:
    """Refuse up front a run whose lesions come from the input when the input lists no mask at all."""
    from medxai.radiomics.params import load_extractor

    settings = pipeline["radiomics"]
    load_extractor(settings["params"])
    if settings["mask"] == "input" and not any(case.mask is not None for case in cases):
        raise ConfigError("key 'radiomics.mask' is 'input' but the input lists no masks (a CSV 'mask' column or "
                          "nnU-Net labelsTr/)", path=pipeline.source)
    if settings["mask"] == "input" and not pipeline["input"]["masks"]:
        raise ConfigError("key 'radiomics.mask' is 'input' but input.masks is false", path=pipeline.source)
    if settings["mask"] == "segment" and not pipeline.stage_enabled("segment"):
        raise ConfigError("key 'radiomics.mask' is 'segment' but the segment stage is not enabled", path=pipeline.source)


def run(context: CaseContext) -> None:
    from medxai.radiomics.cases import lesion_columns, save_regions
    from medxai.radiomics.extract import LEADING_COLUMNS, SOURCE_COLUMNS, extract_features
    from medxai.radiomics.shells import peritumoral_regions, shell_crop
    from medxai.radiomics.tissue import tissue_mask

    settings = context.pipeline["radiomics"]
    lesion = context.mask if settings["mask"] == "input" else context.results.get("segment_mask")
    if lesion is None or not lesion.data.any():
        return
    distances = tuple(float(d) for d in settings["expansions"])
    tissue = None
    if settings["tissue"] is not None:
        tissue = tissue_mask(context.scan, tissue=settings["tissue"], within=shell_crop(lesion, max(distances)))
    regions = peritumoral_regions(lesion, distances_mm=distances, box_dilation=settings["box_dilation"], tissue=tissue)
    if settings["save_masks"]:
        save_regions(context.scan, regions, context.case_dir / "regions")
    rows = extract_features(context.scan, regions, case_id=context.case.case_id, params=settings["params"])
    mask = str(context.case.mask) if settings["mask"] == "input" else "mask.nii.gz (segment stage)"
    source = {"image": context.case.source, "mask": mask, **lesion_columns(lesion)}
    rows = [{**row, **source} for row in rows]
    columns: dict[str, None] = dict.fromkeys((*LEADING_COLUMNS, *SOURCE_COLUMNS))
    for row in rows:
        columns.update(dict.fromkeys(row))
    with atomic_path(context.case_dir / FEATURES) as temporary:
        with temporary.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns), restval="nan", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)


def finish(pipeline: Pipeline, out_dir: Path, done: Sequence[str]) -> None:
    merge_case_tables(out_dir, done, FEATURES, missing="nan")
