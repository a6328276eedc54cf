"""A pipeline with explain + score computes each case's heatmaps once (issue 25): the score stage scores the
explanation the explain stage made, and its rows equal those of scoring from scratch."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from medxai.pipeline.inputs import discover_cases
from medxai.pipeline.schema import load_pipeline
from medxai.pipeline.stages import active_stages
from medxai.pipeline.worker import CaseJob, WorkerSetup, process_case, staging_dir

PIPELINE = """
model:
  path: {model}
explain:
  enabled: true
  methods: [saliency, gradcam]
  seed: 1
  batch_size: 4
score:
  enabled: true
  seed: {score_seed}
  sensitivity: false
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from medxai.synthetic import make_cohort
    from medxai.testing.tiny_model import save_tiny_classifier

    root = tmp_path_factory.mktemp("shared-explanations")
    make_cohort(root / "cohort", cases=2, seed=5, size=24)
    save_tiny_classifier(root / "model")
    return root


def _run_case(root: Path, out: Path, *, score_seed: int) -> tuple[list[dict[str, str]], list[str]]:
    """Run the pipeline's stages on the first case in this process; the score rows and the methods each
    call of explain_case computed."""
    import medxai.attribution.engine as engine

    path = out / "pipeline.yaml"
    out.mkdir()
    path.write_text(PIPELINE.format(model=root / "model", score_seed=score_seed))
    pipeline = load_pipeline(path)
    case = discover_cases(root / "cohort" / "labels.csv")[0]
    setup = WorkerSetup(model_path=str(root / "model"), model_hash=None, device="cpu", torch_threads=1)
    from medxai.models.preprocessing import Preprocessor

    calls: list[str] = []
    original, original_prepare = engine.explain_case, Preprocessor.prepare

    def counting(*args, **kwargs):
        calls.extend(kwargs["methods"])
        return original(*args, **kwargs)

    def counting_prepare(self, *args, **kwargs):
        calls.append("preprocess")
        return original_prepare(self, *args, **kwargs)

    engine.explain_case, Preprocessor.prepare = counting, counting_prepare
    try:
        result = process_case(CaseJob(case=case, pipeline=pipeline, stages=tuple(s.target for s in active_stages(pipeline)),
                                      out_dir=out, setup=setup))
    finally:
        engine.explain_case, Preprocessor.prepare = original, original_prepare
    assert result.status == "done", result.error
    with (staging_dir(out, case.case_id) / case.case_id / "scores.csv").open(newline="") as handle:
        return list(csv.DictReader(handle)), calls


def test_explain_then_score_computes_each_method_once_and_scores_the_same(workspace, tmp_path):
    shared_rows, shared_calls = _run_case(workspace, tmp_path / "shared", score_seed=1)
    # explain stage only: score reused its heatmaps and the model-grid input they were made on
    assert sorted(shared_calls) == ["gradcam", "preprocess", "saliency"]
    # A score seed other than explain's cannot reuse them: scored from scratch, each method computed again.
    fresh_rows, fresh_calls = _run_case(workspace, tmp_path / "fresh", score_seed=2)
    assert sorted(fresh_calls) == ["gradcam", "gradcam", "preprocess", "preprocess", "saliency", "saliency"]
    assert [row["method"] for row in shared_rows] == ["saliency", "gradcam"]
    for shared, fresh in zip(shared_rows, fresh_rows):  # deterministic methods: the maps scored are the same
        assert shared["infidelity"] and shared["deletion_auc"] == fresh["deletion_auc"]
