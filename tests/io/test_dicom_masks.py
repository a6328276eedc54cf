"""RTSTRUCT and DICOM SEG masks on the image grid, synthetic (oblique, flipped) and real."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from scipy.spatial.transform import Rotation

from medxai.errors import InvalidInputError
from medxai.io.dicom import read_dicom_volume
from medxai.io.readers import read_mask, read_volume
from medxai.testing.dicom_mask_writer import write_rtstruct, write_seg
from medxai.testing.dicom_writer import write_dicom_series
from medxai.volume import Volume

GRIDS = {
    "oblique": Rotation.from_euler("zyx", [30.0, 12.0, -7.0], degrees=True).as_matrix() @ np.diag([0.8, 1.1, 2.5]),
    "lps_flipped": np.diag([-0.9, -0.9, 2.0]),
}


@pytest.fixture(params=sorted(GRIDS))
def image(request, tmp_path):
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = GRIDS[request.param], (10.0, -20.0, 30.0)
    volume = Volume(np.zeros((16, 14, 8), dtype=np.int16), affine)
    write_dicom_series(volume, tmp_path / "image")
    return read_dicom_volume(tmp_path / "image")


def _square(volume: Volume, i: tuple[int, int], j: tuple[int, int], k: int) -> np.ndarray:
    """World (RAS) corners of the voxel block i0..i1 x j0..j1 on slice k (edges half a voxel outside)."""
    corners = [(i[0] - 0.5, j[0] - 0.5), (i[1] + 0.5, j[0] - 0.5), (i[1] + 0.5, j[1] + 0.5), (i[0] - 0.5, j[1] + 0.5)]
    return volume.index_to_world(np.array([[a, b, k] for a, b in corners]))


def test_rtstruct_contours_fill_the_expected_voxels_with_holes(image, tmp_path):
    outer, hole, other = _square(image, (4, 9), (5, 11), 3), _square(image, (6, 7), (7, 9), 3), _square(image, (2, 3), (2, 3), 5)
    body = [_square(image, (0, 15), (0, 13), k) for k in range(8)]
    path = write_rtstruct(tmp_path / "rs.dcm", {"GTV": [outer, hole, other], "Body": body})
    expected = np.zeros(image.shape, dtype=bool)
    expected[4:10, 5:12, 3] = True
    expected[6:8, 7:10, 3] = False  # the inner contour is a hole (even-odd rule)
    expected[2:4, 2:4, 5] = True
    for label in ("GTV", "gtv", 1, "1"):
        mask = read_mask(path, image, label=label)
        assert mask.data.dtype == np.uint8 and mask.same_grid(image)
        assert np.array_equal(mask.data.astype(bool), expected)
    assert read_mask(path, image, label="Body").data.sum() == image.data.size


def test_rtstruct_refusals(image, tmp_path):
    square = _square(image, (2, 5), (2, 5), 2)
    path = write_rtstruct(tmp_path / "rs.dcm", {"GTV": [square], "Body": [square]})
    with pytest.raises(InvalidInputError, match=r"2 ROIs \(1 'GTV', 2 'Body'\): choose one"):
        read_mask(path, image)
    with pytest.raises(InvalidInputError, match="no ROI named or numbered 'Liver'"):
        read_mask(path, image, label="Liver")
    between = square + image.affine[:3, 2] * 0.5  # half a slice off the grid
    with pytest.raises(InvalidInputError, match="does not lie on an image slice"):
        read_mask(write_rtstruct(tmp_path / "off.dcm", {"GTV": [between]}), image)
    with pytest.raises(InvalidInputError, match="another frame of reference"):
        read_mask(write_rtstruct(tmp_path / "for.dcm", {"GTV": [square]}, frame_of_reference="1.2.3.4"), image)


def test_seg_segments_land_on_the_grid(image, tmp_path):
    labels = np.zeros(image.shape, dtype=np.uint8)
    labels[3:9, 2:7, 1:5] = 1
    labels[10:14, 8:12, 4:7] = 2
    labels[5, 5, 7] = 2
    path = write_seg(tmp_path / "seg.dcm", Volume(labels, image.affine), {1: "tumour", 2: "organ"}, shuffle_seed=5)
    assert np.array_equal(read_mask(path, image, label="tumour").data, (labels == 1).astype(np.uint8))
    assert np.array_equal(read_mask(path, image, label=2).data, (labels == 2).astype(np.uint8))
    shifted = image.affine.copy()
    shifted[:3, 3] += image.affine[:3, 0] * 0.5
    other = write_seg(tmp_path / "other.dcm", Volume(labels, shifted), {1: "tumour"})
    with pytest.raises(InvalidInputError, match="do not lie on the image grid"):
        read_mask(other, image, label=1)


def test_non_mask_dicom_is_refused(image, tmp_path):
    files = write_dicom_series(Volume(np.zeros((4, 4, 2), np.int16), image.affine), tmp_path / "ct")
    with pytest.raises(InvalidInputError, match="not an RTSTRUCT or SEG mask"):
        read_mask(files[0], image)


@pytest.mark.parametrize("modality", ["CT", "MR_T1", "PET"])
def test_ibsi_rtstruct_matches_the_reference_mask(test_data, modality):
    folder = test_data / "ibsi_sts" / "dicom" / "STS_002" / modality
    image = read_volume(folder / "image")
    mask = read_mask(folder / "mask" / "RS.dcm", image, label=f"GTV_Mass_{modality}")
    reference = nib.load(str(test_data / "ibsi_sts" / "nifti" / "STS_002" / f"{modality}_mask.nii.gz"))
    assert np.abs(reference.affine - image.affine).max() < 1e-4  # both on the same grid, same axis order
    truth = np.asanyarray(reference.dataobj) > 0
    ours = mask.data.astype(bool)
    dice = 2 * np.count_nonzero(ours & truth) / (np.count_nonzero(ours) + np.count_nonzero(truth))
    assert dice == 1.0


def test_real_seg_with_overlapping_segments(test_data):
    folder = test_data / "small_dicom" / "dcmqi"
    image = read_volume(folder / "ct-3slice")
    seg = pydicom.dcmread(folder / "partial_overlaps.dcm")
    pixels = seg.pixel_array
    slice_z = np.array([image.index_to_world(np.array([[0, 0, k]]))[0, 2] for k in range(image.shape[2])])
    # Expected voxel counts per (segment, slice) straight from the SEG frames (axial, z = slice position).
    expected = np.zeros((6, image.shape[2]), dtype=np.int64)
    for frame, group in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        z = float(group.PlanePositionSequence[0].ImagePositionPatient[2])
        assert np.abs(slice_z - z).min() < 1e-3
        expected[number, int(np.argmin(np.abs(slice_z - z)))] += int(pixels[frame].sum())
    for number in range(1, 6):
        mask = read_mask(folder / "partial_overlaps.dcm", image, label=number)
        assert mask.data.sum(axis=(0, 1)).tolist() == expected[number].tolist()
    # The dcmqi label maps share the DICOM grid exactly.
    assert read_mask(folder / "liver_seg.nrrd", image).same_grid(image)
