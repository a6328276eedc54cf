"""export-dicom on generated series: SEG and Parametric Map geometry, dciodvfy, SR content, identifiers, bad inputs."""
from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from scipy.spatial.transform import Rotation

from medxai.dicom_export.export import export_case
from medxai.io.nifti import write_nifti
from medxai.io.readers import read_volume
from medxai.testing.dicom_writer import write_dicom_series
from medxai.volume import Volume

SHAPE = (16, 12, 8)
OBLIQUE = Rotation.from_euler("xyz", [17.0, -23.0, 8.0], degrees=True).as_matrix()
GRIDS = {  # linear part, origin
    "oblique_anisotropic": (OBLIQUE @ np.diag([0.7, 1.3, 2.9]), (12.3, -45.6, 78.9)),
    "lps_flipped": (np.diag([-0.8, -0.9, 2.0]), (50.0, 60.0, -70.0)),
    "left_handed_oblique": (OBLIQUE @ np.diag([0.9, -1.1, 1.7]), (-3.0, 4.0, -5.0)),  # DICOM stores k reversed
}
SOURCE_IDENTIFIERS = {"PatientName": "Doe^Jane", "PatientID": "PID-12345", "PatientBirthDate": "19700101",
                      "PatientSex": "F", "StudyDate": "20240102", "StudyTime": "101010", "StudyID": "S77",
                      "AccessionNumber": "ACC-9", "ReferringPhysicianName": "House^Greg"}
# Type 3 identifiers of the source that no exported object needs: none may be copied.
SOURCE_EXTRAS = {"PatientAddress": "12 Elm Street", "OtherPatientIDs": "OTHER-777", "InstitutionName": "Hospital XYZ",
                 "PatientAge": "054Y", "PatientComments": "secret comment"}


def _affine(name: str) -> np.ndarray:
    linear, origin = GRIDS[name]
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = linear, origin
    return affine


def _series(folder: Path, affine: np.ndarray) -> list[Path]:
    data = np.random.default_rng(0).integers(-100, 1000, size=SHAPE).astype(np.int16)
    paths = write_dicom_series(Volume(data, affine), folder, modality="CT", shuffle_seed=5, patient_name="Doe^Jane")
    for path in paths:  # identifiers a real scan carries
        dataset = pydicom.dcmread(path)
        for keyword, value in {**SOURCE_IDENTIFIERS, **SOURCE_EXTRAS}.items():
            setattr(dataset, keyword, value)
        dataset.save_as(path)
    return paths


def _mask() -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[3:9, 2:5, 1:4] = 1  # 54 voxels
    mask[12, 9, 6] = 1  # one voxel far from the box: catches a flip of any axis
    return mask


def _shell(mask: np.ndarray) -> np.ndarray:
    shell = np.zeros_like(mask)
    shell[2:10, 1:6, 0:5] = 1
    shell[mask > 0] = 0
    return shell


def _heatmap() -> np.ndarray:
    return np.random.default_rng(1).normal(size=SHAPE).astype(np.float32) * np.float32(1e-3)


def _case(folder: Path, grid: Volume, *, pdf: bool = True) -> Path:
    """A case folder as segment + radiomics --save-masks + explain + score + report leave it, on ``grid``."""
    folder.mkdir(parents=True)
    write_nifti(grid.with_data(_mask()), folder / "mask.nii.gz")
    write_nifti(grid.with_data(_mask()), folder / "lesion_0mm.nii.gz")
    (folder / "regions").mkdir()  # where the pipeline's radiomics stage saves its regions
    write_nifti(grid.with_data(_shell(_mask())), folder / "regions" / "shell_2mm.nii.gz")
    write_nifti(grid.with_data(_heatmap()), folder / "saliency.nii.gz")
    write_nifti(grid.with_data(-_heatmap()), folder / "integrated_gradients.nii.gz")
    record = {"case_id": "case1", "target": {"requested": "predicted", "resolved": {"class": "lesion"}},
              "methods": {"saliency": {"file": "saliency.nii.gz", "sign": "positive"},
                          "integrated_gradients": {"file": "integrated_gradients.nii.gz", "sign": "signed"}}}
    (folder / "explanations.json").write_text(json.dumps(record))
    (folder / "scores.csv").write_text("case_id,method,infidelity,max_sensitivity,sanity_spearman,verdict,verdict_reason\n"
                                       "case1,saliency,0.25,0.5,0.125,trusted,all checks pass\n"
                                       "case1,integrated_gradients,0.75,1.5,0.875,do-not-use,failed the sanity check\n")
    (folder / "features.csv").write_text("case_id,region,distance_mm,original_shape_VoxelVolume,original_firstorder_Mean\n"
                                         "case1,lesion,0,54,101.5\ncase1,shell,2,146,-3.25\n")
    if pdf:
        (folder / "report.pdf").write_bytes(b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n")
    return folder


@pytest.fixture(params=sorted(GRIDS))
def exported(request, tmp_path):
    """(source series grid as written, mask grid the case folder uses, output folder) for each grid."""
    affine = _affine(request.param)
    _series(tmp_path / "series", affine)
    source_volume = read_volume(tmp_path / "series")
    # The case folder's NIfTIs are on the grid the user started from: for a left-handed grid that is the
    # original volume (DICOM brings it back with k reversed), which the exporter must map exactly.
    grid = Volume(np.zeros(SHAPE, np.uint8), affine)
    case = _case(tmp_path / "case", grid)
    export_case(case, tmp_path / "series", tmp_path / "out")
    return grid, source_volume, tmp_path / "out"


def test_writes_every_object(exported):
    _, _, out = exported
    assert sorted(p.name for p in out.iterdir()) == ["pm-integrated_gradients.dcm", "pm-saliency.dcm", "report-pdf.dcm",
                                                     "seg.dcm", "sr.dcm"]


def test_seg_frames_land_on_the_mask_voxels(exported, checks):
    grid, _, out = exported
    expected = {1: _mask(), 2: _mask(), 3: _shell(_mask())}
    for number, mask in expected.items():
        back = checks.frames_on_grid(out / "seg.dcm", grid.affine, SHAPE, segment=number)
        assert checks.dice(back, mask) == 1.0
        assert np.array_equal(back > 0, mask > 0)


def test_seg_read_back_with_highdicom_on_the_same_world_grid(exported, checks):
    grid, _, out = exported
    seg = hd.seg.segread(out / "seg.dcm")
    assert [seg.get_segment_description(n).segment_label for n in (1, 2, 3)] == [
        "weakly-supervised lesion mask", "lesion 0 mm", "peritumoral shell 2 mm"]
    volume = seg.get_volume(combine_segments=False)
    array = volume.array  # (slices, rows, columns, segments), LPS affine
    index = np.indices(array.shape[:3]).reshape(3, -1)
    lps = volume.affine[:3, :3] @ index + volume.affine[:3, 3:4]
    ras = np.diag([-1.0, -1.0, 1.0]) @ lps
    voxel = np.linalg.inv(grid.affine[:3, :3]) @ (ras - grid.affine[:3, 3:4])
    assert np.abs(voxel - np.rint(voxel)).max() < 1e-3
    i, j, k = np.rint(voxel).astype(int)
    back = np.zeros(SHAPE, dtype=bool)
    back[i, j, k] = array[..., 2].reshape(-1) > 0  # segment 3: the shell
    assert checks.dice(back, _shell(_mask())) == 1.0


def test_parametric_maps_hold_the_heatmaps(exported, checks):
    grid, _, out = exported
    for name, values in (("saliency", _heatmap()), ("integrated_gradients", -_heatmap())):
        back = checks.frames_on_grid(out / f"pm-{name}.dcm", grid.affine, SHAPE)
        assert back.dtype == np.float32
        np.testing.assert_array_equal(back, values)
        dataset = pydicom.dcmread(out / f"pm-{name}.dcm", stop_before_pixels=True)
        assert name in dataset.SeriesDescription and "target lesion" in dataset.SeriesDescription
        assert ("sign positive" if name == "saliency" else "sign signed") in dataset.SeriesDescription


def test_every_object_passes_dciodvfy(exported, checks):
    _, _, out = exported
    for path in sorted(out.iterdir()):
        assert checks.dciodvfy_errors(path) == [], path.name


def test_objects_reference_the_source_study_and_frame_of_reference(exported):
    _, source_volume, out = exported
    for path in sorted(out.iterdir()):
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        source = pydicom.dcmread(next((path.parent.parent / "series").iterdir()), stop_before_pixels=True)
        assert dataset.StudyInstanceUID == source.StudyInstanceUID
        assert dataset.SeriesInstanceUID != source.SeriesInstanceUID
        assert dataset.SOPInstanceUID != source.SOPInstanceUID
        if path.name.startswith(("seg", "pm-")):
            assert dataset.FrameOfReferenceUID == source_volume.metadata["frame_of_reference_uid"]


def _text_values(dataset: pydicom.Dataset) -> list[str]:
    values = []
    for element in dataset.iterall():
        if element.VR in ("PN", "LO", "SH", "LT", "ST", "UT", "UC", "DA", "CS", "AS") and element.value is not None:
            items = element.value if element.VM > 1 else [element.value]
            values += [str(item) for item in items]
    return values


def test_no_identifier_beyond_the_required_copies(exported):
    _, _, out = exported
    for path in sorted(out.iterdir()):
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        for keyword, value in SOURCE_IDENTIFIERS.items():
            assert str(dataset.get(keyword, "")) == value, (path.name, keyword)
        for keyword in SOURCE_EXTRAS:
            assert keyword not in dataset, (path.name, keyword)
        texts = " | ".join(_text_values(dataset))
        for value in SOURCE_EXTRAS.values():
            assert value not in texts, (path.name, value)


def test_structured_report_carries_volumes_features_and_verdicts(exported):
    grid, _, out = exported
    sr = hd.sr.srread(out / "sr.dcm")
    seg = pydicom.dcmread(out / "seg.dcm", stop_before_pixels=True)
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier for g in groups] == ["weakly-supervised lesion mask", "lesion 0 mm", "peritumoral shell 2 mm"]
    voxel_ml = abs(np.linalg.det(grid.affine[:3, :3])) / 1000
    shell = groups[2]
    assert shell.referenced_segment.referenced_sop_instance_uid == seg.SOPInstanceUID
    assert shell.referenced_segment.referenced_segment_numbers == [3]
    volume = shell.get_measurements(name=pydicom.sr.codedict.codes.SCT.Volume)[0]
    assert volume.value == pytest.approx((8 * 5 * 5 - 6 * 3 * 3) * voxel_ml)  # the shell box minus the lesion box
    assert volume.unit.value == "ml"
    means = [m for m in shell.get_measurements() if m.name.meaning == "original_firstorder_Mean"]
    assert [m.value for m in means] == [-3.25]
    by_name = {g.tracking_identifier: g for g in sr.content.get_image_measurement_groups()}
    assert set(by_name) == {"explanation saliency", "explanation integrated_gradients"}
    verdicts = by_name["explanation integrated_gradients"].get_qualitative_evaluations()
    assert [v.value.meaning for v in verdicts] == ["do-not-use"]
    infidelity = [m for m in by_name["explanation saliency"].get_measurements() if m.name.meaning == "infidelity"]
    assert [m.value for m in infidelity] == [0.25]


def test_enhanced_multiframe_source_with_shuffled_frames(tmp_path, checks):
    from medxai.testing.dicom_enhanced_writer import write_enhanced_series

    affine = _affine("oblique_anisotropic")
    data = np.random.default_rng(3).integers(0, 500, size=SHAPE).astype(np.int16)
    source = write_enhanced_series(Volume(data, affine), tmp_path / "enhanced.dcm", shuffle_seed=4)
    grid = Volume(np.zeros(SHAPE, np.uint8), affine)
    case = tmp_path / "case"
    case.mkdir()
    write_nifti(grid.with_data(_mask()), case / "mask.nii.gz")
    write_nifti(grid.with_data(_heatmap()), case / "saliency.nii.gz")
    (case / "explanations.json").write_text(json.dumps({"methods": {"saliency": {"sign": "positive"}}}))
    export_case(case, source, tmp_path / "out")
    assert checks.dice(checks.frames_on_grid(tmp_path / "out" / "seg.dcm", affine, SHAPE, segment=1), _mask()) == 1.0
    np.testing.assert_array_equal(checks.frames_on_grid(tmp_path / "out" / "pm-saliency.dcm", affine, SHAPE), _heatmap())
    for path in sorted((tmp_path / "out").iterdir()):
        assert checks.dciodvfy_errors(path) == [], path.name
