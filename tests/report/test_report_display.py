"""What a radiologist reads on the report's images: the grey window per modality, a scale bar in mm from the
scan's spacing, signed maps transparent below a stated threshold, peak slices away from the edge of the field
of view, the case named by its input, and a warning when --scores holds other cases.

Grids are LPS-flipped and anisotropic (and oblique where stated); expected values come from the test's own
arithmetic on the phantom, never from the code under test.
"""
from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from scipy import ndimage

from medxai.errors import ConfigError
from medxai.io.nifti import write_nifti
from medxai.report.figures import Colouring, grey_rgb, panel_rgb, view_grid
from medxai.report.pdf import report_case
from medxai.report.views import Reorientation, peak_index, slice_views, threshold_overlay
from medxai.report.windows import Window, choose_window
from medxai.testing.report_case import phantom, write_report_case
from medxai.volume import Volume

LPS_ANISOTROPIC = np.diag([-1.0, -1.1, 2.5])


def _pdftotext(pdf: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) not installed")
    done = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True)
    return " ".join(done.stdout.split())


def _rendered_page(pdf: Path, page: int, folder: Path) -> np.ndarray:
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) not installed")
    subprocess.run(["pdftoppm", "-r", "60", "-png", "-f", str(page), "-l", str(page), str(pdf), str(folder / "page")],
                   check=True)
    return imread(sorted(folder.glob("page*.png"))[0])[..., :3]


# --- grey window ---------------------------------------------------------------------------------------------

def test_ct_windows_come_from_the_metadata_or_the_option() -> None:
    hu = np.full((8, 8, 8), -1000.0)
    body = np.zeros(hu.shape, dtype=bool)
    plain = choose_window(hu, body, modality="CT")
    assert (plain.low, plain.high) == (-160.0, 240.0) and plain.label == "CT W400 L40 (soft tissue)"
    lung = choose_window(hu, body, modality="CT", hints=("CHEST", "Thorax 1.25 LUNG"))
    assert (lung.low, lung.high) == (-1350.0, 150.0) and "W1500 L-600 (lung)" in lung.label
    brain = choose_window(hu, body, modality="CT", hints=(None, "HEAD routine"))
    assert (brain.low, brain.high) == (0.0, 80.0) and "W80 L40 (brain)" in brain.label
    bone = choose_window(hu, body, modality="CT", option="bone")
    assert (bone.low, bone.high) == (-500.0, 1300.0)
    custom = choose_window(hu, body, modality="CT", hints=("LUNG",), option="350,50")  # the option wins
    assert (custom.low, custom.high) == (-125.0, 225.0) and "W350 L50" in custom.label
    with pytest.raises(ConfigError, match="unknown window"):
        choose_window(hu, body, modality="CT", option="mediastinum-ish")


def test_mr_window_is_the_1st_to_99th_percentile_inside_the_body() -> None:
    rng = np.random.default_rng(0)
    image = np.full((20, 20, 20), -3.5)  # a z-scored brain: a constant background below the brain's values
    body = np.zeros(image.shape, dtype=bool)
    body[4:16, 4:16, 4:16] = True
    image[body] = rng.normal(size=int(body.sum()))
    window = choose_window(image, body, modality="MR")
    low, high = np.percentile(image[body], [1, 99])
    assert (window.low, window.high) == pytest.approx((low, high))
    assert window.label == "MR 1-99th percentile (inside the body)" and window.panel_label == "MR 1-99th percentile"
    assert "percentile" in choose_window(image, body, modality=None).label


# --- overlay transparency and colours ------------------------------------------------------------------------

def _signed_view() -> tuple[object, np.ndarray, float]:
    volume, _ = phantom(linear=LPS_ANISOTROPIC, shape=(32, 30, 12), seed=2)
    rng = np.random.default_rng(4)
    heat = rng.normal(scale=0.05, size=volume.shape)
    heat[14:18, 12:16, 5:7] = 1.0    # evidence for the class
    heat[4:8, 20:24, 5:7] = -1.0     # evidence against it
    body = np.ones(volume.shape, dtype=bool)
    shown, level = threshold_overlay(heat, percentile=95, body=body)
    view = slice_views(Reorientation.of(volume), volume.data, point=(16, 14, 6), overlay=shown)[0]
    return view, heat, level


def test_signed_map_below_the_threshold_leaves_the_scan_pixels_unchanged() -> None:
    view, heat, level = _signed_view()
    window = Window(float(view.anatomy.min()), float(view.anatomy.max()), "test")
    colouring = Colouring.for_map(heat, signed=True, label="test", threshold=level)
    assert colouring.vmin == -colouring.vmax  # symmetric around zero
    grey = grey_rgb(view.anatomy, window)
    drawn = panel_rgb(view, window, colouring)
    values = np.nan_to_num(view.overlay)
    below = np.abs(values) < level
    assert below.sum() > 100 and (~below).sum() > 10
    np.testing.assert_array_equal(drawn[below], grey[below])  # the scan shows through, untouched
    changed = np.abs(drawn - grey).max(axis=-1) > 0.1
    assert changed[~below].all(), "every voxel at or above the threshold is drawn"
    red, blue = values >= level, values <= -level
    assert (drawn[red][:, 0] > drawn[red][:, 2]).all() and (drawn[blue][:, 2] > drawn[blue][:, 0]).all()


def test_faint_signed_values_are_coloured_not_white_fog() -> None:
    """RdBu_r's white middle would paint values just above the threshold white: the fog seen on BRATS."""
    heat = np.linspace(-1.0, 1.0, 201)
    colouring = Colouring.for_map(heat, signed=True, label="test", threshold=0.05)
    faint = colouring.rgba(np.array([0.06, -0.06]))[:, :3]
    assert (faint.max(axis=1) - faint.min(axis=1) > 0.25).all()  # clearly salmon / light blue, not grey-white


def test_the_threshold_is_taken_inside_the_body() -> None:
    heat = np.zeros((20, 20, 20))
    body = np.zeros(heat.shape, dtype=bool)
    body[5:15, 5:15, 5:15] = True
    heat[body] = np.linspace(0.0, 1.0, int(body.sum()))  # outside: zeros that would pull a global percentile down
    _, level = threshold_overlay(heat, percentile=90, body=body)
    assert level == pytest.approx(float(np.percentile(np.linspace(0.0, 1.0, 1000), 90)))
    _, everywhere = threshold_overlay(heat, percentile=90)
    assert everywhere < level


# --- scale bar -----------------------------------------------------------------------------------------------

def _white_run(panel: np.ndarray) -> int:
    """Longest horizontal run of white pixels (the bar; glyphs of its label are shorter)."""
    white = (panel > 0.97).all(axis=-1)
    best = 0
    for line in white:
        run = 0
        for value in line:
            run = run + 1 if value else 0
            best = max(best, run)
    return best


def test_scale_bar_length_follows_the_spacing_along_the_displayed_axis() -> None:
    """Columns of the coronal view run along x (1.0 mm), of the sagittal view along y (2.0 mm): the same
    number of columns is 64 mm wide in one and 128 mm in the other, so the bars differ in pixels."""
    shape = (64, 64, 24)
    volume = Volume(np.zeros(shape, dtype=np.float32), np.diag([-1.0, -2.0, 3.0, 1.0]))  # LPS, anisotropic
    views = slice_views(Reorientation.of(volume), volume.data, point=(32, 32, 12))
    coronal, sagittal = views[1], views[2]
    assert coronal.pixel_mm == (3.0, 1.0) and sagittal.pixel_mm == (3.0, 2.0)
    window = Window(0.0, 1.0, "test")
    for view, field_mm, bar_mm in ((coronal, 64.0, 10.0), (sagittal, 128.0, 20.0)):
        grid = view_grid([("row", [view, view, view])], colouring=None, window=window)
        assert grid.scale_bars_mm == (bar_mm,) * 3
        pixels = imread(io.BytesIO(grid.png))[..., :3]
        labels, _ = ndimage.label((pixels < 0.05).all(axis=-1))  # the black scans (and black glyphs)
        largest = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
        rows, columns = ndimage.find_objects(labels)[largest - 1]
        panel = pixels[rows, columns]
        assert _white_run(panel) == pytest.approx(panel.shape[1] * bar_mm / field_mm, abs=2)


# --- peak slice ----------------------------------------------------------------------------------------------

def test_peak_slice_is_never_at_the_edge_of_the_field_of_view() -> None:
    volume, _ = phantom(linear=LPS_ANISOTROPIC, shape=(40, 36, 16), seed=3)
    body = np.zeros(volume.shape, dtype=bool)
    body[6:34, 6:30, 1:15] = True   # the body reaches slice 1 and 14 of 16
    heat = np.zeros(volume.shape)
    heat[20, 18, 8] = 1.0           # the strongest voxel inside the body, mid-volume
    heat[20, 18, 0] = 5.0           # stronger: on the outermost slice
    heat[20, 18, 14] = 4.0          # stronger: inside the body but one slice from the edge
    heat[0, 0, 8] = 9.0             # strongest: a corner, outside the body
    assert peak_index(heat, body=body) == (20, 18, 8)
    heat[:] = 0.0
    heat[0, 18, 8] = 1.0            # a map whose only non-zero voxel is on the edge: shown there, not lost
    assert peak_index(heat, body=body) == (0, 18, 8)


# --- the PDF: window, scale bar, case name, peak note (pdftotext) ---------------------------------------------

def _case_with_named_input(root: Path, *, modality: str, value_scale: float) -> tuple[Path, Path]:
    """A case whose scan is ``patient_017/image.nii.gz`` (so its case id is ``image``) with a sidecar."""
    volume, mask = phantom(linear=LPS_ANISOTROPIC, shape=(40, 36, 16), seed=3)
    scan = write_nifti(volume.with_data(volume.data * value_scale - 1000.0 * (modality == "CT")),
                       root / "patient_017" / "image.nii.gz")
    (root / "patient_017" / "image.json").write_text(json.dumps({"modality": modality}))
    case = write_report_case(root / "out", volume=volume, mask=mask, case_id="image", scan_path=Path(scan),
                             methods=("smoothgrad", "integrated_gradients"), failing=())
    record = json.loads((case.case_dir / "explanations.json").read_text())
    record["input"] = str(Path(scan).resolve())
    (case.case_dir / "explanations.json").write_text(json.dumps(record))
    return case.case_dir, Path(scan)


def test_ct_report_states_window_scale_bar_and_case_name(tmp_path: Path) -> None:
    case_dir, _ = _case_with_named_input(tmp_path, modality="CT", value_scale=10.0)
    pdf = tmp_path / "report.pdf"
    results = report_case([case_dir], pdf)  # no --scan: explanations.json records it
    assert results.name == "patient_017/image.nii.gz"
    text = _pdftotext(pdf)
    assert "Explanation report · patient_017/image.nii.gz" in text
    assert "case image" not in text and "report · image" not in text
    assert "CT W400 L40 (soft tissue)" in text
    # fields 40 x 1.0 mm wide (axial, coronal: 10 mm bars) and 36 x 1.1 = 39.6 mm (sagittal: 5 mm)
    assert "Scale bar (lower left of each image): 5 mm / 10 mm" in text
    assert "red: evidence for lesion, blue: against" in text
    assert "95th percentile of |attribution| inside the body" in text
    rgb = _rendered_page(pdf, 2, tmp_path)
    assert rgb.std() > 0.05


def test_mr_report_states_its_percentile_window_and_an_option_overrides_it(tmp_path: Path) -> None:
    case_dir, _ = _case_with_named_input(tmp_path, modality="MR", value_scale=1.0)
    pdf = tmp_path / "report.pdf"
    report_case([case_dir], pdf)
    text = _pdftotext(pdf)
    assert "MR 1-99th percentile (inside the body)" in text and "W400" not in text
    report_case([case_dir], pdf, window="lung")
    assert "MR W1500 L-600 (lung)" in _pdftotext(pdf)
    with pytest.raises(ConfigError, match="unknown window"):
        report_case([case_dir], tmp_path / "bad.pdf", window="W400")
    assert not (tmp_path / "bad.pdf").exists()


def test_a_map_peaking_at_the_edge_says_so(tmp_path: Path) -> None:
    case_dir, scan = _case_with_named_input(tmp_path, modality="MR", value_scale=1.0)
    heatmap = case_dir / "smoothgrad.nii.gz"
    from medxai.io.readers import read_volume

    values = read_volume(heatmap)
    data = values.data.copy()
    data[0, 0, 0] = 10 * float(data.max())  # a hot corner, as Grad-CAM's padding artefacts
    write_nifti(values.with_data(data), heatmap)
    pdf = tmp_path / "report.pdf"
    report_case([case_dir], pdf, methods=["smoothgrad"])
    assert "strongest voxel overall lies outside the body or at the edge of the field of view" in _pdftotext(pdf)


# --- --scores of another case --------------------------------------------------------------------------------

def test_scores_of_other_cases_warn_through_the_cli(cli, tmp_path: Path) -> None:
    case_dir, _ = _case_with_named_input(tmp_path, modality="MR", value_scale=1.0)
    (case_dir / "scores.csv").unlink()
    other = tmp_path / "other_scores.csv"
    other.write_text("case_id,method,infidelity\ncase_0099,smoothgrad,0.1\ncase_0100,smoothgrad,0.2\n")
    pdf = tmp_path / "r.pdf"
    result = cli("report", case_dir, "--scores", other, "-o", pdf)
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert str(other) in warnings[0] and "no scores for case image" in warnings[0]
    assert "case_0099, case_0100" in warnings[0]
    matching = tmp_path / "scores.csv"
    matching.write_text("case_id,method,infidelity\nimage,smoothgrad,0.1\n")
    result = cli("report", case_dir, "--scores", matching, "-o", pdf)
    assert result.exit_code == 0 and "warning:" not in result.stderr
