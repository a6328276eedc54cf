"""Batch extraction: an interrupted run starts no further case and resumes; what makes a finished case reusable."""
from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from medxai.io.nifti import write_nifti
from medxai.radiomics import batch
from medxai.radiomics.batch import run_extraction
from medxai.radiomics.cases import CaseSpec, ExtractionOptions, region_keys
from medxai.radiomics.shells import peritumoral_regions
from medxai.volume import Volume

PARAMS = "imageType: {Original: {}}\nfeatureClass: {firstorder: [Mean]}\nsetting: {binWidth: 25, label: 1}\n"


def _cases(folder: Path, count: int) -> list[CaseSpec]:
    rng = np.random.default_rng(0)
    grids = np.indices((16, 16, 8))
    inside = ((grids[0] - 8) ** 2 + (grids[1] - 8) ** 2 + (2 * (grids[2] - 4)) ** 2) <= 16
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    mask = folder / "mask.nii.gz"
    write_nifti(Volume(inside.astype(np.uint8), affine), mask)
    cases = []
    for index in range(count):
        image = folder / f"c{index}.nii.gz"
        write_nifti(Volume((np.where(inside, 50.0, -500.0) + rng.normal(0, 20, inside.shape)).astype(np.float32), affine), image)
        cases.append(CaseSpec(case_id=f"c{index}", image=image, mask=mask))
    return cases


def _case_ids(path: Path) -> list[str]:
    with open(path, newline="") as handle:
        return [row["case_id"] for row in csv.DictReader(handle)]


def test_interrupted_batch_stops_and_resumes(tmp_path: Path) -> None:
    """Ctrl-C during a batch: the queued cases are cancelled (not all computed), the finished ones resume."""
    cases = _cases(tmp_path, 8)
    (tmp_path / "p.yaml").write_text(PARAMS)
    options = ExtractionOptions(params=str(tmp_path / "p.yaml"), distances_mm=(0.0, 2.0))
    out = tmp_path / "features.csv"

    def interrupt(_: str, done: int, total: int) -> None:
        if done == 1:  # the first case is back: the user presses Ctrl-C
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_extraction(cases, out, options=options, workers=1, progress=interrupt)
    parts = list((tmp_path / "features.csv.parts").glob("*.csv"))
    assert 1 <= len(parts) < len(cases)  # without cancelling, the pool would have run all 8 before raising
    assert not out.exists()
    summary = run_extraction(cases, out, options=options, workers=1)
    assert sorted(summary.reused) == sorted(p.name.split(".")[0] for p in parts)
    assert len(summary.computed) == len(cases) - len(parts)
    assert _case_ids(out) == [c for c in (f"c{i}" for i in range(8)) for _ in range(3)]


def test_another_pyradiomics_version_recomputes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = _cases(tmp_path, 1)
    (tmp_path / "p.yaml").write_text(PARAMS)
    options = ExtractionOptions(params=str(tmp_path / "p.yaml"), distances_mm=(0.0,))
    out = tmp_path / "f.csv"
    assert run_extraction(cases, out, options=options).computed == ["c0"]
    assert run_extraction(cases, out, options=options).reused == ["c0"]
    monkeypatch.setattr(batch, "_versions", lambda: {"medxai": "0.1.0", "pyradiomics": "9.9.9"})
    assert run_extraction(cases, out, options=options).computed == ["c0"]


def test_rerun_with_save_masks_writes_the_masks(tmp_path: Path) -> None:
    """A finished case is not reused when --save-masks asks for masks its first run did not write."""
    cases = _cases(tmp_path, 1)
    (tmp_path / "p.yaml").write_text(PARAMS)
    plain = ExtractionOptions(params=str(tmp_path / "p.yaml"), distances_mm=(0.0, 2.0), box_dilation=True)
    out = tmp_path / "f.csv"
    assert run_extraction(cases, out, options=plain).computed == ["c0"]
    with_masks = replace(plain, save_masks=tmp_path / "masks")
    assert run_extraction(cases, out, options=with_masks).computed == ["c0"]
    written = {p.name for p in (tmp_path / "masks" / "c0").iterdir()}
    assert written == {f"{key}.nii.gz" for key in region_keys(with_masks)} | {"input.json"} and len(written) == 5
    assert run_extraction(cases, out, options=with_masks).reused == ["c0"]


@pytest.mark.parametrize("distances,box", [((0.0, 2.0, 4.5), False), ((3.0,), True), ((0.0, 12.0), True)])
def test_region_keys_match_the_regions(distances: tuple[float, ...], box: bool) -> None:
    lesion = np.zeros((12, 12, 6), np.uint8)
    lesion[5:7, 5:7, 2:4] = 1
    regions = peritumoral_regions(Volume(lesion, np.eye(4)), distances_mm=distances, box_dilation=box)
    options = ExtractionOptions(distances_mm=distances, box_dilation=box)
    assert region_keys(options) == [r.key for r in regions]
