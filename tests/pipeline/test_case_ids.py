"""Case ids: ``[A-Za-z0-9_-]`` only (so never the name of a file a run writes, which all have a dot), unique
by the distinguishing part of the path, the same for every command."""
from __future__ import annotations

import pytest

from medxai.errors import ConfigError, InvalidInputError
from medxai.io.naming import CASE_ID_PATTERN, case_id_from_path, safe_case_id, unique_case_ids

HOSTILE = ["run.json", "manifest.csv", "preds.csv", "scores.csv", ".work", ".medxai.lock", "..", "../../etc/passwd",
           "a/b\\c", "-rf", "...", "", " ", "名前.nii", "x" * 300, "1.2.840.113619.2.55.3", "summary.pdf", "con.",
           "a\x00b", "tab\tname", "ünïcödé"]


@pytest.mark.parametrize("raw", HOSTILE)
def test_a_case_id_is_letters_digits_underscores_and_hyphens_only(raw):
    case_id = safe_case_id(raw)
    assert CASE_ID_PATTERN.match(case_id), case_id
    assert "." not in case_id and "/" not in case_id and len(case_id) <= 64


def test_dots_become_underscores_so_a_scan_cannot_be_named_like_a_run_file():
    assert case_id_from_path("in/run.json.nii.gz") == "run_json"
    assert case_id_from_path("in/manifest.csv.nii.gz") == "manifest_csv"
    assert safe_case_id("manifest.csv") == "manifest_csv"
    assert case_id_from_path("/data/1.2.840.10008") == "1_2_840_10008"   # a DICOM folder named by its UID


def test_same_file_names_take_in_the_folders_that_tell_them_apart():
    assert unique_case_ids(["left/scan.nii.gz", "right/scan.nii.gz"]) == ["left_scan", "right_scan"]
    assert unique_case_ids(["/d/p1/a/ct.nii.gz", "/d/p2/a/ct.nii.gz"]) == ["p1_a_ct", "p2_a_ct"]
    assert unique_case_ids(["/d/scan.nii.gz", "/d/scan.nrrd"]) == ["scan_nii_gz", "scan_nrrd"]  # the suffix tells


def test_ids_that_are_already_unique_stay_as_they_are():
    assert unique_case_ids(["x/a.nii.gz", "y/b.nrrd", "z/c"]) == ["a", "b", "c"]
    # "left_scan" was unique before the two "scan" grew into it: it keeps its name, they grow further
    ids = unique_case_ids(["/r/left_scan.nii.gz", "/r/left/scan.nii.gz", "/r/right/scan.nii.gz"])
    assert ids[0] == "left_scan" and len(set(ids)) == 3 and ids[2] == "right_scan"


def test_ids_are_deterministic_and_a_path_given_twice_still_gets_two_ids():
    paths = ["/d/s.nii.gz", "/d/s.nii.gz", "/e/s.nii.gz"]
    first = unique_case_ids(paths)
    assert first == unique_case_ids(paths) and len(set(first)) == 3
    assert all(CASE_ID_PATTERN.match(i) for i in first)


def test_a_manifest_id_is_kept_and_a_derived_id_yields_to_it():
    assert unique_case_ids(["/m/one.nii.gz", "/m/b.nii.gz"], fixed=["b", None]) == ["b", "b_nii_gz"]
    with pytest.raises(ConfigError, match="case ids repeat"):
        unique_case_ids(["/m/a.nii.gz", "/m/b.nii.gz"], fixed=["x", "x"])


def test_a_run_manifest_that_repeats_a_case_id_is_refused_naming_the_lines(tmp_path):
    from medxai.pipeline.inputs import discover_cases

    manifest = tmp_path / "labels.csv"
    manifest.write_text("case_id,image\ndup,a.nii.gz\nother,b.nii.gz\ndup.,c.nii.gz\n")
    with pytest.raises(InvalidInputError, match="line 4: case_id dup repeats line 2"):
        discover_cases(manifest)


def test_every_command_names_cases_with_the_one_function(tmp_path):
    """explain/predict/score (naming.scan_case_ids), segment, radiomics and run give two same-named scans the same ids."""
    from medxai.io.naming import scan_case_ids
    from medxai.pipeline.inputs import discover_cases
    from medxai.radiomics.cases import read_manifest
    from medxai.segmentation.segment import collect_inputs

    for side in ("left", "right"):
        (tmp_path / "in" / side).mkdir(parents=True)
        (tmp_path / "in" / side / "scan.nii.gz").write_bytes(b"")
    scans = [tmp_path / "in" / "left" / "scan.nii.gz", tmp_path / "in" / "right" / "scan.nii.gz"]
    expected = ["left_scan", "right_scan"]
    assert scan_case_ids(scans) == expected
    assert [c.case_id for c in collect_inputs([str(s) for s in scans])] == expected
    assert [c.case_id for c in discover_cases(tmp_path / "in")] == expected
    manifest = tmp_path / "radiomics.csv"
    manifest.write_text("image,bbox\nin/left/scan.nii.gz,0 0 0 1 1 1\nin/right/scan.nii.gz,0 0 0 1 1 1\n")
    assert [c.case_id for c in read_manifest(manifest)] == expected
