"""PyRadiomics features for one case: every region (lesion, shells, expansions) from one loaded image.

Feature values are PyRadiomics' own (van Griethuysen et al., "Computational Radiomics System to Decode
the Radiographic Phenotype", Cancer Research 2017); this module only feeds it the regions. The image is
converted to SimpleITK once per case. Without resampling or normalisation the image is also cropped
once to the union of the regions plus PyRadiomics' ``padDistance`` (what PyRadiomics' own ``preCrop``
does per region), so the per-region work no longer scales with the whole scan; with resampling or
normalisation the whole image is passed, because PyRadiomics aligns its resampled grid to the image
origin and normalises over the whole image, and a crop would change the values.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medxai.io.itk import volume_to_sitk
from medxai.radiomics.params import load_extractor
from medxai.radiomics.shells import Crop, Region
from medxai.volume import Volume

LEADING_COLUMNS = ("case_id", "region", "distance_mm")
logger = logging.getLogger(__name__)


def _union_crop(regions: Sequence[Region], shape: tuple[int, int, int], pad: int) -> Crop | None:
    boxes = []
    for region in regions:
        nonzero = np.nonzero(region.mask)
        if nonzero[0].size:
            boxes.append([(region.origin[a] + int(idx.min()), region.origin[a] + int(idx.max())) for a, idx in enumerate(nonzero)])
    if not boxes:
        return None
    return tuple(
        slice(max(min(b[a][0] for b in boxes) - pad, 0), min(max(b[a][1] for b in boxes) + pad + 1, shape[a]))
        for a in range(3)
    )  # type: ignore[return-value]


def _cropped(image: Volume, crop: Crop) -> Volume:
    shift = np.eye(4)
    shift[:3, 3] = [s.start for s in crop]
    return Volume(data=image.data[crop], affine=image.affine @ shift, metadata=image.metadata)


def _value(key: str, value: Any) -> object:
    if key.startswith("diagnostics_"):
        return str(value)
    return float(value)


def extract_features(
    image: Volume,
    regions: Sequence[Region],
    *,
    case_id: str,
    params: str | Path = "ct",
    diagnostics: bool = False,
) -> list[dict[str, object]]:
    """One row per region: ``case_id, region, distance_mm`` then PyRadiomics' columns.

    An empty region (e.g. a shell clipped away by the tissue mask) or one PyRadiomics refuses (too small
    for ``minimumROIDimensions``) gives a row without feature values (written as NaN) and a warning.
    """
    import SimpleITK as sitk

    extractor = load_extractor(params, diagnostics=diagnostics)
    settings = extractor.settings
    resampled = settings.get("interpolator") is not None and settings.get("resampledPixelSpacing") is not None
    crop = None
    if not resampled and not settings.get("normalize", False):
        crop = _union_crop(regions, image.shape, int(settings.get("padDistance", 5)))
    grid = image if crop is None else _cropped(image, crop)
    image_itk = volume_to_sitk(grid)
    rows: list[dict[str, object]] = []
    for region in regions:
        row: dict[str, object] = {"case_id": case_id, "region": region.name, "distance_mm": region.distance_mm}
        if region.voxel_count == 0:
            logger.warning("%s: region %s is empty (clipped away or outside the image); its features are NaN", case_id, region.key)
            rows.append(row)
            continue
        mask = region.on_grid(crop).astype(np.uint8)
        mask_itk = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(mask, (2, 1, 0))))
        mask_itk.CopyInformation(image_itk)
        try:
            result = extractor.execute(image_itk, mask_itk, label=1)
        except ValueError as error:  # PyRadiomics' mask checks (too small, too few dimensions) raise ValueError
            logger.warning("%s: PyRadiomics refused region %s (%s); its features are NaN", case_id, region.key, error)
            rows.append(row)
            continue
        row.update((key, _value(key, value)) for key, value in result.items() if diagnostics or not key.startswith("diagnostics_"))
        rows.append(row)
    return rows

