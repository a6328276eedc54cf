"""``medxai validate --quick`` through the real entry point: every output written, the ranking consistent."""
from __future__ import annotations

import csv
import json
from pathlib import Path


def _no_nan(constant: str) -> None:
    raise AssertionError(f"{constant} is not JSON")


def test_validate_quick_writes_table_json_and_plot(cli, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = cli("validate", "--quick", "-o", out, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout, parse_constant=_no_nan)
    assert summary["rank_by"] == "mass_in_mask"
    assert sorted(entry["method"] for entry in summary["ranking"]) == ["gradcam", "saliency"]
    with open(out / "validate.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["rank"] for row in rows] == ["1", "2"]
    assert float(rows[0]["mass_in_mask"]) >= float(rows[1]["mass_in_mask"])
    for row in rows:
        assert float(row["mass_in_mask_low"]) <= float(row["mass_in_mask"]) <= float(row["mass_in_mask_high"])
        assert row["sanity_pass"] in ("true", "false")
    payload = json.loads((out / "validate.json").read_text(), parse_constant=_no_nan)
    assert payload["settings"]["seeds"] == 1 and len(payload["models"]) == 1
    assert {"test_auc", "val_auc", "sanity"} <= set(payload["models"][0])
    lesion_rows = payload["rows"]
    assert lesion_rows and {row["method"] for row in lesion_rows} == {"saliency", "gradcam"}
    assert all(0.0 <= row["mass_in_mask"] <= 1.0 for row in lesion_rows)
    with open(out / "validate_cases.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == len(lesion_rows)
    assert (out / "validate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_validate_refuses_an_unknown_ranking_metric(cli, tmp_path: Path) -> None:
    result = cli("validate", "--quick", "--rank-by", "vibes", "-o", tmp_path / "bench")
    assert result.exit_code == 4
    assert "unknown ranking metric" in result.stderr
    assert not (tmp_path / "bench").exists()
