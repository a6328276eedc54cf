"""``medxai sample-data`` through the real entry point."""
from __future__ import annotations

import csv
import json

import nibabel as nib


def test_sample_data_writes_a_labelled_cohort(cli, tmp_path):
    out = tmp_path / "cohort"
    result = cli("sample-data", out, "--cases", "6", "--seed", "3", "--size", "24")
    assert result.exit_code == 0, result.stderr
    labels_csv = out / "labels.csv"
    assert labels_csv.read_text().splitlines()[0] == "case_id,image,mask,label"
    with open(labels_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and sorted(r["label"] for r in rows) == ["lesion"] * 3 + ["normal"] * 3
    for row in rows:
        image = labels_csv.parent / row["image"]
        assert not row["image"].startswith("/") and image.is_file()
        assert len(nib.load(image).shape) == 3
        assert bool(row["mask"]) == (row["label"] == "lesion")
        if row["mask"]:
            assert (labels_csv.parent / row["mask"]).is_file()
    assert "normal: 3" in result.stderr and "lesion: 3" in result.stderr and str(out) in result.stderr


def test_sample_data_json_and_malignancy_task(cli, tmp_path):
    result = cli("sample-data", tmp_path, "--cases", "4", "--size", "24", "--task", "malignancy", "--json")
    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["classes"] == {"benign": 2, "malignant": 2} and payload["cases"] == 4
    with open(payload["labels_csv"], newline="") as handle:
        assert all(row["mask"] for row in csv.DictReader(handle))


def test_sample_data_rejects_bad_options_without_writing(cli, tmp_path):
    result = cli("sample-data", tmp_path / "out", "--task", "grading")
    assert result.exit_code == 4 and "unknown task 'grading'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    too_few = cli("sample-data", tmp_path / "out", "--cases", "1")
    assert too_few.exit_code == 2 and "greater than or equal to 2" in too_few.stderr
    assert not (tmp_path / "out").exists()
