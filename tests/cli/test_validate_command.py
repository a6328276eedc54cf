"""``medxai validate --quick`` through the real entry point: every output written, the ranking consistent."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest


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
        assert 0.0 <= float(row["sanity_pass_rate"]) + float(row["sanity_inconclusive_rate"]) <= 1.0
    payload = json.loads((out / "validate.json").read_text(), parse_constant=_no_nan)
    assert payload["settings"]["seeds"] == 1 and len(payload["models"]) == 1
    assert {"test_auc", "val_auc"} <= set(payload["models"][0])
    lesion_rows = payload["rows"]
    # every map is checked and judged, and the verdict table counts each map once per verdict
    assert all(row["sanity_status"] in ("pass", "fail", "inconclusive") for row in lesion_rows)
    with open(out / "validate_verdicts.csv", newline="") as handle:
        table = {row["verdict"]: row for row in csv.DictReader(handle)}
    assert set(table) == {"trusted", "caution", "do-not-use", "inconclusive", "caution or do-not-use"}
    for verdict in ("trusted", "caution", "do-not-use", "inconclusive"):
        assert int(table[verdict]["maps"]) == sum(row["verdict_without_mask"] == verdict for row in lesion_rows)
    assert int(table["caution or do-not-use"]["maps"]) == int(table["caution"]["maps"]) + int(table["do-not-use"]["maps"])
    trusted = [row for row in lesion_rows if row["verdict_without_mask"] == "trusted"]
    if trusted:  # the table's rate is the share of those maps whose peak lies in the lesion
        assert float(table["trusted"]["pointing_game"]) == pytest.approx(np.mean([row["pointing_game"] for row in trusted]))
        assert float(table["trusted"]["pointing_game_low"]) <= float(table["trusted"]["pointing_game"]) <= float(
            table["trusted"]["pointing_game_high"])
    assert summary["verdicts"][0]["verdict"] == "trusted"
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
