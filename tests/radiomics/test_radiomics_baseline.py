"""Feature values match PyRadiomics' own reference baseline (data/pyradiomics/baseline) for its settings.

The baseline files record, per test case column, the settings they were produced with
(``diagnostics_Configuration_Settings``); the features are recomputed here through medxai's reader,
region builder and extractor with exactly those settings. PyRadiomics' own test accepts a relative
difference below 3%; this test asks for 1e-3 (observed: <= 9.2e-4, on brain1's mesh-based shape
features; every other value agrees to ~1e-12).

The ``*_resampling`` baselines were produced from the int16 files, and PyRadiomics resamples in the
image's pixel type: its B-spline output was truncated to integers. medxai hands PyRadiomics a float
image (the same voxels give the same features whatever the file's dtype, issue 27), so for those columns
the expected values are PyRadiomics' own extractor run on a float32 copy of the same files (the int16
baselines differ by up to 0.25 % on brain1, 12 % on lung2's mean HU).
"""
from __future__ import annotations

import ast
import csv
from pathlib import Path

import pytest
import SimpleITK as sitk
import yaml

from medxai.io.readers import read_mask, read_volume
from medxai.radiomics.extract import extract_features
from medxai.radiomics.shells import peritumoral_regions

RELATIVE = 1e-3
FAST = ("brain1", "brain1_resampling", "brain1_normalization")
SLOW = (
    "brain2", "breast1", "lung1", "lung2", "brain2_resampling", "breast1_resampling", "lung1_normalization",
    "lung2_resampling", "breast1_resegmentation", "brain2_normalization",
)


def _baseline(folder: Path, column: str) -> list[tuple[dict, dict[str, float]]]:
    """(settings, {feature: value}) groups for one baseline column, one group per distinct settings."""
    groups: list[tuple[dict, dict[str, float]]] = []
    for path in sorted(folder.glob("baseline_*.csv")):
        with open(path, newline="") as handle:
            rows = {row[0]: row[1:] for row in csv.reader(handle)}
        header = rows["featureName"]
        if column not in header:
            continue
        index = header.index(column)
        settings = ast.literal_eval(rows["diagnostics_Configuration_Settings"][index])
        values = {k: float(v[index]) for k, v in rows.items() if k.startswith("original_")}
        for known, features in groups:
            if known == settings:
                features.update(values)
                break
        else:
            groups.append((settings, values))
    return groups


def _check(test_data: Path, column: str, tmp_path: Path) -> None:
    folder = test_data / "pyradiomics"
    case = column.split("_")[0]
    image = read_volume(folder / f"{case}_image.nrrd")
    lesion = read_mask(folder / f"{case}_label.nrrd", image)
    regions = peritumoral_regions(lesion, distances_mm=(0,))
    groups = _baseline(folder / "baseline", column)
    assert groups, column
    checked = 0
    for index, (settings, expected) in enumerate(groups):
        classes = sorted({name.split("_")[1] for name in expected})
        params = tmp_path / f"{column}_{index}.yaml"
        params.write_text(yaml.safe_dump({
            "setting": {k: v for k, v in settings.items() if v is not None and k != "additionalInfo"},
            "imageType": {"Original": {}},
            "featureClass": {name: None for name in classes},
        }))
        row = extract_features(image, regions, case_id=case, params=params)[0]
        if "resampling" in column:
            expected = _pyradiomics_on_float(folder, case, params, set(expected))
        for name, value in expected.items():
            assert row[name] == pytest.approx(value, rel=RELATIVE, abs=1e-12), (column, name)
            checked += 1
    assert checked >= 90


def _pyradiomics_on_float(folder: Path, case: str, params: Path, names: set[str]) -> dict[str, float]:
    """PyRadiomics' own extractor on a float32 copy of the files (what the int16 baseline would be in float)."""
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    image = sitk.Cast(sitk.ReadImage(str(folder / f"{case}_image.nrrd")), sitk.sitkFloat32)
    mask = sitk.ReadImage(str(folder / f"{case}_label.nrrd"))
    result = RadiomicsFeatureExtractor(str(params)).execute(image, mask)
    return {name: float(result[name]) for name in names}


@pytest.mark.parametrize("column", FAST)
def test_baseline_fast(test_data: Path, column: str, tmp_path: Path) -> None:
    _check(test_data, column, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("column", SLOW)
def test_baseline_slow(test_data: Path, column: str, tmp_path: Path) -> None:
    _check(test_data, column, tmp_path)
