"""``medxai run --input dicomweb://...?StudyInstanceUID=... --send dicomweb://...`` through the real CLI against
real Orthancs (the ``orthanc`` fixture): a two-series oblique study in, SEG + parametric maps + SR back into the
same study, a refusing PACS fails the cases and keeps their files, resume sends them once."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient

from medxai.dicom_export.pacs import MARKER, parse_study_address, retrieve_study
from medxai.errors import ConfigError
from medxai.io.readers import read_volume
from medxai.pipeline.runner import run_pipeline
from medxai.pipeline.schema import load_pipeline
from medxai.testing.dicom_writer import write_dicom_series
from medxai.volume import Volume

from .conftest import free_port, get_json

PIPELINE = """
model:
  path: {model}
explain:
  enabled: true
  methods: [saliency]
  batch_size: 2
segment:
  enabled: true
  method: saliency
  threshold: otsu
  negative_class: null
"""
OBLIQUE = np.array([[0.0, 0.0, 2.5, -20.0], [-0.9, 0.0, 0.0, 30.0], [0.0, -1.1, 0.0, 40.0], [0, 0, 0, 1.0]])
FLIPPED = np.array([[-1.2, 0.0, 0.0, 15.0], [0.0, 0.768, 0.84, -10.0], [0.0, -0.224, 2.88, 5.0], [0, 0, 0, 1.0]])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A seeded tiny untrained classifier, the pipeline, and one study of two series (oblique; flipped and
    anisotropic) of the same patient, with shuffled file names."""
    import torch

    from medxai.models.model_dir import save_model_dir
    from medxai.models.preprocessing import PreprocessingConfig
    from medxai.models.registry import build_network

    root = tmp_path_factory.mktemp("pacs-run")
    torch.manual_seed(0)
    network = build_network("tiny", in_channels=1, num_classes=2, spatial_size=(16, 16, 16))
    save_model_dir(root / "model", network=network, arch="tiny", classes=["lesion", "normal"], task="classification",
                   preprocessing=PreprocessingConfig(spatial_size=(16, 16, 16)), training={}, metrics={})
    (root / "pipeline.yaml").write_text(PIPELINE.format(model=root / "model"))
    rng = np.random.default_rng(4)
    for number, affine in ((1, OBLIQUE), (2, FLIPPED)):
        data = rng.integers(0, 300, size=(16, 12, 8)).astype(np.int16)
        data[5:10, 4:8, 3:6] += 800  # a bright blob for the saliency map to find
        write_dicom_series(Volume(data, affine), root / "study" / f"s{number}", shuffle_seed=number,
                           series_number=number, patient_name="Doe^Jane", series_description=f"scan {number}")
    return root


def _upload(base: str, workspace: Path) -> str:
    """STOW-RS the study into the Orthanc at ``base`` (dicomweb-client directly, not medxai); its Study UID."""
    datasets = [pydicom.dcmread(path) for path in sorted((workspace / "study").rglob("*.dcm"))]
    DICOMwebClient(f"{base}/dicom-web").store_instances(datasets)
    assert len(get_json(f"{base}/instances")) == 16  # type: ignore[arg-type]
    return str(datasets[0].StudyInstanceUID)


def _manifest(out: Path) -> dict[str, dict[str, str]]:
    with (out / "manifest.csv").open(newline="") as handle:
        return {row["case_id"]: row for row in csv.DictReader(handle)}


def _study_instances(base: str, study: str) -> list[dict]:
    return get_json(f"{base}/dicom-web/studies/{study}/instances")  # type: ignore[return-value]


def _value(item: dict, tag: str) -> str:
    return str(item[tag]["Value"][0])


def test_pacs_study_in_results_back_refused_send_kept_then_resumed_once(workspace, orthanc, tmp_path, cli, checks):
    source, refusing = orthanc(), orthanc(refuse=True)
    study = _upload(source, workspace)
    address = f"{source.replace('http://', 'dicomweb://')}/dicom-web?StudyInstanceUID={study}"
    pipeline, out = workspace / "pipeline.yaml", tmp_path / "out"

    # 1. a PACS that refuses every store: both cases fail with the reason, their files stay in OUT
    first = cli("run", pipeline, "--input", address, "-o", out, "--send", f"{refusing}/dicom-web")
    assert first.exit_code == 3, first.stderr
    rows = _manifest(out)
    assert sorted(rows) == ["CT_1", "CT_2"]  # one case per image series, named by modality and series number
    for case_id, row in rows.items():
        assert row["status"] == "failed" and row["error"].startswith("not sent to the PACS: "), row
        assert "did not keep" in row["error"] and "the files stay in" in row["error"], row["error"]
        assert sorted(p.name for p in (out / case_id / "dicom").iterdir()) == ["pm-saliency.dcm", "seg.dcm", "sr.dcm"]
    assert get_json(f"{refusing}/instances") == []
    [inputs] = (out / ".inputs").iterdir()
    assert sorted(p.name for p in inputs.iterdir()) == [MARKER, "CT_1", "CT_2"]
    assert "Doe" not in str(inputs) and "Jane" not in json.dumps(json.loads((inputs / MARKER).read_text()))
    computed = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.parent != out}

    # 2. resume against a working PACS: the cases are sent, not recomputed, and land in the source study
    second = cli("run", pipeline, "--input", address, "-o", out, "--send", address.partition("?")[0], "--resume", "--json")
    assert second.exit_code == 0, second.stderr
    summary = json.loads(second.stdout)
    assert (summary["done"], summary["failed"], summary["reused"], summary["sent"]) == (2, 0, 2, 2)
    assert all(row["status"] == "done" and row["error"] == "" for row in _manifest(out).values())
    assert {p: p.stat().st_mtime_ns for p in computed} == computed  # neither retrieved nor exported again
    instances = _study_instances(source, study)
    by_modality: dict[str, int] = {}
    for item in instances:
        by_modality[_value(item, "00080060")] = by_modality.get(_value(item, "00080060"), 0) + 1
    assert by_modality == {"CT": 16, "SEG": 2, "OT": 2, "SR": 2}  # OT: the parametric maps
    written = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in out.glob("*/dicom/*.dcm")}
    assert written <= {_value(item, "00080018") for item in instances}

    # the SEG as the PACS returns it lies on the source series' grid: Dice 1.0 with the case's NIfTI mask
    for case_id, series in (("CT_1", "s1"), ("CT_2", "s2")):
        seg_uid = pydicom.dcmread(out / case_id / "dicom" / "seg.dcm", stop_before_pixels=True).SOPInstanceUID
        [item] = [i for i in instances if _value(i, "00080018") == seg_uid]
        seg = DICOMwebClient(f"{source}/dicom-web").retrieve_instance(study, _value(item, "0020000E"), seg_uid)
        seg.save_as(tmp_path / f"{case_id}.dcm", enforce_file_format=True)
        grid = read_volume(workspace / "study" / series)
        mask = read_volume(out / case_id / "mask.nii.gz")
        np.testing.assert_allclose(mask.affine, grid.affine, atol=1e-4)
        assert mask.data.any()
        assert checks.dice(checks.frames_on_grid(tmp_path / f"{case_id}.dcm", grid.affine, grid.shape, segment=1),
                           mask.data) == 1.0

    # 3. resuming again stores nothing twice
    third = cli("run", pipeline, "--input", address, "-o", out, "--send", address.partition("?")[0], "--resume")
    assert third.exit_code == 0, third.stderr
    assert "2 sent to the PACS" in third.stdout
    assert len(_study_instances(source, study)) == len(instances) == 22

    # 4. the study now holds medxai's own SEG/SR/parametric maps: a new retrieval takes the image series only,
    # and SeriesInstanceUID narrows it to one
    folder = retrieve_study(parse_study_address(address), tmp_path / "fresh")
    assert sorted(p.name for p in folder.iterdir()) == [MARKER, "CT_1", "CT_2"]
    assert sorted(json.loads((folder / MARKER).read_text())["skipped"]) == ["OT #910", "OT #910", "SEG #900", "SEG #900",
                                                                           "SR #991", "SR #991"]
    series_uid = pydicom.dcmread(next((workspace / "study" / "s2").iterdir()), stop_before_pixels=True).SeriesInstanceUID
    one = retrieve_study(parse_study_address(f"{address}&SeriesInstanceUID={series_uid}"), tmp_path / "one")
    assert sorted(p.name for p in one.iterdir()) == [MARKER, "CT_2"]
    assert len(list((one / "CT_2").iterdir())) == 8


def test_an_unreachable_pacs_input_is_one_line_without_credentials(tmp_path, cli):
    port = free_port()
    address = f"dicomweb://medxai:s3cret@127.0.0.1:{port}/dicom-web?StudyInstanceUID=1.2.826.0.1.3680043.2.1125.1"
    (tmp_path / "p.yaml").write_text("dicom:\n  enabled: true\n")
    result = cli("run", tmp_path / "p.yaml", "--input", address, "-o", tmp_path / "out")
    assert result.exit_code == 4, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"http://127.0.0.1:{port}/dicom-web?StudyInstanceUID=" in lines[0], result.stderr
    assert "cannot retrieve the study from the PACS" in lines[0]
    assert "s3cret" not in result.stderr + result.stdout
    assert not (tmp_path / "out").exists()


def test_a_pacs_address_without_a_study_is_refused(tmp_path, cli):
    (tmp_path / "p.yaml").write_text("dicom:\n  enabled: true\n")
    result = cli("run", tmp_path / "p.yaml", "--input", "dicomweb://127.0.0.1:1/dicom-web", "-o", tmp_path / "out")
    assert result.exit_code == 4 and "?StudyInstanceUID=UID" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_send_needs_the_dicom_stage(tmp_path):
    (tmp_path / "p.yaml").write_text("dicom:\n  enabled: false\n")
    with pytest.raises(ConfigError, match="dicom.enabled"):
        run_pipeline(load_pipeline(tmp_path / "p.yaml"), input_path=tmp_path, out_dir=tmp_path / "out",
                     send="dicomweb://127.0.0.1:1/dicom-web")
    assert not (tmp_path / "out").exists()
