"""PyRadiomics features for one case: every region (lesion, shells, expansions) from one loaded image.

Feature values are PyRadiomics' own (van Griethuysen et al., "Computational Radiomics System to Decode
the Radiographic Phenotype", Cancer Research 2017). The image is converted to a float type that holds its
values exactly (:func:`medxai.radiomics.ibsi.float_dtype`) before anything else, so the same voxels give
the same features whatever the file's data type (PyRadiomics resamples in the image's pixel type: an
int16 scan would otherwise be truncated to integers after interpolation).

Two paths:

- PyRadiomics' processing (presets ``ct``, ``mr``, a user's file). Without resampling or normalisation
  the image is cropped once to the union of the regions plus PyRadiomics' ``padDistance`` (what
  PyRadiomics' own ``preCrop`` does per region); with resampling or normalisation the whole image is
  passed, because PyRadiomics normalises over the whole image and a crop would change the values;
- IBSI processing (presets ``ibsi-a`` .. ``ibsi-e``, a ``medxai: ibsi:`` section): medxai interpolates,
  re-segments and discretises (:mod:`medxai.radiomics.ibsi`) and PyRadiomics' feature classes compute.

Before either, a region that the settings make degenerate (a handful of voxels after resampling, or a
resampled grid of absurd size, e.g. a wrong spacing in the header) stops the case with an
:class:`InvalidInputError`, and a CT preset (bin width in HU) on an image whose region spans fewer than
``MIN_GREY_LEVELS`` bins (MR, z-scored) is refused.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from medxai.errors import InvalidInputError
from medxai.io.itk import volume_to_sitk
from medxai.radiomics.ibsi import IbsiGrid, cropped_volume, float_dtype, ibsi_features, resampled_spacing
from medxai.radiomics.ibsi_names import ibsi_columns
from medxai.radiomics.params import RadiomicsParams, load_extractor, load_params
from medxai.radiomics.shells import Crop, Region
from medxai.volume import Volume

LEADING_COLUMNS = ("case_id", "region", "distance_mm")
# Where each row came from, right after the leading columns (PyRadiomics' own batch output carries its input
# CSV's Image and Mask columns the same way): the input files, how the lesion was found (a given mask, or a box
# segmenter and the share of its box the lesion fills, flagged when it fills most of it). Not features.
SOURCE_COLUMNS = ("image", "mask", "lesion_from", "lesion_box_fraction", "lesion_fills_box")
MIN_ROI_VOXELS = 8  # below this after resampling a region is degenerate for any texture or shape feature
MAX_GRID_VOXELS = 1024**3  # a resampled box beyond this (4 GiB in float32) means a spacing the settings were not meant for
MIN_GREY_LEVELS = 8
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


def _value(key: str, value: Any) -> object:
    if key.startswith("diagnostics_"):
        return str(value)
    return float(value)


def _as_float(image: Volume) -> Volume:
    data = np.asarray(image.data)
    return image if data.dtype == float_dtype(data.dtype) else image.with_data(data.astype(float_dtype(data.dtype)))


def _new_spacing(image: Volume, config: RadiomicsParams) -> np.ndarray | None:
    """The voxel size the settings resample to (``None``: no resampling)."""
    if config.ibsi is not None:
        return None if config.ibsi.spacing is None else resampled_spacing(image.spacing, config.ibsi)
    setting = config.pyradiomics.get("setting") or {}
    spacing = setting.get("resampledPixelSpacing")
    if setting.get("interpolator") is None or spacing is None:
        return None
    return np.array([old if new == 0 else new for old, new in zip(image.spacing, spacing)], dtype=float)


def check_roi_size(image: Volume, regions: Sequence[Region], config: RadiomicsParams) -> None:
    """Refuse a case whose largest region the resampling makes degenerate (too few voxels, absurd grid)."""
    new = _new_spacing(image, config)
    box = _union_crop(regions, image.shape, 0)
    if new is None or box is None:
        return
    old = np.asarray(image.spacing)
    source = image.metadata.get("source")
    largest = max(region.voxel_count for region in regions)
    expected = largest * float(np.prod(old / new))
    if expected < MIN_ROI_VOXELS:
        raise InvalidInputError(
            f"the region ({largest} voxels of {' x '.join(f'{s:g}' for s in old)} mm) becomes {expected:.3g} voxels "
            f"at the {' x '.join(f'{s:g}' for s in new)} mm the radiomics settings resample to (fewer than "
            f"{MIN_ROI_VOXELS}): check the image's voxel spacing", path=source)
    extent = np.array([b.stop - b.start for b in box]) * old
    grid = float(np.prod(np.ceil(extent / new) + 1))
    if grid > MAX_GRID_VOXELS:
        raise InvalidInputError(
            f"resampling the region's {' x '.join(f'{e:g}' for e in extent)} mm box to {' x '.join(f'{s:g}' for s in new)} mm "
            f"would take {grid:.3g} voxels: check the image's voxel spacing", path=source)


def _bin_width(config: RadiomicsParams) -> float | None:
    if config.ibsi is not None:
        return config.ibsi.bin_width
    setting = config.pyradiomics.get("setting") or {}
    return None if setting.get("binCount") is not None else float(setting.get("binWidth", 25))


def check_modality(image: Volume, regions: Sequence[Region], config: RadiomicsParams, modality: str | None = None) -> None:
    """Refuse a preset meant for another modality: a known modality (DICOM ``Modality`` or ``modality``)
    that differs from the preset's, or, for a CT preset, a fixed bin width that leaves fewer than
    ``MIN_GREY_LEVELS`` grey levels in the region (HU bins on MR or z-scored intensities)."""
    if config.modality is None:
        return
    source = image.metadata.get("source")
    known = (modality or str(image.metadata.get("modality", "") or "")).strip().upper()
    if known and known != "UNKNOWN" and known != config.modality:
        raise InvalidInputError(f"the radiomics settings {config.path.stem!r} are for {config.modality}, "
                                f"the image is {known}: choose a parameter file for {known}", path=source)
    width = _bin_width(config)
    largest = max(regions, key=lambda region: region.voxel_count, default=None)
    if config.modality != "CT" or width is None or largest is None or largest.voxel_count == 0:
        return  # only HU have a fixed meaning to check bin widths against
    crop = tuple(slice(o, o + n) for o, n in zip(largest.origin, largest.mask.shape))
    values = np.asarray(image.data[crop], dtype=np.float64)[largest.mask]
    levels = int(np.floor(values.max() / width) - np.floor(values.min() / width)) + 1
    if levels < MIN_GREY_LEVELS:
        raise InvalidInputError(
            f"the {config.modality} settings {config.path.stem!r} bin intensities by {width:g} but the region spans "
            f"{values.min():.4g}..{values.max():.4g}, {levels} grey level(s) (fewer than {MIN_GREY_LEVELS}): not "
            "HU? use a parameter file for this modality (e.g. --params mr)", path=source)


def _aggregation(config: RadiomicsParams) -> str:
    if config.ibsi is not None:
        return "2D" if config.ibsi.texture_2d else "3D"
    return "2_5D" if (config.pyradiomics.get("setting") or {}).get("force2D") else "3D"


def extract_features(
    image: Volume,
    regions: Sequence[Region],
    *,
    case_id: str,
    params: str | Path | RadiomicsParams = "ct",
    diagnostics: bool = False,
    modality: str | None = None,
) -> list[dict[str, object]]:
    """One row per region: ``case_id, region, distance_mm`` then PyRadiomics' columns (then ``ibsi_<tag>``
    columns when the parameter file asks for IBSI names).

    An empty region (e.g. a shell clipped away by the tissue mask) or one PyRadiomics refuses (too small
    for ``minimumROIDimensions``) gives a row without feature values (written as NaN) and a warning.
    """
    config = load_params(params)
    extractor = load_extractor(config, diagnostics=diagnostics)
    check_modality(image, regions, config, modality)
    check_roi_size(image, regions, config)
    image = _as_float(image)
    if config.ibsi is not None:
        rows = _extract_ibsi(image, regions, case_id, extractor, config, diagnostics)
    else:
        rows = _extract_pyradiomics(image, regions, case_id, extractor, diagnostics)
    if config.ibsi_names:
        spacing = _new_spacing(image, config)
        voxel_volume = float(np.prod(image.spacing if spacing is None else spacing))
        for row in rows:
            row.update(ibsi_columns(row, _aggregation(config), voxel_volume))
    return rows


def _skipped(case_id: str, region: Region) -> dict[str, object] | None:
    row: dict[str, object] = {"case_id": case_id, "region": region.name, "distance_mm": region.distance_mm}
    if region.voxel_count == 0:
        logger.warning("%s: region %s is empty (clipped away or outside the image); its features are NaN", case_id, region.key)
        return row
    return None


def _extract_pyradiomics(image: Volume, regions: Sequence[Region], case_id: str, extractor: Any, diagnostics: bool) -> list[dict[str, object]]:
    import SimpleITK as sitk

    settings = extractor.settings
    resampled = settings.get("interpolator") is not None and settings.get("resampledPixelSpacing") is not None
    crop = None
    if not resampled and not settings.get("normalize", False):
        crop = _union_crop(regions, image.shape, int(settings.get("padDistance", 5)))
    grid = image if crop is None else cropped_volume(image, crop)
    image_itk = volume_to_sitk(grid)
    rows: list[dict[str, object]] = []
    for region in regions:
        empty = _skipped(case_id, region)
        if empty is not None:
            rows.append(empty)
            continue
        row: dict[str, object] = {"case_id": case_id, "region": region.name, "distance_mm": region.distance_mm}
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


def _extract_ibsi(image: Volume, regions: Sequence[Region], case_id: str, extractor: Any, config: RadiomicsParams,
                  diagnostics: bool) -> list[dict[str, object]]:
    assert config.ibsi is not None
    box = _union_crop(regions, image.shape, 0)
    grid = None if box is None else IbsiGrid(image, box, config.ibsi)
    settings = {key: value for key, value in extractor.settings.items() if key != "additionalInfo"}
    rows: list[dict[str, object]] = []
    for region in regions:
        empty = _skipped(case_id, region)
        if empty is not None:
            rows.append(empty)
            continue
        assert grid is not None
        row: dict[str, object] = {"case_id": case_id, "region": region.name, "distance_mm": region.distance_mm}
        morphological = grid.mask(region.on_grid(grid.source_crop))
        if np.count_nonzero(morphological) < 2:
            logger.warning("%s: region %s keeps %d voxel(s) after interpolation; its features are NaN",
                           case_id, region.key, np.count_nonzero(morphological))
            rows.append(row)
            continue
        try:
            features, notes = ibsi_features(grid, morphological, extractor.enabledFeatures, settings)
        except ValueError as error:  # nothing left after re-segmentation
            logger.warning("%s: region %s: %s; its features are NaN", case_id, region.key, error)
            rows.append(row)
            continue
        if diagnostics:
            row.update((key, str(value)) for key, value in notes.items())
        row.update(features)
        rows.append(row)
    return rows

