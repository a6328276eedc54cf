"""``medxai explain MODEL_DIR SCAN... -o DIR``: attribution heatmaps on each scan's own grid."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import console, options


def register(app: typer.Typer) -> None:
    @app.command("explain")
    @options.with_model_options
    def explain(
        model_dir: Path = typer.Argument(..., metavar="MODEL_DIR", help="Model directory (or TorchScript file / MONAI bundle)."),
        scans: List[str] = typer.Argument(..., metavar="SCAN...", help="Scans: NIfTI, NRRD or DICOM folder ('a.nii.gz;b.nii.gz' for several channels)."),
        out_dir: Path = options.out_option("Output folder: DIR/<case_id>/<method>.nii.gz + explanations.json."),
        methods: List[str] = typer.Option([], "--method", "-m", help="Attribution method (repeat); default smoothgrad."),
        target: str = typer.Option("predicted", "--target", help="'predicted', a class name, or CLASS_A-CLASS_B (contrast)."),
        mask: Optional[Path] = typer.Option(None, "--mask", help="Mask on the scan's grid: target region (segmentation) or occlusion ROI."),
        box: Optional[str] = typer.Option(None, "--box", help="i0,j0,k0,i1,j1,k1 (inclusive voxel corners): target region or occlusion ROI."),
        voxel: Optional[str] = typer.Option(None, "--voxel", help="i,j,k: explain one voxel of a segmentation output."),
        batch_size: str = typer.Option("auto", "--batch-size", help="Samples per internal forward pass: auto (fits free memory) or N."),
        seed: int = typer.Option(0, "--seed", help="Seed of the noise of SmoothGrad and Smooth Grad-CAM++."),
        time_budget: Optional[float] = typer.Option(None, "--time-budget", metavar="SECONDS",
                                                    help="Refuse, before it runs, a method estimated to take longer (exit 3; the other methods run)."),
        model_options: options.ModelOptions = options.ModelOptions(),
    ) -> None:
        """Explain each scan with each method; heatmaps keep raw values and the scan's affine."""
        from medxai.attribution.batch import explain_scans, parse_batch_size, parse_indices
        from medxai.attribution.defaults import DEFAULT_METHOD
        from medxai.attribution.registry import check_method_names
        from medxai.errors import ConfigError
        from medxai.io.naming import scan_case_ids, scan_channels

        chosen = methods or [DEFAULT_METHOD]
        check_method_names(chosen)
        if time_budget is not None and not time_budget > 0:
            raise ConfigError(f"--time-budget must be a positive number of seconds, got {time_budget:g}")
        case_options = dict(target=target, mask=mask, box=parse_indices(box, count=6, name="box"),
                       voxel=parse_indices(voxel, count=3, name="voxel"), seed=seed, batch_size=parse_batch_size(batch_size),
                       time_budget=time_budget, notice=console.info)
        model, = model_options.load([model_dir])
        with console.progress() as progress:
            result = explain_scans(model, [scan_channels(s) for s in scans], scan_case_ids(scans), out_dir,
                                   methods=chosen, progress=progress, **case_options)
        for case_id in result.written:
            console.info(f"wrote {out_dir / case_id}")
        console.report_failed(result.failed, total=len(scans))
