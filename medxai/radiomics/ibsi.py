"""IBSI image processing before PyRadiomics (IBSI 1 reference manual, Zwanenburg et al., arXiv:1612.07003).

PyRadiomics computes the features; medxai prepares what it is handed, the IBSI way:

- *interpolation* to ``resampledSpacing`` on a grid whose centre is the original grid's centre ("align
  grid centres"): ``n_new = ceil(n * s / s_new)`` voxels per axis. The image is interpolated linearly
  (``sitkLinear``) or with cubic splines (``sitkBSpline``: ITK's interpolating cubic B-spline, the spline
  of order 3 through the samples that IBSI's "tricubic spline" configuration E and its reference
  implementations use, not a smoothing approximation); points beyond the image take the nearest voxel's
  value. ``roundIntensities`` rounds the interpolated intensities (CT: integer HU) as IBSI does;
- the *mask* (each region) is interpolated linearly and voxels with a value >= 0.5 kept (up to 1e-6,
  so that floating-point rounding cannot drop voxels that lie exactly halfway): the
  *morphological* mask, on which shape features are computed;
- *re-segmentation* of the *intensity* mask: a range ``[lo, hi]`` (inclusive; ``null`` for an open end),
  then outliers beyond mean +- ``resegmentOutliers`` x SD (population SD) of what the range kept;
- *discretisation* with IBSI's bin origin: fixed bin size ``w`` gives ``floor((x - lo) / w) + 1`` where
  ``lo`` is the re-segmentation range's lower bound (the ROI minimum without one); fixed bin number ``N``
  gives ``floor(N (x - min) / (max - min)) + 1`` (``N`` at the maximum) over the ROI. PyRadiomics' own
  binning starts its first bin at ``floor(min / w) * w`` and renumbers the lowest occupied level as 1,
  which shifts every grey-level-index feature: its feature classes are handed this discretisation instead
  (:func:`ibsi_feature_class`, which replaces PyRadiomics' ``_applyBinning``; pinned to PyRadiomics 3.0.1);
- ``texture2D``: texture features per slice (the third voxel axis) and averaged over slices, IBSI's 2D
  aggregation ("2D, averaged"); shape and intensity features stay 3D as in IBSI configurations A and B.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from medxai.errors import ConfigError
from medxai.volume import Volume

Crop = tuple[slice, slice, slice]
INTERPOLATIONS = ("linear", "cubic")
_KEYS = {"resampledSpacing", "interpolation", "roundIntensities", "resegmentRange", "resegmentOutliers",
         "binWidth", "binCount", "texture2D"}
_PAD = {"linear": 2, "cubic": 12}  # source voxels kept around the region: a cubic spline's prefilter is global
# Grids whose spacings are in simple ratios (2 mm from 3 mm) put new voxels exactly halfway between old ones:
# the interpolated mask is then 0.5 up to rounding of the grid origin, which must not decide ">= 0.5".
_HALF_TOLERANCE = 1e-6


@dataclass(frozen=True)
class IbsiSettings:
    """The ``medxai: ibsi:`` section of a parameter file."""

    spacing: tuple[float | None, float | None, float | None] | None = None
    interpolation: str = "linear"
    round_intensities: bool = False
    resegment_range: tuple[float | None, float | None] | None = None
    outlier_sd: float | None = None
    bin_width: float | None = None
    bin_count: int | None = None
    texture_2d: bool = False

    @classmethod
    def from_mapping(cls, section: object, path: str | Path | None = None) -> "IbsiSettings":
        """Parse and check the YAML mapping (keys as in the shipped ``ibsi-*`` presets)."""
        if not isinstance(section, dict) or set(section) - _KEYS:
            raise ConfigError(f"'medxai: ibsi:' must be a mapping with keys among {', '.join(sorted(_KEYS))}", path=path)
        width, count = section.get("binWidth"), section.get("binCount")
        if (width is None) == (count is None):
            raise ConfigError("medxai: ibsi: give exactly one of binWidth or binCount", path=path)
        if width is not None and not (_number(width) and width > 0):
            raise ConfigError(f"medxai: ibsi: binWidth must be > 0, got {width!r}", path=path)
        if count is not None and not (isinstance(count, int) and not isinstance(count, bool) and count >= 1):
            raise ConfigError(f"medxai: ibsi: binCount must be an integer >= 1, got {count!r}", path=path)
        interpolation = section.get("interpolation", "linear")
        if interpolation not in INTERPOLATIONS:
            raise ConfigError(f"medxai: ibsi: interpolation must be one of {', '.join(INTERPOLATIONS)}", path=path)
        outliers = section.get("resegmentOutliers")
        if outliers is not None and not (_number(outliers) and outliers > 0):
            raise ConfigError(f"medxai: ibsi: resegmentOutliers (SDs) must be > 0, got {outliers!r}", path=path)
        return cls(
            spacing=_triple(section.get("resampledSpacing"), path),
            interpolation=interpolation,
            round_intensities=_flag(section, "roundIntensities", path),
            resegment_range=_range(section.get("resegmentRange"), path),
            outlier_sd=None if outliers is None else float(outliers),
            bin_width=None if width is None else float(width),
            bin_count=count,
            texture_2d=_flag(section, "texture2D", path),
        )


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _flag(section: Mapping[str, Any], key: str, path: str | Path | None) -> bool:
    value = section.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"medxai: ibsi: {key} must be true or false", path=path)
    return value


def _triple(value: object, path: str | Path | None) -> tuple[float | None, float | None, float | None] | None:
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 3 and all(v is None or (_number(v) and v > 0) for v in value)):
        raise ConfigError("medxai: ibsi: resampledSpacing must be [si, sj, sk] in mm (> 0, or null to keep an axis)", path=path)
    return tuple(None if v is None else float(v) for v in value)  # type: ignore[return-value]


def _range(value: object, path: str | Path | None) -> tuple[float | None, float | None] | None:
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(v is None or _number(v) for v in value)):
        raise ConfigError("medxai: ibsi: resegmentRange must be [lo, hi] (null for an open end)", path=path)
    lo, hi = value
    if lo is not None and hi is not None and lo > hi:
        raise ConfigError(f"medxai: ibsi: resegmentRange lower bound {lo} exceeds the upper bound {hi}", path=path)
    return (None if lo is None else float(lo)), (None if hi is None else float(hi))


def cropped_volume(image: Volume, crop: Crop) -> Volume:
    """The sub-box ``crop`` of ``image``, with the affine that keeps it in place."""
    shift = np.eye(4)
    shift[:3, 3] = [s.start for s in crop]
    return Volume(data=image.data[crop], affine=image.affine @ shift, metadata=image.metadata)


def float_dtype(dtype: np.dtype) -> np.dtype:
    """The float type that holds every value of ``dtype`` exactly (float32 for 8/16-bit integers and float32)."""
    return np.result_type(dtype, np.float32)


def resampled_spacing(spacing: Sequence[float], settings: IbsiSettings) -> np.ndarray:
    """The new voxel size per axis (an axis given as ``null`` keeps its spacing)."""
    if settings.spacing is None:
        return np.asarray(spacing, dtype=float)
    return np.array([s if n is None else n for s, n in zip(spacing, settings.spacing)], dtype=float)


def centred_grid(shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IBSI's grid alignment ("align grid centres"): ``(size, offset, ratio)``, where new voxel ``m`` of
    an axis lies at old continuous index ``offset + m * ratio``."""
    n, s, new = (np.asarray(v, dtype=float) for v in (shape, spacing, new_spacing))
    ratio = new / s
    size = np.ceil(np.round(n / ratio, 9)).astype(int)
    offset = (n - 1) / 2 - (size - 1) / 2 * ratio
    return size, offset, ratio


class IbsiGrid:
    """The image on IBSI's (resampled) grid, restricted to a sub-box around ``box`` (old voxel indices).

    ``source_crop`` is the sub-box of the original grid the regions must be given on (:meth:`mask`);
    ``image`` is a float64 SimpleITK image (interpolated and rounded as the settings say)."""

    def __init__(self, image: Volume, box: Crop, settings: IbsiSettings) -> None:
        import SimpleITK as sitk

        from medxai.io.itk import volume_to_sitk

        self.settings = settings
        self._sitk = sitk
        shape = np.asarray(image.shape)
        if settings.spacing is None:
            self.source_crop: Crop = tuple(slice(max(b.start - 1, 0), min(b.stop + 1, n)) for b, n in zip(box, shape))  # type: ignore[assignment]
            self.image = volume_to_sitk(_as_float64(cropped_volume(image, self.source_crop)))
            self._reference = None
            return
        new_spacing = resampled_spacing(image.spacing, settings)
        size, offset, ratio = centred_grid(shape, image.spacing, new_spacing)
        margin = np.ceil(1 / ratio).astype(int) + 1
        lo = np.maximum(np.floor((np.array([b.start for b in box]) - offset) / ratio).astype(int) - margin, 0)
        hi = np.minimum(np.ceil((np.array([b.stop - 1 for b in box]) - offset) / ratio).astype(int) + margin, size - 1)
        pad = _PAD[settings.interpolation]
        first = np.maximum(np.floor(offset + lo * ratio).astype(int) - pad, 0)
        last = np.minimum(np.ceil(offset + hi * ratio).astype(int) + pad, shape - 1)
        self.source_crop = tuple(slice(int(a), int(b) + 1) for a, b in zip(first, last))  # type: ignore[assignment]
        source = volume_to_sitk(_as_float64(cropped_volume(image, self.source_crop)))
        origin = source.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in offset + lo * ratio - first))
        self._reference = dict(size=[int(v) for v in hi - lo + 1], outputOrigin=origin,
                               outputSpacing=tuple(float(v) for v in new_spacing), outputDirection=source.GetDirection())
        self._source = source
        interpolator = sitk.sitkLinear if settings.interpolation == "linear" else sitk.sitkBSpline
        self.image = self._resample(source, interpolator)
        if settings.round_intensities:
            self.image = sitk.Round(self.image)

    def _resample(self, source: Any, interpolator: int) -> Any:
        sitk = self._sitk
        return sitk.Resample(source, self._reference["size"], sitk.Transform(), interpolator,
                             self._reference["outputOrigin"], self._reference["outputSpacing"],
                             self._reference["outputDirection"], 0.0, sitk.sitkFloat64, True)

    def mask(self, region: np.ndarray) -> np.ndarray:
        """A region given on ``source_crop`` as a boolean array on the new grid, in SimpleITK's (k, j, i)
        order: linear interpolation, then >= 0.5 (IBSI); unchanged without resampling."""
        sitk = self._sitk
        array = np.ascontiguousarray(np.transpose(region, (2, 1, 0)))
        if self._reference is None:
            return array.astype(bool)
        source = sitk.GetImageFromArray(array.astype(np.float64))
        source.CopyInformation(self._source)
        return sitk.GetArrayFromImage(self._resample(source, sitk.sitkLinear)) >= 0.5 - _HALF_TOLERANCE

    def array(self) -> np.ndarray:
        """The image's intensities in (k, j, i) order."""
        return self._sitk.GetArrayFromImage(self.image)


def _as_float64(volume: Volume) -> Volume:
    return Volume(data=np.asarray(volume.data, dtype=np.float64), affine=volume.affine, metadata=volume.metadata)


def resegment(intensities: np.ndarray, morphological: np.ndarray, settings: IbsiSettings) -> np.ndarray:
    """The intensity mask: the morphological mask within the range, then without outliers."""
    mask = morphological.copy()
    if settings.resegment_range is not None:
        lo, hi = settings.resegment_range
        if lo is not None:
            mask &= intensities >= lo
        if hi is not None:
            mask &= intensities <= hi
    if settings.outlier_sd is not None and mask.any():
        values = intensities[mask]
        mean, sd = float(values.mean()), float(values.std())
        mask &= np.abs(intensities - mean) <= settings.outlier_sd * sd
    return mask


@dataclass(frozen=True)
class Discretiser:
    """IBSI discretisation of one region (origin and scale fixed from the whole 3D region)."""

    lower: float
    width: float | None = None
    count: int | None = None
    upper: float | None = None

    @classmethod
    def for_region(cls, values: np.ndarray, settings: IbsiSettings) -> "Discretiser":
        low, high = float(values.min()), float(values.max())
        if settings.bin_width is not None:
            lo = settings.resegment_range[0] if settings.resegment_range is not None else None
            return cls(lower=low if lo is None else lo, width=settings.bin_width)
        return cls(lower=low, count=settings.bin_count, upper=high)

    def levels(self, values: np.ndarray) -> np.ndarray:
        """Grey levels 1, 2, ... of ``values`` (IBSI 1 manual, section 2.7)."""
        if self.width is not None:
            return np.floor((values - self.lower) / self.width).astype(np.int64) + 1
        assert self.count is not None and self.upper is not None
        if self.upper == self.lower:
            return np.ones(values.shape, dtype=np.int64)
        levels = np.floor(self.count * (values - self.lower) / (self.upper - self.lower)).astype(np.int64) + 1
        return np.minimum(levels, self.count)

    def grey_levels(self, values: np.ndarray) -> int:
        """IBSI's number of grey levels ``N_g`` (the bin count, or the highest level in the region)."""
        return self.count if self.count is not None else int(self.levels(values).max())


def ibsi_feature_class(base: type, discretiser: Discretiser, grey_levels: int) -> type:
    """``base`` (a PyRadiomics feature class) with IBSI's discretisation instead of PyRadiomics' own.

    Overrides ``RadiomicsFeaturesBase._applyBinning`` (PyRadiomics 3.0.1): the same outputs (binned
    matrix, ``grayLevels``, ``Ng``), where ``Ng`` is the region's IBSI grey-level count, also for a
    single slice of it (IBSI's normalised inverse differences divide by it)."""

    class IbsiBinned(base):  # type: ignore[misc, valid-type]
        def _applyBinning(self, matrix: np.ndarray) -> np.ndarray:
            binned = np.zeros(matrix.shape, dtype=int)
            binned[self.maskArray] = discretiser.levels(matrix[self.maskArray])
            self.coefficients["grayLevels"] = np.unique(binned[self.maskArray])
            self.coefficients["Ng"] = grey_levels
            return binned

    IbsiBinned.__name__ = IbsiBinned.__qualname__ = base.__name__
    IbsiBinned.__module__ = base.__module__  # PyRadiomics' logger name (its notes stay muted, see params.py)
    return IbsiBinned


def _features(cls: type, image: Any, mask: Any, names: Sequence[str] | None, settings: Mapping[str, Any]) -> dict[str, float]:
    instance = cls(image, mask, **settings)
    for name in names or ():
        instance.enableFeatureByName(name)
    return {name: float(value) for name, value in instance.execute().items()}


def ibsi_features(
    grid: IbsiGrid,
    morphological: np.ndarray,
    enabled: Mapping[str, Sequence[str] | None],
    pyradiomics_settings: Mapping[str, Any],
) -> tuple[dict[str, float], dict[str, object]]:
    """PyRadiomics features of one region on ``grid`` (``morphological``: its (k, j, i) mask after
    interpolation), keyed ``original_<class>_<feature>`` as PyRadiomics' extractor names them, and the
    processing's diagnostics (voxel counts, intensity range, grey levels)."""
    import SimpleITK as sitk
    from radiomics import getFeatureClasses

    settings = grid.settings
    intensities = grid.array()
    intensity = resegment(intensities, morphological, settings)
    if not intensity.any():
        raise ValueError("re-segmentation left no voxel in the region")
    values = intensities[intensity]
    discretiser = Discretiser.for_region(values, settings)
    grey_levels = discretiser.grey_levels(values)
    classes = getFeatureClasses()
    options = dict(pyradiomics_settings, label=1)

    def sitk_mask(array: np.ndarray) -> Any:
        mask = sitk.GetImageFromArray(array.astype(np.uint8))
        mask.CopyInformation(grid.image)
        return mask

    rows: dict[str, float] = {}
    texture: dict[str, Sequence[str] | None] = {}
    for name, features in enabled.items():
        if name == "shape":
            found = _features(classes[name], grid.image, sitk_mask(morphological), features, options)
        elif name == "firstorder" or not settings.texture_2d:
            found = _features(ibsi_feature_class(classes[name], discretiser, grey_levels), grid.image,
                              sitk_mask(intensity), features, options)
        else:
            texture[name] = features
            continue
        rows.update((f"original_{name}_{key}", value) for key, value in found.items())
    if texture:
        rows.update(_per_slice(grid, intensity, texture, options, discretiser, grey_levels, sitk_mask))
    diagnostics = {
        "diagnostics_ibsi_morphological_voxels": int(morphological.sum()),
        "diagnostics_ibsi_intensity_voxels": int(intensity.sum()),
        "diagnostics_ibsi_interpolated_mean": float(intensities[morphological].mean()),
        "diagnostics_ibsi_resegmented_range": f"{values.min():g}..{values.max():g}",
        "diagnostics_ibsi_grey_levels": grey_levels,
    }
    return rows, diagnostics


def _per_slice(
    grid: IbsiGrid,
    intensity: np.ndarray,
    texture: Mapping[str, Sequence[str] | None],
    options: Mapping[str, Any],
    discretiser: Discretiser,
    grey_levels: int,
    sitk_mask: Callable[[np.ndarray], Any],
) -> dict[str, float]:
    """Texture features per slice (k), averaged over the slices where they are defined (IBSI 2D)."""
    from radiomics import getFeatureClasses

    classes = getFeatureClasses()
    slice_options = dict(options, force2D=True, force2Ddimension=0)
    collected: dict[str, list[float]] = {}
    for k in np.flatnonzero(intensity.any(axis=(1, 2))):
        if np.count_nonzero(intensity[k]) < 2:  # one voxel: no neighbours, no texture (PyRadiomics refuses it too)
            continue
        only = np.zeros_like(intensity)
        only[k] = intensity[k]
        for name, features in texture.items():
            found = _features(ibsi_feature_class(classes[name], discretiser, grey_levels), grid.image,
                              sitk_mask(only), features, slice_options)
            for key, value in found.items():
                collected.setdefault(f"original_{name}_{key}", []).append(value)
    with np.errstate(invalid="ignore"):
        return {key: float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
                for key, values in collected.items()}
