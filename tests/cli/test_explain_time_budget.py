"""``medxai explain --time-budget SECONDS`` through the real entry point, and progress lines on a log."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from medxai.io.nifti import write_nifti
from medxai.models.model_dir import save_model_dir
from medxai.models.preprocessing import PreprocessingConfig
from medxai.models.registry import build_network
from medxai.synthetic import default_grid, make_spec, render


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An untrained tiny CNN on a 32^3 grid and an anisotropic phantom scan."""
    root = tmp_path_factory.mktemp("budget")
    torch.manual_seed(0)
    network = build_network("tiny", in_channels=1, num_classes=2, spatial_size=(32, 32, 32))
    save_model_dir(root / "model", network=network, arch="tiny", classes=["normal", "lesion"], task="classification",
                   preprocessing=PreprocessingConfig(spatial_size=(32, 32, 32)), training={}, metrics={})
    spec = make_spec(seed=5, task="presence", label="lesion", size=32)
    affine, shape = default_grid(spec, size=32, kind="anisotropic")
    write_nifti(render(spec, affine=affine, shape=shape).image, root / "scan.nii.gz")
    return {"model": root / "model", "scan": root / "scan.nii.gz"}


def _explain(cli, setup: dict[str, Path], out: Path, budget: float):
    return cli("explain", setup["model"], setup["scan"], "-o", out, "-m", "integrated_gradients", "-m", "occlusion",
               "--batch-size", "4", "--time-budget", repr(budget))


def test_time_budget_refuses_the_method_that_would_not_fit(cli, setup, tmp_path):
    # Every method refused: the estimates are recorded without running anything. Both methods run many passes,
    # so their pass times are measured once and cached per model, device and batch shape in this process: the
    # second run below sees the same estimates, and a budget between them refuses exactly the longer one.
    first = _explain(cli, setup, tmp_path / "all", 1e-9)
    assert first.exit_code == 3, first.stderr
    refused = json.loads((tmp_path / "all" / "scan" / "explanations.json").read_text())["time_budget"]["refused"]
    assert set(refused) == {"integrated_gradients", "occlusion"}
    estimates = {name: entry["estimated_seconds"] for name, entry in refused.items()}
    (short, short_s), (long, long_s) = sorted(estimates.items(), key=lambda item: item[1])
    assert 0 < short_s < long_s
    assert refused["occlusion"]["passes"]["unit"] == "windows" and refused["integrated_gradients"]["passes"]["count"] == 32

    out = tmp_path / "out"
    result = _explain(cli, setup, out, math.sqrt(short_s * long_s))
    assert result.exit_code == 3, result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed ")]
    assert len(failed) == 1 and [line for line in result.stderr.splitlines() if long in line] == failed, result.stderr
    assert f"{long}: estimated" in failed[0] and "exceeds --time-budget" in failed[0] and short not in failed[0]
    assert (out / "scan" / f"{short}.nii.gz").is_file() and not (out / "scan" / f"{long}.nii.gz").exists()
    record = json.loads((out / "scan" / "explanations.json").read_text())
    assert set(record["methods"]) == {short} and set(record["failed_methods"]) == {long}
    assert record["methods"][short]["estimated_seconds"] == short_s and record["methods"][short]["actual_seconds"] > 0
    assert record["time_budget"]["refused"][long]["estimated_seconds"] == long_s


def test_time_budget_must_be_positive(cli, setup, tmp_path):
    result = _explain(cli, setup, tmp_path / "out", 0.0)
    assert result.exit_code == 4 and "--time-budget" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_progress_on_a_log_is_one_line_per_minute():
    from medxai.cli.console import plain_progress

    lines: list[str] = []
    now = [0.0]
    update = plain_progress(lines.append, clock=lambda: now[0])
    for step in range(300):  # 300 windows, one every second
        now[0] = float(step)
        update("occlusion (case_1)", step, 300)
    assert len(lines) == 4  # at 60, 120, 180 and 240 s: not one per step
    assert lines[0] == "occlusion (case_1): 60/300, 60 s elapsed, about 4 min left"
