"""Every shipped pipeline runs end to end through ``medxai run`` (by name, as an installed medxai finds it)."""
from __future__ import annotations

import csv

import pytest

CHEAP = {  # keep each run to seconds: fewer methods, the costly score parts off
    "classify-explain-report": ["--set", "explain.methods=[saliency, gradcam]", "--set", "score.sanity=false",
                                "--set", "score.sensitivity=false"],
    "radiomics-peritumoral": ["--set", "radiomics.expansions=[0, 2]"],
    "weakseg": [],
    "weakseg-radiomics": ["--set", "radiomics.expansions=[0, 2]"],
}
EXPECTED = {  # files every done case folder must hold
    "classify-explain-report": {"scan.json", "prediction.json", "explanations.json", "saliency.nii.gz",
                                "gradcam.nii.gz", "scores.csv", "report.pdf"},
    "radiomics-peritumoral": {"scan.json"},
    "weakseg": {"scan.json", "prediction.json", "heatmap.nii.gz", "mask.nii.gz", "segmentation.json"},
    "weakseg-radiomics": {"scan.json", "prediction.json", "heatmap.nii.gz", "mask.nii.gz", "segmentation.json"},
}
COHORT_TABLES = {
    "classify-explain-report": {"preds.csv", "scores.csv", "summary.pdf"},
    "radiomics-peritumoral": {"features.csv"},
    "weakseg": {"preds.csv"},
    "weakseg-radiomics": {"preds.csv"},
}


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    """Three phantoms (two with lesions), a seeded tiny classifier and a seeded GP-UNet (untrained)."""
    import torch

    from medxai.models.model_dir import save_model_dir
    from medxai.models.preprocessing import PreprocessingConfig
    from medxai.models.registry import build_network
    from medxai.synthetic import make_cohort

    root = tmp_path_factory.mktemp("shipped")
    make_cohort(root / "cohort", cases=3, seed=5, size=32)
    for arch, size, folder in (("tiny", 16, "classifier"), ("gp-unet", 32, "weakseg")):
        torch.manual_seed(0)
        network = build_network(arch, in_channels=1, num_classes=2, spatial_size=(size,) * 3)
        save_model_dir(root / folder, network=network, arch=arch, classes=["lesion", "normal"],
                       task="weakseg" if arch.startswith("gp-") else "classification",
                       preprocessing=PreprocessingConfig(spatial_size=(size,) * 3), training={"seeded": 0}, metrics={})
    return root


@pytest.mark.slow  # four pipelines, each spawning a worker that imports torch
@pytest.mark.parametrize("name", sorted(CHEAP))
def test_shipped_pipeline_runs_by_name(material, cli, name):
    model = material / ("weakseg" if name.startswith("weakseg") else "classifier")
    out = material / f"out-{name}"
    result = cli("run", name, "--input", material / "cohort", "-o", out, "--set", f"model.path={model}", *CHEAP[name])
    assert result.exit_code == 0, result.stderr
    with (out / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["status"] for row in rows] == ["done"] * 3
    for row in rows:
        assert EXPECTED[name] <= {p.name for p in (out / row["case_id"]).iterdir()}
    assert COHORT_TABLES[name] <= {p.name for p in out.iterdir()}
