"""The ``dicom`` pipeline stage after radiomics on a DICOM series."""
from __future__ import annotations

import numpy as np
import pydicom

from medxai.io.nifti import write_nifti
from medxai.io.readers import read_volume
from medxai.pipeline.runner import run_pipeline
from medxai.pipeline.schema import load_pipeline
from medxai.testing.dicom_writer import write_dicom_series
from medxai.volume import Volume


def test_dicom_stage_exports_the_radiomics_regions(tmp_path, checks):
    affine = np.array([[0.0, 0.0, 2.5, -20.0], [-0.9, 0.0, 0.0, 30.0], [0.0, -1.1, 0.0, 40.0], [0, 0, 0, 1.0]])
    data = np.random.default_rng(0).integers(0, 200, size=(16, 12, 8)).astype(np.int16)
    write_dicom_series(Volume(data, affine), tmp_path / "scans" / "case1", shuffle_seed=3)
    grid = read_volume(tmp_path / "scans" / "case1")
    mask = np.zeros(grid.shape, np.uint8)
    mask[5:10, 4:8, 3:6] = 1
    write_nifti(grid.with_data(mask), tmp_path / "mask.nii.gz")
    (tmp_path / "labels.csv").write_text("case_id,image,mask,label\ncase1,scans/case1,mask.nii.gz,lesion\n")
    (tmp_path / "p.yaml").write_text("radiomics:\n  enabled: true\n  expansions: [0, 2]\n  save_masks: true\n"
                                     "dicom:\n  enabled: true\n")
    summary = run_pipeline(load_pipeline(tmp_path / "p.yaml"), input_path=tmp_path / "labels.csv", out_dir=tmp_path / "out",
                           workers=1)
    assert summary.done == ["case1"], summary
    out = tmp_path / "out" / "case1" / "dicom"
    assert sorted(p.name for p in out.iterdir()) == ["seg.dcm", "sr.dcm"]
    labels = [s.SegmentLabel for s in pydicom.dcmread(out / "seg.dcm", stop_before_pixels=True).SegmentSequence]
    assert labels == ["lesion 0 mm", "peritumoral shell 2 mm", "lesion expanded by 2 mm"]
    assert checks.dice(checks.frames_on_grid(out / "seg.dcm", grid.affine, grid.shape, segment=1), mask) == 1.0
    shell = read_volume(tmp_path / "out" / "case1" / "regions" / "shell_2mm.nii.gz")
    assert checks.dice(checks.frames_on_grid(out / "seg.dcm", grid.affine, grid.shape, segment=2), shell.data) == 1.0


def test_dicom_stage_fails_a_nifti_case_with_its_reason(tmp_path):
    volume = Volume(np.zeros((8, 8, 4), np.int16), np.diag([1.0, 1.0, 2.0, 1.0]))
    write_nifti(volume, tmp_path / "scans" / "plain.nii.gz")
    (tmp_path / "p.yaml").write_text("dicom:\n  enabled: true\n")
    summary = run_pipeline(load_pipeline(tmp_path / "p.yaml"), input_path=tmp_path / "scans", out_dir=tmp_path / "out",
                           workers=1)
    assert summary.failed == ["plain"]
    manifest = (tmp_path / "out" / "manifest.csv").read_text()
    assert "not a DICOM series" in manifest
