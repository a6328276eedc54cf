"""``medxai score``'s terminal table (cli/score.py ``print_table``): readable at 80 columns, complete when wide."""
from __future__ import annotations

import io

import pytest
from rich.console import Console

from medxai.cli import console
from medxai.cli.score import print_table

METHODS = (("integrated_gradients", "do-not-use", "fail"), ("smoothgrad", "trusted", "pass"),
           ("gradcam", "inconclusive", "inconclusive"))


def _rows() -> list[dict[str, object]]:
    return [dict(case_id="brats_2013_pat0005_1_Flair", method=method, verdict=verdict, verdict_reason="a long reason " * 8,
                 infidelity=0.0123456, max_sensitivity=0.5, deletion_auc=0.2, insertion_auc=0.7, sanity_spearman=0.74,
                 sanity_status=status, sanity_pass=status == "pass", pointing_game=1.0, mass_in_mask=0.3, auroc=0.99,
                 com_distance_mm=12.3, input="/data/some/very/long/path/to/the/scan/brats_2013_pat0005_1_Flair.nii.gz")
            for method, verdict, status in METHODS]


def _printed(monkeypatch: pytest.MonkeyPatch, width: int) -> list[str]:
    buffer = io.StringIO()
    monkeypatch.setattr(console, "stdout", Console(file=buffer, width=width, highlight=False, soft_wrap=True))
    print_table(_rows(), title="scores (/tmp/a/rather/long/output/folder/scores.csv)")
    return buffer.getvalue().splitlines()


def test_table_fits_80_columns_one_line_per_row(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _printed(monkeypatch, 80)
    assert max(len(line) for line in lines) <= 80
    for method, verdict, _ in METHODS:  # each row whole on one line: case, method and verdict unbroken
        assert any("brats_2013_pat0005_1_Flair" in line and method in line and verdict in line for line in lines)
    assert any(line.startswith("not shown at this width:") for line in lines)
    assert "FAIL" in "\n".join(lines)  # the randomisation check's failure stays visible


def test_wide_terminal_shows_every_score_column(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "\n".join(_printed(monkeypatch, 220))
    for header in ("AUROC", "infid.", "del.AUC", "max-sens.", "CoM mm", "ins.AUC", "rand.rho", "inconcl."):
        assert header in text
    assert "not shown" not in text
