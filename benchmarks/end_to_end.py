"""End to end: ``medxai demo`` wall time, and ``medxai run`` over N phantom cases (cases per minute).

Both run as the user runs them: a fresh ``medxai`` process (imports and model loading included).
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import measure, record

PIPELINE = """
model:
  path: {model}
  predict: true
explain:
  enabled: true
  methods: [saliency, smoothgrad, gradcam]
  seed: 0
radiomics:
  enabled: true
  mask: input
  expansions: [0, 2]
report:
  enabled: true
"""


def _medxai(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "medxai", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"medxai {args[0]} exited {done.returncode}: {tail}")


def demo_record(demo_args: tuple[str, ...], *, repeats: int, device: str) -> dict[str, Any]:
    """Median wall time of ``medxai demo [ARGS] -o TMP`` (a fresh folder each time)."""
    with tempfile.TemporaryDirectory(prefix="medxai-bench-demo-") as tmp:
        counter = iter(range(10**6))
        timing = measure(lambda: _medxai("demo", *demo_args, "-o", str(Path(tmp) / f"run{next(counter)}")),
                         repeats=repeats, warmup=0, device=device)
    return record(f"end_to_end/demo{''.join(demo_args).replace('--', '_')}", f"medxai demo {' '.join(demo_args)}".strip(),
                  "demo cohort", device, timing)


def pipeline_record(cases: int, *, repeats: int, device: str, size: int = 48) -> dict[str, Any]:
    """``medxai run`` (predict, 3 explanation methods, radiomics with one shell, PDF report) over ``cases``
    phantoms of ``size``^3 on mixed grids, with an untrained seeded tiny CNN at 32^3; cases per minute."""
    import torch

    from medxai.models.model_dir import save_model_dir
    from medxai.models.preprocessing import PreprocessingConfig
    from medxai.models.registry import build_network
    from medxai.synthetic import make_cohort

    with tempfile.TemporaryDirectory(prefix="medxai-bench-run-") as tmp:
        root = Path(tmp)
        make_cohort(root / "cohort", cases=cases, seed=0, size=size)
        torch.manual_seed(0)
        network = build_network("tiny", in_channels=1, num_classes=2, spatial_size=(32, 32, 32))
        save_model_dir(root / "model", network=network, arch="tiny", classes=["lesion", "normal"], task="classification",
                       preprocessing=PreprocessingConfig(spatial_size=(32, 32, 32)), training={"seeded": 0}, metrics={})
        (root / "pipeline.yaml").write_text(PIPELINE.format(model=root / "model"))
        counter = iter(range(10**6))
        timing = measure(lambda: _medxai("run", str(root / "pipeline.yaml"), "--input", str(root / "cohort"),
                                         "-o", str(root / f"out{next(counter)}")), repeats=repeats, warmup=0, device=device)
    return record(f"end_to_end/run_{cases}_cases", "medxai run (predict, 3 methods, radiomics, report)",
                  f"{cases} cases of {size}^3", device, timing, cases=cases,
                  cases_per_minute=60.0 * cases / timing["median_s"])
