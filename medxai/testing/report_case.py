"""A case folder as explain/score write it (``explanations.json`` in the attribution engine's record
layout), with known content, for the report's tests (no model needed).

The scan is a phantom with a lesion; heatmaps are smooth blobs on the lesion (``positive``) or a signed map,
written on the scan's own grid; ``scores.csv`` marks chosen methods as failing the sanity check; the model
folder holds only ``medxai-model.json`` (the report reads it and never loads weights).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from medxai.attribution.provenance import input_sha256
from medxai.io.nifti import write_nifti
from medxai.synthetic import make_spec, render
from medxai.volume import Volume

PROBABILITIES = {"lesion": 0.93, "normal": 0.07}
WEIGHTS_SHA256 = "5" * 64
VALIDATION = {"val_auc": 0.91, "val_f1_macro": 0.84, "val_accuracy": 0.85, "val_n": 20}


@dataclass(frozen=True)
class ReportCase:
    case_dir: Path
    scan: Path
    mask: Path
    model_dir: Path
    volume: Volume


def phantom(*, linear: np.ndarray, shape: tuple[int, int, int], seed: int = 7) -> tuple[Volume, Volume]:
    """A lesion phantom (image, mask) on a grid with voxel->world matrix ``linear`` centred on the phantom."""
    spec = make_spec(seed=seed, task="presence", label="lesion", size=max(shape))
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = np.asarray(spec.centre_mm) - linear @ ((np.array(shape) - 1) / 2.0)
    rendered = render(spec, affine=affine, shape=shape, noise_seed=seed)
    return rendered.image, rendered.mask


def write_model_json(folder: Path, *, calibration: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    info = {"format": "medxai-model/1", "arch": "tiny", "classes": ["lesion", "normal"], "task": "classification",
            "metrics": VALIDATION, "versions": {"medxai": "0.1.0"}, "weights": {"file": "weights.safetensors", "sha256": WEIGHTS_SHA256}}
    if calibration:
        info["calibration"] = calibration
    (folder / "medxai-model.json").write_text(json.dumps(info), encoding="utf-8")
    return folder


def write_report_case(
    root: str | Path, *, volume: Volume, mask: Volume, case_id: str = "case_0007", scan_path: Path | None = None,
    methods: Sequence[str] = ("smoothgrad", "integrated_gradients"), failing: Sequence[str] = ("integrated_gradients",),
) -> ReportCase:
    """Write ``root/<case_id>/`` (heatmaps, explanations.json, scores.csv), the scan and mask (unless
    ``scan_path`` points to an existing scan of ``volume``), and a model folder."""
    root = Path(root)
    case_dir = root / case_id
    scan = scan_path or write_nifti(volume, root / f"{case_id}.nii.gz")
    mask_path = write_nifti(mask, root / f"{case_id}_mask.nii.gz")
    smooth = gaussian_filter(mask.data.astype(np.float64), 1.5)
    rng = np.random.default_rng(0)
    records = {}
    rows = ["case_id,method,infidelity,max_sensitivity,deletion_auc,sanity_spearman,sanity_pass,pointing_game,"
            "mass_in_mask,auroc,peak_distance_mm,com_distance_mm"]
    for number, name in enumerate(methods):
        signed = number % 2 == 1
        noise = gaussian_filter(rng.normal(size=volume.shape), 2.0)
        values = smooth - 0.4 * noise if signed else smooth + 0.05 * np.abs(noise)
        write_nifti(volume.with_data(values.astype(np.float32)), case_dir / f"{name}.nii.gz")
        records[name] = {"file": f"{name}.nii.gz", "sign": "signed" if signed else "positive",
                         "parameters": {"n_samples": 8}, "normalisation": "none, raw attribution", "wall_s": 1.0 + number}
        fails = name in failing
        rows.append(f"{case_id},{name},{0.01 * (number + 1)},{0.2 * (number + 1)},0.1,{0.9 if fails else 0.1},"
                    f"{'false' if fails else 'true'},{'false' if fails else 'true'},{0.2 if fails else 0.7},0.9,"
                    f"{12.0 if fails else 0.0},1.5")
    explanations = {
        "case_id": case_id, "inputs": [{"channel": 0, "sha256": input_sha256(scan)}],
        "model": {"sha256": WEIGHTS_SHA256, "arch": "tiny", "classes": ["lesion", "normal"], "task": "classification"},
        "output": "classification", "prediction": {"class": "lesion", "probabilities": PROBABILITIES},
        "target": {"requested": "predicted", "region": None, "resolved": None}, "seed": 0, "device": "cpu",
        "versions": {"medxai": "0.1.0", "torch": "2.13.0"}, "date": "2025-01-01T00:00:00+00:00",
        "methods": records, "failed_methods": {},
    }
    (case_dir / "explanations.json").write_text(json.dumps(explanations), encoding="utf-8")
    (case_dir / "scores.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return ReportCase(case_dir=case_dir, scan=Path(scan), mask=mask_path, model_dir=write_model_json(root / "model"),
                      volume=volume)
