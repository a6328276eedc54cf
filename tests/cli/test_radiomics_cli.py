"""``medxai radiomics extract|study`` through the real entry point, on small oblique phantoms."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medxai.io.itk import write_itk
from medxai.io.nifti import write_nifti
from medxai.volume import Volume

PARAMS = """\
imageType:
  Original: {}
featureClass:
  shape: [VoxelVolume, MeshVolume]
  firstorder: [Mean, Median]
setting:
  binWidth: 25
  label: 1
"""


def _affine() -> np.ndarray:
    angle = 0.35
    rotation = np.array([[1, 0, 0], [0, math.cos(angle), -math.sin(angle)], [0, math.sin(angle), math.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.9, -0.9, 2.5])
    affine[:3, 3] = (-20.0, 30.0, -15.0)
    return affine


def _case(folder: Path, name: str, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    shape = (40, 40, 16)
    grids = np.indices(shape, dtype=np.float64)
    spacing = (0.9, 0.9, 2.5)
    inside = sum(((grids[a] - c) * spacing[a]) ** 2 for a, c in enumerate((20, 19, 8))) <= 6.0**2
    data = np.where(inside, 60.0, -700.0) + rng.normal(0, 30, shape)
    affine = _affine()
    image, mask = folder / f"{name}.nii.gz", folder / f"{name}_mask.nii.gz"
    write_nifti(Volume(data.astype(np.float32), affine), image)
    write_nifti(Volume(inside.astype(np.uint8), affine), mask)
    return image, mask


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def params(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(PARAMS)
    return path


def test_extract_single_case_with_mask_and_saved_masks(cli, tmp_path: Path, params: Path) -> None:
    image, mask = _case(tmp_path, "pt01", 0)
    out = tmp_path / "features.csv"
    result = cli("radiomics", "extract", image, "--mask", mask, "--expansions", "0,2,5", "--box-dilation",
                 "--params", params, "--save-masks", tmp_path / "masks", "-o", out)
    assert result.exit_code == 0, result.stderr
    rows = _rows(out)
    assert [(r["region"], float(r["distance_mm"])) for r in rows] == [
        ("lesion", 0.0), ("shell", 2.0), ("expanded", 2.0), ("box", 2.0), ("shell", 5.0), ("expanded", 5.0), ("box", 5.0)]
    assert list(rows[0])[:3] == ["case_id", "region", "distance_mm"] and rows[0]["case_id"] == "pt01"
    assert "original_shape_VoxelVolume" in rows[0] and "original_firstorder_Mean" in rows[0]
    assert not any(c.startswith("diagnostics_") for c in rows[0])
    lesion_volume = float(rows[0]["original_shape_VoxelVolume"])
    assert lesion_volume == pytest.approx(np.count_nonzero(nib.load(mask).get_fdata()) * 0.9 * 0.9 * 2.5)
    assert float(rows[0]["original_firstorder_Mean"]) > 0 > float(rows[1]["original_firstorder_Mean"])
    saved = sorted(p.name for p in (tmp_path / "masks" / "pt01").iterdir())
    assert saved == sorted(["lesion_0mm.nii.gz", "shell_2mm.nii.gz", "expanded_2mm.nii.gz", "box_2mm.nii.gz",
                            "shell_5mm.nii.gz", "expanded_5mm.nii.gz", "box_5mm.nii.gz", "input.json"])
    shell = nib.load(tmp_path / "masks" / "pt01" / "shell_5mm.nii.gz")
    assert shell.shape == (40, 40, 16) and np.allclose(shell.affine, _affine(), atol=1e-5)
    assert not (shell.get_fdata() * nib.load(mask).get_fdata()).any()


def test_extract_bbox_with_segmenter_and_empty_shell_row(cli, tmp_path: Path, params: Path) -> None:
    image, mask = _case(tmp_path, "pt02", 1)
    tissue = tmp_path / "tissue.nii.gz"
    only_lesion = nib.load(mask)
    nib.save(nib.Nifti1Image(only_lesion.get_fdata().astype(np.uint8), only_lesion.affine), tissue)
    out = tmp_path / "f.csv"
    result = cli("radiomics", "extract", image, "--bbox", "10,9,3,30,29,13", "--segmenter", "gmm", "--expansions", "0,3",
                 "--tissue-mask", tissue, "--params", params, "-o", out)
    assert result.exit_code == 0, result.stderr
    rows = _rows(out)
    assert float(rows[0]["original_shape_VoxelVolume"]) > 0
    truth = np.count_nonzero(nib.load(mask).get_fdata()) * 0.9 * 0.9 * 2.5
    assert float(rows[0]["original_shape_VoxelVolume"]) == pytest.approx(truth, rel=0.2)
    assert rows[1]["region"] == "shell" and math.isnan(float(rows[1]["original_firstorder_Mean"]))  # clipped away
    assert "empty" in result.stderr
    box_voxels = 21 * 21 * 11  # how the lesion was found, on every row: the segmenter, its prior, its share of the box
    lesion_voxels = float(rows[0]["original_shape_VoxelVolume"]) / (0.9 * 0.9 * 2.5)
    assert {(r["lesion_from"], r["lesion_fills_box"]) for r in rows} == {("gmm+box prior", "false")}
    assert float(rows[0]["lesion_box_fraction"]) == pytest.approx(lesion_voxels / box_voxels, abs=1e-3)


def test_manifest_two_workers_and_resume(cli, tmp_path: Path, params: Path) -> None:
    (tmp_path / "data").mkdir()
    image_a, mask_a = _case(tmp_path / "data", "a", 2)
    image_b, _ = _case(tmp_path / "data", "b", 3)
    centre = ",".join(f"{v:.3f}" for v in (_affine() @ np.array([20, 19, 8, 1]))[:3])
    corners = ",".join(f"{v:.3f}" for v in (_affine() @ np.array([[10, 9, 3, 1], [30, 29, 13, 1]]).T).T[:, :3].ravel())
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("case_id,image,mask,bbox,bbox_mm,seed_mm,radius_mm,label\n"
                        f"A1,data/{image_a.name},data/{mask_a.name},,,,,malignant\n"
                        f"B2,data/{image_b.name},,10 9 3 30 29 13,,,,benign\n"
                        f'C3,data/{image_b.name},,,"{corners}",,,benign\n'
                        f'D4,data/{image_b.name},,,,"{centre}",10,malignant\n')
    out = tmp_path / "features.csv"
    first = cli("radiomics", "extract", manifest, "--expansions", "0,4", "--params", params, "--workers", "2", "-o", out)
    assert first.exit_code == 0, first.stderr
    rows = _rows(out)
    assert [r["case_id"] for r in rows] == [c for c in ("A1", "B2", "C3", "D4") for _ in range(3)]
    lesion = {r["case_id"]: float(r["original_shape_VoxelVolume"]) for r in rows if r["region"] == "lesion"}
    assert lesion["C3"] == pytest.approx(lesion["B2"], rel=0.1) and lesion["D4"] == pytest.approx(lesion["B2"], rel=0.1)
    parts = sorted((tmp_path / "features.csv.parts").glob("*.csv"))
    assert len(parts) == 4
    stamps = {p.name: p.stat().st_mtime_ns for p in parts}
    out.unlink()
    second = cli("radiomics", "extract", manifest, "--expansions", "0,4", "--params", params, "--workers", "2", "-o", out)
    assert second.exit_code == 0 and "4 reused" in second.stderr
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "features.csv.parts").glob("*.csv")} == stamps
    assert _rows(out) == rows
    changed = cli("radiomics", "extract", manifest, "--expansions", "0,6", "--params", params, "-o", out)
    assert changed.exit_code == 0 and "4 case(s) extracted" in changed.stderr  # new settings: recomputed


def test_batch_survives_a_bad_case(cli, tmp_path: Path, params: Path) -> None:
    image, mask = _case(tmp_path, "good", 4)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"image,mask\n{image.name},{mask.name}\nmissing.nii.gz,{mask.name}\n")
    out = tmp_path / "f.csv"
    result = cli("radiomics", "extract", manifest, "--expansions", "0", "--params", params, "-o", out)
    assert result.exit_code == 3 and "missing" in result.stderr
    assert [r["case_id"] for r in _rows(out)] == ["good"]


@pytest.mark.parametrize("args,code", [
    (["--bbox", "1,2,3"], 4),
    (["--mask", "nope.nii.gz"], 4),
    (["--segmenter", "watershed", "--bbox", "1,1,1,9,9,9"], 4),
    (["--expansions", "0,-3", "--bbox", "1,1,1,9,9,9"], 4),
    (["--params", "nope.yaml", "--bbox", "1,1,1,9,9,9"], 4),
    (["--bbox", "50,50,20,60,60,30"], 4),  # wholly outside the 40 x 40 x 16 image
    (["--bbox", "30,30,10,60,60,30"], 4),  # overlaps the image, but its centre is off it
    (["--seed-point=500,0,0", "--radius", "600"], 4),  # the seed is off the image
    (["--seed-point=0,0,0"], 4),  # no radius
    (["--mask", "{mask}", "--mask-label", "gtv"], 4),  # a name does not select a label value in a label map
    (["--mask", "{other_grid}"], 4),
    (["--mask", "{mask}", "--tissue-mask", "{other_grid}"], 4),
])
def test_extract_bad_inputs(cli, tmp_path: Path, args: list[str], code: int) -> None:
    """Bad input: the exit code and exactly one stderr line naming the problem, and no output file."""
    image, mask = _case(tmp_path, "bad", 5)
    other = tmp_path / "other_grid.nii.gz"
    write_nifti(Volume(nib.load(mask).get_fdata()[:, :, :15].astype(np.uint8), _affine()), other)
    args = [a.format(mask=mask, other_grid=other) for a in args]
    result = cli("radiomics", "extract", image, *args, "-o", tmp_path / "f.csv")
    assert result.exit_code == code and result.stderr.startswith("medxai: error:"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert not (tmp_path / "f.csv").exists()


def test_extract_bbox_mm_seed_point_and_nrrd_mask(cli, tmp_path: Path, params: Path) -> None:
    """--bbox-mm, --seed-point + --radius (RAS mm on an oblique grid) and an NRRD mask find the same lesion."""
    image, mask = _case(tmp_path, "pt03", 7)
    truth = np.count_nonzero(nib.load(mask).get_fdata()) * 0.9 * 0.9 * 2.5
    corners = (_affine() @ np.array([[10, 9, 3, 1], [30, 29, 13, 1]]).T).T[:, :3]  # the voxel box of the test above
    centre = (_affine() @ np.array([20, 19, 8, 1]))[:3]
    nrrd = write_itk(Volume(nib.load(mask).get_fdata().astype(np.uint8), _affine()), tmp_path / "pt03_mask.nrrd")
    runs = {
        "bbox_mm": ["--bbox-mm", ",".join(f"{v:.3f}" for v in corners.ravel())],
        "seed": ["--seed-point", ",".join(f"{v:.3f}" for v in centre), "--radius", "10"],
        "nrrd": ["--mask", nrrd],
    }
    volumes = {}
    for name, args in runs.items():
        out = tmp_path / f"{name}.csv"
        result = cli("radiomics", "extract", image, *args, "--expansions", "0,3", "--params", params, "-o", out)
        assert result.exit_code == 0, (name, result.stderr)
        rows = _rows(out)
        assert [(r["region"], r["distance_mm"]) for r in rows] == [("lesion", "0.0"), ("shell", "3.0"), ("expanded", "3.0")]
        volumes[name] = float(rows[0]["original_shape_VoxelVolume"])
    assert volumes["nrrd"] == pytest.approx(truth)
    assert volumes["bbox_mm"] == pytest.approx(truth, rel=0.1) and volumes["seed"] == pytest.approx(truth, rel=0.1)


def test_study_command(cli, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.permutation([0, 1] * 10)
    with open(tmp_path / "features.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["case_id", "region", "distance_mm", "original_firstorder_Mean", "original_firstorder_Median"])
        for distance, gain in ((0, 0.0), (4, 3.0)):
            for i in range(20):
                writer.writerow([f"c{i}", "lesion" if distance == 0 else "shell", distance,
                                 rng.normal() + gain * y[i], rng.normal()])
    (tmp_path / "labels.csv").write_text("case_id,label\n" + "".join(f"c{i},{['benign', 'malignant'][y[i]]}\n" for i in range(20)))
    result = cli("radiomics", "study", tmp_path / "features.csv", "--labels", tmp_path / "labels.csv", "-o", tmp_path / "study",
                 "--classifiers", "lr,knn", "--folds", "4", "--repeats", "2", "--seed", "3")
    assert result.exit_code == 0, result.stderr
    assert "best: shell 4 mm" in result.stdout
    for name in ("auc.csv", "auc_vs_distance.png", "top_features.csv", "study.json"):
        assert (tmp_path / "study" / name).is_file()


def test_extract_dicom_series_with_rtstruct(cli, tmp_path: Path, test_data: Path, params: Path) -> None:
    """A DICOM CT series + RTSTRUCT ROI gives the same lesion as the NIfTI export of the same GTV."""
    dicom = test_data / "ibsi_sts" / "dicom" / "STS_002" / "CT"
    nifti = test_data / "ibsi_sts" / "nifti" / "STS_002"
    from_dicom, from_nifti = tmp_path / "dicom.csv", tmp_path / "nifti.csv"
    result = cli("radiomics", "extract", dicom / "image", "--mask", dicom / "mask" / "RS.dcm", "--mask-label", "GTV_Mass_CT",
                 "--expansions", "0,4", "--params", params, "--diagnostics", "-o", from_dicom)
    assert result.exit_code == 0, result.stderr
    assert cli("radiomics", "extract", nifti / "CT_image.nii.gz", "--mask", nifti / "CT_mask.nii.gz", "--expansions", "0,4",
               "--params", params, "-o", from_nifti).exit_code == 0
    dicom_rows, nifti_rows = _rows(from_dicom), _rows(from_nifti)
    assert any(c.startswith("diagnostics_") for c in dicom_rows[0])
    for a, b in zip(dicom_rows, nifti_rows):
        assert float(a["original_shape_VoxelVolume"]) == pytest.approx(float(b["original_shape_VoxelVolume"]), rel=1e-6)
        assert float(a["original_firstorder_Mean"]) == pytest.approx(float(b["original_firstorder_Mean"]), rel=1e-4)


def test_manifest_rows_without_lesion_are_skipped(cli, tmp_path: Path, params: Path) -> None:
    image, mask = _case(tmp_path, "withlesion", 6)
    manifest = tmp_path / "labels.csv"
    manifest.write_text(f"case_id,image,mask,label\nc1,{image.name},{mask.name},lesion\nc2,{image.name},,normal\n")
    out = tmp_path / "f.csv"
    result = cli("radiomics", "extract", manifest, "--expansions", "0", "--params", params, "-o", out)
    assert result.exit_code == 0 and "skipped" in result.stderr
    assert [r["case_id"] for r in _rows(out)] == ["c1"]
